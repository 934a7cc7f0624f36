/* The sampler API's contract, checked from C: chain params and specs, every refused
 * argument (NULL handles, bad kinds, parameters out of range, a sampler after the selector),
 * seeded reproducibility and reset, accept feeding the penalties, logit bias, DRY, sampling a
 * context's logits row, and the all-excluded error. Usage: sampler_contract MODEL.gguf (a
 * small model: tests use the zoo's llama.F32). Prints "sampler_contract: N checks passed"
 * and exits 0, or names the first failed check and exits 1. Run under valgrind by
 * tests/c_api.rs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rocmforge.h"

static int checks = 0;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "sampler_contract: check failed at line %d: %s (last error: %s)\n", \
                    __LINE__, #cond, rf_last_error_message());                               \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static rf_sampler_t *chain_of(uint64_t seed, const rf_sampler_spec *specs, size_t n) {
    rf_sampler_chain_params p = rf_sampler_chain_params_default();
    p.seed = seed;
    rf_sampler_t *c = NULL;
    CHECK(rf_sampler_chain_new(&p, &c) == RF_OK && c != NULL);
    for (size_t i = 0; i < n; i++) CHECK(rf_sampler_chain_add(c, &specs[i]) == RF_OK);
    return c;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: sampler_contract MODEL.gguf\n");
        return 2;
    }
    /* Params and refusals. */
    rf_sampler_chain_params p = rf_sampler_chain_params_default();
    CHECK(p.struct_size == sizeof p && p.seed == RF_SEED_RANDOM);
    rf_sampler_t *c = (rf_sampler_t *)0x1;
    CHECK(rf_sampler_chain_new(NULL, NULL) == RF_ERR_INVALID_ARG);
    p.struct_size = 2;
    CHECK(rf_sampler_chain_new(&p, &c) == RF_ERR_INVALID_ARG && c == (rf_sampler_t *)0x1);
    CHECK(rf_sampler_chain_new(NULL, &c) == RF_OK); /* NULL params: defaults */
    uint64_t seed = 0;
    CHECK(rf_sampler_get_seed(c, &seed) == RF_OK && seed != RF_SEED_RANDOM);
    CHECK(rf_sampler_get_seed(c, NULL) == RF_ERR_INVALID_ARG);
    float logits[8] = {1, 3, 2, 0, -1, 2.5f, 0.5f, 1.5f};
    int32_t tok = -7;
    CHECK(rf_sampler_sample_logits(c, logits, 8, &tok) == RF_ERR_INVALID_ARG); /* no selector */
    CHECK(strstr(rf_last_error_message(), "selector") != NULL && tok == -7);
    rf_sampler_spec bad = rf_sampler_spec_top_p(1.5f, 1);
    CHECK(rf_sampler_chain_add(c, &bad) == RF_ERR_INVALID_ARG);
    bad = rf_sampler_spec_temperature(NAN);
    CHECK(rf_sampler_chain_add(c, &bad) == RF_ERR_INVALID_ARG);
    bad = rf_sampler_spec_penalties(-2, 1.1f, 0, 0);
    CHECK(rf_sampler_chain_add(c, &bad) == RF_ERR_INVALID_ARG);
    bad = rf_sampler_spec_penalties(8, 0.0f, 0, 0);
    CHECK(rf_sampler_chain_add(c, &bad) == RF_ERR_INVALID_ARG);
    bad = rf_sampler_spec_logit_bias(NULL, 3);
    CHECK(rf_sampler_chain_add(c, &bad) == RF_ERR_INVALID_ARG);
    bad = rf_sampler_spec_greedy();
    bad.kind = 42;
    CHECK(rf_sampler_chain_add(c, &bad) == RF_ERR_INVALID_ARG);
    bad.struct_size = 1;
    CHECK(rf_sampler_chain_add(c, &bad) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_chain_add(c, NULL) == RF_ERR_INVALID_ARG);
    rf_sampler_spec greedy = rf_sampler_spec_greedy();
    CHECK(rf_sampler_chain_add(NULL, &greedy) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_chain_add(c, &greedy) == RF_OK);
    rf_sampler_spec dist = rf_sampler_spec_dist();
    CHECK(rf_sampler_chain_add(c, &dist) == RF_ERR_INVALID_ARG); /* after the selector */
    CHECK(rf_sampler_sample_logits(c, logits, 8, &tok) == RF_OK && tok == 1);
    CHECK(rf_sampler_sample_logits(c, NULL, 8, &tok) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_sample_logits(c, logits, 0, &tok) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_sample_logits(c, logits, 8, NULL) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_accept(c, -1) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_accept(NULL, 1) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_reset(NULL) == RF_ERR_INVALID_ARG);
    /* All -inf: a clear error, no token. */
    float dead[3] = {-INFINITY, NAN, -INFINITY};
    tok = -7;
    CHECK(rf_sampler_sample_logits(c, dead, 3, &tok) == RF_ERR_INVALID_ARG && tok == -7);
    CHECK(strstr(rf_last_error_message(), "-inf") != NULL);
    rf_sampler_free(c);
    rf_sampler_free(NULL);

    /* Seeded chains: same seed, same tokens; reset replays; another seed differs. */
    rf_sampler_spec specs[] = {
        rf_sampler_spec_penalties(16, 1.1f, 0.0f, 0.0f),
        rf_sampler_spec_top_k(6),
        rf_sampler_spec_top_p(0.95f, 1),
        rf_sampler_spec_min_p(0.01f, 1),
        rf_sampler_spec_typical(1.0f, 1),
        rf_sampler_spec_xtc(0.0f, 0.1f, 1),
        rf_sampler_spec_temperature(1.5f),
        rf_sampler_spec_dist(),
    };
    size_t n_specs = sizeof specs / sizeof specs[0];
    rf_sampler_t *a = chain_of(1234, specs, n_specs);
    rf_sampler_t *b = chain_of(1234, specs, n_specs);
    rf_sampler_t *other = chain_of(1235, specs, n_specs);
    int32_t ta[64], tb[64], to[64];
    int differ = 0;
    for (int i = 0; i < 64; i++) {
        CHECK(rf_sampler_sample_logits(a, logits, 8, &ta[i]) == RF_OK);
        CHECK(rf_sampler_sample_logits(b, logits, 8, &tb[i]) == RF_OK);
        CHECK(rf_sampler_sample_logits(other, logits, 8, &to[i]) == RF_OK);
        CHECK(ta[i] == tb[i]);
        CHECK(ta[i] != 3 && ta[i] != 4); /* outside the top 6 */
        differ += ta[i] != to[i];
    }
    CHECK(differ > 0);
    CHECK(rf_sampler_reset(a) == RF_OK);
    for (int i = 0; i < 64; i++) {
        int32_t t = -1;
        CHECK(rf_sampler_sample_logits(a, logits, 8, &t) == RF_OK && t == ta[i]);
    }
    rf_sampler_free(a);
    rf_sampler_free(b);
    rf_sampler_free(other);

    /* Accepted tokens feed the presence penalty; logit bias bans a token. */
    rf_sampler_spec pen[] = {rf_sampler_spec_penalties(4, 1.0f, 0.0f, 5.0f), rf_sampler_spec_greedy()};
    c = chain_of(0, pen, 2);
    CHECK(rf_sampler_sample_logits(c, logits, 8, &tok) == RF_OK && tok == 1);
    CHECK(rf_sampler_accept(c, 1) == RF_OK);
    CHECK(rf_sampler_sample_logits(c, logits, 8, &tok) == RF_OK && tok == 5);
    rf_sampler_free(c);
    rf_logit_bias ban[2] = {{1, -INFINITY}, {5, -INFINITY}};
    rf_sampler_spec biased[] = {rf_sampler_spec_logit_bias(ban, 2), rf_sampler_spec_greedy()};
    c = chain_of(0, biased, 2);
    ban[0].token = 0; /* the spec's list was copied when added */
    CHECK(rf_sampler_sample_logits(c, logits, 8, &tok) == RF_OK && tok == 2);
    rf_sampler_free(c);
    rf_logit_bias out_of_vocab = {100, 1.0f};
    rf_sampler_spec far[] = {rf_sampler_spec_logit_bias(&out_of_vocab, 1), rf_sampler_spec_greedy()};
    c = chain_of(0, far, 2);
    CHECK(rf_sampler_sample_logits(c, logits, 8, &tok) == RF_ERR_INVALID_ARG);
    rf_sampler_free(c);

    /* A context's logits: greedy through the chain is the argmax of the row. */
    rf_model_t *model = NULL;
    CHECK(rf_model_load(argv[1], NULL, &model) == RF_OK);
    rf_context_params cp = rf_context_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    rf_context_t *ctx = NULL;
    CHECK(rf_context_new(model, &cp, &ctx) == RF_OK);
    rf_batch_t *batch = NULL;
    CHECK(rf_batch_new(4, &batch) == RF_OK);
    const int32_t s0 = 0;
    for (int i = 0; i < 4; i++) CHECK(rf_batch_add(batch, 5 + i, i, &s0, 1, 1) == RF_OK);
    CHECK(rf_decode(ctx, batch) == RF_OK);
    const float *row = NULL;
    size_t nv = 0;
    CHECK(rf_logits(ctx, 2, &row, &nv) == RF_OK);
    int32_t best = 0;
    for (size_t t = 1; t < nv; t++)
        if (row[t] > row[best]) best = (int32_t)t;
    c = chain_of(0, &greedy, 1);
    CHECK(rf_sampler_sample(c, ctx, 2, &tok) == RF_OK && tok == best);
    CHECK(rf_sampler_sample(c, ctx, 4, &tok) == RF_ERR_INVALID_ARG); /* no such row */
    CHECK(rf_sampler_sample(c, NULL, 0, &tok) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_sample(NULL, ctx, 0, &tok) == RF_ERR_INVALID_ARG);
    CHECK(rf_sampler_sample(c, ctx, -1, NULL) == RF_ERR_INVALID_ARG);
    rf_sampler_free(c);

    /* DRY: the breakers are looked up in the model; bad arguments are refused. */
    const char *breakers[] = {"\n", ":", "\"", "*"};
    rf_sampler_spec d = rf_sampler_spec_dry(model, 0.8f, 1.75f, 2, 64, breakers, 4);
    c = chain_of(0, NULL, 0);
    CHECK(rf_sampler_chain_add(c, &d) == RF_OK);
    d = rf_sampler_spec_dry(NULL, 0.8f, 1.75f, 2, 64, breakers, 4);
    CHECK(rf_sampler_chain_add(c, &d) == RF_ERR_INVALID_ARG);
    d = rf_sampler_spec_dry(model, 0.8f, 1.75f, 2, 64, NULL, 4);
    CHECK(rf_sampler_chain_add(c, &d) == RF_ERR_INVALID_ARG);
    d = rf_sampler_spec_dry(model, 0.8f, 0.5f, 2, 64, breakers, 4);
    CHECK(rf_sampler_chain_add(c, &d) == RF_ERR_INVALID_ARG);
    d = rf_sampler_spec_dry(model, 0.8f, 1.75f, -1, 64, breakers, 4);
    CHECK(rf_sampler_chain_add(c, &d) == RF_ERR_INVALID_ARG);
    d = rf_sampler_spec_dry(model, 0.8f, 1.75f, 2, 64, NULL, 0); /* no breakers */
    CHECK(rf_sampler_chain_add(c, &d) == RF_OK);
    CHECK(rf_sampler_chain_add(c, &greedy) == RF_OK);
    for (int i = 0; i < 8; i++) CHECK(rf_sampler_accept(c, 5 + i % 4) == RF_OK);
    CHECK(rf_sampler_sample(c, ctx, -1, &tok) == RF_OK && tok >= 0 && tok < (int32_t)nv);
    rf_sampler_free(c);
    rf_batch_free(batch);
    rf_context_free(ctx);
    rf_model_free(model);
    printf("sampler_contract: %d checks passed\n", checks);
    return 0;
}
