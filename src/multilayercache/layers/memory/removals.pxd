# The compiled layer's removal log: what left the layer, recorded while the layer is owned
# (ownership.pxd) and taken by the delivery thread (removals.py), which calls the listeners.
#
# Recording must run no Python code (the layer's structures may be mid-update, and an
# allocation could start the garbage collector, whose finalizers may call back into the
# cache): a removal takes one reference to its key and one to its value into a malloc'd
# array and writes its cause code into another. When the log is full the removal is counted
# in ``dropped`` instead. Two halves: the layer fills ``records`` while the delivery thread
# empties ``spare_records``; ``swap_halves`` (under ownership) exchanges them.
#
# A layer without a listener has ``active == 0``: its removal paths test that, and nothing
# else, and a hit never comes here.
from cpython.ref cimport Py_INCREF, PyObject
from libc.stdint cimport uint8_t

cdef enum:
    # Causes, in the order of core.events.REMOVAL_CAUSES
    EVICTED = 0
    EXPIRED = 1
    REPLACED = 2
    INVALIDATED = 3
    REJECTED = 4


cdef struct RemovalLog:
    bint active  # a listener is attached: record
    bint wake  # the log went from empty to not: wake the delivery thread once unlocked
    Py_ssize_t count  # removals in ``records``
    Py_ssize_t capacity
    Py_ssize_t dropped  # removals not recorded: the log was full
    PyObject** records  # key, value of each removal (owned references)
    uint8_t* causes
    PyObject** spare_records  # the half being delivered
    uint8_t* spare_causes


cdef inline void record_removal(RemovalLog* log, PyObject* key, PyObject* value,
                                int cause) noexcept:
    """Keep ``key`` and ``value`` (borrowed: a reference of its own is taken) for delivery."""
    cdef Py_ssize_t at = log.count
    if at == log.capacity:
        log.dropped += 1
        return
    Py_INCREF(<object>key)
    Py_INCREF(<object>value)
    log.records[2 * at] = key
    log.records[2 * at + 1] = value
    log.causes[at] = <uint8_t>cause
    log.count = at + 1
    if at == 0:
        log.wake = True


cdef inline Py_ssize_t swap_halves(RemovalLog* log) noexcept:
    """(Owning the layer) hand the filled half over for delivery (``spare_records``) and
    start filling the other, emptied by the last delivery; how many removals it holds."""
    cdef PyObject** records = log.records
    cdef uint8_t* causes = log.causes
    cdef Py_ssize_t count = log.count
    log.records = log.spare_records
    log.causes = log.spare_causes
    log.spare_records = records
    log.spare_causes = causes
    log.count = 0
    return count
