cdef class Lead:
    cdef public list lenders
    cdef public object parent


cdef class Call:
    cdef public bint done
    cdef public object ended
    cdef public object value
    cdef public object error
    cdef public Lead lead
    cdef public object offered
    cdef public object token

    cpdef finish(self, value, error)


cdef Call new_call(object parent)
