"""``mypy --strict`` sees the decorated functions' own signatures, and ``.invalidate`` /
``.cache_key`` with the same parameters: a typed service passes, a wrong call fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SOURCE = HERE.parents[1] / "src"


def mypy(path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy")
    # The package is checked from source (an editable install hides it from mypy); only
    # the example's own errors count, not the package's.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--no-incremental", "--cache-dir", os.devnull, str(path)],
        capture_output=True, text=True, env={**os.environ, "MYPYPATH": str(SOURCE)},
        stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip


def test_a_typed_service_passes_mypy_strict() -> None:
    result = mypy(HERE / "example_service.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_wrong_calls_of_decorated_functions_fail_mypy() -> None:
    result = mypy(HERE / "bad_service.py")
    assert result.returncode == 1, result.stdout
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 3, result.stdout
    assert 'has incompatible type "str"; expected "int"' in errors[0]
    assert "Too many arguments" in errors[1]
    assert 'expression has type "int", variable has type "str"' in errors[2]
