"""The asyncio manager's fast path for ``@cached`` hits (compiled twin of ``_frontdoor_py.py``,
which explains it).

A hit returns a ``Settled``: the cheapest coroutine we found. A Cython ``async def`` that
returns the value costs a coroutine object, its closure and an ``__await__`` wrapper per
hit (measured: about a plain ``async def``'s cost again); a ``Settled`` is one small object
from a free list, and ``await`` takes its value through the ``am_send`` slot (Python 3.11:
no frame, no ``StopIteration``; 3.12+ call ``__next__``, which raises it). It is a
coroutine as asyncio knows one (``send``, ``throw``, ``close``, ``__await__``; registered as
a ``collections.abc.Coroutine``), so ``create_task``, ``gather`` and ``wait_for`` take it.
"""

cimport cython
from cpython.object cimport PyObject, PyTypeObject
from cpython.exc cimport PyErr_SetString
from cpython.ref cimport Py_INCREF

from collections.abc import Coroutine

from .._core.binding cimport KeyedCall


cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
    ctypedef PySendResult (*sendfunc)(PyObject* iterator, PyObject* argument,
                                      PyObject** result) noexcept
    ctypedef struct PyAsyncMethods:
        sendfunc am_send
    ctypedef PyObject* (*ternaryfunc)(PyObject*, PyObject*, PyObject*)
    void PyType_Modified(PyTypeObject* type)

cdef extern from *:
    """
    #define multilayercache_async_slots(type) (((PyTypeObject*)(type))->tp_as_async)
    """
    PyAsyncMethods* multilayercache_async_slots(object type)


@cython.final
@cython.freelist(16)
cdef class Settled:
    """A coroutine that returns ``value`` at once, once (what an L1 hit hands the caller to
    await; ``settled(value)`` makes one)."""

    cdef object value
    cdef bint done

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, argument):
        """Return the value (as ``StopIteration``, as a coroutine returns)."""
        if self.done:
            raise RuntimeError("cannot reuse already awaited coroutine")
        self.done = True
        if argument is not None:
            raise TypeError("can't send non-None value to a just-started coroutine")
        raise StopIteration(self.value)

    def throw(self, kind, value=None, traceback=None):
        """Raise the exception where the coroutine stands: at its start, so it ends."""
        self.done = True
        if value is None:
            raise kind
        raise value

    def close(self):
        self.done = True

    def __repr__(self):
        return f"<settled coroutine {self.value!r}>"


cdef PySendResult _send(PyObject* awaited, PyObject* argument, PyObject** result) noexcept:
    # ``await`` on Python 3.11 asks this slot: the value comes back without an exception.
    cdef Settled settled_ = <Settled>awaited
    result[0] = NULL
    if settled_.done:
        PyErr_SetString(RuntimeError, "cannot reuse already awaited coroutine")
        return PYGEN_ERROR
    settled_.done = True
    if <object>argument is not None:
        PyErr_SetString(TypeError, "can't send non-None value to a just-started coroutine")
        return PYGEN_ERROR
    value = settled_.value
    Py_INCREF(value)
    result[0] = <PyObject*>value
    return PYGEN_RETURN


multilayercache_async_slots(Settled).am_send = _send
PyType_Modified(<PyTypeObject*>Settled)
Coroutine.register(Settled)


def settled(value):
    """A ``Settled`` of ``value``."""
    return _settled(value)


cdef inline Settled _settled(object value):
    cdef Settled result = Settled.__new__(Settled)
    result.value = value
    return result


cdef class AsyncCachedCall(KeyedCall):
    """A cached coroutine function: ``key_of(args, kwargs)`` is the call's key; a settled hit
    in the first layer returns ``Settled(value)``, anything else the coroutine
    ``load(key, args, kwargs, stepped_aside)``. A ``DirectCall``: a method's binding calls
    ``call`` in C."""

    def __call__(self, *args, **kwargs):
        # (what Python sees; calls go to _call_slot, installed below)
        return _hit_or_load(self, args, kwargs)

    cdef object call(self, tuple args, dict kwargs):
        return _hit_or_load(self, args, kwargs)


cdef object _call_slot(PyObject* self, PyObject* args, PyObject* kwargs):
    # The type's call: the interpreter's own argument tuple and keyword dict (or NULL), as
    # they are. (A ``def __call__(*args, **kwargs)`` makes a fresh dict for every call and
    # copies the keywords: a tenth of a hit.) A hit keeps neither; a miss copies the dict,
    # which the load holds until it is awaited (a caller in C may reuse its own).
    return _hit_or_load(<AsyncCachedCall>self, <tuple>args,
                        None if kwargs is NULL else <dict>kwargs)


(<PyTypeObject*>AsyncCachedCall).tp_call = <ternaryfunc>_call_slot
PyType_Modified(<PyTypeObject*>AsyncCachedCall)


cdef inline object _hit_or_load(AsyncCachedCall self, tuple args, dict kwargs):
    # one body for both entries, inlined: a plain call pays no virtual call
    if self._maker is not None:
        key = self._maker.key(args, kwargs)
    else:
        key = self._key_of(args, kwargs)
    value = self._first_lookup(key, self._missing, self._aside)
    if value is not self._missing and value is not self._aside:
        return _settled(value)
    return self._load(key, args, {} if kwargs is None else dict(kwargs), value is self._aside)
