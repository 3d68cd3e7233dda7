"""Types of the compiled ``envelope_write.pyx``: its pure twin's interface, which it shares."""

from ._envelope_write_py import WriteEncoder as WriteEncoder
