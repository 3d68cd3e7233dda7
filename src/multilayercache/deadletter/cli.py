"""``python -m multilayercache.deadletter replay FILE --redis URL``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .records import _type_name
from .replay import replay_into_redis


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multilayercache.deadletter replay FILE --redis URL [--layer NAME]
    [--only-missing]``: replay a dead-letter file into Redis and print the report."""
    parser = argparse.ArgumentParser(
        prog="python -m multilayercache.deadletter", description="Replay dead letters."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("replay", help="replay a dead-letter file into Redis")
    command.add_argument("file", type=Path)
    command.add_argument("--redis", required=True, help="redis://host:port/db")
    command.add_argument("--layer", help="replay only this layer's records")
    command.add_argument(
        "--only-missing", action="store_true", help="SET NX: never overwrite a key"
    )
    arguments = parser.parse_args(argv)
    try:
        report = replay_into_redis(
            arguments.file,
            arguments.redis,
            layer=arguments.layer,
            only_missing=arguments.only_missing,
        )
    except (OSError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # redis errors: unreachable server and the like
        print(f"{parser.prog}: error: {_type_name(error)}: {error}", file=sys.stderr)
        return 2
    print(
        f"replayed {report.replayed}, expired {report.expired}, failed {report.failed}, "
        f"kept {report.kept}, unreadable {report.unreadable}"
        + (f"; left in {report.kept_in}" if report.kept_in else "")
    )
    for line in report.errors:
        print(f"  {line}")
    return 0 if not report.failed and not report.unreadable else 1
