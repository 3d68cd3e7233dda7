# zlib's CRC-32 (its polynomial, reflected), by table, for the compiled envelope modules:
# the key check of every value written to (envelope_write) or read from (envelope_batch)
# a shared layer. Their pure twins call ``zlib.crc32``; the compiled ones do not link zlib
# (a wheel would have to carry it on Windows). Each module that cimports this holds its
# own copy of the table, and fills it once, as it is imported (``crc32_fill``).

from libc.stdint cimport uint32_t

cdef extern from *:
    """
    #include <stdint.h>
    static uint32_t mlc_crc32_table[256];
    static void mlc_crc32_fill(void) {
        uint32_t byte, bit, crc;
        for (byte = 0; byte < 256; byte++) {
            crc = byte;
            for (bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ ((crc & 1) ? 0xEDB88320u : 0u);
            mlc_crc32_table[byte] = crc;
        }
    }
    """
    uint32_t mlc_crc32_table[256]
    void crc32_fill "mlc_crc32_fill"() noexcept


cdef inline uint32_t crc32_update(uint32_t crc, const unsigned char* data,
                                  Py_ssize_t size) noexcept:
    # zlib's CRC-32 before its final inversion: continued by the next bytes
    cdef Py_ssize_t i
    for i in range(size):
        crc = mlc_crc32_table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8)
    return crc


cdef inline uint32_t crc32(const unsigned char* data, Py_ssize_t size) noexcept:
    return crc32_update(0xFFFFFFFF, data, size) ^ 0xFFFFFFFF
