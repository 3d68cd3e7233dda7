"""The sync manager, ``MultilayerCache``: the plans of ``multilayercache.core`` performed with
plain calls (``driver.py``), coalescing across threads (``singleflight.py``), and a compiled
fast path for L1 hits (``frontdoor.pyx``, pure twin ``_frontdoor_py.py``)."""
