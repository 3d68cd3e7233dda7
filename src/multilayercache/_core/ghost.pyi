"""Types of the compiled ``ghost.pyx``: its pure twin's interface, which it shares."""

from ._ghost_py import GhostTable as GhostTable
