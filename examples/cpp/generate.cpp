// Greedy generation through the C++ wrapper (rocmforge.hpp): no manual frees, errors as
// exceptions. Usage: generate MODEL.gguf [PROMPT] [N_TOKENS]
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "rocmforge.hpp"

int main(int argc, char** argv) {
    if (argc < 2 || argc > 4) {
        std::fprintf(stderr, "usage: generate MODEL.gguf [PROMPT] [N_TOKENS]\n");
        return 2;
    }
    const std::string prompt = argc > 2 ? argv[2] : "The capital of France is";
    const long n_predict = argc > 3 ? std::strtol(argv[3], nullptr, 10) : 16;
    try {
        rf::ModelPtr model = rf::load_model(argv[1]);
        std::vector<int32_t> tokens = rf::tokenize(model.get(), prompt);
        if (tokens.empty()) throw std::runtime_error("the prompt has no tokens");
        rf_context_params cp = rf_context_params_default();
        cp.n_ctx = 512;
        cp.n_threads = 1;
        if (tokens.size() > cp.n_batch) cp.n_batch = static_cast<uint32_t>(tokens.size());
        rf::ContextPtr ctx = rf::new_context(model.get(), cp);
        rf::BatchPtr batch = rf::new_batch(tokens.size());
        rf::SamplerPtr sampler = rf::new_sampler({rf_sampler_spec_greedy()});
        const int32_t seq = 0;
        for (size_t i = 0; i < tokens.size(); i++)
            rf::check("rf_batch_add", rf_batch_add(batch.get(), tokens[i], static_cast<int32_t>(i),
                                                   &seq, 1, i + 1 == tokens.size()));
        std::cout << prompt;
        int32_t pos = static_cast<int32_t>(tokens.size());
        for (long step = 0; step < n_predict; step++) {
            rf::check("rf_decode", rf_decode(ctx.get(), batch.get()));
            int32_t next = 0;
            rf::check("rf_sampler_sample", rf_sampler_sample(sampler.get(), ctx.get(), -1, &next));
            if (rf_vocab_is_eog(model.get(), next)) break;
            std::cout << rf::piece(model.get(), next) << std::flush;
            rf_batch_clear(batch.get());
            rf::check("rf_batch_add", rf_batch_add(batch.get(), next, pos++, &seq, 1, 1));
        }
        std::cout << "\n";
        // A failure is an exception with the library's message; the handles free themselves.
        try {
            rf::load_model("/nonexistent/model.gguf");
        } catch (const rf::Error& e) {
            std::cerr << "expected: " << e.what() << "\n";
            if (e.status() != RF_ERR_IO) return 1;
        }
    } catch (const std::exception& e) {
        std::cerr << "generate: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
