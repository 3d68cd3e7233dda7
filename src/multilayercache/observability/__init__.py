"""Seeing a running cache: metrics exporters (Prometheus, OpenTelemetry) and event adapters
(logging, OpenTelemetry), each an optional extra, none imported by the library itself."""
