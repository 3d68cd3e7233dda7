"""Which implementation runs: the compiled extension modules, or their pure-Python twins.

``MULTILAYERCACHE_NO_EXTENSIONS=1`` forces the twins; without it a compiled module is used
whenever it was built (``tests/test_build.py`` fails if an installed build fell back).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS = os.environ.get("MULTILAYERCACHE_NO_EXTENSIONS", "") not in ("", "0")


def twin(compiled: str, pure: str) -> ModuleType:
    """The module ``compiled`` if it is built and allowed, else its pure twin ``pure``."""
    if not NO_EXTENSIONS:
        try:
            return importlib.import_module(compiled)
        except ImportError:  # a source checkout without build_ext
            pass
    return importlib.import_module(pure)
