"""Types of the compiled ``freshness.pyx``: its pure twin's interface, which it shares."""

from ._freshness_py import FreshnessDeadlines as FreshnessDeadlines
