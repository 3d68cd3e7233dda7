"""``mypy --strict`` sees the decorated functions' own signatures, and ``.invalidate`` /
``.cache_key`` with the same parameters, and ``get_or_load`` returns what its loader does:
a typed service passes, a wrong call fails."""

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
    lines = (HERE / "bad_service.py").read_text().splitlines()
    errors: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if ": error:" in line:
            number = int(line.split(":")[1])
            errors.setdefault(lines[number - 1].strip(), []).append(line)
    expected = {  # each wrong line of bad_service.py, and what mypy must say about it
        'square("three")': 'has incompatible type "str"; expected "int"',
        "square.invalidate(1, 2)": "Too many arguments",
        "text: str = square(3)": 'expression has type "int", variable has type "str"',
        'size: str = cache.get_or_load("tea", size_of)': 'expression has type "int", variable',
        "cache.get_or_load(3, size_of)": 'incompatible type "Callable[[str], int]"',
        "shop.price(1)": 'has incompatible type "int"; expected "str"',
        'shop.price.invalidate(shop, "tea")': "Too many arguments",
        'Shop.price("tea")': 'Missing positional argument "item"',
        'Shop.opening.cache_key("monday")': 'has incompatible type "str"; expected "int"',
        'Shop.vat.invalidate("fr", "de")': "Too many arguments",
        'count: str = await shop.stock("tea")': 'expression has type "int", variable has type',
        "await shop.stock.invalidate()": 'Missing positional argument "item"',
    }
    assert len(errors) == len(expected), result.stdout
    for code, message in expected.items():
        said = [error for line in errors if line.startswith(code) for error in errors[line]]
        assert any(message in error for error in said), (code, said, result.stdout)
