/* The C API's contract, checked from C: NULL handles and pointers, the two-call buffer
 * protocol, struct_size handling, load cancellation, the last error, the log callback.
 * Usage: api_contract MODEL.gguf. Prints "api_contract: N checks passed" and exits 0, or
 * names the first failed check and exits 1. Run under valgrind by tests/c_api.rs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rocmforge.h"

static int checks = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        checks++;                                                                       \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "api_contract: check failed at line %d: %s (last error: %s)\n", \
                    __LINE__, #cond, rf_last_error_message());                          \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static int progress_calls = 0;
static uint8_t cancel_after_first(float progress, void *user_data) {
    (void)progress;
    int *calls = (int *)user_data;
    return ++*calls < 2;
}

static float last_progress = -1.0f;
static int progress_monotonic = 1;
static uint8_t record_progress(float progress, void *user_data) {
    (void)user_data;
    if (progress < last_progress || progress < 0.0f || progress > 1.0f) progress_monotonic = 0;
    last_progress = progress;
    progress_calls++;
    return 1;
}

static int log_lines = 0;
static void on_log(rf_log_level level, const char *text, void *user_data) {
    (void)level;
    CHECK(text != NULL && user_data == &log_lines);
    log_lines++;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];

    /* Static strings. */
    CHECK(strcmp(rf_status_str(RF_OK), "ok") == 0);
    CHECK(strcmp(rf_status_str(12345), "unknown status") == 0);
    CHECK(strlen(rf_version()) >= 5);

    /* NULL arguments are errors with a message, never crashes. */
    rf_model_t *model = NULL;
    CHECK(rf_model_load(NULL, NULL, &model) == RF_ERR_INVALID_ARG && model == NULL);
    CHECK(strstr(rf_last_error_message(), "path is NULL") != NULL);
    CHECK(rf_model_load(path, NULL, NULL) == RF_ERR_INVALID_ARG);
    rf_model_free(NULL);
    CHECK(rf_model_describe(NULL, NULL) == RF_ERR_INVALID_ARG);
    CHECK(rf_model_meta_count(NULL, NULL) == RF_ERR_INVALID_ARG);

    /* A missing file is an I/O error that names the path. */
    CHECK(rf_model_load("/nonexistent/model.gguf", NULL, &model) == RF_ERR_IO && model == NULL);
    CHECK(strstr(rf_last_error_message(), "/nonexistent/model.gguf") != NULL);

    /* A bad struct_size is rejected. */
    rf_model_params params = rf_model_params_default();
    CHECK(params.struct_size == sizeof params);
    params.struct_size = 3;
    CHECK(rf_model_load(path, &params, &model) == RF_ERR_INVALID_ARG && model == NULL);
    CHECK(strstr(rf_last_error_message(), "struct_size") != NULL);
    params.struct_size = sizeof params + 64;
    CHECK(rf_model_load(path, &params, &model) == RF_ERR_INVALID_ARG && model == NULL);

    /* Cancelling from the progress callback returns RF_ABORTED and leaves *out alone. */
    int calls = 0;
    params = rf_model_params_default();
    params.progress_callback = cancel_after_first;
    params.progress_callback_user_data = &calls;
    CHECK(rf_model_load(path, &params, &model) == RF_ABORTED && model == NULL);
    CHECK(calls == 2);
    CHECK(strstr(rf_last_error_message(), "cancel") != NULL);

    /* A normal load reports progress from 0 to 1, in order, and logs through the callback. */
    rf_log_set(on_log, &log_lines);
    params = rf_model_params_default();
    params.progress_callback = record_progress;
    CHECK(rf_model_load(path, &params, &model) == RF_OK && model != NULL);
    CHECK(strcmp(rf_last_error_message(), "") == 0);
    CHECK(progress_calls >= 3 && progress_monotonic && last_progress == 1.0f);
    CHECK(log_lines >= 1);
    rf_log_set(NULL, NULL);

    /* Description: struct_size is required and respected. */
    rf_model_desc d;
    memset(&d, 0, sizeof d);
    CHECK(rf_model_describe(model, &d) == RF_ERR_INVALID_ARG);
    d.struct_size = sizeof d;
    CHECK(rf_model_describe(model, &d) == RF_OK);
    CHECK(d.struct_size == sizeof d && d.n_layer > 0 && d.n_vocab > 0 && d.architecture[0]);

    /* Metadata: two-call protocol. */
    size_t n = 0, len = 0;
    CHECK(rf_model_meta_count(model, &n) == RF_OK && n > 0);
    CHECK(rf_model_meta_key(model, n, NULL, 0, &len) == RF_ERR_INVALID_ARG);
    CHECK(rf_model_meta_key(model, 0, NULL, 0, NULL) == RF_ERR_INVALID_ARG);
    CHECK(rf_model_meta_key(model, 0, NULL, 5, &len) == RF_ERR_INVALID_ARG);
    CHECK(rf_model_meta_str(model, "general.architecture", NULL, 0, &len) == RF_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(d.architecture));
    char small[4] = {'x', 'x', 'x', 'x'};
    CHECK(rf_model_meta_str(model, "general.architecture", small, len, &len) == RF_ERR_BUFFER_TOO_SMALL);
    CHECK(small[0] == 'x'); /* nothing written on BUFFER_TOO_SMALL */
    char *buf = malloc(len + 1);
    CHECK(buf != NULL);
    CHECK(rf_model_meta_str(model, "general.architecture", buf, len + 1, &len) == RF_OK);
    CHECK(strcmp(buf, d.architecture) == 0);
    free(buf);
    CHECK(rf_model_meta_str(model, "no.such.key", NULL, 0, &len) == RF_ERR_NOT_FOUND);
    CHECK(strstr(rf_last_error_message(), "no.such.key") != NULL);
    CHECK(rf_model_meta_str(model, NULL, NULL, 0, &len) == RF_ERR_INVALID_ARG);
    char key[256];
    for (size_t i = 0; i < n; i++) {
        CHECK(rf_model_meta_key(model, i, key, sizeof key, &len) == RF_OK && strlen(key) == len);
    }

    /* Tokenizer (SmolLM2's vocabulary). */
    int32_t toks[64];
    const char *hello = "Hello world";
    CHECK(rf_vocab_tokenize(model, hello, strlen(hello), 1, 1, NULL, 0, &len) == RF_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 2);
    CHECK(rf_vocab_tokenize(model, hello, strlen(hello), 1, 1, toks, 64, &len) == RF_OK);
    CHECK(len == 2 && toks[0] == 19556 && toks[1] == 905);
    CHECK(rf_vocab_tokenize(model, NULL, 3, 0, 0, toks, 64, &len) == RF_ERR_INVALID_ARG);
    CHECK(rf_vocab_tokenize(model, NULL, 0, 0, 0, toks, 64, &len) == RF_OK && len == 0);
    const char *chat = "<|im_start|>user\nhi<|im_end|>";
    CHECK(rf_vocab_tokenize(model, chat, strlen(chat), 1, 1, toks, 64, &len) == RF_OK);
    CHECK(len == 5 && toks[0] == 1 && toks[1] == 4093 && toks[2] == 198 && toks[3] == 6004 && toks[4] == 2);
    CHECK(rf_vocab_tokenize(model, chat, strlen(chat), 0, 0, toks, 64, &len) == RF_OK && len == 17);
    char piece[64];
    CHECK(rf_token_to_piece(model, 905, 0, piece, sizeof piece, &len) == RF_OK);
    CHECK(len == 6 && memcmp(piece, " world", 6) == 0);
    CHECK(rf_token_to_piece(model, 1, 0, piece, sizeof piece, &len) == RF_OK && len == 0);
    CHECK(rf_token_to_piece(model, 1, 1, piece, sizeof piece, &len) == RF_OK && len == 12);
    CHECK(rf_token_to_piece(model, -1, 0, piece, sizeof piece, &len) == RF_ERR_INVALID_ARG);
    CHECK(rf_token_to_piece(model, 49152, 0, piece, sizeof piece, &len) == RF_ERR_INVALID_ARG);
    CHECK(strstr(rf_last_error_message(), "49152") != NULL);
    int32_t hw[2] = {19556, 905};
    CHECK(rf_detokenize(model, hw, 2, 0, 0, piece, 5, &len) == RF_ERR_BUFFER_TOO_SMALL && len == 11);
    CHECK(rf_detokenize(model, hw, 2, 0, 0, piece, sizeof piece, &len) == RF_OK);
    CHECK(len == 11 && memcmp(piece, "Hello world", 11) == 0);
    rf_vocab_info vi;
    memset(&vi, 0, sizeof vi);
    vi.struct_size = sizeof vi;
    CHECK(rf_vocab_get_info(model, &vi) == RF_OK);
    CHECK(vi.n_tokens == 49152 && vi.bos == 1 && vi.eos == 2 && vi.add_bos == 0 && vi.add_eos == 0);
    CHECK(rf_vocab_is_eog(model, 2) == 1 && rf_vocab_is_eog(model, 905) == 0);
    CHECK(rf_vocab_is_eog(model, -5) == 0 && rf_vocab_is_eog(NULL, 2) == 0);

    /* Chat template: the model's own, a caller's, and a broken one. */
    rf_chat_message msg = {"user", "What is 2+2?"};
    const char *want =
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
    CHECK(rf_chat_apply_template(model, NULL, &msg, 1, 1, NULL, 0, &len) == RF_ERR_BUFFER_TOO_SMALL);
    char *rendered = malloc(len + 1);
    CHECK(rendered != NULL);
    CHECK(rf_chat_apply_template(model, NULL, &msg, 1, 1, rendered, len + 1, &len) == RF_OK);
    CHECK(strcmp(rendered, want) == 0);
    free(rendered);
    char small_buf[64];
    CHECK(rf_chat_apply_template(model, "{{ messages[0].content }}!", &msg, 1, 0, small_buf, sizeof small_buf, &len) == RF_OK);
    CHECK(strcmp(small_buf, "What is 2+2?!") == 0);
    CHECK(rf_chat_apply_template(model, "{% if %}", &msg, 1, 0, small_buf, sizeof small_buf, &len) == RF_ERR_INVALID_ARG);
    CHECK(strstr(rf_last_error_message(), "chat template") != NULL);
    CHECK(rf_chat_apply_template(model, NULL, NULL, 1, 0, small_buf, sizeof small_buf, &len) == RF_ERR_INVALID_ARG);
    rf_chat_message bad = {NULL, "x"};
    CHECK(rf_chat_apply_template(model, NULL, &bad, 1, 0, small_buf, sizeof small_buf, &len) == RF_ERR_INVALID_ARG);

    rf_model_free(model);
    printf("api_contract: %d checks passed\n", checks);
    return 0;
}
