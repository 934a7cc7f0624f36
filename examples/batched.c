/* batched.c: several requests through the continuous-batching engine, read as they stream.
 *
 *   batched MODEL [-n N_PREDICT] [-t THREADS] [-s N_SEQ_MAX] [PROMPT ...]
 *
 * Submits every prompt at once (four built-in ones when none is given), then reads all of
 * them round-robin with rf_request_next, printing each piece as "[i] piece" the moment it
 * arrives. At the end it prints every request's whole text after a line
 * "--- request i: finish F, P prompt tokens, G generated", then the engine's counters.
 * Greedy decoding: each text is what the request gives alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rocmforge.h"

#define MAX_REQ 64

static const char *DEFAULT_PROMPTS[] = {
    "The capital of France is",
    "Once upon a time,",
    "def add(a, b):",
    "The three primary colors are",
};

static const char *finish_name(rf_finish_reason f) {
    switch (f) {
    case RF_FINISH_STOP: return "stop";
    case RF_FINISH_LENGTH: return "length";
    case RF_FINISH_CANCELLED: return "cancelled";
    case RF_FINISH_ERROR: return "error";
    default: return "none";
    }
}

static int fail(const char *what, rf_status s) {
    fprintf(stderr, "batched: %s: %s (%s)\n", what, rf_status_str(s), rf_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [-n N] [-t THREADS] [-s N_SEQ_MAX] [PROMPT ...]\n",
                argv[0]);
        return 2;
    }
    const char *path = argv[1];
    unsigned n_predict = 32, n_threads = 0, n_seq_max = 4;
    const char *prompts[MAX_REQ];
    size_t n_req = 0;
    for (int i = 2; i < argc; i++) {
        if ((!strcmp(argv[i], "-n") || !strcmp(argv[i], "-t") || !strcmp(argv[i], "-s")) &&
            i + 1 < argc) {
            unsigned v = (unsigned)strtoul(argv[i + 1], NULL, 10);
            if (argv[i][1] == 'n') n_predict = v;
            else if (argv[i][1] == 't') n_threads = v;
            else n_seq_max = v;
            i++;
        } else if (n_req < MAX_REQ) {
            prompts[n_req++] = argv[i];
        }
    }
    if (n_req == 0) {
        for (; n_req < sizeof DEFAULT_PROMPTS / sizeof *DEFAULT_PROMPTS; n_req++)
            prompts[n_req] = DEFAULT_PROMPTS[n_req];
    }

    rf_model_t *model = NULL;
    rf_status s = rf_model_load(path, NULL, &model);
    if (s != RF_OK) return fail("loading the model", s);

    rf_engine_params ep = rf_engine_params_default();
    ep.n_ctx = 2048;
    ep.n_seq_max = n_seq_max;
    ep.n_threads = n_threads;
    rf_engine_t *engine = NULL;
    s = rf_engine_new(model, &ep, &engine);
    if (s != RF_OK) {
        rf_model_free(model);
        return fail("starting the engine", s);
    }

    rf_request_t *reqs[MAX_REQ] = {0};
    char *texts[MAX_REQ] = {0};
    size_t lens[MAX_REQ] = {0};
    rf_finish_reason finish[MAX_REQ] = {0};
    int status = 0;
    for (size_t i = 0; i < n_req; i++) {
        rf_request r = rf_request_params_default();
        r.prompt = prompts[i];
        r.prompt_len = strlen(prompts[i]);
        r.max_tokens = n_predict;
        s = rf_engine_submit(engine, &r, &reqs[i]);
        if (s != RF_OK) {
            status = fail("submitting", s);
            goto done;
        }
        texts[i] = malloc(1);
        if (!texts[i]) {
            status = fail("allocating", RF_ERR_OOM);
            goto done;
        }
    }

    /* Round-robin: whatever each request has, without waiting long on any one. */
    for (size_t open = n_req; open > 0;) {
        for (size_t i = 0; i < n_req; i++) {
            if (finish[i] != RF_FINISH_NONE) continue;
            char buf[256];
            size_t len = 0;
            rf_finish_reason f = RF_FINISH_NONE;
            s = rf_request_next(reqs[i], buf, sizeof buf, &len, 5, &f);
            if (s != RF_OK) {
                status = fail("reading a request", s);
                goto done;
            }
            if (len > 0) {
                printf("[%zu] %.*s\n", i, (int)len, buf);
                char *grown = realloc(texts[i], lens[i] + len + 1);
                if (!grown) {
                    status = fail("allocating", RF_ERR_OOM);
                    goto done;
                }
                texts[i] = grown;
                memcpy(texts[i] + lens[i], buf, len);
                lens[i] += len;
            }
            if (f != RF_FINISH_NONE) {
                finish[i] = f;
                open--;
            }
        }
    }

    for (size_t i = 0; i < n_req; i++) {
        rf_request_stats st;
        st.struct_size = sizeof st;
        s = rf_request_get_stats(reqs[i], &st);
        if (s != RF_OK) {
            status = fail("request stats", s);
            goto done;
        }
        printf("--- request %zu: finish %s, %llu prompt tokens, %llu generated\n", i,
               finish_name(finish[i]), (unsigned long long)st.n_prompt_tokens,
               (unsigned long long)st.n_generated_tokens);
        fwrite(texts[i], 1, lens[i], stdout);
        printf("\n");
    }
    rf_engine_stats es;
    es.struct_size = sizeof es;
    s = rf_engine_get_stats(engine, &es);
    if (s != RF_OK) {
        status = fail("engine stats", s);
        goto done;
    }
    printf("=== engine: %llu submitted, %llu finished, %llu prompt tokens, %llu generated, "
           "%llu preemptions\n",
           (unsigned long long)es.n_submitted, (unsigned long long)es.n_finished,
           (unsigned long long)es.n_prompt_tokens, (unsigned long long)es.n_generated_tokens,
           (unsigned long long)es.n_preemptions);

done:
    for (size_t i = 0; i < n_req; i++) {
        rf_request_free(reqs[i]);
        free(texts[i]);
    }
    rf_engine_free(engine);
    rf_model_free(model);
    return status;
}
