#include <sqlite3.h>
#include "CSQLiteTuning.h"

// sqlite3_config is variadic, which Swift cannot call.
int parley_sqlite_tune(void) {
    int result = sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
    if (result != SQLITE_OK) return result;
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
