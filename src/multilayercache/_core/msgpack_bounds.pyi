"""Types of the compiled ``msgpack_bounds.pyx``: its pure twin's interface, which it shares."""

from ._msgpack_bounds_py import count_objects as count_objects
