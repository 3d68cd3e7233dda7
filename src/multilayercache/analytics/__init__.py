"""What the cache learns from its traffic, off the request path: windowed rates, frequency
skew and anomaly detection (``insights.py``, ``anomaly.py``, sampled by ``sampler.py``),
hot keys across the fleet (``globaltop.py``) and what an instance publishes about itself
(``fleetreport.py``). IO-free: the Redis side is ``multilayercache.layers.redis.fleetinfo``."""
