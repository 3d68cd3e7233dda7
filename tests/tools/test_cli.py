"""The command line, run the way a user runs it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from support import trace_path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "multilayercache", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_simulate_prints_one_line_per_size() -> None:
    out = run("simulate", str(trace_path("gli")), "--size", "1000", "--size", "500")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "6,015 requests" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["500", "1000"]
    assert all(row[1].endswith("%") and 0 <= float(row[1][:-1]) <= 100 for row in rows)


def test_simulate_compare_and_plot(tmp_path) -> None:
    plot = tmp_path / "hits.png"
    out = run(
        "simulate", str(trace_path("gli")), "--size", "1500", "--compare", "--plot", str(plot)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split() == ["size", "multilayercache", "LRU", "OPT"]
    assert out.stdout.splitlines()[2].split()[2:] == ["36.56%", "57.96%"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "needs matplotlib" in out.stderr
    else:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_errors(tmp_path) -> None:
    missing = run("simulate", str(tmp_path / "nope.npy"), "--size", "10")
    assert missing.returncode == 2 and "error:" in missing.stderr
    bad_size = run("simulate", str(trace_path("gli")), "--size", "0")
    assert bad_size.returncode == 2 and "must be > 0" in bad_size.stderr
    np.save(tmp_path / "floats.npy", np.array([0.5, 1.5]))
    floats = run("simulate", str(tmp_path / "floats.npy"), "--size", "10")
    assert floats.returncode == 2 and "integer keys" in floats.stderr


def test_demo_runs_against_a_real_server() -> None:
    out = run(
        "demo",
        "--threads",
        "2",
        "--requests",
        "2000",
        "--keys",
        "300",
        "--loader-ms",
        "1",
        "--l1-entries",
        "50",
    )
    assert out.returncode == 0, out.stderr
    report = out.stdout
    for row in ("L1 memory", "L2 redis", "loader", "end to end"):
        assert row in report
    l1 = next(line for line in report.splitlines() if line.startswith("L1 memory")).split()
    hits, misses = int(l1[2].replace(",", "")), int(l1[3].replace(",", ""))
    assert hits + misses == 2000 and hits > 0
    assert "speed-up" in report and "errors: 0" in report
