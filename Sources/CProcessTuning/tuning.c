#include "CProcessTuning.h"
#include <malloc.h>

int parley_keep_freed_buffers(void) {
    // Fixed thresholds also stop glibc raising them on its own; 32 MiB is the largest mmap threshold it accepts.
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 64 << 20) == 1;
}
