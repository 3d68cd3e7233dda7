"""Keys of cached function calls (compiled twin of ``_callkey_py.py``, which explains them).

A ``CallKey`` is a small final object: its hash is computed once, and equality compares the
function token by identity before the argument tuples. ``KeyMaker.key`` slices and joins
tuples with the C API only, so a decorated call's hit path allocates the key and nothing
else.
"""

import sys

from cpython.object cimport Py_EQ, Py_TYPE, PyObject, PyObject_RichCompareBool, PyTypeObject
from cpython.dict cimport PyDict_GetItem, PyDict_Size
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF


cdef extern from "Python.h":
    # The attribute of a type, through its MRO, without the metaclass and without raising
    # (a borrowed reference, or NULL): how CPython itself finds special methods, and cached
    # per type, so asking every call costs a few nanoseconds.
    PyObject* _PyType_Lookup(PyTypeObject* type, PyObject* name)


FIRST_AS_ARGUMENT = 0
FIRST_LEFT_OUT = 1
FIRST_AS_INSTANCE = 2

cdef enum:
    _AS_ARGUMENT = 0
    _LEFT_OUT = 1
    _AS_INSTANCE = 2

cdef str _HOOK = sys.intern("__cache_key__")


cdef class CallKey:
    """The key of one call: ``function`` (a token, compared by identity) and the normalised
    ``arguments``. ``text`` is the form shared layers store it under."""

    def __init__(self, function, tuple arguments):
        self._fill(function, arguments)

    cdef int _fill(self, object function, tuple arguments) except -1:
        cdef Py_hash_t arguments_hash
        cdef size_t mixed
        self.function = function
        self.arguments = arguments
        try:
            arguments_hash = hash(arguments)
        except TypeError:
            raise function.unhashable(arguments) from None
        # Mixing in the token's address keeps the keys of two functions called with the
        # same arguments apart in the index.
        mixed = (<size_t><void*>function >> 4) * <size_t>0x9E3779B97F4A7C15
        self._hash = arguments_hash ^ <Py_hash_t>mixed
        if self._hash == -1:
            self._hash = -2
        return 0

    def __hash__(self):
        return self._hash

    def __richcmp__(self, other, int op):
        if type(other) is not CallKey:
            return NotImplemented
        cdef CallKey that = <CallKey>other
        cdef bint equal = (that.function is self.function and that._hash == self._hash
                           and PyObject_RichCompareBool(that.arguments, self.arguments, Py_EQ))
        if op == Py_EQ:
            return equal
        if op == 3:  # Py_NE
            return not equal
        return NotImplemented

    @property
    def text(self):
        """``module.qualname:[arguments as canonical JSON]``, the same in every process."""
        return self.function.text_for(self.arguments)

    def __str__(self):
        try:
            return self.text
        except TypeError:  # no shared text (an instance without one): still printable
            return repr(self)

    def __repr__(self):
        return f"CallKey({self.function.name!r}, {self.arguments!r})"


cdef class KeyMaker:
    """Normalises a call's arguments into a ``CallKey`` (see ``_callkey_py.py``)."""

    def __init__(self, token, tuple names, tuple defaults, bint plain, int first, bind):
        self._token = token
        self._names = names
        self._positional = len(names)
        self._required = len(names) - len(defaults)
        self._defaults = defaults
        self._plain = plain
        if first not in (_AS_ARGUMENT, _LEFT_OUT, _AS_INSTANCE):
            raise ValueError(f"first must be one of the FIRST_* constants, got {first!r}")
        self._first = first
        self._bind = bind

    cpdef CallKey key(self, tuple args, dict kwargs):
        """The key of the call ``function(*args, **kwargs)``."""
        cdef Py_ssize_t count = PyTuple_GET_SIZE(args)
        cdef tuple arguments = None
        if kwargs and self._plain:
            arguments = self._by_name(args, kwargs)
        if arguments is not None:
            pass
        elif kwargs or not self._plain or not self._required <= count <= self._positional:
            arguments = self._bind(args, kwargs or {})
        elif count == self._positional:
            arguments = args
        else:  # the trailing parameters take their defaults
            arguments = args + self._defaults[count - self._required:]
        if self._first == _LEFT_OUT:
            arguments = arguments[1:]
        elif self._first == _AS_INSTANCE and PyTuple_GET_SIZE(arguments):
            arguments = instance_keyed(arguments)
        # made without the type's call (an argument tuple, __init__): a third of the key's cost
        cdef CallKey key = CallKey.__new__(CallKey)
        key._fill(self._token, arguments)
        return key

    cdef tuple _by_name(self, tuple args, dict kwargs):
        """``args``, then each later parameter from ``kwargs`` or its default; ``None`` for a
        call that may not fit the signature (``bind`` then decides)."""
        cdef Py_ssize_t count = PyTuple_GET_SIZE(args)
        cdef Py_ssize_t index, used = 0
        cdef PyObject* value
        if count > self._positional:
            return None
        cdef tuple values = PyTuple_New(self._positional)
        for index in range(self._positional):
            if index < count:
                value = PyTuple_GET_ITEM(args, index)
            else:
                value = PyDict_GetItem(kwargs, <object>PyTuple_GET_ITEM(self._names, index))
                if value is NULL:
                    if index < self._required:
                        return None  # a required parameter missing
                    value = PyTuple_GET_ITEM(self._defaults, index - self._required)
                else:
                    used += 1
            Py_INCREF(<object>value)  # PyTuple_SET_ITEM steals a reference
            PyTuple_SET_ITEM(values, index, <object>value)
        # a name that is no parameter, or one also given by position, was not used
        return values if used == PyDict_Size(kwargs) else None


cdef tuple instance_keyed(tuple arguments):
    """``arguments`` with the instance first replaced by its ``__cache_key__()``, when its
    class defines one."""
    instance = arguments[0]
    cdef PyObject* hook = _PyType_Lookup(Py_TYPE(instance), <PyObject*>_HOOK)
    if hook is NULL or <object>hook is None:
        return arguments
    return ((<object>hook)(instance),) + arguments[1:]
