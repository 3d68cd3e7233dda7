"""The benchmark job's judge (.ci/compare_benchmarks.py): a guarded ratio that rises past the
tolerance fails the job, noise within it passes, and a slower machine alone changes nothing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "compare_benchmarks.py"
if not SCRIPT.exists():  # tests copied out of the source tree to test an installed wheel
    pytest.skip("no .ci/ beside tests/", allow_module_level=True)

spec = importlib.util.spec_from_file_location("compare_benchmarks", SCRIPT)
judge = importlib.util.module_from_spec(spec)
spec.loader.exec_module(judge)
BASELINES = set(judge.GUARDED.values())
NAMES = [*judge.GUARDED, *BASELINES, *judge.RECORDED]
# what benchmarks/test_bench_memory.py runs (main before the lean paths' guards)
MEMORY_FILE = [
    "test_get_hit[int]",
    "test_get_hit[str]",
    "test_get_miss[int]",
    "test_get_miss[str]",
    "test_set_with_eviction",
    "test_dict_get_baseline[int]",
    "test_dict_get_baseline[str]",
]


def run_json(path: Path, speed: float = 1.0, names: list[str] = NAMES, **slower: float) -> Path:
    """A --benchmark-json file of ``names``: every median 1 s / speed (baselines 0.5 s /
    speed), 100 bytes per entry recorded, times ``slower[name]`` for the names given."""
    benchmarks = []
    for name in names:
        median = (0.5 if name in BASELINES else 1.0) / speed
        factor = slower.get(name.replace("[", "_").replace("]", ""), 1.0)
        time = median * factor
        run = {"name": name, "stats": {"median": time, "min": time}}
        if name in judge.RECORDED:
            run = {
                "name": name,
                "stats": {"median": 3.0},
                "extra_info": {judge.RECORDED[name]: 100.0 * factor},
            }
        benchmarks.append(run)
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def compare(base: list[Path], head: list[Path]) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--base", *map(str, base), "--head", *map(str, head)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_slower_machine_is_not_a_regression(tmp_path: Path) -> None:
    result = compare([run_json(tmp_path / "a.json")], [run_json(tmp_path / "b.json", speed=0.5)])
    assert result.returncode == 0, result.stdout
    assert "REGRESSED" not in result.stdout


def test_a_hit_path_regression_fails(tmp_path: Path) -> None:
    head = run_json(tmp_path / "b.json", test_get_hit_str=1.3)
    result = compare([run_json(tmp_path / "a.json")], [head])
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "REGRESSED" in line]
    assert line.startswith("test_get_hit[str]") and "+30.0%" in line


def test_noise_within_the_tolerance_passes_and_the_best_round_counts(tmp_path: Path) -> None:
    base = [run_json(tmp_path / "a.json")]
    # one slow round (+40%) and one within noise (+5%): the best round is judged
    head = [
        run_json(tmp_path / "b.json", test_set_with_eviction=1.4),
        run_json(tmp_path / "c.json", test_set_with_eviction=1.05),
    ]
    result = compare(base, head)
    assert result.returncode == 0, result.stdout


def test_a_missing_benchmark_is_an_error(tmp_path: Path) -> None:
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"benchmarks": []}))
    result = compare([run_json(tmp_path / "a.json")], [partial])
    assert result.returncode != 0 and "no result for" in result.stderr


def test_a_lean_path_regression_fails(tmp_path: Path) -> None:
    head = run_json(tmp_path / "b.json", test_get_or_load_miss_manager=1.25)
    result = compare([run_json(tmp_path / "a.json")], [head])
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "REGRESSED" in line]
    assert line.startswith("test_get_or_load_miss[manager]") and "+25.0%" in line


def test_more_bytes_per_entry_fails_and_time_alone_does_not_count(tmp_path: Path) -> None:
    # the memory benchmark's time (a subprocess) is not judged; its recorded bytes are
    base = run_json(tmp_path / "a.json")
    slower_only = run_json(tmp_path / "b.json", speed=0.3)
    assert compare([base], [slower_only]).returncode == 0
    bigger = run_json(tmp_path / "c.json", test_memory_per_entry=1.15)
    result = compare([base], [bigger])
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "REGRESSED" in line]
    assert line.startswith("test_memory_per_entry") and "+15.0%" in line


def test_a_guard_main_does_not_have_yet_is_new_not_judged(tmp_path: Path) -> None:
    base = run_json(tmp_path / "a.json", names=MEMORY_FILE)
    result = compare([base], [run_json(tmp_path / "b.json", speed=0.5)])
    assert result.returncode == 0, result.stdout
    new = [line for line in result.stdout.splitlines() if line.rstrip().endswith("new")]
    assert {line.split()[0] for line in new} == set(judge.GUARDS) - set(MEMORY_FILE)


def test_a_lean_path_is_judged_by_its_fastest_round(tmp_path: Path) -> None:
    # a median that a busy runner doubled, with the fastest round unchanged, is noise
    base = run_json(tmp_path / "a.json")
    noisy = json.loads(run_json(tmp_path / "b.json").read_text())
    for run in noisy["benchmarks"]:
        if run["name"] == "test_set_new[manager]":
            run["stats"]["median"] *= 2
    (tmp_path / "b.json").write_text(json.dumps(noisy))
    assert compare([base], [tmp_path / "b.json"]).returncode == 0
    for run in noisy["benchmarks"]:
        if run["name"] == "test_set_new[manager]":
            run["stats"]["min"] *= 1.2
    (tmp_path / "b.json").write_text(json.dumps(noisy))
    result = compare([base], [tmp_path / "b.json"])
    assert result.returncode == 1 and "test_set_new[manager]" in result.stdout
