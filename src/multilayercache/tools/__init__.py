"""Tooling around the library, never imported by it at run time: the command line
(``cli``), the demo, trace simulation, benchmarking helpers and throwaway servers."""
