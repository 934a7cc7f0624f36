/*
 * model_info: load a GGUF model through the rocmforge C API and print its description and
 * metadata.
 *
 *   cc -I include examples/model_info.c -L target/release -lrocmforge -o model_info
 *   ./model_info models/SmolLM2-135M-Instruct.Q4_1.gguf [--all]
 *
 * Long metadata values (vocabularies) are shortened unless --all is given.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rocmforge.h"

#define SHORT_VALUE 96

static int fail(const char *what, rf_status s) {
    fprintf(stderr, "model_info: %s failed: %s (%d): %s\n", what, rf_status_str(s), (int)s,
            rf_last_error_message());
    return 1;
}

/* Shows load progress on stderr in tenths. */
static uint8_t on_progress(float progress, void *user_data) {
    int *last = (int *)user_data;
    int tenth = (int)(progress * 10.0f);
    if (tenth > *last) {
        *last = tenth;
        fprintf(stderr, "\rloading %3d%%", tenth * 10);
        if (tenth == 10) fputc('\n', stderr);
    }
    return 1;
}

/* Reads text with the two-call protocol: ask for the length, then fill an exact buffer.
 * Returns a malloc'd NUL-terminated string (caller frees) or NULL with *status set. */
static char *read_key(const rf_model_t *m, size_t i, rf_status *status, size_t *len) {
    *status = rf_model_meta_key(m, i, NULL, 0, len);
    if (*status != RF_ERR_BUFFER_TOO_SMALL) return NULL;
    char *buf = malloc(*len + 1);
    if (!buf) return NULL;
    *status = rf_model_meta_key(m, i, buf, *len + 1, len);
    if (*status != RF_OK) { free(buf); return NULL; }
    return buf;
}

static char *read_value(const rf_model_t *m, const char *key, rf_status *status, size_t *len) {
    *status = rf_model_meta_str(m, key, NULL, 0, len);
    if (*status != RF_ERR_BUFFER_TOO_SMALL) return NULL;
    char *buf = malloc(*len + 1);
    if (!buf) return NULL;
    *status = rf_model_meta_str(m, key, buf, *len + 1, len);
    if (*status != RF_OK) { free(buf); return NULL; }
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [--all]\n", argv[0]);
        return 2;
    }
    int show_all = argc > 2 && strcmp(argv[2], "--all") == 0;

    int last_tenth = -1;
    rf_model_params params = rf_model_params_default();
    params.progress_callback = on_progress;
    params.progress_callback_user_data = &last_tenth;

    rf_model_t *model = NULL;
    rf_status s = rf_model_load(argv[1], &params, &model);
    if (s != RF_OK) return fail("rf_model_load", s);

    rf_model_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    s = rf_model_describe(model, &d);
    if (s != RF_OK) { rf_model_free(model); return fail("rf_model_describe", s); }

    printf("rocmforge %s\n", rf_version());
    printf("model:          %s\n", argv[1]);
    printf("architecture:   %s\n", d.architecture);
    printf("file type:      %s (%" PRId32 ")\n", d.file_type_name, d.file_type);
    printf("file size:      %" PRIu64 " bytes\n", d.file_size);
    printf("parameters:     %" PRIu64 "\n", d.n_params);
    printf("tensors:        %" PRIu64 "\n", d.n_tensors);
    printf("vocabulary:     %" PRIu32 "\n", d.n_vocab);
    printf("context train:  %" PRIu32 "\n", d.n_ctx_train);
    printf("embedding:      %" PRIu32 "\n", d.n_embd);
    printf("layers:         %" PRIu32 "\n", d.n_layer);
    printf("heads:          %" PRIu32 "\n", d.n_head);
    printf("kv heads:       %" PRIu32 "\n", d.n_head_kv);

    size_t n_meta = 0;
    s = rf_model_meta_count(model, &n_meta);
    if (s != RF_OK) { rf_model_free(model); return fail("rf_model_meta_count", s); }
    printf("metadata:       %zu keys\n", n_meta);

    int rc = 0;
    for (size_t i = 0; i < n_meta && rc == 0; i++) {
        size_t key_len = 0, value_len = 0;
        char *key = read_key(model, i, &s, &key_len);
        if (!key) { rc = fail("rf_model_meta_key", s); break; }
        char *value = read_value(model, key, &s, &value_len);
        if (!value) { free(key); rc = fail("rf_model_meta_str", s); break; }
        /* Values are bytes and may hold NULs or newlines: print with an explicit length,
         * newlines shown as \n. */
        size_t shown = (!show_all && value_len > SHORT_VALUE) ? SHORT_VALUE : value_len;
        printf("  %s = ", key);
        for (size_t j = 0; j < shown; j++) {
            char c = value[j];
            if (c == '\n') fputs("\\n", stdout);
            else if (c == '\0') fputs("\\0", stdout);
            else putchar(c);
        }
        if (shown < value_len) printf("... (%zu bytes)", value_len);
        putchar('\n');
        free(key);
        free(value);
    }
    rf_model_free(model);
    return rc;
}
