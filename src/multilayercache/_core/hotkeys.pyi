"""Types of the compiled ``hotkeys.pyx``: its pure twin's interface, which it shares."""

from ._hotkeys_py import HotKeyTable as HotKeyTable
