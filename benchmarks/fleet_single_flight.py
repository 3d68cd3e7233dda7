"""One load across the fleet: processes x callers asking for one cold key at once.

    python benchmarks/fleet_single_flight.py                  # 3 processes x 50, 3 rounds
    python benchmarks/fleet_single_flight.py --rounds 5 --lease 2 --load-seconds 0.2

For each kind of caller (threads in ``MultilayerCache``, asyncio tasks in
``AsyncMultilayerCache``), each process (spawned) starts its callers at once on a cold key
whose loader takes ``--load-seconds``:

* ``per process``: ``fleet_single_flight`` off, as before: one load per process;
* ``fleet``: on: one load in all;
* ``fleet, loader killed``: on, and the process whose loader runs first is SIGKILLed
  mid-load: another instance takes over when its lease (``--lease``) ends.

Printed per round: loader calls, the longest and median caller wait, and the Redis
commands the round sent (``INFO commandstats`` on a server of its own, reset at the start;
the backplane's blocking ``XREAD``s, one a second per process, are listed apart): a
waiting instance makes one lease request and one read per message, never a poll loop.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from multilayercache.tools.servers import RedisServer  # noqa: E402

from fleetflight_support import stampede  # noqa: E402

BACKGROUND = ("xread", "info", "config|resetstat", "hello", "client|setinfo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--load-seconds", type=float, default=0.2)
    args = parser.parse_args()
    scenarios = (("per process", False, False), ("fleet", True, False),
                 ("fleet, loader killed", True, True))  # fmt: skip
    print(f"{args.processes} processes x {args.callers} callers, loader {args.load_seconds} s, "
          f"lease {args.lease} s")  # fmt: skip
    with RedisServer.start(use_env=False) as server:
        for kind in ("sync", "asyncio"):
            for name, fleet, kill in scenarios:
                for round_ in range(args.rounds):
                    run = stampede(
                        server.url, f"bench:{kind}:{name}:{round_}:", kind, args.processes,
                        args.callers, args.load_seconds, args.lease, kill, fleet=fleet,
                    )  # fmt: skip
                    sent = {k: v for k, v in sorted(run.commands.items()) if k not in BACKGROUND}
                    killed = (
                        "" if run.killed_after is None else f" killed at {run.killed_after:.2f} s"
                    )
                    print(
                        f"{kind:7} {name:21} loads {run.loads}  callers {len(run.waits):3} "
                        f"errors {len(run.errors)}  wait max {max(run.waits):.3f} s "
                        f"p50 {statistics.median(run.waits):.3f} s{killed}  commands {sent} "
                        f"(xread {run.commands.get('xread', 0)})"
                    )


if __name__ == "__main__":
    main()
