// A header-only C++17 wrapper over the C API (example: copy it into your project). Handles are
// std::unique_ptr with the library's free functions as deleters, so nothing leaks on any path,
// and failures throw rf::Error carrying the status and rf_last_error_message().
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "rocmforge.h"

namespace rf {

class Error : public std::runtime_error {
public:
    Error(const char* call, rf_status status)
        : std::runtime_error(std::string(call) + ": " + rf_status_str(status) + ": " +
                             rf_last_error_message()),
          status_(status) {}
    rf_status status() const { return status_; }

private:
    rf_status status_;
};

// Throws unless `s` is RF_OK.
inline void check(const char* call, rf_status s) {
    if (s != RF_OK) throw Error(call, s);
}

template <class T, void (*Free)(T*)>
struct Deleter {
    void operator()(T* p) const { Free(p); }
};

using ModelPtr = std::unique_ptr<rf_model_t, Deleter<rf_model_t, rf_model_free>>;
using ContextPtr = std::unique_ptr<rf_context_t, Deleter<rf_context_t, rf_context_free>>;
using BatchPtr = std::unique_ptr<rf_batch_t, Deleter<rf_batch_t, rf_batch_free>>;
using SamplerPtr = std::unique_ptr<rf_sampler_t, Deleter<rf_sampler_t, rf_sampler_free>>;

inline ModelPtr load_model(const std::string& path) {
    rf_model_t* m = nullptr;
    check("rf_model_load", rf_model_load(path.c_str(), nullptr, &m));
    return ModelPtr(m);
}

inline ContextPtr new_context(const rf_model_t* model, const rf_context_params& params) {
    rf_context_t* c = nullptr;
    check("rf_context_new", rf_context_new(model, &params, &c));
    return ContextPtr(c);
}

inline BatchPtr new_batch(size_t capacity) {
    rf_batch_t* b = nullptr;
    check("rf_batch_new", rf_batch_new(capacity, &b));
    return BatchPtr(b);
}

// A chain of the given samplers, in order.
inline SamplerPtr new_sampler(std::initializer_list<rf_sampler_spec> specs) {
    rf_sampler_t* s = nullptr;
    check("rf_sampler_chain_new", rf_sampler_chain_new(nullptr, &s));
    SamplerPtr chain(s);
    for (const rf_sampler_spec& spec : specs)
        check("rf_sampler_chain_add", rf_sampler_chain_add(chain.get(), &spec));
    return chain;
}

// The two-call protocol: the size first, then an exact buffer.
inline std::vector<int32_t> tokenize(const rf_model_t* model, std::string_view text,
                                     bool add_special = true, bool parse_special = true) {
    size_t n = 0;
    rf_status s = rf_vocab_tokenize(model, text.data(), text.size(), add_special, parse_special,
                                    nullptr, 0, &n);
    if (s != RF_OK && s != RF_ERR_BUFFER_TOO_SMALL) throw Error("rf_vocab_tokenize", s);
    std::vector<int32_t> tokens(n);
    check("rf_vocab_tokenize", rf_vocab_tokenize(model, text.data(), text.size(), add_special,
                                                 parse_special, tokens.data(), tokens.size(), &n));
    tokens.resize(n);
    return tokens;
}

inline std::string piece(const rf_model_t* model, int32_t token) {
    size_t n = 0;
    rf_status s = rf_token_to_piece(model, token, 0, nullptr, 0, &n);
    if (s != RF_OK && s != RF_ERR_BUFFER_TOO_SMALL) throw Error("rf_token_to_piece", s);
    std::string out(n + 1, '\0');
    check("rf_token_to_piece", rf_token_to_piece(model, token, 0, out.data(), out.size(), &n));
    out.resize(n);
    return out;
}

}  // namespace rf
