"""Every exception the library defines is a ``CacheError``, exported from the package and
named in the README's errors table, and keeps the built-in base users already catch."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import multilayercache
from multilayercache import (
    CacheError,
    LayerError,
    LayerUnavailableError,
    LoadGateTimeout,
    LoadTimeoutError,
    QueueFull,
    RecursiveLoadError,
    SerializationError,
    ThrottledLoadError,
    UntrustedDataError,
    WriteQueueClosed,
)

README = Path(__file__).parents[2] / "README.md"
TOOLS = ("multilayercache.tools",)  # command-line tooling


def defined_exceptions() -> set[type[BaseException]]:
    """The exception classes defined in the library's runtime modules."""
    found = set()
    for module_info in pkgutil.walk_packages(multilayercache.__path__, "multilayercache."):
        if module_info.name.startswith(TOOLS) or module_info.name.endswith("__main__"):
            continue  # (a __main__ runs when imported)
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.add(value)
    return found


def test_every_exception_of_the_library_is_a_cache_error_exported_and_documented() -> None:
    exceptions = defined_exceptions()
    assert len(exceptions) >= 10
    table = README.read_text()
    table = table[table.index("### Errors") :]
    for error in exceptions:
        assert issubclass(error, CacheError), error
        assert getattr(multilayercache, error.__name__, None) is error, error
        assert error.__name__ in multilayercache.__all__, error
        if error is not CacheError:
            assert re.search(rf"^\| `{error.__name__}`", table, re.MULTILINE), error


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (LoadTimeoutError, TimeoutError),
        (LoadGateTimeout, TimeoutError),
        (SerializationError, TypeError),
        (UntrustedDataError, ValueError),
        (WriteQueueClosed, RuntimeError),
        (RecursiveLoadError, RuntimeError),
        (LayerUnavailableError, LayerError),
    ],
)
def test_each_keeps_the_base_users_catch(error: type, builtin: type) -> None:
    assert issubclass(error, builtin) and issubclass(error, CacheError)
    raised = error("what went wrong")
    assert str(raised) == "what went wrong"


def test_the_errors_with_fields_keep_them() -> None:
    assert LayerError("down", transient=False).transient is False
    full = QueueFull("full", depth=3, bytes=10)
    assert (full.depth, full.bytes, str(full)) == (3, 10, "full")
    assert issubclass(ThrottledLoadError, CacheError)


def test_the_old_import_paths_still_work() -> None:
    from multilayercache.core.ratelimit import LoadGateTimeout as from_ratelimit
    from multilayercache.core.writepolicy import QueueFull as from_writepolicy
    from multilayercache.core.writepolicy import WriteQueueClosed as closed
    from multilayercache.sync.retry import LoadGateTimeout as from_retry

    assert from_ratelimit is from_retry is LoadGateTimeout
    assert from_writepolicy is QueueFull and closed is WriteQueueClosed
