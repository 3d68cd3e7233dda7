"""Types of the compiled ``timerwheel.pyx``: its pure twin's interface, which it shares."""

from ._timerwheel_py import TimerWheel as TimerWheel
