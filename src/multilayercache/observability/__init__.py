"""Seeing a running cache: ``metrics`` names its metrics and reads them from ``stats()``;
``prometheus`` (extra ``prometheus``) and ``otel`` (extra ``otel``) export them;
``events_logging`` and ``events_otel`` (extra ``otel``) adapt its events. Nothing is
imported or registered until you ask: no global metrics at import."""

from .metrics import METRIC_NAMES, Family, Kind, Spec, families

__all__ = ["METRIC_NAMES", "Family", "Kind", "Spec", "families"]
