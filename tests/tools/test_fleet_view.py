"""``python -m multilayercache top`` and ``inspect`` against a real server and real
publishing instances, run as a user runs them (a subprocess each); and ``dump`` of a
local cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
from multilayercache.layers.redis.fleetinfo import FleetInfo
from multilayercache.tools.inspection import dump

PROG = "python -m multilayercache"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "multilayercache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
    )


@pytest.fixture
def fleet(redis_url, prefix):
    """Two publishing instances of ``prefix`` with some traffic behind them."""
    caches = [
        MultilayerCache(
            [InMemoryLayer(max_size=100), RedisLayer(redis_url, prefix=prefix)],
            fleet_info=FleetInfo(period_seconds=0.2),
        )
        for _ in range(2)
    ]
    for _ in range(3):
        for cache, reads in zip(caches, ({"hot:1": 50, "warm:2": 10}, {"hot:1": 30}), strict=True):
            for key, times in reads.items():
                for _ in range(times):
                    cache.get_or_load(key, str)
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while any(cache.fleet_info.counts["published"] < 2 for cache in caches):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield caches
    for cache in caches:
        cache.close()


def test_top_once_prints_one_frame_of_the_fleet(fleet, redis_url, prefix) -> None:
    out = run("top", "--redis", redis_url, "--prefix", prefix, "--once", "--keys", "5")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    frame = out.stdout
    assert "2 instance(s) publishing" in frame
    assert frame.index("hot:1") < frame.index("warm:2")  # hottest first
    for cache in fleet:
        assert cache.fleet_info.instance in frame
    assert "memory" in frame and "redis" in frame and "closed" in frame
    assert "%" in frame


def test_top_refreshes_until_ctrl_c_and_exits_cleanly(fleet, redis_url, prefix, raw_redis):
    process = subprocess.Popen(
        [sys.executable, "-m", "multilayercache", "top", "--redis", redis_url, "--prefix", prefix,
         "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while not any(  # it reads the fleet (the instances themselves only write)
        client.get("cmd") in ("zrange", "hgetall") for client in raw_redis.client_list()
    ):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)  # a refresh or two
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert stderr == ""
    assert "hot:1" in stdout


def test_an_empty_fleet_is_shown_empty(redis_url, prefix) -> None:
    out = run("top", "--redis", redis_url, "--prefix", prefix, "--once")
    assert out.returncode == 0, out.stderr
    assert "0 instance(s) publishing" in out.stdout


def test_inspect_writes_what_the_fleet_published(fleet, redis_url, prefix, tmp_path) -> None:
    target = tmp_path / "fleet.json"
    out = run("inspect", "--redis", redis_url, "--prefix", prefix, "--out", str(target))
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"2 instance(s) written to {target}\n"
    data = json.loads(target.read_text())
    assert data["kind"] == "fleet" and data["prefix"] == prefix
    assert {item["instance"] for item in data["instances"]} == {
        cache.fleet_info.instance for cache in fleet
    }
    for item in data["instances"]:
        assert [layer["name"] for layer in item["layers"]] == ["memory", "redis"]
        assert item["top"]["hot:1"] > 0
    assert [key for key, _ in data["global_top_keys"]] == ["hot:1", "warm:2"]
    assert not list(tmp_path.glob(".*partial"))
    to_stdout = run("inspect", "--redis", redis_url, "--prefix", prefix, "--out", "-")
    assert json.loads(to_stdout.stdout)["prefix"] == prefix


def test_an_unreachable_server_is_one_line_and_status_2(tmp_path) -> None:
    for command in (("top", "--once"), ("inspect", "--out", str(tmp_path / "x.json"))):
        out = run(*command, "--redis", "redis://127.0.0.1:1/0")
        assert out.returncode == 2
        assert out.stderr.startswith(f"{PROG}: error: cannot reach redis://127.0.0.1:1/0")
        assert out.stderr.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_top_without_rich_says_how_to_get_it(redis_url, tmp_path) -> None:
    folder = tmp_path / "hidden" / "rich"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ModuleNotFoundError('hidden by the test')\n")
    path = os.pathsep.join([str(tmp_path / "hidden"), os.environ.get("PYTHONPATH", "")])
    out = run("top", "--redis", redis_url, "--once", env={"PYTHONPATH": path})
    assert out.returncode == 2
    assert out.stderr == f"{PROG}: error: top needs rich: pip install 'multilayercache[top]'\n"


def test_dump_of_a_local_cache_has_each_l1_snapshot(redis_url, prefix, tmp_path) -> None:
    l1 = InMemoryLayer(max_size=64)
    cache = MultilayerCache([l1, RedisLayer(redis_url, prefix=prefix)])
    try:
        cache.set("a", 1)
        for _ in range(7):
            cache.get("a")
        for _ in range(3):
            cache.get("never")
        written = dump(cache, tmp_path / "cache.json")
        data = json.loads(Path(written).read_text())
    finally:
        cache.close()
    assert data["kind"] == "local"
    (layer,) = data["layers"]
    snapshot = l1.snapshot(100)
    assert layer["sketch"]["words"] == [int(word) for word in snapshot.sketch]
    assert layer["stats"]["hits"] == 7
    hot = {item["key"]: item for item in layer["hot_keys"]}
    assert hot["a"]["hits"] == 7
    assert hot["never"]["misses"] == 3
    assert data["stats"]["layers"][1]["name"] == "redis"
    assert data["stats"]["breakers"]["redis"]["state"] == "closed"
    only_l1 = json.loads(dump(l1, tmp_path / "l1.json").read_text())
    assert only_l1["stats"] is None and len(only_l1["layers"]) == 1
    with pytest.raises(TypeError, match="InMemoryLayer"):
        dump(object(), tmp_path / "nothing.json")
    assert np.asarray(snapshot.sketch).size == len(layer["sketch"]["words"])
