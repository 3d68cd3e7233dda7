"""``python -m multilayercache top --redis URL [--prefix P]``: a live view of a fleet, in the
terminal (``rich``), from what its instances publish (``fleet_info=``, see
``multilayercache.layers.redis.fleetinfo``): the fleet's hottest keys, and per instance and
layer the hit ratio, breaker state and write-behind queue depth. It refreshes every
``--interval`` seconds until Ctrl-C; ``--once`` prints one frame and exits.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from ..analytics.fleetreport import InstanceReport
from ..analytics.globaltop import merge_top
from ..core.errors import LayerUnavailableError
from ..layers.redis.fleetinfo import Client, read_fleet


def frame(
    reports: list[InstanceReport],
    prefix: str,
    keys: int,
    skipped: int = 0,
    error: str | None = None,
    now: float | None = None,
) -> Any:
    """One frame of the view (a ``rich`` renderable)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = time.time() if now is None else now
    title = f"multilayercache fleet {prefix!r}: {len(reports)} instance(s) publishing"
    parts: list[Any] = [Text(title, style="bold")]
    if error is not None:
        parts.append(Text(f"cannot read the fleet: {error}", style="bold red"))
    listed = Counter(key for report in reports for key in report.top)
    hottest = Table(title="hottest keys across the fleet", title_justify="left", expand=False)
    hottest.add_column("#", justify="right")
    hottest.add_column("key", overflow="fold", max_width=60)
    hottest.add_column("accesses/min", justify="right")
    hottest.add_column("instances", justify="right")
    for rank, (key, per_minute) in enumerate(
        merge_top((report.top for report in reports), keys), start=1
    ):
        hottest.add_row(str(rank), key, f"{per_minute:,}", str(listed[key]))
    parts.append(hottest)
    instances = Table(title="instances", title_justify="left", expand=False)
    for column in ("instance", "host:pid", "layer", "hit ratio", "hits", "misses", "size"):
        instances.add_column(column, justify="left" if column in ("instance", "layer") else "right")
    instances.add_column("breaker")
    instances.add_column("queue", justify="right")
    instances.add_column("published", justify="right")
    for report in reports:
        ago = f"{max(0.0, now - report.published_at):.1f}s ago"
        for position, layer in enumerate(report.layers or ()):
            first = position == 0
            instances.add_row(
                report.instance if first else "",
                f"{report.host}:{report.pid}" if first else "",
                layer.name,
                f"{100 * layer.hit_ratio:.1f}%",
                f"{layer.hits:,}",
                f"{layer.misses:,}",
                "-" if layer.size is None else f"{layer.size:,}",
                _breaker(layer.breaker),
                "-" if layer.queue_depth is None else f"{layer.queue_depth:,}",
                ago if first else "",
            )
        if not report.layers:
            instances.add_row(report.instance, "?", "(no summary)", *[""] * 7)
    parts.append(instances)
    if skipped:
        parts.append(Text(f"{skipped} untrusted field(s) skipped", style="yellow"))
    return Group(*parts)


def _breaker(state: str | None) -> str:
    if state is None:
        return "-"
    style = {"closed": "green", "open": "bold red", "half_open": "yellow"}.get(state, "")
    return f"[{style}]{state}[/]" if style else state


def read_frame(client: Client, prefix: str, keys: int) -> Any:
    """Read the fleet and render a frame (a failed read is shown in the frame)."""
    try:
        reports, skipped, _ = read_fleet(client, prefix)
    except LayerUnavailableError as error:
        return frame([], prefix, keys, error=str(error))
    return frame(reports, prefix, keys, skipped)


def run(client: Client, prefix: str, keys: int, interval: float, once: bool, console: Any) -> None:
    """Show the view on ``console``: one frame with ``once`` (``LayerUnavailableError`` if
    the fleet cannot be read), else refreshing every ``interval`` seconds until Ctrl-C
    (``KeyboardInterrupt``, which the command line takes as the normal way out)."""
    if once:
        reports, skipped, _ = read_fleet(client, prefix)
        console.print(frame(reports, prefix, keys, skipped))
        return
    from rich.live import Live

    with Live(read_frame(client, prefix, keys), console=console, auto_refresh=False) as live:
        while True:  # until Ctrl-C (the command line takes it as the normal way out)
            time.sleep(interval)
            live.update(read_frame(client, prefix, keys), refresh=True)


__all__ = ["frame", "read_frame", "run"]
