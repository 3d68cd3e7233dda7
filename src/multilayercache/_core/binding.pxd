from .callkey cimport KeyMaker


cdef class DirectCall:
    cdef object call(self, tuple args, dict kwargs)


cdef class KeyedCall(DirectCall):
    cdef object _key_of
    cdef KeyMaker _maker
    cdef object _first_lookup
    cdef object _load
    cdef object _missing
    cdef object _aside
    cdef dict __dict__
    cdef object __weakref__
