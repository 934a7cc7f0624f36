"""Sampler: a chain of samplers that picks the next token from a row of logits."""

from __future__ import annotations

import ctypes
from typing import Iterable, Mapping, Optional

from . import _ffi, errors
from ._handle import Handle

lib = _ffi.lib

SEED_RANDOM = 2**64 - 1


def _float_view(logits):
    """A C float array over a float32 buffer (array('f'), memoryview, numpy float32)."""
    view = memoryview(logits)
    if view.format != "f" or not view.c_contiguous:
        raise TypeError("logits must be a contiguous buffer of float32 ('f')")
    n = view.nbytes // 4
    if view.readonly:
        return (ctypes.c_float * n).from_buffer_copy(view), n
    return (ctypes.c_float * n).from_buffer(view.cast("B")), n


class Sampler(Handle):
    """A sampler chain. Build it link by link, ending with a selector (:meth:`greedy` or
    :meth:`dist`); each method returns the chain::

        s = Sampler(seed=42).top_k(40).top_p(0.95).temperature(0.8).dist()

    or take the usual chain from :meth:`from_options`. ``seed=None`` draws one (read it
    back from :attr:`seed` to replay a run). Used by one thread at a time.
    """

    _free = lib.rf_sampler_free
    _what = "sampler"

    def __init__(self, seed: Optional[int] = None):
        super().__init__(None)
        params = lib.rf_sampler_chain_params_default()
        params.seed = SEED_RANDOM if seed is None else seed
        out = ctypes.POINTER(_ffi.Sampler_t)()
        errors.check("rf_sampler_chain_new", lib.rf_sampler_chain_new(ctypes.byref(params), ctypes.byref(out)))
        self._ptr = out

    @classmethod
    def from_options(
        cls,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: Optional[int] = None,
    ) -> "Sampler":
        """The chain llama.cpp's tools use: penalties, top-k, top-p, min-p, temperature and
        a seeded draw; ``temperature <= 0`` is greedy."""
        chain = cls(seed)
        if temperature <= 0:
            return chain.greedy()
        if repeat_penalty != 1.0:
            chain.penalties(repeat_last_n, repeat_penalty)
        return chain.top_k(top_k).top_p(top_p).min_p(min_p).temperature(temperature).dist()

    def _add(self, spec) -> "Sampler":
        errors.check("rf_sampler_chain_add", lib.rf_sampler_chain_add(self.ptr, ctypes.byref(spec)))
        return self

    def greedy(self) -> "Sampler":
        """The best candidate (ends the chain)."""
        return self._add(lib.rf_sampler_spec_greedy())

    def dist(self) -> "Sampler":
        """A seeded draw from the softmax of the candidates left (ends the chain)."""
        return self._add(lib.rf_sampler_spec_dist())

    def temperature(self, t: float) -> "Sampler":
        return self._add(lib.rf_sampler_spec_temperature(t))

    def top_k(self, k: int) -> "Sampler":
        return self._add(lib.rf_sampler_spec_top_k(k))

    def top_p(self, p: float, min_keep: int = 1) -> "Sampler":
        return self._add(lib.rf_sampler_spec_top_p(p, min_keep))

    def min_p(self, p: float, min_keep: int = 1) -> "Sampler":
        return self._add(lib.rf_sampler_spec_min_p(p, min_keep))

    def typical(self, p: float, min_keep: int = 1) -> "Sampler":
        return self._add(lib.rf_sampler_spec_typical(p, min_keep))

    def penalties(
        self, last_n: int = 64, repeat: float = 1.0, freq: float = 0.0, present: float = 0.0
    ) -> "Sampler":
        """Repeat, frequency and presence penalties over the last ``last_n`` accepted
        tokens (feed them with :meth:`accept`)."""
        return self._add(lib.rf_sampler_spec_penalties(last_n, repeat, freq, present))

    def logit_bias(self, biases: Mapping[int, float]) -> "Sampler":
        """Adds ``biases[token]`` to each token's logit (``float("-inf")`` bans it)."""
        arr = (_ffi.LogitBias * len(biases))(*[_ffi.LogitBias(t, b) for t, b in biases.items()])
        return self._add(lib.rf_sampler_spec_logit_bias(arr, len(biases)))

    def xtc(self, probability: float, threshold: float, min_keep: int = 1) -> "Sampler":
        return self._add(lib.rf_sampler_spec_xtc(probability, threshold, min_keep))

    def dry(
        self,
        model,
        multiplier: float = 0.8,
        base: float = 1.75,
        allowed_length: int = 2,
        last_n: int = 1024,
        breakers: Iterable[str] = ("\n", ":", '"', "*"),
    ) -> "Sampler":
        """DRY repetition penalty; ``breakers`` are looked up in ``model``'s vocabulary."""
        enc = [b.encode() for b in breakers]
        arr = (ctypes.c_char_p * len(enc))(*enc)
        spec = lib.rf_sampler_spec_dry(model.ptr, multiplier, base, allowed_length, last_n, arr, len(enc))
        return self._add(spec)

    # Use ------------------------------------------------------------------------------

    def sample(self, ctx, i: int = -1) -> int:
        """Samples output row ``i`` (-1: the last) of ``ctx``'s last decode. Does not
        accept the token: call :meth:`accept` with every token kept."""
        tok = ctypes.c_int32()
        errors.check("rf_sampler_sample", lib.rf_sampler_sample(self.ptr, ctx.ptr, i, ctypes.byref(tok)))
        return tok.value

    def sample_logits(self, logits) -> int:
        """Samples a caller's row of float32 logits (any buffer: array('f'), memoryview,
        numpy float32), one per vocabulary token."""
        arr, n = _float_view(logits)
        tok = ctypes.c_int32()
        errors.check(
            "rf_sampler_sample_logits",
            lib.rf_sampler_sample_logits(self.ptr, arr, n, ctypes.byref(tok)),
        )
        return tok.value

    def accept(self, token: int) -> None:
        """Records a kept token (generated or from the prompt) for the penalties."""
        errors.check("rf_sampler_accept", lib.rf_sampler_accept(self.ptr, token))

    def reset(self) -> None:
        """Back to the state after the last link was added: the generator at its seed."""
        errors.check("rf_sampler_reset", lib.rf_sampler_reset(self.ptr))

    @property
    def seed(self) -> int:
        """The seed in use (the drawn one when the chain was made with ``seed=None``)."""
        out = ctypes.c_uint64()
        errors.check("rf_sampler_get_seed", lib.rf_sampler_get_seed(self.ptr, ctypes.byref(out)))
        return out.value
