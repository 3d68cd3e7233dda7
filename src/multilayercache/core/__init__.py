"""The IO-free core: every decision the managers make, written once.

Nothing here performs IO or knows about threads or asyncio (``tests/core/test_core_is_io_free.py``
enforces it): the sync (``multilayercache.sync``) and asyncio (``multilayercache.aio``)
managers are thin drivers that perform the calls the plans in ``plans/`` ask for.
"""
