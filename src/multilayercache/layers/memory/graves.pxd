# Deferred release: keys and values that leave the cache during an operation are kept alive
# here and released only once the cache is consistent again. Releasing an object can run
# Python code (a __del__, a weakref callback) that might call back into the cache; this way
# it never finds it half-changed. Owned references in a fixed array, spilling into a list
# for large batches (an eviction storm).
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF, PyObject
from libc.string cimport memcpy

cdef enum:
    GRAVES = 64


cdef struct Graves:
    PyObject* items[GRAVES]
    Py_ssize_t count


cdef inline int graves_keep(Graves* graves, PyObject* item, list overflow) except -1:
    """Hold a reference to ``item`` until ``graves_release``."""
    if graves.count < GRAVES:
        Py_INCREF(<object>item)
        graves.items[graves.count] = item
        graves.count += 1
    else:
        overflow.append(<object>item)
    return 0


cdef inline void graves_release(Graves* graves) noexcept:
    """Drop every held reference. The array is emptied first, so a finalizer that calls
    back into the cache sees no graves."""
    cdef PyObject* items[GRAVES]
    cdef Py_ssize_t i, count = graves.count
    memcpy(items, graves.items, count * sizeof(PyObject*))
    graves.count = 0
    for i in range(count):
        Py_DECREF(<object>items[i])


cdef inline void graves_clear(Graves* graves) noexcept:
    """At deallocation: drop what is still held."""
    cdef Py_ssize_t i
    for i in range(graves.count):
        Py_XDECREF(graves.items[i])
    graves.count = 0
