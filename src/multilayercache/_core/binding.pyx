"""How a cached function defined in a class binds to its instance or class (compiled twin of
``_binding_py.py``, which explains it).

``CachedMethod``'s type carries ``Py_TPFLAGS_METHOD_DESCRIPTOR``: the interpreter then
calls ``obj.method(1)`` as ``CachedMethod(obj, 1)`` without ``__get__`` (the promise the
flag makes, and keeps: ``__get__`` returns a ``BoundCall`` that calls exactly that). A
``BoundCall`` is made in C (from a free list, without running ``__init__``), and its call
builds the argument tuple, instance first, in one allocation. A cached function that is a
``DirectCall`` (the sync manager's compiled ``CachedCall``) is called through its C entry,
with the argument tuple and keywords as they are, skipping a second pass through the
interpreter's call protocol (a new keyword dict, argument checks).
"""

cimport cython
from cpython.object cimport (
    Py_TPFLAGS_METHOD_DESCRIPTOR,
    PyObject,
    PyObject_Call,
    PyTypeObject,
)
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM

import inspect


cdef extern from "Python.h":
    void PyType_Modified(PyTypeObject* type)


cdef tuple _prepend(object first, tuple args):
    """``(first, *args)``: one tuple, filled in place."""
    cdef Py_ssize_t count = PyTuple_GET_SIZE(args)
    cdef tuple result = PyTuple_New(count + 1)
    cdef Py_ssize_t index
    cdef PyObject* item
    Py_INCREF(first)  # PyTuple_SET_ITEM steals a reference
    PyTuple_SET_ITEM(result, 0, first)
    for index in range(count):
        item = PyTuple_GET_ITEM(args, index)
        Py_INCREF(<object>item)
        PyTuple_SET_ITEM(result, index + 1, <object>item)
    return result


cdef class DirectCall:
    """A callable with a C entry, ``call(args, kwargs)``, that the bindings call directly."""

    cdef object call(self, tuple args, dict kwargs):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.call(args, kwargs)


cdef class KeyedCall(DirectCall):
    """What the sync and asyncio cached calls (``CachedCall``, ``AsyncCachedCall``) hold:
    ``key_of(args, kwargs)``, the call's key (its ``KeyMaker``, called in C when it is one),
    the first layer's ``first_lookup``, the ``load`` of a miss, and the markers that lookup
    answers with (``missing``, ``aside``). Each subclass says what a call does with them."""

    def __init__(self, key_of, first_lookup, load, missing, aside):
        self._key_of = key_of
        maker = getattr(key_of, "__self__", None)
        self._maker = maker if type(maker) is KeyMaker else None
        self._first_lookup = first_lookup
        self._load = load
        self._missing = missing
        self._aside = aside


cdef inline object _call_with(object call, DirectCall direct, tuple args, dict kwargs):
    if direct is not None:
        return direct.call(args, kwargs)
    return PyObject_Call(call, args, kwargs)


cdef class _Binding:
    """What ``CachedMethod`` and ``CachedClassMethod`` share."""

    cdef object _call
    cdef DirectCall _direct  # _call, when it has a C entry
    cdef dict __dict__  # functools.update_wrapper sets __name__, __doc__, __wrapped__ ...
    cdef object __weakref__  # weakref.WeakMethod holds a method's function weakly

    def __init__(self, call):
        if not callable(call):
            raise TypeError(f"{type(self).__name__} wraps a cached function, got {call!r}")
        self._call = call
        self._direct = call if isinstance(call, DirectCall) else None

    def __call__(self, *args, **kwargs):
        return _call_with(self._call, self._direct, args, kwargs)

    def invalidate(self, *args, **kwargs):
        """Forget the cached result of this call (the instance or class first)."""
        return self._call.invalidate(*args, **kwargs)

    def cache_key(self, *args, **kwargs):
        """The key this call is cached under (the instance or class first)."""
        return self._call.cache_key(*args, **kwargs)

    def __repr__(self):
        name = getattr(self, "__qualname__", repr(self._call))
        return f"<{type(self).__name__} {name}>"


@cython.final
cdef class CachedMethod(_Binding):
    """A cached method: ``obj.method`` binds ``obj``."""

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return _bound(self, instance)


@cython.final
cdef class CachedClassMethod(_Binding):
    """A cached class method: ``Cls.method`` and ``obj.method`` bind the class."""

    def __get__(self, instance, owner):
        return _bound(self, owner if owner is not None else type(instance))


(<PyTypeObject*>CachedMethod).tp_flags |= Py_TPFLAGS_METHOD_DESCRIPTOR
PyType_Modified(<PyTypeObject*>CachedMethod)


cdef BoundCall _bound(_Binding method, object instance):
    cdef BoundCall bound = BoundCall.__new__(BoundCall)
    bound.__func__ = method
    bound.__self__ = instance
    bound._call = method._call
    bound._direct = method._direct
    return bound


@cython.final
@cython.freelist(16)
cdef class BoundCall:
    """A ``CachedMethod`` bound to an instance, or a ``CachedClassMethod`` to a class."""

    cdef readonly object __func__
    cdef readonly object __self__
    cdef object _call
    cdef DirectCall _direct

    def __init__(self, method, instance):
        if not isinstance(method, _Binding):
            raise TypeError(
                f"BoundCall binds a CachedMethod or CachedClassMethod, got {type(method).__name__}"
            )
        self.__func__ = method
        self.__self__ = instance
        self._call = (<_Binding>method)._call
        self._direct = (<_Binding>method)._direct

    def __call__(self, *args, **kwargs):
        return _call_with(self._call, self._direct, _prepend(self.__self__, args), kwargs)

    def invalidate(self, *args, **kwargs):
        """Forget the cached result of this call."""
        return self._call.invalidate(self.__self__, *args, **kwargs)

    def cache_key(self, *args, **kwargs):
        """The key this call is cached under."""
        return self._call.cache_key(self.__self__, *args, **kwargs)

    @property
    def __signature__(self):
        signature = inspect.signature(self.__func__)
        return signature.replace(parameters=list(signature.parameters.values())[1:])

    def __getattr__(self, name):
        # __name__, __qualname__, __wrapped__, ...: the method's, as a bound method has them
        if self.__func__ is None:  # made without __init__ (as copy does)
            raise AttributeError(name)
        return getattr(self.__func__, name)

    def __eq__(self, other):
        if type(other) is not BoundCall:
            return NotImplemented
        return (<BoundCall>other).__func__ is self.__func__ and \
            (<BoundCall>other).__self__ is self.__self__

    def __hash__(self):
        return hash((id(self.__func__), id(self.__self__)))

    def __repr__(self):
        name = getattr(self.__func__, "__qualname__", "?")
        return f"<bound cached method {name} of {self.__self__!r}>"
