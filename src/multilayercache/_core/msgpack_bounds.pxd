# The walk of ``msgpack_bounds.pyx``, for other compiled modules (``envelope_batch.pyx``):
# how many objects ``data[position:end]`` holds, or UntrustedDataError.
cdef Py_ssize_t _count(
    const unsigned char* data,
    Py_ssize_t end,
    Py_ssize_t position,
    Py_ssize_t max_depth,
    Py_ssize_t max_items,
) except -1
