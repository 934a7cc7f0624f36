/*
 * chat: a conversation with a model through its chat template, the answer streamed as it is
 * decoded. One line of standard input is one user turn; an empty line or the end of input
 * ends the chat.
 *
 *   cc -I include examples/chat.c -L target/release -lrocmforge -o chat
 *   ./chat MODEL.gguf [-s SYSTEM] [-n N_PREDICT] [-t THREADS] [-c N_CTX] [--temp T] [--seed S]
 *
 * Each turn renders the whole conversation with rf_chat_apply_template (the model's own
 * template; ChatML when the file has none, with a note on stderr), tokenizes it, and decodes
 * only the tokens after what the KV cache already holds: the cache keeps the longest common
 * prefix of the previous rendering (rf_kv_seq_remove cuts the rest), so a long conversation
 * is not recomputed every turn. The answer is sampled token by token (greedy by default;
 * with --temp, min-p 0.05, the temperature and a seeded draw) and printed piece by piece
 * until an end-of-generation token or N_PREDICT tokens, then a newline. The answer's text
 * becomes the assistant's message of the next rendering (bytes that are not UTF-8, as an
 * answer cut inside a character leaves, become U+FFFD: templates take UTF-8 only).
 */
#define _POSIX_C_SOURCE 200809L /* getline, strdup, isatty */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rocmforge.h"

/* ChatML, for models whose file carries no template. */
static const char *CHATML =
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
    "}}{% endif %}";

typedef struct {
    char *data;
    size_t len, cap;
} text_buf;

/* Appends n bytes; 0 when memory runs out. */
static int append(text_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->data, cap);
        if (!p) return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 1;
}

typedef struct {
    rf_chat_message *msgs;
    size_t n, cap;
} chat;

/* Appends a message, taking ownership of content (a malloc'd string); 0 when out of memory. */
static int push(chat *c, const char *role, char *content) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        rf_chat_message *p = realloc(c->msgs, cap * sizeof *p);
        if (!p) return 0;
        c->msgs = p;
        c->cap = cap;
    }
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = content;
    c->n++;
    return 1;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
               : s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (len == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
    if (len == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
    return len;
}

/* A malloc'd copy of s[0..n) as valid UTF-8 (templates take only UTF-8): each byte that
 * starts no valid sequence becomes U+FFFD, as a model's raw byte tokens or an answer cut
 * inside a character can leave. */
static char *utf8_copy(const char *s, size_t n) {
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq((const unsigned char *)s + i, n - i);
        if (len) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static int fail(const char *what, rf_status s) {
    fprintf(stderr, "chat: %s failed: %s (%d): %s\n", what, rf_status_str(s), (int)s,
            rf_last_error_message());
    return 1;
}

static int usage(void) {
    fprintf(stderr, "usage: chat MODEL.gguf [-s SYSTEM] [-n N_PREDICT (256)] [-t THREADS]\n"
                    "            [-c N_CTX (4096)] [--temp T (0: greedy)] [--seed S]\n");
    return 2;
}

static int parse_count(const char *s, long max, long *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 0 || v > max) return 0;
    *out = v;
    return 1;
}

/* Renders the conversation into *out (malloc'd), the assistant's turn opened. */
static rf_status render(const rf_model_t *model, const char *tmpl, const chat *c, char **out) {
    size_t len = 0;
    rf_status s = rf_chat_apply_template(model, tmpl, c->msgs, c->n, 1, NULL, 0, &len);
    if (s != RF_OK && s != RF_ERR_BUFFER_TOO_SMALL) return s;
    char *buf = malloc(len + 1);
    if (!buf) return RF_ERR_OOM;
    s = rf_chat_apply_template(model, tmpl, c->msgs, c->n, 1, buf, len + 1, &len);
    if (s != RF_OK) {
        free(buf);
        return s;
    }
    *out = buf;
    return RF_OK;
}

/* Tokenizes text into *out (malloc'd, *n tokens): BOS as the model asks, control tokens parsed. */
static rf_status tokenize(const rf_model_t *model, const char *text, int32_t **out, size_t *n) {
    size_t len = strlen(text);
    rf_status s = rf_vocab_tokenize(model, text, len, 1, 1, NULL, 0, n);
    if (s != RF_OK && s != RF_ERR_BUFFER_TOO_SMALL) return s;
    int32_t *t = malloc((*n ? *n : 1) * sizeof *t);
    if (!t) return RF_ERR_OOM;
    s = rf_vocab_tokenize(model, text, len, 1, 1, t, *n, n);
    if (s != RF_OK) {
        free(t);
        return s;
    }
    *out = t;
    return RF_OK;
}

/* Decodes tokens[0..n) at positions pos.. of sequence 0, n_batch at a time, the last with
 * logits. */
static rf_status feed(rf_context_t *ctx, rf_batch_t *batch, size_t n_batch, const int32_t *tokens,
                      size_t n, int32_t pos) {
    const int32_t seq = 0;
    for (size_t start = 0; start < n; start += n_batch) {
        size_t end = start + n_batch < n ? start + n_batch : n;
        rf_batch_clear(batch);
        for (size_t i = start; i < end; i++) {
            rf_status s = rf_batch_add(batch, tokens[i], pos + (int32_t)i, &seq, 1, i + 1 == n);
            if (s != RF_OK) return s;
        }
        rf_status s = rf_decode(ctx, batch);
        if (s != RF_OK) return s;
    }
    return RF_OK;
}

int main(int argc, char **argv) {
    const char *path = NULL, *system_prompt = NULL;
    long n_predict = 256, n_threads = 0, n_ctx = 4096;
    float temp = 0.0f;
    uint64_t seed = RF_SEED_RANDOM;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (path) return usage();
            path = a;
        } else if (i + 1 >= argc) {
            return usage();
        } else if (!strcmp(a, "-s")) {
            system_prompt = argv[++i];
        } else if (!strcmp(a, "-n")) {
            if (!parse_count(argv[++i], 1 << 20, &n_predict) || n_predict == 0) return usage();
        } else if (!strcmp(a, "-t")) {
            if (!parse_count(argv[++i], 1024, &n_threads)) return usage();
        } else if (!strcmp(a, "-c")) {
            if (!parse_count(argv[++i], 1 << 24, &n_ctx) || n_ctx == 0) return usage();
        } else if (!strcmp(a, "--temp")) {
            char *end = NULL;
            temp = strtof(argv[++i], &end);
            if (*end != '\0' || !(temp >= 0.0f && temp <= 100.0f)) return usage();
        } else if (!strcmp(a, "--seed")) {
            char *end = NULL;
            const char *v = argv[++i];
            seed = (uint64_t)strtoull(v, &end, 10);
            if (*v == '-' || end == v || *end != '\0') return usage();
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
    chat conv = {0};
    int32_t *cached = NULL; /* the tokens the cache holds, in order */
    size_t n_cached = 0;
    char *line = NULL;
    size_t line_cap = 0;
    text_buf answer = {0};
    rf_status s = rf_model_load(path, NULL, &model);
    if (s != RF_OK) return fail("rf_model_load", s);

    const char *tmpl = NULL; /* the model's own */
    size_t probe = 0;
    s = rf_chat_apply_template(model, NULL, NULL, 0, 1, NULL, 0, &probe);
    if (s == RF_ERR_NOT_FOUND) {
        fprintf(stderr, "chat: the model has no chat template; using ChatML\n");
        tmpl = CHATML;
    }

    rf_context_params cp = rf_context_params_default();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_threads = (uint32_t)n_threads;
    s = rf_context_new(model, &cp, &ctx);
    if (s != RF_OK) { rc = fail("rf_context_new", s); goto out; }
    s = rf_batch_new(cp.n_batch, &batch);
    if (s != RF_OK) { rc = fail("rf_batch_new", s); goto out; }
    rf_sampler_chain_params sp = rf_sampler_chain_params_default();
    sp.seed = seed;
    s = rf_sampler_chain_new(&sp, &chain);
    if (s != RF_OK) { rc = fail("rf_sampler_chain_new", s); goto out; }
    rf_sampler_spec specs[3];
    size_t n_specs = 0;
    if (temp <= 0.0f) {
        specs[n_specs++] = rf_sampler_spec_greedy();
    } else {
        specs[n_specs++] = rf_sampler_spec_min_p(0.05f, 1);
        specs[n_specs++] = rf_sampler_spec_temperature(temp);
        specs[n_specs++] = rf_sampler_spec_dist();
    }
    for (size_t i = 0; i < n_specs; i++) {
        s = rf_sampler_chain_add(chain, &specs[i]);
        if (s != RF_OK) { rc = fail("rf_sampler_chain_add", s); goto out; }
    }
    if (system_prompt) {
        char *copy = strdup(system_prompt);
        if (!copy || !push(&conv, "system", copy)) { free(copy); goto oom; }
    }

    const int tty = isatty(0) && isatty(1);
    for (;;) {
        if (tty) {
            fputs("\x1b[32m> \x1b[0m", stdout);
            fflush(stdout);
        }
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got <= 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got == 0) break;
        char *user = utf8_copy(line, (size_t)got);
        if (!user || !push(&conv, "user", user)) { free(user); goto oom; }

        char *rendered = NULL;
        s = render(model, tmpl, &conv, &rendered);
        if (s != RF_OK) { rc = fail("rf_chat_apply_template", s); goto out; }
        int32_t *all = NULL;
        size_t n_all = 0;
        s = tokenize(model, rendered, &all, &n_all);
        free(rendered);
        if (s != RF_OK) { rc = fail("rf_vocab_tokenize", s); goto out; }
        if (n_all == 0) {
            free(all);
            fprintf(stderr, "chat: the template rendered no tokens\n");
            goto out;
        }
        if (n_all + (size_t)n_predict > (size_t)n_ctx) {
            free(all);
            fprintf(stderr, "chat: the conversation no longer fits the context (raise -c)\n");
            goto out;
        }
        /* Keep the cached prefix this rendering shares; decode at least one token. */
        size_t same = 0;
        while (same < n_cached && same < n_all && cached[same] == all[same]) same++;
        if (same == n_all) same--;
        s = rf_kv_seq_remove(ctx, 0, (int32_t)same, -1);
        if (s == RF_OK) s = feed(ctx, batch, cp.n_batch, all + same, n_all - same, (int32_t)same);
        if (s != RF_OK) { free(all); rc = fail("decoding the turn", s); goto out; }
        (void)rf_sampler_reset(chain);
        for (size_t i = 0; i < n_all; i++) (void)rf_sampler_accept(chain, all[i]);
        /* The cache now holds this rendering; room for the answer's tokens after it. */
        free(cached);
        cached = all;
        n_cached = n_all;
        int32_t *grown = realloc(cached, (n_all + (size_t)n_predict) * sizeof *cached);
        if (!grown) goto oom;
        cached = grown;

        /* The answer, streamed. */
        answer.len = 0;
        if (!append(&answer, "", 0)) goto oom;
        for (long step = 0; step < n_predict; step++) {
            int32_t next = 0;
            s = rf_sampler_sample(chain, ctx, -1, &next);
            if (s != RF_OK) { rc = fail("rf_sampler_sample", s); goto out; }
            (void)rf_sampler_accept(chain, next);
            if (rf_vocab_is_eog(model, next)) break;
            char piece[256];
            size_t len = 0;
            s = rf_token_to_piece(model, next, 0, piece, sizeof piece, &len);
            if (s != RF_OK) { rc = fail("rf_token_to_piece", s); goto out; }
            fwrite(piece, 1, len, stdout);
            fflush(stdout);
            if (!append(&answer, piece, len)) goto oom;
            cached[n_cached] = next;
            s = feed(ctx, batch, cp.n_batch, &next, 1, (int32_t)n_cached);
            if (s != RF_OK) { rc = fail("rf_decode", s); goto out; }
            n_cached++;
        }
        fputc('\n', stdout);
        fflush(stdout);
        char *reply = utf8_copy(answer.data, answer.len);
        if (!reply || !push(&conv, "assistant", reply)) { free(reply); goto oom; }
    }
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "chat: out of memory\n");
out:
    for (size_t i = 0; i < conv.n; i++) free((char *)conv.msgs[i].content);
    free(conv.msgs);
    free(cached);
    free(line);
    free(answer.data);
    rf_sampler_free(chain);
    rf_batch_free(batch);
    rf_context_free(ctx);
    rf_model_free(model);
    return rc;
}
