"""Engine (continuous batching over many requests) and Request (one submitted prompt)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Optional, Sequence

from . import _ffi, errors
from ._handle import Handle
from .context import NUMERICS
from .model import _token_array, chat_messages
from .sampler import Sampler

lib = _ffi.lib

FINISH = {0: None, 1: "stop", 2: "length", 3: "cancelled", 4: "error"}


@dataclass(frozen=True)
class RequestStats:
    """Counts and times (seconds from submission) of one request."""

    n_prompt_tokens: int
    n_cached_tokens: int
    n_generated_tokens: int
    n_preemptions: int
    queue_s: float
    first_token_s: float
    total_s: float
    finish_reason: Optional[str]


@dataclass(frozen=True)
class EngineStats:
    """What an engine is doing (``rf_engine_get_stats``)."""

    n_running: int
    n_waiting: int
    kv_blocks_used: int
    kv_blocks_cached: int
    kv_blocks_total: int
    n_submitted: int
    n_finished: int
    n_prompt_tokens: int
    n_generated_tokens: int
    n_preemptions: int
    n_prefix_hits: int
    n_cached_tokens: int


class Engine(Handle):
    """A continuous-batching engine: one worker thread decodes every running request
    together. Thread-safe: submit from any thread, read each request from any thread.

    ``Engine(model, n_ctx=4096, n_seq_max=8, n_batch=512, n_threads=0, max_queued=1024,
    numerics="batch_invariant", prefix_cache=True)``. Closing it cancels what still runs;
    requests stay readable.
    """

    _free = lib.rf_engine_free
    _what = "engine"

    def __init__(
        self,
        model,
        *,
        n_ctx: int = 4096,
        n_seq_max: int = 8,
        n_batch: int = 512,
        n_threads: int = 0,
        max_queued: int = 1024,
        numerics: str = "batch_invariant",
        prefix_cache: bool = True,
    ):
        super().__init__(None)
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {sorted(NUMERICS)}, not {numerics!r}")
        p = lib.rf_engine_params_default()
        p.n_ctx, p.n_seq_max, p.n_batch, p.n_threads = n_ctx, n_seq_max, n_batch, n_threads
        p.max_queued = max_queued
        p.numerics = NUMERICS[numerics]
        p.prefix_cache = 1 if prefix_cache else 0
        out = ctypes.POINTER(_ffi.Engine_t)()
        errors.check("rf_engine_new", lib.rf_engine_new(model.ptr, ctypes.byref(p), ctypes.byref(out)))
        self._ptr = out
        self.model = model

    def submit(
        self,
        prompt: Optional[str] = None,
        *,
        tokens: Optional[Sequence[int]] = None,
        messages: Optional[Iterable[Mapping[str, str]]] = None,
        max_tokens: int = 0,
        sampler: Optional[Sampler] = None,
        stop: Iterable[str] = (),
        ignore_eog: bool = False,
    ) -> "Request":
        """Queues a request given exactly one of ``prompt`` (text, tokenized with BOS and
        special tokens parsed), ``tokens`` or ``messages`` (chat messages rendered with the
        model's template, the assistant's turn opened). ``max_tokens`` 0: as many as the
        context leaves. ``sampler`` is copied (state and seed); None is greedy. With
        ``ignore_eog`` an end-of-generation token ends nothing (fixed-length runs). Raises
        :class:`Busy` when the queue is full."""
        if sum(x is not None for x in (prompt, tokens, messages)) != 1:
            raise ValueError("give exactly one of prompt, tokens or messages")
        r = lib.rf_request_params_default()
        keep: list[object] = []
        if prompt is not None:
            data = prompt.encode()
            r.prompt, r.prompt_len = data, len(data)
            keep.append(data)
        elif tokens is not None:
            arr = _token_array(tokens)
            r.tokens, r.n_tokens = arr, len(tokens)
            keep.append(arr)
        else:
            arr = chat_messages(messages)
            r.messages, r.n_messages = arr, len(arr)
            keep.append(arr)
        if sampler is not None:
            r.sampler = sampler.ptr
        r.max_tokens = max_tokens
        r.ignore_eog = 1 if ignore_eog else 0
        enc = [s.encode() for s in stop]
        if enc:
            arr = (ctypes.c_char_p * len(enc))(*enc)
            r.stop, r.n_stop = arr, len(enc)
            keep.append(arr)
        out = ctypes.POINTER(_ffi.Request_t)()
        errors.check("rf_engine_submit", lib.rf_engine_submit(self.ptr, ctypes.byref(r), ctypes.byref(out)))
        return Request(out)

    def generate(self, prompt: Optional[str] = None, **kwargs) -> str:
        """Submits a request (arguments as :meth:`submit`) and returns its whole text."""
        with self.submit(prompt, **kwargs) as req:
            return req.text()

    def stats(self) -> EngineStats:
        s = _ffi.EngineStats(struct_size=ctypes.sizeof(_ffi.EngineStats))
        errors.check("rf_engine_get_stats", lib.rf_engine_get_stats(self.ptr, ctypes.byref(s)))
        return EngineStats(*(getattr(s, f) for f, _ in _ffi.EngineStats._fields_[1:]))


class Request(Handle):
    """One submitted request. Iterate it for its text pieces (whole UTF-8 characters) as
    they are generated; ``finish_reason`` is None until the end, then "stop", "length" or
    "cancelled" (a failed decode raises its error from the iteration instead). Closing a
    running request cancels it."""

    _free = lib.rf_request_free
    _what = "request"

    def __init__(self, ptr):
        super().__init__(ptr)
        self.finish_reason: Optional[str] = None
        self._buf = ctypes.create_string_buffer(4096)

    def next_piece(self, timeout: Optional[float] = None) -> Optional[str]:
        """The next text, waiting up to ``timeout`` seconds (None: until there is some);
        ``""`` when the timeout passed; None once the request has ended."""
        if self.finish_reason is not None:
            return None
        ms = -1 if timeout is None else max(0, min(int(timeout * 1000), 2**31 - 1))
        n = ctypes.c_size_t()
        finish = ctypes.c_int32()
        s = lib.rf_request_next(self.ptr, self._buf, len(self._buf), ctypes.byref(n), ms, ctypes.byref(finish))
        errors.check("rf_request_next", s)
        if n.value:
            return self._buf.raw[: n.value].decode()
        if finish.value:
            self.finish_reason = FINISH.get(finish.value, "error")
            return None
        return ""

    def __iter__(self) -> Iterator[str]:
        while True:
            # Short waits: the library call holds no Python lock, and Ctrl-C gets through
            # between them.
            piece = self.next_piece(0.1)
            if piece is None:
                return
            if piece:
                yield piece

    def text(self) -> str:
        """Waits for the end and returns the text not yet read."""
        return "".join(self)

    def cancel(self) -> None:
        """Asks the engine to stop this request (it finishes "cancelled")."""
        errors.check("rf_request_cancel", lib.rf_request_cancel(self.ptr))

    def stats(self) -> RequestStats:
        s = _ffi.RequestStats(struct_size=ctypes.sizeof(_ffi.RequestStats))
        errors.check("rf_request_get_stats", lib.rf_request_get_stats(self.ptr, ctypes.byref(s)))
        return RequestStats(
            s.n_prompt_tokens,
            s.n_cached_tokens,
            s.n_generated_tokens,
            s.n_preemptions,
            s.queue_s,
            s.first_token_s,
            s.total_s,
            FINISH.get(s.finish, "error"),
        )
