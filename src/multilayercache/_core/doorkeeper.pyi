"""Types of the compiled ``doorkeeper.pyx``: its pure twin's interface, which it shares."""

from ._doorkeeper_py import Doorkeeper as Doorkeeper
