cimport cython


@cython.final
@cython.freelist(8)
cdef class CallKey:
    cdef readonly object function
    cdef readonly tuple arguments
    cdef Py_hash_t _hash

    cdef int _fill(self, object function, tuple arguments) except -1


@cython.final
cdef class KeyMaker:
    cdef object _token
    cdef tuple _names
    cdef Py_ssize_t _positional
    cdef Py_ssize_t _required
    cdef tuple _defaults
    cdef bint _plain
    cdef int _first
    cdef object _bind

    cpdef CallKey key(self, tuple args, dict kwargs)
    cdef tuple _by_name(self, tuple args, dict kwargs)
