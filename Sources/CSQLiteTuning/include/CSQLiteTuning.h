#ifndef PARLEY_CSQLITETUNING_H
#define PARLEY_CSQLITETUNING_H

/// Puts SQLite in multi-thread mode (no mutex on each connection; every connection is used by one thread at a time,
/// which GRDB guarantees) and turns off its memory statistics (a global mutex on every allocation). Must run before
/// SQLite is first used in the process; returns SQLITE_OK, or SQLITE_MISUSE when it came too late (nothing changed).
int parley_sqlite_tune(void);

#endif
