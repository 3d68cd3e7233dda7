"""What the cache learns from its traffic, off the request path: windowed rates, frequency
skew and anomaly detection (``insights.py``, ``anomaly.py``, sampled by ``sampler.py``),
what a bigger or smaller L1 would buy (``mrc.py``), hot keys across the fleet
(``globaltop.py``) and what an instance publishes about itself (``fleetreport.py``); the
per-key counts insights and the global top-N both read (``accesses.py``).
IO-free but for the sampler's thread: the Redis side is ``layers/redis/fleetinfo.py``."""
