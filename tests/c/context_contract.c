/* The decoding API's contract, checked from C: context params and their limits, batches,
 * rf_decode's checks (each refused batch changes nothing), RF_KV_FULL, the abort callback,
 * logits views and copies, KV sequence calls (sharing, copy-on-write, truncation, holes), NULL handles, and a context outliving its
 * model handle. Usage: context_contract MODEL.gguf (a small model: tests use the zoo's
 * llama.F32). Prints "context_contract: N checks passed" and exits 0, or names the first
 * failed check and exits 1. Run under valgrind by tests/c_api.rs. */
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "rocmforge.h"

static int checks = 0;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "context_contract: check failed at line %d: %s (last error: %s)\n", \
                    __LINE__, #cond, rf_last_error_message());                               \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static int abort_calls = 0;
static uint8_t abort_at_second_layer(void *user_data) {
    int *armed = (int *)user_data;
    return *armed && ++abort_calls >= 2;
}

static void stats(rf_context_t *ctx, rf_kv_stats *s) {
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
    CHECK(rf_kv_get_stats(ctx, s) == RF_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: context_contract MODEL.gguf\n");
        return 2;
    }
    rf_model_t *model = NULL;
    CHECK(rf_model_load(argv[1], NULL, &model) == RF_OK);
    rf_vocab_info vi;
    memset(&vi, 0, sizeof vi);
    vi.struct_size = sizeof vi;
    CHECK(rf_vocab_get_info(model, &vi) == RF_OK);
    const int32_t n_vocab = vi.n_tokens;

    /* Params: defaults, limits, versioning. */
    rf_context_params p = rf_context_params_default();
    CHECK(p.struct_size == sizeof p && p.n_ctx == 4096 && p.n_batch == 512 && p.n_seq_max == 1);
    CHECK(p.kv_type == RF_KV_TYPE_F16 && p.n_threads >= 1 && p.abort_callback == NULL);
    CHECK(p.numerics == RF_NUMERICS_BATCH_INVARIANT);
    rf_context_t *ctx = (rf_context_t *)0x1;
    CHECK(rf_context_new(NULL, NULL, &ctx) == RF_ERR_INVALID_ARG && ctx == (rf_context_t *)0x1);
    CHECK(rf_context_new(model, NULL, NULL) == RF_ERR_INVALID_ARG);
    rf_context_params bad = p;
    bad.n_ctx = 0;
    CHECK(rf_context_new(model, &bad, &ctx) == RF_ERR_INVALID_ARG);
    CHECK(strstr(rf_last_error_message(), "n_ctx") != NULL);
    bad = p;
    bad.n_seq_max = 1000;
    CHECK(rf_context_new(model, &bad, &ctx) == RF_ERR_INVALID_ARG);
    bad = p;
    bad.kv_type = 99;
    CHECK(rf_context_new(model, &bad, &ctx) == RF_ERR_INVALID_ARG);
    bad = p;
    bad.numerics = 7;
    CHECK(rf_context_new(model, &bad, &ctx) == RF_ERR_INVALID_ARG);
    CHECK(strstr(rf_last_error_message(), "numerics") != NULL);
    bad = p;
    bad.struct_size = 3;
    CHECK(rf_context_new(model, &bad, &ctx) == RF_ERR_INVALID_ARG);
    CHECK(ctx == (rf_context_t *)0x1);
    /* A caller compiled before numerics existed: its shorter struct is accepted, and the
       field it does not have keeps its default. */
    bad = p;
    bad.struct_size = (uint32_t)offsetof(rf_context_params, numerics);
    bad.numerics = 7;
    CHECK(rf_context_new(model, &bad, &ctx) == RF_OK);
    rf_context_free(ctx);
    ctx = (rf_context_t *)0x1;
    p.numerics = RF_NUMERICS_LLAMA_CPP;
    CHECK(rf_context_new(model, &p, &ctx) == RF_OK);
    rf_context_free(ctx);
    p.numerics = RF_NUMERICS_BATCH_INVARIANT;
    ctx = (rf_context_t *)0x1;

    /* A small cache: 2 blocks of 16 positions, 2 sequences, batches of at most 8. */
    int armed = 0;
    p.n_ctx = 32;
    p.n_batch = 8;
    p.n_seq_max = 2;
    p.n_threads = 2;
    p.abort_callback = abort_at_second_layer;
    p.abort_callback_user_data = &armed;
    ctx = NULL;
    CHECK(rf_context_new(model, &p, &ctx) == RF_OK && ctx != NULL);
    /* The context keeps the model alive; the model handle's tokenizer is not used below. */

    rf_batch_t *batch = NULL;
    CHECK(rf_batch_new(0, &batch) == RF_ERR_INVALID_ARG);
    CHECK(rf_batch_new(10, NULL) == RF_ERR_INVALID_ARG);
    CHECK(rf_batch_new(10, &batch) == RF_OK);
    const int32_t s0 = 0, s1 = 1, s_bad = 2, both[2] = {0, 1};
    CHECK(rf_batch_add(NULL, 1, 0, &s0, 1, 1) == RF_ERR_INVALID_ARG);
    CHECK(rf_batch_add(batch, 1, 0, NULL, 1, 1) == RF_ERR_INVALID_ARG);
    CHECK(rf_batch_add(batch, 1, 0, &s0, 0, 1) == RF_ERR_INVALID_ARG);
    for (int i = 0; i < 10; i++) CHECK(rf_batch_add(batch, 1 + i, i, &s0, 1, 1) == RF_OK);
    CHECK(rf_batch_add(batch, 1, 10, &s0, 1, 1) == RF_ERR_INVALID_ARG); /* capacity 10 */
    /* 10 tokens > n_batch 8: refused. */
    CHECK(rf_decode(ctx, batch) == RF_ERR_INVALID_ARG);
    CHECK(strstr(rf_last_error_message(), "n_batch") != NULL);

    /* A valid prompt of 6 tokens; logits for the last two. */
    rf_batch_clear(batch);
    for (int i = 0; i < 6; i++) CHECK(rf_batch_add(batch, 3 + i, i, &s0, 1, i >= 4) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    const float *view = NULL;
    size_t nv = 0;
    CHECK(rf_logits(ctx, 0, &view, &nv) == RF_OK && view && nv == (size_t)n_vocab);
    const float *last = NULL;
    CHECK(rf_logits(ctx, -1, &last, &nv) == RF_OK && last == view + nv);
    CHECK(rf_logits(ctx, 2, &view, &nv) == RF_ERR_INVALID_ARG);
    CHECK(rf_logits(ctx, -2, &view, &nv) == RF_ERR_INVALID_ARG);
    CHECK(rf_logits(ctx, 0, NULL, &nv) == RF_ERR_INVALID_ARG);
    float *copy = malloc(sizeof(float) * (size_t)n_vocab);
    CHECK(copy != NULL);
    CHECK(rf_logits_copy(ctx, -1, copy, (size_t)n_vocab - 1) == RF_ERR_BUFFER_TOO_SMALL);
    CHECK(rf_logits_copy(ctx, -1, NULL, 0) == RF_ERR_INVALID_ARG);
    CHECK(rf_logits_copy(ctx, -1, copy, (size_t)n_vocab) == RF_OK);
    CHECK(memcmp(copy, last, sizeof(float) * (size_t)n_vocab) == 0);

    int32_t lo = 0, hi = 0;
    CHECK(rf_kv_seq_pos_range(ctx, 0, &lo, &hi) == RF_OK && lo == 0 && hi == 5);
    CHECK(rf_kv_seq_pos_range(ctx, 1, &lo, &hi) == RF_OK && lo == -1 && hi == -1);
    CHECK(rf_kv_seq_pos_range(ctx, 2, &lo, &hi) == RF_ERR_INVALID_ARG);
    rf_kv_stats before;
    stats(ctx, &before);
    CHECK(before.block_size == 16 && before.n_blocks_total == 2 && before.n_blocks_used == 1);
    CHECK(before.n_seqs == 1 && before.bytes_total > 0 && before.n_blocks_shared == 0);

    /* Each refused batch changes nothing: same stats, same logits. */
    struct { int32_t token, pos; const int32_t *seqs; size_t n; } cases[] = {
        {n_vocab, 6, &s0, 1}, /* token out of range */
        {-1, 6, &s0, 1},      /* negative token */
        {3, 7, &s0, 1},       /* does not continue sequence 0 */
        {3, -1, &s1, 1},      /* negative position */
        {3, 0, &s_bad, 1},    /* sequence id >= n_seq_max */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rf_batch_clear(batch);
        CHECK(rf_batch_add(batch, cases[c].token, cases[c].pos, cases[c].seqs, cases[c].n, 1) == RF_OK);
        CHECK(rf_decode(ctx, batch) == RF_ERR_INVALID_ARG);
        rf_kv_stats after;
        stats(ctx, &after);
        CHECK(memcmp(&before, &after, sizeof before) == 0);
        CHECK(rf_logits_copy(ctx, -1, copy, (size_t)n_vocab) == RF_OK);
        CHECK(memcmp(copy, last, sizeof(float) * (size_t)n_vocab) == 0);
    }

    /* Greedy tokens: after rf_decode, each row's argmax (the lowest id on ties); after
     * rf_decode_greedy of the same prompt in sequence 1, the same tokens and no logits. */
    int32_t best[2] = {0, 0};
    for (int r = 0; r < 2; r++) {
        const float *row = view + (size_t)r * (size_t)n_vocab;
        for (int32_t t = 1; t < n_vocab; t++)
            if (row[t] > row[best[r]]) best[r] = t;
    }
    int32_t tok = -1;
    CHECK(rf_greedy_token(ctx, -1, &tok) == RF_OK && tok == best[1]);
    CHECK(rf_greedy_token(ctx, 0, &tok) == RF_OK && tok == best[0]);
    CHECK(rf_greedy_token(ctx, 2, &tok) == RF_ERR_INVALID_ARG);
    CHECK(rf_greedy_token(ctx, 0, NULL) == RF_ERR_INVALID_ARG);
    CHECK(rf_greedy_token(NULL, 0, &tok) == RF_ERR_INVALID_ARG);
    rf_batch_clear(batch);
    for (int i = 0; i < 6; i++) CHECK(rf_batch_add(batch, 3 + i, i, &s1, 1, i >= 4) == RF_OK);
    CHECK(rf_decode_greedy(NULL, batch) == RF_ERR_INVALID_ARG);
    CHECK(rf_decode_greedy(ctx, NULL) == RF_ERR_INVALID_ARG);
    CHECK(rf_decode_greedy(ctx, batch) == RF_OK);
    tok = -1;
    CHECK(rf_greedy_token(ctx, 0, &tok) == RF_OK && tok == best[0]);
    CHECK(rf_greedy_token(ctx, -1, &tok) == RF_OK && tok == best[1]);
    CHECK(rf_greedy_token(ctx, 2, &tok) == RF_ERR_INVALID_ARG);
    CHECK(rf_logits(ctx, 0, &view, &nv) == RF_ERR_INVALID_ARG);
    CHECK(strstr(rf_last_error_message(), "greedy") != NULL);
    CHECK(rf_logits_copy(ctx, -1, copy, (size_t)n_vocab) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_free(ctx, 1) == RF_OK);
    rf_kv_stats kept;
    stats(ctx, &kept);
    CHECK(memcmp(&before, &kept, sizeof before) == 0);

    rf_batch_clear(batch);
    CHECK(rf_decode(ctx, batch) == RF_ERR_INVALID_ARG); /* empty */
    CHECK(rf_decode(NULL, batch) == RF_ERR_INVALID_ARG);
    CHECK(rf_decode(ctx, NULL) == RF_ERR_INVALID_ARG);

    /* An abort at the second layer: RF_ABORTED, nothing changed, then the same batch works. */
    CHECK(rf_batch_add(batch, 3, 6, &s0, 1, 1) == RF_OK);
    armed = 1;
    CHECK(rf_decode(ctx, batch) == RF_ABORTED);
    CHECK(abort_calls == 2);
    rf_kv_stats after;
    stats(ctx, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    armed = 0;
    CHECK(rf_decode(ctx, batch) == RF_OK);

    /* Fill sequence 0 to 16 positions (one block), then sequence 1 takes the second block;
     * a third block is refused with RF_KV_FULL and nothing changes. */
    rf_batch_clear(batch);
    for (int i = 7; i < 15; i++) CHECK(rf_batch_add(batch, 3, i, &s0, 1, 0) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    rf_batch_clear(batch);
    CHECK(rf_batch_add(batch, 3, 15, &s0, 1, 0) == RF_OK);
    CHECK(rf_batch_add(batch, 5, 0, &s1, 1, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    stats(ctx, &before);
    CHECK(before.n_blocks_used == 2 && before.n_seqs == 2);
    rf_batch_clear(batch);
    CHECK(rf_batch_add(batch, 3, 16, &s0, 1, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_KV_FULL);
    stats(ctx, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK(rf_kv_seq_pos_range(ctx, 0, &lo, &hi) == RF_OK && hi == 15);
    /* Freeing sequence 1 makes room. */
    CHECK(rf_kv_free(ctx, 1) == RF_OK);
    CHECK(rf_kv_free(ctx, 1) == RF_OK); /* empty: no-op */
    CHECK(rf_kv_free(ctx, 5) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_free(NULL, 0) == RF_ERR_INVALID_ARG);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    CHECK(rf_kv_clear(ctx) == RF_OK);
    stats(ctx, &after);
    CHECK(after.n_blocks_used == 0 && after.n_seqs == 0);

    /* Sharing: sequence 1 becomes a copy of sequence 0 holding no block of its own; bad
     * arguments are refused and change nothing; the first write into the shared block copies
     * it (one more block), and a batch whose copies do not fit is RF_KV_FULL. */
    rf_batch_clear(batch);
    for (int i = 0; i < 8; i++) CHECK(rf_batch_add(batch, 3 + i, i, &s0, 1, 0) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    CHECK(rf_kv_seq_copy(ctx, 0, 1, 0, -1) == RF_OK);
    stats(ctx, &before);
    CHECK(before.n_blocks_used == 1 && before.n_blocks_shared == 1 && before.n_seqs == 2);
    CHECK(rf_kv_seq_pos_range(ctx, 1, &lo, &hi) == RF_OK && lo == 0 && hi == 7);
    CHECK(rf_kv_seq_copy(ctx, 0, 0, 0, -1) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_copy(ctx, 0, 2, 0, -1) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_copy(ctx, -1, 1, 0, -1) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_copy(ctx, 0, 1, 5, 3) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_copy(NULL, 0, 1, 0, -1) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_remove(ctx, 0, 5, 3) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_remove(ctx, 2, 0, -1) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_remove(NULL, 0, 0, -1) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_keep(ctx, 2) == RF_ERR_INVALID_ARG);
    CHECK(rf_kv_seq_keep(NULL, 0) == RF_ERR_INVALID_ARG);
    stats(ctx, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    rf_batch_clear(batch);
    CHECK(rf_batch_add(batch, 4, 8, &s0, 1, 1) == RF_OK);
    CHECK(rf_batch_add(batch, 5, 8, &s1, 1, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_KV_FULL); /* two copies needed, one block free */
    stats(ctx, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK(rf_kv_seq_pos_range(ctx, 0, &lo, &hi) == RF_OK && hi == 7);
    rf_batch_clear(batch);
    CHECK(rf_batch_add(batch, 5, 8, &s1, 1, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    stats(ctx, &after);
    CHECK(after.n_blocks_used == 2 && after.n_blocks_shared == 0);
    /* Truncation: the tail goes, the next token continues after what is left. */
    CHECK(rf_kv_seq_remove(ctx, 1, 4, -1) == RF_OK);
    CHECK(rf_kv_seq_pos_range(ctx, 1, &lo, &hi) == RF_OK && lo == 0 && hi == 3);
    rf_batch_clear(batch);
    CHECK(rf_batch_add(batch, 6, 5, &s1, 1, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_ERR_INVALID_ARG); /* 4 is next, not 5 */
    rf_batch_clear(batch);
    CHECK(rf_batch_add(batch, 6, 4, &s1, 1, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    /* A hole in the middle; keep drops the other sequence; -1, -1 empties one. */
    CHECK(rf_kv_seq_remove(ctx, 1, 1, 3) == RF_OK);
    CHECK(rf_kv_seq_pos_range(ctx, 1, &lo, &hi) == RF_OK && lo == 0 && hi == 4);
    CHECK(rf_kv_seq_keep(ctx, 1) == RF_OK);
    CHECK(rf_kv_seq_pos_range(ctx, 0, &lo, &hi) == RF_OK && lo == -1);
    stats(ctx, &after);
    CHECK(after.n_blocks_used == 1 && after.n_seqs == 1);
    CHECK(rf_kv_seq_remove(ctx, 1, -1, -1) == RF_OK);
    stats(ctx, &after);
    CHECK(after.n_blocks_used == 0 && after.n_seqs == 0);

    /* A token in two sequences goes to both. */
    rf_batch_clear(batch);
    CHECK(rf_batch_add(batch, 3, 0, both, 2, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    CHECK(rf_kv_seq_pos_range(ctx, 1, &lo, &hi) == RF_OK && lo == 0 && hi == 0);

    /* The context outlives the caller's model handle. */
    rf_model_free(model);
    rf_batch_clear(batch);
    CHECK(rf_batch_add(batch, 4, 1, &s1, 1, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);

    rf_batch_free(batch);
    rf_context_free(ctx);
    rf_batch_free(NULL);
    rf_context_free(NULL);
    rf_batch_clear(NULL);
    free(copy);
    printf("context_contract: %d checks passed\n", checks);
    return 0;
}
