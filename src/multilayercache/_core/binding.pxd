cdef class DirectCall:
    cdef object call(self, tuple args, dict kwargs)
