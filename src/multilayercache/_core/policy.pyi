"""Types of the compiled ``policy.pyx``: its pure twin's interface, which it shares."""

from ._policy_py import WTinyLfuPolicy as WTinyLfuPolicy
