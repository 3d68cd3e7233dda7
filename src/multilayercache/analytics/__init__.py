"""What the cache's own counters and samples say about it: size estimates (``mrc``)."""
