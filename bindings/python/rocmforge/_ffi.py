"""The C ABI as ctypes sees it: the library, its structs and its function prototypes.

Only this module names C types. The struct layouts mirror include/rocmforge.h field for
field; at import every struct the library fills through a ``*_default()`` function is
checked against ``ctypes.sizeof`` so that a header and a library from different versions
fail at once, with a message, instead of corrupting memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

#: The header version these bindings were written for (``RF_VERSION_MAJOR.MINOR``). While
#: the major version is 0 a minor release may change the ABI, so both must match.
ABI_VERSION = (0, 1)

status = c_int32


class Model_t(Structure):
    pass


class Context_t(Structure):
    pass


class Batch_t(Structure):
    pass


class Sampler_t(Structure):
    pass


class Engine_t(Structure):
    pass


class Request_t(Structure):
    pass


AbortCallback = CFUNCTYPE(c_uint8, c_void_p)
ProgressCallback = CFUNCTYPE(c_uint8, c_float, c_void_p)
LogCallback = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)
PieceCallback = CFUNCTYPE(None, POINTER(c_char), c_size_t, c_int32, c_void_p)


class ContextParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_ctx", c_uint32),
        ("n_batch", c_uint32),
        ("n_seq_max", c_uint32),
        ("n_threads", c_uint32),
        ("kv_type", c_int32),
        ("abort_callback", AbortCallback),
        ("abort_callback_user_data", c_void_p),
        ("numerics", c_int32),
    ]


class KvStats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("block_size", c_uint32),
        ("n_blocks_total", c_uint64),
        ("n_blocks_used", c_uint64),
        ("n_blocks_shared", c_uint64),
        ("n_seqs", c_uint64),
        ("bytes_total", c_uint64),
    ]


class EngineParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_ctx", c_uint32),
        ("n_seq_max", c_uint32),
        ("n_batch", c_uint32),
        ("n_threads", c_uint32),
        ("max_queued", c_uint32),
        ("numerics", c_int32),
        ("prefix_cache", c_uint8),
    ]


class ChatMessage(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class Request(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("prompt", c_char_p),
        ("prompt_len", c_size_t),
        ("tokens", POINTER(c_int32)),
        ("n_tokens", c_size_t),
        ("messages", POINTER(ChatMessage)),
        ("n_messages", c_size_t),
        ("sampler", POINTER(Sampler_t)),
        ("max_tokens", c_uint32),
        ("stop", POINTER(c_char_p)),
        ("n_stop", c_size_t),
        ("on_piece", PieceCallback),
        ("user_data", c_void_p),
        ("ignore_eog", c_uint8),
    ]


class RequestStats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_prompt_tokens", c_uint64),
        ("n_cached_tokens", c_uint64),
        ("n_generated_tokens", c_uint64),
        ("n_preemptions", c_uint64),
        ("queue_s", c_double),
        ("first_token_s", c_double),
        ("total_s", c_double),
        ("finish", c_int32),
    ]


class EngineStats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_running", c_uint64),
        ("n_waiting", c_uint64),
        ("kv_blocks_used", c_uint64),
        ("kv_blocks_cached", c_uint64),
        ("kv_blocks_total", c_uint64),
        ("n_submitted", c_uint64),
        ("n_finished", c_uint64),
        ("n_prompt_tokens", c_uint64),
        ("n_generated_tokens", c_uint64),
        ("n_preemptions", c_uint64),
        ("n_prefix_hits", c_uint64),
        ("n_cached_tokens", c_uint64),
    ]


class ModelParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("progress_callback", ProgressCallback),
        ("progress_callback_user_data", c_void_p),
        ("vocab_only", c_uint8),
        ("backend", c_int32),
        ("device", c_int32),
        ("n_gpu_layers", c_int32),
    ]


class ModelDesc(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_vocab", c_uint32),
        ("n_ctx_train", c_uint32),
        ("n_embd", c_uint32),
        ("n_layer", c_uint32),
        ("n_head", c_uint32),
        ("n_head_kv", c_uint32),
        ("file_type", c_int32),
        ("n_params", c_uint64),
        ("file_size", c_uint64),
        ("n_tensors", c_uint64),
        ("architecture", c_char * 64),
        ("file_type_name", c_char * 32),
    ]


class SamplerChainParams(Structure):
    _fields_ = [("struct_size", c_uint32), ("seed", c_uint64)]


class LogitBias(Structure):
    _fields_ = [("token", c_int32), ("bias", c_float)]


class SamplerSpec(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("kind", c_int32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("p", c_float),
        ("min_keep", c_size_t),
        ("penalty_last_n", c_int32),
        ("penalty_repeat", c_float),
        ("penalty_freq", c_float),
        ("penalty_present", c_float),
        ("xtc_probability", c_float),
        ("xtc_threshold", c_float),
        ("logit_bias", POINTER(LogitBias)),
        ("n_logit_bias", c_size_t),
        ("dry_multiplier", c_float),
        ("dry_base", c_float),
        ("dry_allowed_length", c_int32),
        ("dry_last_n", c_int32),
        ("dry_model", POINTER(Model_t)),
        ("dry_breakers", POINTER(c_char_p)),
        ("n_dry_breakers", c_size_t),
    ]


class VocabInfo(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_tokens", c_int32),
        ("bos", c_int32),
        ("eos", c_int32),
        ("eot", c_int32),
        ("pad", c_int32),
        ("add_bos", c_uint8),
        ("add_eos", c_uint8),
    ]


P = POINTER
_PROTOTYPES = {
    # name: (restype, argtypes)
    "rf_context_params_default": (ContextParams, []),
    "rf_context_new": (status, [P(Model_t), P(ContextParams), P(P(Context_t))]),
    "rf_context_free": (None, [P(Context_t)]),
    "rf_batch_new": (status, [c_size_t, P(P(Batch_t))]),
    "rf_batch_add": (status, [P(Batch_t), c_int32, c_int32, P(c_int32), c_size_t, c_uint8]),
    "rf_batch_clear": (None, [P(Batch_t)]),
    "rf_batch_free": (None, [P(Batch_t)]),
    "rf_decode": (status, [P(Context_t), P(Batch_t)]),
    "rf_decode_greedy": (status, [P(Context_t), P(Batch_t)]),
    "rf_greedy_token": (status, [P(Context_t), c_int32, P(c_int32)]),
    "rf_logits": (status, [P(Context_t), c_int32, P(P(c_float)), P(c_size_t)]),
    "rf_logits_copy": (status, [P(Context_t), c_int32, c_void_p, c_size_t]),
    "rf_kv_free": (status, [P(Context_t), c_int32]),
    "rf_kv_seq_remove": (status, [P(Context_t), c_int32, c_int32, c_int32]),
    "rf_kv_seq_copy": (status, [P(Context_t), c_int32, c_int32, c_int32, c_int32]),
    "rf_kv_seq_keep": (status, [P(Context_t), c_int32]),
    "rf_kv_clear": (status, [P(Context_t)]),
    "rf_kv_seq_pos_range": (status, [P(Context_t), c_int32, P(c_int32), P(c_int32)]),
    "rf_kv_get_stats": (status, [P(Context_t), P(KvStats)]),
    "rf_engine_params_default": (EngineParams, []),
    "rf_engine_new": (status, [P(Model_t), P(EngineParams), P(P(Engine_t))]),
    "rf_engine_free": (None, [P(Engine_t)]),
    "rf_request_params_default": (Request, []),
    "rf_engine_submit": (status, [P(Engine_t), P(Request), P(P(Request_t))]),
    "rf_request_next": (
        status,
        [P(Request_t), c_void_p, c_size_t, P(c_size_t), c_int32, P(c_int32)],
    ),
    "rf_request_cancel": (status, [P(Request_t)]),
    "rf_request_get_stats": (status, [P(Request_t), P(RequestStats)]),
    "rf_engine_get_stats": (status, [P(Engine_t), P(EngineStats)]),
    "rf_request_free": (None, [P(Request_t)]),
    "rf_log_set": (None, [LogCallback, c_void_p]),
    "rf_model_params_default": (ModelParams, []),
    "rf_model_load": (status, [c_char_p, P(ModelParams), P(P(Model_t))]),
    "rf_model_free": (None, [P(Model_t)]),
    "rf_model_describe": (status, [P(Model_t), P(ModelDesc)]),
    "rf_model_meta_count": (status, [P(Model_t), P(c_size_t)]),
    "rf_model_meta_key": (status, [P(Model_t), c_size_t, c_void_p, c_size_t, P(c_size_t)]),
    "rf_model_meta_str": (status, [P(Model_t), c_char_p, c_void_p, c_size_t, P(c_size_t)]),
    "rf_sampler_chain_params_default": (SamplerChainParams, []),
    "rf_sampler_spec_greedy": (SamplerSpec, []),
    "rf_sampler_spec_dist": (SamplerSpec, []),
    "rf_sampler_spec_temperature": (SamplerSpec, [c_float]),
    "rf_sampler_spec_top_k": (SamplerSpec, [c_int32]),
    "rf_sampler_spec_top_p": (SamplerSpec, [c_float, c_size_t]),
    "rf_sampler_spec_min_p": (SamplerSpec, [c_float, c_size_t]),
    "rf_sampler_spec_typical": (SamplerSpec, [c_float, c_size_t]),
    "rf_sampler_spec_penalties": (SamplerSpec, [c_int32, c_float, c_float, c_float]),
    "rf_sampler_spec_logit_bias": (SamplerSpec, [P(LogitBias), c_size_t]),
    "rf_sampler_spec_xtc": (SamplerSpec, [c_float, c_float, c_size_t]),
    "rf_sampler_spec_dry": (
        SamplerSpec,
        [P(Model_t), c_float, c_float, c_int32, c_int32, P(c_char_p), c_size_t],
    ),
    "rf_sampler_chain_new": (status, [P(SamplerChainParams), P(P(Sampler_t))]),
    "rf_sampler_chain_add": (status, [P(Sampler_t), P(SamplerSpec)]),
    "rf_sampler_sample": (status, [P(Sampler_t), P(Context_t), c_int32, P(c_int32)]),
    "rf_sampler_sample_logits": (status, [P(Sampler_t), c_void_p, c_size_t, P(c_int32)]),
    "rf_sampler_accept": (status, [P(Sampler_t), c_int32]),
    "rf_sampler_reset": (status, [P(Sampler_t)]),
    "rf_sampler_get_seed": (status, [P(Sampler_t), P(c_uint64)]),
    "rf_sampler_free": (None, [P(Sampler_t)]),
    "rf_status_str": (c_char_p, [status]),
    "rf_last_error_message": (c_char_p, []),
    "rf_version": (c_char_p, []),
    "rf_vocab_tokenize": (
        status,
        [P(Model_t), c_char_p, c_size_t, c_uint8, c_uint8, P(c_int32), c_size_t, P(c_size_t)],
    ),
    "rf_token_to_piece": (
        status,
        [P(Model_t), c_int32, c_uint8, c_void_p, c_size_t, P(c_size_t)],
    ),
    "rf_detokenize": (
        status,
        [P(Model_t), P(c_int32), c_size_t, c_uint8, c_uint8, c_void_p, c_size_t, P(c_size_t)],
    ),
    "rf_vocab_get_info": (status, [P(Model_t), P(VocabInfo)]),
    "rf_vocab_is_eog": (c_uint8, [P(Model_t), c_int32]),
    "rf_chat_apply_template": (
        status,
        [P(Model_t), c_char_p, P(ChatMessage), c_size_t, c_uint8, c_void_p, c_size_t, P(c_size_t)],
    ),
}

# Structs the library fills through a *_default() function: their struct_size is the size
# the library was compiled with, which must be ctypes' size of the mirror above.
_SIZED_DEFAULTS = {
    "rf_context_params_default": ContextParams,
    "rf_engine_params_default": EngineParams,
    "rf_request_params_default": Request,
    "rf_model_params_default": ModelParams,
    "rf_sampler_chain_params_default": SamplerChainParams,
    "rf_sampler_spec_greedy": SamplerSpec,
}


def _candidates() -> list[str]:
    """Where the shared library may be, in the order they are tried."""
    name = {"darwin": "librocmforge.dylib", "win32": "rocmforge.dll"}.get(
        sys.platform, "librocmforge.so"
    )
    found = []
    env = os.environ.get("ROCMFORGE_LIBRARY")
    if env:
        # An explicit choice is the only one tried: a typo must not fall back silently.
        return [env]
    here = Path(__file__).resolve().parent
    found.append(str(here / name))  # a wheel or a copy that bundles the library
    system = ctypes.util.find_library("rocmforge")  # make install, ldconfig, LD_LIBRARY_PATH
    if system:
        found.append(system)
    # Run from a source checkout: bindings/python/rocmforge -> the crate's target folder.
    repo = here.parents[2]
    for profile in ("release", "debug"):
        found.append(str(repo / "target" / profile / name))
    return found


def _open() -> ctypes.CDLL:
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} (absent)")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError(
        "rocmforge: the shared library librocmforge was not found; build it with "
        "`cargo build --release` or install it with `make install`, or point "
        "ROCMFORGE_LIBRARY at it. Tried: " + "; ".join(tried)
    )


def _bind(lib: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"rocmforge: {lib._name} has no function {name}") from None
        fn.restype = restype
        fn.argtypes = argtypes


def _check_abi(lib: ctypes.CDLL) -> str:
    version = lib.rf_version().decode()
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) != ABI_VERSION:
        raise ImportError(
            f"rocmforge: {lib._name} is version {version}; these bindings are for "
            f"{ABI_VERSION[0]}.{ABI_VERSION[1]}.x"
        )
    for fn, struct in _SIZED_DEFAULTS.items():
        got = getattr(lib, fn)().struct_size
        if got != ctypes.sizeof(struct):
            raise ImportError(
                f"rocmforge: {struct.__name__} is {got} bytes in {lib._name} but "
                f"{ctypes.sizeof(struct)} in these bindings (mismatched versions)"
            )
    return version


lib = _open()
_bind(lib)
VERSION = _check_abi(lib)
LIBRARY_PATH = lib._name
