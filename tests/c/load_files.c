/* Loads every file named on the command line through rf_model_load and prints one line per
 * file: "<status>\t<message>". Used by tests/c_api.rs to run the malformed-file corpus through
 * the C API under valgrind. Exits 0 when every call returned (whatever the statuses). */
#include <stdio.h>

#include "rocmforge.h"

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        rf_model_t *model = (rf_model_t *)0x1; /* must stay untouched on failure */
        rf_status s = rf_model_load(argv[i], NULL, &model);
        if (s == RF_OK) {
            rf_model_free(model);
            printf("%d\t\n", (int)s);
        } else {
            if (model != (rf_model_t *)0x1) {
                printf("%d\tout-parameter written on failure\n", (int)s);
                return 1;
            }
            printf("%d\t%s\n", (int)s, rf_last_error_message());
        }
    }
    return 0;
}
