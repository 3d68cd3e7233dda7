"""The command line, run the way a user runs it: a real subprocess per command.

Every mistake a user can make must end in exit status 2 and one line on stderr that names
what was wrong (argparse's bad-flag errors: its usage lines, then one error line), never a
traceback; Ctrl-C ends in status 130 and one line. Each kind of mistake is run once as a
subprocess; its variants call ``main()`` in this process (a subprocess costs most of a
second, nearly all of it importing the package).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import multilayercache
from multilayercache.tools import demo
from multilayercache.tools.cli import main, program_name
from multilayercache.tools.demo import check_reachable
from multilayercache.tools.servers import ServerUnavailableError
from multilayercache.tools.simulation import load_trace, replay

from support import trace_path

PROG = "python -m multilayercache"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "multilayercache", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def environment(**changes: str) -> dict[str, str]:
    return {**os.environ, **changes}


def without_modules(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment in which importing ``modules`` fails as if they were not installed:
    packages of those names that raise ImportError come first on PYTHONPATH."""
    folder = tmp_path / "not-installed"
    for module in modules:
        (folder / module).mkdir(parents=True, exist_ok=True)
        message = f"No module named {module!r} (hidden by the test)"
        (folder / module / "__init__.py").write_text(f"raise ModuleNotFoundError({message!r})\n")
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return environment(PYTHONPATH=path)


def assert_error(out: subprocess.CompletedProcess, *names: str) -> str:
    """Exit status 2, no traceback, one error line on stderr naming ``names``; return it."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    error = lines[-1]
    assert error.startswith(PROG) and ": error: " in error, out.stderr
    # argparse prints its usage first, then the error line; our own errors are one line.
    assert all(line.startswith(("usage: ", " ")) for line in lines[:-1]), out.stderr
    for name in names:
        assert name in error, (name, error)
    return error


def assert_one_line_error(out: subprocess.CompletedProcess, *names: str) -> str:
    error = assert_error(out, *names)
    assert out.stderr == error + "\n", out.stderr
    return error


def main_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``main(argv)`` in this process, expecting a user error; return its error line
    without the program name (which comes from this process's ``sys.argv[0]``)."""
    try:
        status = main(list(argv))
    except SystemExit as exit:  # argparse's errors
        status = exit.code
    assert status == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    return stderr.strip().splitlines()[-1].split(": error: ", 1)[1]


@pytest.fixture
def tiny_trace(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.npy"
    np.save(path, np.array([1, 2, 1, 3, 1, 2], dtype=np.uint64))
    return path


# ----------------------------------------------------------------------------- simulate
def test_simulate_prints_one_line_per_size() -> None:
    out = run("simulate", str(trace_path("gli")), "--size", "1000", "--size", "500")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "6,015 requests" in lines[0] and "2,529 unique keys" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["500", "1000"]
    assert all(row[1].endswith("%") and 0 <= float(row[1][:-1]) <= 100 for row in rows)


def test_simulate_compare_and_plot(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "hits.png"
    out = run(
        "simulate", str(trace_path("gli")), "--size", "1500", "--compare", "--plot", str(plot)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split() == ["size", "multilayercache", "LRU", "OPT"]
    assert out.stdout.splitlines()[2].split()[2:] == ["36.56%", "57.96%"]
    assert out.stdout.splitlines()[-1] == f"plot written to {plot}"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_reads_npz_traces(tmp_path) -> None:
    # The shared large traces are .npz files with one uint32 array "keys".
    gli = load_trace(trace_path("gli"))
    np.savez(tmp_path / "gli.npz", keys=gli.astype(np.uint32))
    out = run("simulate", str(tmp_path / "gli.npz"), "--size", "500", "--compare")
    assert out.returncode == 0, out.stderr
    assert "6,015 requests, 2,529 unique keys" in out.stdout
    ours = f"{100 * replay(gli, 500) / len(gli):.2f}%"
    assert out.stdout.splitlines()[2].split() == ["500", ours, "0.95%", "34.33%"]


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


NOT_TRACES = {  # file name: (how to make it, what the error must say)
    "missing.npy": (None, "No such file or directory"),
    "notes.txt": (lambda path: path.write_text("1\n2\n3\n"), "not a trace"),
    "floats.npy": (lambda path: np.save(path, np.array([0.5, 1.5])), "integer keys"),
    "square.npy": (lambda path: np.save(path, np.zeros((2, 2), np.uint64)), "1-D"),
    "empty.npy": (lambda path: np.save(path, np.array([], np.uint64)), "empty"),
    "negative.npy": (lambda path: np.save(path, np.array([1, -1])), ">= 0"),
    "objects.npy": (
        lambda path: np.save(path, np.array([1, "a"], object), allow_pickle=True),
        "Object arrays",
    ),
    "truncated.npy": (
        lambda path: path.write_bytes(_npy_bytes(np.arange(100, dtype=np.uint64))[:-8]),
        "unreadable",
    ),
    "folder": (lambda path: path.mkdir(), "Is a directory"),
    "no-keys.npz": (lambda path: np.savez(path, requests=np.arange(3)), "'keys'"),
    "broken.npz": (lambda path: path.write_bytes(b"PK\x03\x04 and then nothing"), "zip"),
}
IN_A_SUBPROCESS = ("missing.npy", "notes.txt", "floats.npy", "empty.npy")


def _not_a_trace(tmp_path: Path, name: str) -> tuple[Path, str]:
    make, message = NOT_TRACES[name]
    path = tmp_path / name
    if make is not None:
        make(path)
    return path, message


@pytest.mark.parametrize("name", IN_A_SUBPROCESS)
def test_simulate_rejects_what_is_not_a_trace(tmp_path, name) -> None:
    path, message = _not_a_trace(tmp_path, name)
    out = run("simulate", str(path), "--size", "10")
    assert_one_line_error(out, str(path), message)
    assert out.stdout == ""


@pytest.mark.parametrize("name", [name for name in NOT_TRACES if name not in IN_A_SUBPROCESS])
def test_simulate_rejects_what_is_not_a_trace_in_process(tmp_path, capsys, name) -> None:
    path, message = _not_a_trace(tmp_path, name)
    error = main_error(capsys, "simulate", str(path), "--size", "10")
    assert str(path) in error and message in error, error


def test_simulate_rejects_bad_sizes(tiny_trace, capsys) -> None:
    assert_error(run("simulate", str(tiny_trace), "--size", "0"), "--size", "must be > 0")
    for size in ("-3", "ten", "1.5"):
        assert "--size: " in main_error(capsys, "simulate", str(tiny_trace), "--size", size)
    assert "--size" in main_error(capsys, "simulate", str(tiny_trace))


def test_plot_into_a_missing_folder_is_refused_before_the_replay(tmp_path, tiny_trace):
    target = tmp_path / "missing-folder" / "hits.png"
    out = run("simulate", str(tiny_trace), "--size", "2", "--plot", str(target))
    assert_one_line_error(out, "--plot", str(target), "does not exist")
    assert out.stdout == ""  # the trace's summary line comes first in a replay: none ran


@pytest.mark.parametrize(
    ("target", "message"),
    [(".", "is a folder"), ("hits.unknown", "image format"), ("hits", "image format")],
)
def test_plot_targets_that_cannot_be_written(tmp_path, tiny_trace, capsys, target, message):
    args = ("simulate", str(tiny_trace), "--size", "2", "--plot", str(tmp_path / target))
    assert message in main_error(capsys, *args)
    assert capsys.readouterr().out == ""


def test_plot_without_matplotlib_is_refused_before_the_replay(tmp_path, tiny_trace) -> None:
    out = run(
        "simulate",
        str(tiny_trace),
        "--size",
        "2",
        "--plot",
        str(tmp_path / "hits.png"),
        env=without_modules(tmp_path, "matplotlib"),
    )
    assert_one_line_error(out, "--plot needs matplotlib", "pip install")
    assert out.stdout == ""


def test_ctrl_c_during_a_replay_is_one_line_and_status_130(tmp_path) -> None:
    path = tmp_path / "long.npy"
    np.save(path, np.random.default_rng(1).integers(0, 2**20, 1_000_000, dtype=np.uint64))
    sizes = [arg for size in range(1000, 21000, 1000) for arg in ("--size", str(size))]
    process = subprocess.Popen(
        [sys.executable, "-m", "multilayercache", "simulate", str(path), *sizes, "--compare"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert "1,000,000 requests" in process.stdout.readline()  # the replay starts now
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr == f"{PROG}: interrupted\n"


# ----------------------------------------------------------------------------- demo
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
    for row in ("L1 memory", "L2 redis", "loader", "end to end", "stale", "refreshes"):
        assert row in report
    rows = {line.split("  ")[0]: line for line in report.splitlines()}
    l1 = rows["L1 memory"].split()
    hits, misses = int(l1[2].replace(",", "")), int(l1[3].replace(",", ""))
    assert hits + misses == 2000 and hits > 0
    # The breaker of each layer that has one (L1, in-process, has none), from stats().
    assert rows["L1 memory"].endswith("  -")
    assert rows["L2 redis"].endswith("  closed (opened 0 times)")
    assert "reads answered at once with a stale value" in rows["stale"]
    assert "run in the background" in rows["refreshes"]
    assert "speed-up" in report and "errors: 0" in report
    # The time without the cache is extrapolated, not measured: the report says so.
    wall_clock = next(line for line in report.splitlines() if line.startswith("wall clock"))
    assert "estimated" in wall_clock and "not run" in wall_clock


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--threads", "16", "--requests", "10"], ["--requests 10", "--threads 16"]),
        (["--loader-ms", "-1"], ["--loader-ms", "-1"]),
    ],
)
def test_demo_rejects_bad_flags(flags, names) -> None:
    assert_error(run("demo", *flags), *names)


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--threads", "0"], ["--threads", "must be > 0"]),
        (["--loader-ms", "nan"], ["--loader-ms"]),
        (["--loader-ms", "1e9"], ["--loader-ms", "between 0 and 10000"]),
        (["--loader-ms", "soon"], ["--loader-ms", "'soon'"]),
        (["--threads", "100000"], ["--threads", "at most"]),
        (["--requests", "-5"], ["--requests", "> 0"]),
        (["--keys", "0"], ["--keys", "> 0"]),
        (["--l1-entries", "many"], ["--l1-entries", "'many'"]),
        (["--no-such-flag"], ["--no-such-flag"]),
    ],
)
def test_demo_rejects_bad_flags_in_process(capsys, flags, names) -> None:
    error = main_error(capsys, "demo", *flags)
    assert all(name in error for name in names), error


def test_demo_settings_refuse_what_would_run_no_reads() -> None:
    # For callers of run_demo() who skip the command line's checks.
    with pytest.raises(ValueError, match=r"requests \(10\) must be at least threads \(16\)"):
        demo.DemoSettings(threads=16, requests=10)
    with pytest.raises(ValueError, match="loader_ms"):
        demo.DemoSettings(loader_ms=float("nan"))


def test_demo_says_when_redis_url_points_nowhere() -> None:
    start = time.monotonic()
    out = run("demo", env=environment(REDIS_URL="redis://127.0.0.1:1/0"), timeout=30)
    assert_one_line_error(out, "cannot reach", "redis://127.0.0.1:1/0")
    assert time.monotonic() - start < 15  # a refused connection fails at once, not retried


def test_a_server_that_never_answers_is_given_up_on(monkeypatch) -> None:
    monkeypatch.setattr(demo, "PROBE_TIMEOUT_SECONDS", 0.2)  # 2 s in real use
    with socket.socket() as silent:  # accepts connections (the kernel does), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        start = time.monotonic()
        with pytest.raises(ServerUnavailableError, match="no reply within 0.2 s"):
            check_reachable(url)
    assert time.monotonic() - start < 2  # one try, no retries


def test_a_malformed_redis_url_is_named_and_passwords_are_hidden() -> None:
    with pytest.raises(ServerUnavailableError, match=r"REDIS_URL \(localhost:6379\) is not"):
        check_reachable("localhost:6379")
    with pytest.raises(ServerUnavailableError) as refused:
        check_reachable("redis://me:hunter2@127.0.0.1:1/0")
    assert "cannot reach REDIS_URL (redis://me:***@127.0.0.1:1/0)" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_ctrl_c_during_the_demo_stops_its_threads() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "multilayercache", "demo", "--requests", "400000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)  # started up, now timing the loader or reading (either must stop)
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr == f"{PROG}: interrupted\n"  # no warnings from threads left reading
    assert time.monotonic() - interrupted < 10  # nobody waited for the workload to end


# ----------------------------------------------------------------------------- bench


def _run_on_a_terminal(
    args: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, str]:
    """Run with stderr on a pseudo-terminal, as a user sees it (stdout piped, small);
    return the finished process and what reached the terminal."""
    fcntl = pytest.importorskip("fcntl")  # POSIX only
    pty = pytest.importorskip("pty")
    termios = pytest.importorskip("termios")
    controller, terminal = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, and tqdm draws nothing into 0 columns.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "multilayercache", *args],
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
        env=env,
    )
    os.close(terminal)
    seen = b""
    while True:  # read as it comes, so the terminal's buffer never fills up
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    stdout, _ = process.communicate(timeout=60)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, "")
    return done, seen.decode(errors="replace")


PEER_MODULES = ("cachebox", "lru", "cachetools", "theine", "moka_py")
BENCH = ["bench", "--entries", "100", "--repeat", "1"]


def test_bench_names_the_peers_it_skipped_and_runs_without_tqdm(tmp_path) -> None:
    out, terminal = _run_on_a_terminal(BENCH, without_modules(tmp_path, *PEER_MODULES, "tqdm"))
    assert out.returncode == 0, terminal
    lines = out.stdout.splitlines()
    assert lines[0].startswith(
        "skipped (not installed): cachebox LRU, lru-dict, cachetools LRU, theine, moka-py"
    )
    assert lines[2].split() == ["keys", "dict.get", "multilayercache"]
    assert len(lines) == 7
    assert terminal == ""  # no tqdm: no bar, and no complaint


def test_bench_shows_progress_on_a_terminal(tmp_path) -> None:
    pytest.importorskip("tqdm")
    out, terminal = _run_on_a_terminal(BENCH, without_modules(tmp_path, *PEER_MODULES))
    assert out.returncode == 0, terminal
    assert "timing get" in terminal and "/8 [" in terminal, terminal  # 2 caches x 4 rows


def test_bench_rejects_bad_counts(capsys) -> None:
    assert "--entries" in main_error(capsys, "bench", "--entries", "0")
    assert "--repeat" in main_error(capsys, "bench", "--repeat", "-1")


# ----------------------------------------------------------------------------- help
def test_help_lists_the_commands(capsys) -> None:
    # (that ``-m`` shows itself as "python -m multilayercache": every assert_error above)
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert all(f"    {command}  " in help_text for command in ("simulate", "demo", "bench"))


@pytest.mark.parametrize("command", ["simulate", "demo", "bench"])
def test_help_states_every_default(capsys, command) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    options = capsys.readouterr().out.split("options:")[1]
    # one entry per flag: its line starts with two spaces and a dash
    entries = [entry for entry in options.split("\n  -")[1:] if not entry.startswith("h, --help")]
    assert entries
    for entry in entries:
        assert "(default" in entry or "(required)" in entry, entry


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout == f"multilayercache {multilayercache.__version__}\n"


def test_a_missing_command_is_a_usage_error(capsys) -> None:
    assert "COMMAND" in main_error(capsys)


def test_the_program_name_follows_how_it_was_started() -> None:
    assert program_name("/venv/bin/multilayercache") == "multilayercache"
    assert program_name("/venv/Scripts/multilayercache.exe") == "multilayercache"
    assert program_name("/src/multilayercache/__main__.py") == PROG


def test_the_console_script_says_its_own_name() -> None:
    script = Path(sys.executable).with_name("multilayercache")
    if not script.exists():
        pytest.skip(f"no console script at {script} (not installed with pip)")
    out = subprocess.run([str(script), "simulate", "x.npy"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("usage: multilayercache simulate ")
    assert out.stderr.splitlines()[-1].startswith("multilayercache simulate: error: ")
