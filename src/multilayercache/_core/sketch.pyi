"""Types of the compiled ``sketch.pyx``: its pure twin's interface, which it shares."""

from ._sketch_py import CountMinSketch as CountMinSketch
