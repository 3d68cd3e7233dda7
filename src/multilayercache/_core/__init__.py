"""The policy core: compiled Cython modules over numpy buffers, or their pure-Python twins.

``COMPILED`` says which are in use. ``MULTILAYERCACHE_NO_EXTENSIONS=1`` forces the twins;
without it the compiled modules are used whenever they were built.
"""

from .._build import NO_EXTENSIONS

if NO_EXTENSIONS:
    COMPILED = False
else:
    try:
        from . import doorkeeper, ghost, hotkeys, policy, sketch, timerwheel  # noqa: F401

        COMPILED = True
    except ImportError:  # not built (a source checkout without build_ext): use the twins
        COMPILED = False

if COMPILED:
    from .doorkeeper import Doorkeeper
    from .ghost import GhostTable
    from .hotkeys import HotKeyTable
    from .policy import WTinyLfuPolicy
    from .sketch import CountMinSketch
    from .timerwheel import TimerWheel
else:
    from ._doorkeeper_py import Doorkeeper
    from ._ghost_py import GhostTable
    from ._hotkeys_py import HotKeyTable
    from ._policy_py import WTinyLfuPolicy
    from ._sketch_py import CountMinSketch
    from ._timerwheel_py import TimerWheel

__all__ = [
    "COMPILED",
    "CountMinSketch",
    "Doorkeeper",
    "GhostTable",
    "HotKeyTable",
    "TimerWheel",
    "WTinyLfuPolicy",
]
