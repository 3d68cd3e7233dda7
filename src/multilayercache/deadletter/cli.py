"""``python -m multilayercache.deadletter replay FILE --redis URL``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .into_redis import TIMEOUT_SECONDS, replay_into_redis
from .records import _type_name
from .replay import ReplayReport


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multilayercache.deadletter replay FILE --redis URL [--layer NAME]
    [--only-missing | --skip-missing] [--cluster] [--timeout SECONDS]``: replay a
    dead-letter file into Redis (never making a key older) and print what was done with
    every record.

    Exit status: 0 when every record was replayed or rightly dropped (superseded, older,
    expired) or kept for another layer; 1 when a record failed or a line could not be
    read (they are kept in FILE: fix the cause, run it again); 2 when nothing was
    replayed (no file, a directory, a server that does not answer)."""
    parser = argparse.ArgumentParser(
        prog="python -m multilayercache.deadletter", description="Replay dead letters."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "replay",
        help="replay a dead-letter file into Redis",
        description="Replay the latest record of each key, where it is newer than what "
        "Redis holds. Run it again after an interruption: it resumes.",
    )
    command.add_argument("file", type=Path)
    command.add_argument("--redis", required=True, help="redis://host:port/db")
    command.add_argument("--layer", help="replay only this layer's records")
    missing = command.add_mutually_exclusive_group()
    missing.add_argument(
        "--only-missing",
        action="store_true",
        help="write only keys that hold nothing: never overwrite or delete a value",
    )
    missing.add_argument(
        "--skip-missing",
        action="store_true",
        help="never write into a key that holds nothing (a key a live cache deleted since "
        "stays deleted; the records are kept)",
    )
    command.add_argument("--cluster", action="store_true", help="URL names a Redis Cluster")
    command.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT_SECONDS,
        help=f"seconds to wait for Redis to connect and answer (default {TIMEOUT_SECONDS})",
    )
    arguments = parser.parse_args(argv)
    try:
        report = replay_into_redis(
            arguments.file,
            arguments.redis,
            layer=arguments.layer,
            only_missing=arguments.only_missing,
            skip_missing=arguments.skip_missing,
            cluster=arguments.cluster,
            timeout=arguments.timeout,
        )
    except (OSError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # redis errors a client passed in raised, and the like
        print(f"{parser.prog}: error: {_type_name(error)}: {error}", file=sys.stderr)
        return 2
    print(summary(report))
    for line in report.errors:
        print(f"  {line}")
    return 0 if not report.failed and not report.unreadable else 1


def summary(report: ReplayReport) -> str:
    """The report as one line, every count named."""
    text = (
        f"replayed {report.replayed}, superseded {report.superseded}, "
        f"older-skipped {report.older}, expired {report.expired}, failed {report.failed}, "
        f"kept {report.kept}, unreadable {report.unreadable}"
    )
    if report.resumed:
        text += f"; resumed {report.resumed} interrupted replay(s)"
    if report.kept_in:
        text += f"; left in {report.kept_in}"
    return text
