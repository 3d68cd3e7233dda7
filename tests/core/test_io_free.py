"""The core decides and never performs IO: it must not import anything that does IO or that
ties it to threads or asyncio, so that the sync and asyncio managers can share it. Every
module under core/ is checked, the plans/ subpackage included."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import multilayercache.core

FORBIDDEN = {"threading", "asyncio", "socket", "redis", "selectors", "concurrent", "hiredis"}
CORE = Path(multilayercache.core.__file__).parent
CORE_MODULES = sorted(CORE.rglob("*.py"))


def package_of(path: Path) -> str:
    """The dotted package a core file belongs to (what its relative imports start from)."""
    parts = ["multilayercache", "core", *path.relative_to(CORE).parent.parts]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    found = set()
    package = package_of(path).split(".")
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1]
            found.add(".".join([*base, node.module] if node.module else base))
    return found


def test_every_core_module_is_checked() -> None:
    # The plans live in a subpackage: a scan of core/*.py alone missed them.
    names = {str(path.relative_to(CORE)) for path in CORE_MODULES}
    assert {"plans/reads.py", "plans/writes.py", "loading.py"} <= names


def test_the_core_imports_no_io_threads_or_asyncio() -> None:
    offenders = {}
    for path in CORE_MODULES:
        bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN}
        if bad:
            offenders[str(path.relative_to(CORE))] = sorted(bad)
    assert not offenders, f"the core imports IO or concurrency modules: {offenders}"


def test_the_core_depends_on_no_io_part_of_the_package() -> None:
    # Climbing out of core/ into the layers, the drivers or the tools would drag IO in; the
    # compiled structures (_core) and the build switch (_build) do none.
    allowed = ("multilayercache.core", "multilayercache._core", "multilayercache._build")
    outside = {}
    for path in CORE_MODULES:
        names = imported_modules(path)
        bad = {n for n in names if n.startswith("multilayercache") and not n.startswith(allowed)}
        if bad:
            outside[str(path.relative_to(CORE))] = sorted(bad)
    assert not outside, f"the core imports IO parts of the package: {outside}"


def test_every_core_module_imports_on_its_own() -> None:
    for module in pkgutil.walk_packages([str(CORE)], prefix="multilayercache.core."):
        importlib.import_module(module.name)
