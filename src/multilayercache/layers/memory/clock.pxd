# The compiled layer's clock: CLOCK_MONOTONIC in integer nanoseconds, plus a coarse reading
# that is cheap enough to check on every hit. The pure twin uses time.monotonic_ns and
# ``deadlines.py``.
from libc.stdint cimport int64_t

cdef extern from *:
    """
    #ifdef _WIN32
    /* Windows has no clock_gettime: its monotonic clock is the performance counter, read
       in ticks of a frequency fixed at boot (split so that ticks * 10^9 cannot overflow). */
    #ifndef WIN32_LEAN_AND_MEAN
    #define WIN32_LEAN_AND_MEAN
    #endif
    #include <windows.h>
    static inline int64_t mlc_monotonic_ns(void) {
        static int64_t frequency = 0;  /* a race writes the same value */
        LARGE_INTEGER now;
        if (frequency == 0) {
            LARGE_INTEGER ticks_per_second;
            QueryPerformanceFrequency(&ticks_per_second);
            frequency = (int64_t)ticks_per_second.QuadPart;
        }
        QueryPerformanceCounter(&now);
        return (int64_t)(now.QuadPart / frequency) * 1000000000LL
               + (int64_t)(now.QuadPart % frequency) * 1000000000LL / frequency;
    }
    #else
    #include <time.h>
    static inline int64_t mlc_monotonic_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    #endif
    /* CLOCK_MONOTONIC_COARSE reads the same clock at tick resolution (~1-4 ms) for a few
       nanoseconds; it lags the precise clock by at most its resolution. */
    #ifdef CLOCK_MONOTONIC_COARSE
    static inline int64_t mlc_coarse_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    static int64_t mlc_coarse_slack_ns(void) {
        struct timespec res;
        if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0) return -1;
        return 2 * ((int64_t)res.tv_sec * 1000000000LL + res.tv_nsec);
    }
    #else
    static inline int64_t mlc_coarse_ns(void) { return mlc_monotonic_ns(); }
    static int64_t mlc_coarse_slack_ns(void) { return 0; }
    #endif
    """
    int64_t monotonic_ns "mlc_monotonic_ns"() nogil
    int64_t coarse_ns "mlc_coarse_ns"() nogil
    int64_t coarse_slack_ns "mlc_coarse_slack_ns"() nogil


cdef inline bint has_passed(int64_t deadline, int64_t slack_ns) noexcept nogil:
    """Whether the monotonic clock has reached ``deadline``. Safe shortcut: the coarse clock
    trails the precise one by less than ``slack_ns`` (< 0: no coarse clock)."""
    if slack_ns >= 0 and deadline - coarse_ns() > slack_ns:
        return False
    return deadline <= monotonic_ns()


cdef inline int64_t deadline_after(int64_t now_ns, double seconds, int64_t never) noexcept nogil:
    """``seconds`` after ``now_ns``, kept below ``never`` (the twin: ``deadlines.py``)."""
    cdef int64_t deadline = now_ns + <int64_t>(seconds * 1e9)
    return deadline if deadline < never - 1 else never - 1
