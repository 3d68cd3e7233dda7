"""The asyncio manager, ``AsyncMultilayerCache``: the plans of ``multilayercache.core``
performed by an asyncio driver (``driver.py``), coalescing across tasks
(``singleflight.py``). Module names mirror ``multilayercache.sync``."""
