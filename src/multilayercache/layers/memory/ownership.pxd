# Ownership of the compiled layer during an operation, and deferred release.
#
# Each operation that changes or walks the layer's structures owns the layer while it runs.
# Ownership is a field set and checked with the GIL held, which makes the check-and-set
# atomic: it costs two stores when uncontended. It is contended only when the owner was
# switched out mid-operation (Python code ran: a key's __eq__, numpy growing an array, a
# finalizer); a waiting thread then yields the GIL until the owner is done. A hit takes no
# ownership: it only checks that nobody owns the layer.
#
# Keys and values that leave the cache during an operation are kept alive in ``graves`` and
# released only when ownership ends, once the cache is consistent again: releasing an object
# can run Python code (a __del__, a weakref callback) that might call back into the cache.
# (One that somebody else also holds cannot be freed, so its reference is dropped at once.)
# Owned references in a fixed array, spilling into a list for large batches.
#
# A forked child may inherit an owner: a thread of the parent, switched out mid-operation,
# which the child does not have. Its operation never ends, so the child ends it: the
# structures are consistent (the owner was switched out where Python code ran), and the
# graves it filled hold what already left the cache.
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_REFCNT, Py_XDECREF, PyObject

cdef extern from *:
    """
    /* Give the processor to another thread: the owner of the layer, for it to finish. */
    #ifdef _WIN32
    #ifndef WIN32_LEAN_AND_MEAN
    #define WIN32_LEAN_AND_MEAN
    #endif
    #include <windows.h>
    #define mlc_yield() ((void)SwitchToThread())
    #else
    #include <sched.h>
    #define mlc_yield() ((void)sched_yield())
    #endif
    """
    void sched_yield "mlc_yield"() nogil

cdef enum:
    GRAVES = 64

cdef extern from *:
    """
    #define MLC_LIST_ITEMS(list) (((PyListObject *)(list))->ob_item)
    """
    # A list's item array, borrowed: ``list_items(<PyObject*>self._entries)[i]`` reads an
    # item with no reference counting (passing ``self._entries`` itself to a function
    # would count a reference to the list, and drop it after). Valid until the list grows.
    PyObject** list_items "MLC_LIST_ITEMS"(PyObject* items) noexcept nogil
    Py_ssize_t list_size "Py_SIZE"(PyObject* items) noexcept nogil  # the same, for its size
    int PyList_Append(PyObject* items, PyObject* item) except -1


cdef struct Ownership:
    unsigned long owner  # the thread inside an operation, 0 if none
    PyObject* graves[GRAVES]
    Py_ssize_t grave_count


cdef inline int take_ownership(Ownership* state) except -1:
    cdef unsigned long me = PyThread_get_thread_ident()
    if state.owner == me:
        raise RuntimeError(
            "InMemoryLayer was called re-entrantly from inside one of its own operations "
            "(from a key's __eq__, or from a finalizer that ran mid-write)"
        )
    while state.owner:
        with nogil:
            sched_yield()
    state.owner = me
    return 0


cdef inline int bury(Ownership* state, PyObject* item, PyObject* overflow) except -1:
    """Take over a reference to ``item`` (the caller's, which it no longer holds) and release
    it when ownership ends."""
    if state.grave_count < GRAVES:
        state.graves[state.grave_count] = item
        state.grave_count += 1
    else:
        PyList_Append(overflow, item)  # the list holds it now: ours can go at once
        Py_DECREF(<object>item)
    return 0


cdef inline int replace_item(Ownership* state, PyObject** items, Py_ssize_t index,
                             object item, PyObject* overflow) except -1:
    """``items[index] = item`` (a list's ``list_items``), the old item buried: the list's
    reference moves to the graves, so nothing is counted twice and nothing is released
    mid-operation. ``overflow``: the list that takes what the graves cannot."""
    cdef PyObject* old = items[index]
    Py_INCREF(item)
    items[index] = <PyObject*>item
    if Py_REFCNT(<object>old) > 1:
        # Somebody else holds it too: dropping our reference cannot free it, so no code
        # runs and it need not wait in the graves (keys usually outlive their entries).
        Py_DECREF(<object>old)
        return 0
    return bury(state, old, overflow)


cdef inline void release_graves(Ownership* state) noexcept:
    # The array is emptied before anything is released, so a finalizer that calls back into
    # the cache sees no graves.
    cdef PyObject* items[GRAVES]
    cdef Py_ssize_t i, count = state.grave_count
    for i in range(count):  # a loop, not memcpy: usually two or four pointers
        items[i] = state.graves[i]
    state.grave_count = 0
    for i in range(count):
        Py_DECREF(<object>items[i])


cdef inline void clear_graves(Ownership* state) noexcept:
    """At deallocation: drop what is still held."""
    cdef Py_ssize_t i
    for i in range(state.grave_count):
        Py_XDECREF(state.graves[i])
    state.grave_count = 0


cdef inline bint end_foreign_operation(Ownership* state) noexcept:
    """In a forked child: end the operation of an owner that is not this thread (see the
    header); whether there was one. The thread that forked, if it owns the layer, ends its
    operation itself."""
    if state.owner == PyThread_get_thread_ident():
        return False
    state.owner = 0
    release_graves(state)
    return True
