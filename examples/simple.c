/*
 * simple: generate text with the rocmforge C API. Loads a GGUF model, tokenizes the prompt,
 * decodes it as one batch, then samples one token at a time through a sampler chain and
 * prints each piece as soon as it is decoded. Greedy by default (temperature 0); with a
 * temperature above 0 the chain is top-k, top-p, temperature and a seeded draw, so the same
 * seed gives the same text.
 *
 *   cc -I include examples/simple.c -L target/release -lrocmforge -o simple
 *   ./simple MODEL.gguf [-p PROMPT] [-n N_PREDICT] [-t THREADS] [-c N_CTX]
 *            [--temp T] [--top-k K] [--top-p P] [--seed S] [--llama-cpp]
 *
 * --llama-cpp asks for llama.cpp's float order (RF_NUMERICS_LLAMA_CPP: its logits bit for
 * bit on x86-64) instead of rocmforge's batch-invariant default.
 *
 * The prompt is tokenized with the model's special tokens (BOS) and with control-token texts
 * such as <|im_start|> parsed. Output pieces are bytes: a piece may end inside a UTF-8
 * character, and the terminal sees the whole character once the next piece arrives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rocmforge.h"

static int fail(const char *what, rf_status s) {
    fprintf(stderr, "simple: %s failed: %s (%d): %s\n", what, rf_status_str(s), (int)s,
            rf_last_error_message());
    return 1;
}

static int usage(void) {
    fprintf(stderr, "usage: simple MODEL.gguf [-p PROMPT] [-n N_PREDICT] [-t THREADS] [-c N_CTX]\n"
                    "              [--temp T (0: greedy)] [--top-k K (40; 0: off)]\n"
                    "              [--top-p P (0.95; 1: off)] [--seed S (random)] [--llama-cpp]\n");
    return 2;
}

/* Parses a non-negative decimal option value. */
static int parse_count(const char *s, long max, long *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 0 || v > max) return 0;
    *out = v;
    return 1;
}

/* Parses a finite float option value within [lo, hi]. */
static int parse_float(const char *s, float lo, float hi, float *out) {
    char *end = NULL;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

/* Parses a decimal 64-bit seed. */
static int parse_seed(const char *s, uint64_t *out) {
    char *end = NULL;
    if (*s == '-') return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0') return 0;
    *out = (uint64_t)v;
    return 1;
}

/* The sampler chain: greedy for temperature 0, else top-k, top-p, temperature, draw. */
static rf_status make_chain(float temp, long top_k, float top_p, uint64_t seed,
                            rf_sampler_t **out) {
    rf_sampler_chain_params p = rf_sampler_chain_params_default();
    p.seed = seed;
    rf_status s = rf_sampler_chain_new(&p, out);
    if (s != RF_OK) return s;
    rf_sampler_spec specs[4];
    size_t n = 0;
    if (temp <= 0.0f) {
        specs[n++] = rf_sampler_spec_greedy();
    } else {
        specs[n++] = rf_sampler_spec_top_k((int32_t)top_k);
        specs[n++] = rf_sampler_spec_top_p(top_p, 1);
        specs[n++] = rf_sampler_spec_temperature(temp);
        specs[n++] = rf_sampler_spec_dist();
    }
    for (size_t i = 0; i < n && s == RF_OK; i++) s = rf_sampler_chain_add(*out, &specs[i]);
    return s;
}

/* Prints one token's bytes (control tokens print nothing). */
static rf_status print_piece(const rf_model_t *model, int32_t token) {
    char piece[256];
    size_t len = 0;
    rf_status s = rf_token_to_piece(model, token, 0, piece, sizeof piece, &len);
    if (s == RF_ERR_BUFFER_TOO_SMALL) {
        char *big = malloc(len);
        if (!big) return RF_ERR_OOM;
        s = rf_token_to_piece(model, token, 0, big, len, &len);
        if (s == RF_OK) fwrite(big, 1, len, stdout);
        free(big);
        return s;
    }
    if (s == RF_OK) fwrite(piece, 1, len, stdout);
    return s;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    const char *prompt = "The capital of France is";
    long n_predict = 32, n_threads = 0, n_ctx = 2048, top_k = 40;
    float temp = 0.0f, top_p = 0.95f;
    uint64_t seed = RF_SEED_RANDOM;
    rf_numerics numerics = RF_NUMERICS_BATCH_INVARIANT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (path) return usage();
            path = a;
        } else if (!strcmp(a, "--llama-cpp")) {
            numerics = RF_NUMERICS_LLAMA_CPP;
        } else if (i + 1 >= argc) {
            return usage();
        } else if (!strcmp(a, "-p")) {
            prompt = argv[++i];
        } else if (!strcmp(a, "-n")) {
            if (!parse_count(argv[++i], 1 << 20, &n_predict)) return usage();
        } else if (!strcmp(a, "-t")) {
            if (!parse_count(argv[++i], 1024, &n_threads)) return usage();
        } else if (!strcmp(a, "-c")) {
            if (!parse_count(argv[++i], 1 << 24, &n_ctx) || n_ctx == 0) return usage();
        } else if (!strcmp(a, "--temp")) {
            if (!parse_float(argv[++i], 0.0f, 100.0f, &temp)) return usage();
        } else if (!strcmp(a, "--top-k")) {
            if (!parse_count(argv[++i], 1 << 30, &top_k)) return usage();
        } else if (!strcmp(a, "--top-p")) {
            if (!parse_float(argv[++i], 0.0f, 1.0f, &top_p)) return usage();
        } else if (!strcmp(a, "--seed")) {
            if (!parse_seed(argv[++i], &seed)) return usage();
        } else {
            return usage();
        }
    }
    if (!path) return usage();

    int rc = 1;
    rf_model_t *model = NULL;
    rf_context_t *ctx = NULL;
    rf_batch_t *batch = NULL;
    rf_sampler_t *chain = NULL;
    int32_t *tokens = NULL;

    rf_status s = rf_model_load(path, NULL, &model);
    if (s != RF_OK) return fail("rf_model_load", s);

    /* Tokenize: ask for the count, then fill an exact buffer. */
    size_t n_prompt = 0;
    s = rf_vocab_tokenize(model, prompt, strlen(prompt), 1, 1, NULL, 0, &n_prompt);
    if (s != RF_OK && s != RF_ERR_BUFFER_TOO_SMALL) { rc = fail("rf_vocab_tokenize", s); goto out; }
    if (n_prompt == 0) { fprintf(stderr, "simple: the prompt has no tokens\n"); goto out; }
    tokens = malloc(n_prompt * sizeof *tokens);
    if (!tokens) { fprintf(stderr, "simple: out of memory\n"); goto out; }
    s = rf_vocab_tokenize(model, prompt, strlen(prompt), 1, 1, tokens, n_prompt, &n_prompt);
    if (s != RF_OK) { rc = fail("rf_vocab_tokenize", s); goto out; }

    rf_context_params cp = rf_context_params_default();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = n_prompt > cp.n_batch ? (uint32_t)n_prompt : cp.n_batch;
    cp.n_threads = (uint32_t)n_threads; /* 0: every available core */
    cp.numerics = numerics;
    s = rf_context_new(model, &cp, &ctx);
    if (s != RF_OK) { rc = fail("rf_context_new", s); goto out; }
    s = rf_batch_new(n_prompt, &batch);
    if (s != RF_OK) { rc = fail("rf_batch_new", s); goto out; }
    s = make_chain(temp, top_k, top_p, seed, &chain);
    if (s != RF_OK) { rc = fail("the sampler chain", s); goto out; }
    if (temp > 0.0f && seed == RF_SEED_RANDOM) {
        s = rf_sampler_get_seed(chain, &seed);
        if (s != RF_OK) { rc = fail("rf_sampler_get_seed", s); goto out; }
        fprintf(stderr, "simple: seed %llu\n", (unsigned long long)seed);
    }

    /* The whole prompt in one batch, logits for its last token only. */
    const int32_t seq = 0;
    for (size_t i = 0; i < n_prompt; i++) {
        s = rf_batch_add(batch, tokens[i], (int32_t)i, &seq, 1, i + 1 == n_prompt);
        if (s != RF_OK) { rc = fail("rf_batch_add", s); goto out; }
        (void)rf_sampler_accept(chain, tokens[i]); /* the prompt counts for penalties */
    }
    fputs(prompt, stdout);
    fflush(stdout);
    int32_t pos = (int32_t)n_prompt;
    for (long step = 0; step < n_predict; step++) {
        s = rf_decode(ctx, batch);
        if (s != RF_OK) { rc = fail("rf_decode", s); goto out; }
        int32_t next = 0;
        s = rf_sampler_sample(chain, ctx, -1, &next);
        if (s != RF_OK) { rc = fail("rf_sampler_sample", s); goto out; }
        (void)rf_sampler_accept(chain, next); /* valid tokens: cannot fail */
        if (rf_vocab_is_eog(model, next)) break;
        s = print_piece(model, next);
        if (s != RF_OK) { rc = fail("rf_token_to_piece", s); goto out; }
        fflush(stdout);
        rf_batch_clear(batch);
        s = rf_batch_add(batch, next, pos++, &seq, 1, 1);
        if (s != RF_OK) { rc = fail("rf_batch_add", s); goto out; }
    }
    fputc('\n', stdout);
    rc = 0;
out:
    rf_sampler_free(chain);
    rf_batch_free(batch);
    rf_context_free(ctx);
    rf_model_free(model);
    free(tokens);
    return rc;
}
