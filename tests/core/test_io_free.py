"""The core decides and never performs IO: it must not import anything that does IO or that
ties it to threads or asyncio, so that the sync and asyncio managers can share it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import multilayercache.core

FORBIDDEN = {"threading", "asyncio", "socket", "redis", "selectors", "concurrent", "hiredis"}
CORE = Path(multilayercache.core.__file__).parent


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            found.add("." * node.level + node.module)
    return found


def test_the_core_imports_no_io_threads_or_asyncio() -> None:
    offenders = {}
    for path in sorted(CORE.glob("*.py")):
        bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN}
        if bad:
            offenders[path.name] = sorted(bad)
    assert not offenders, f"the core imports IO or concurrency modules: {offenders}"


def test_the_core_depends_on_no_io_part_of_the_package() -> None:
    # Climbing out of core/ into the layers, the drivers or the tools would drag IO in; the
    # compiled structures (_core) and the build switch (_build) do none.
    allowed = {".._core", ".._build"}
    outside = {
        path.name: sorted(
            name
            for name in imported_modules(path)
            if name.startswith("..") and not any(name.startswith(ok) for ok in allowed)
        )
        for path in CORE.glob("*.py")
    }
    assert not any(outside.values()), outside


def test_every_core_module_imports_on_its_own() -> None:
    for module in pkgutil.iter_modules([str(CORE)]):
        importlib.import_module(f"multilayercache.core.{module.name}")
