cdef class Recorder:
    cdef object _samples
    cdef public long long total
    cdef public double total_seconds

    cpdef record(self, double seconds)
