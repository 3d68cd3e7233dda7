"""``benchmarks/lean_paths.py --quick`` runs to its end and prints every row of issue 24's
table, judged, with a figure on every line: the one benchmark command cannot rot unseen (a
peer's API that changed, a manager option renamed, a row dropped)."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import multilayercache

from support import BENCHMARKS

ROWS = ["0", "1a", "1b", "2", "3", "4a", "4b", "5a", "5b", "6", "7", "8"]
UNIT = r"(x| ns| us| B)"
HEADER = re.compile(rf"^(\w+) +(.+): ([\d.]+){UNIT} \(bound <= ([\d.]+){UNIT}\)  (PASS|FAIL)$")
# a ratio to a peer that is not installed (cachebox, without the bench extra)
SKIPPED = re.compile(r"^(\w+) +(.+): not measured \(bound <= [\d.]+x\)  SKIP$")
# label, median (min-max) and unit; then, but for a reference, the ratio (min-max) to it
NUMBER = r"([\d.]+|nan)(?: \([\d.]+-[\d.]+\))?"
FIGURE = re.compile(rf"^ {{6}}(.+?) +{NUMBER} (ns|us|B)(?: +{NUMBER}x .+)?$")


def test_quick_run_prints_every_row_judged() -> None:
    source = Path(multilayercache.__file__).parents[1]
    environment = {**os.environ, "PYTHONPATH": str(source)}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "lean_paths.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    headers = [match for line in lines if (match := HEADER.match(line))]
    skipped = [match[1] for line in lines if (match := SKIPPED.match(line))]
    numbers = [match[1] for line in lines if (match := HEADER.match(line) or SKIPPED.match(line))]
    assert numbers == ROWS, result.stdout
    assert not skipped or importlib.util.find_spec("cachebox") is None, skipped
    for match in headers:
        judged, bound, verdict = float(match[3]), float(match[5]), match[7]
        assert verdict == ("PASS" if judged <= bound else "FAIL"), match[0]
    indented = [line for line in lines if line.startswith(" " * 6) and "note:" not in line]
    # ours and its reference at least, in every row but memory (--quick measures ours alone;
    # the peers are lines more when installed)
    assert len(indented) >= 2 * len(ROWS) - 1, result.stdout
    for line in indented:
        match = FIGURE.match(line)
        assert match, line
        assert math.isfinite(float(match[2])) and float(match[2]) > 0, line
    assert lines[-2].startswith(
        ("every row in bound", f"{sum(m[7] == 'FAIL' for m in headers)} row")
    )
