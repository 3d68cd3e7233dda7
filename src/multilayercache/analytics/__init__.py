"""What the cache learns from its traffic: hot keys across the fleet (``globaltop``), and
what an instance publishes about itself (``fleetreport``). IO-free: the Redis side is
``multilayercache.layers.redis.fleetinfo``."""
