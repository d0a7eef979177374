/* mlx-rs seeds its default random state from mach_approximate_time(), a macOS call.
   Elsewhere it is provided here from the monotonic clock, in nanoseconds. */
#include <stdint.h>
#include <time.h>

uint64_t mach_approximate_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
