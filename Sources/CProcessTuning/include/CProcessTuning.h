#ifndef PARLEY_CPROCESSTUNING_H
#define PARLEY_CPROCESSTUNING_H

/// Keeps freed buffers of up to 32 MiB in glibc's heap (up to 64 MiB of them) instead of handing each back to the system
/// and faulting the next one in page by page. Returns 1 when glibc took both settings.
int parley_keep_freed_buffers(void);

#endif
