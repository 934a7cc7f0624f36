"""Context (a KV cache and the decode loop) and Batch (the tokens of one decode)."""

from __future__ import annotations

import array
import codecs
import ctypes
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

from . import _ffi, errors
from ._handle import Handle
from .sampler import Sampler

lib = _ffi.lib

KV_TYPES = {"f16": 0, "f32": 1, "q8_0": 2}
NUMERICS = {"batch_invariant": 0, "llama_cpp": 1}


class Batch(Handle):
    """Tokens for one :meth:`Context.decode`, each with a position, its sequences and
    whether its logits are wanted."""

    _free = lib.rf_batch_free
    _what = "batch"

    def __init__(self, capacity: int):
        super().__init__(None)
        out = ctypes.POINTER(_ffi.Batch_t)()
        errors.check("rf_batch_new", lib.rf_batch_new(capacity, ctypes.byref(out)))
        self._ptr = out
        self.capacity = capacity
        self._len = 0

    def add(self, token: int, pos: int, seq_ids: Union[int, Sequence[int]] = 0, logits: bool = False) -> None:
        """Appends ``token`` at ``pos`` to the sequence(s) ``seq_ids``; ``logits`` asks for
        its output row. Token, position and sequence ids are checked by ``decode``."""
        ids = [seq_ids] if isinstance(seq_ids, int) else list(seq_ids)
        arr = (ctypes.c_int32 * len(ids))(*ids)
        errors.check("rf_batch_add", lib.rf_batch_add(self.ptr, token, pos, arr, len(ids), logits))
        self._len += 1

    def clear(self) -> None:
        """Removes every token (the capacity stays)."""
        lib.rf_batch_clear(self.ptr)
        self._len = 0

    def __len__(self) -> int:
        return self._len


@dataclass(frozen=True)
class KvStats:
    """The KV cache's block accounting (``rf_kv_get_stats``)."""

    block_size: int
    n_blocks_total: int
    n_blocks_used: int
    n_blocks_shared: int
    n_seqs: int
    bytes_total: int


class Context(Handle):
    """A decoding context: the KV cache, threads and buffers of one model.

    ``Context(model, n_ctx=4096, n_batch=512, n_seq_max=1, n_threads=0, kv_type="f16",
    numerics="batch_invariant", abort=None)``. ``numerics="llama_cpp"`` gives llama.cpp's
    logits bit for bit on x86-64. ``abort()`` is asked between layers of a decode;
    returning ``True`` stops it (:class:`Aborted`, the context as before), and an exception
    it raises stops it and is raised again from :meth:`decode`.

    Use from one thread at a time (a second thread's call fails with InvalidArgument
    instead of racing).
    """

    _free = lib.rf_context_free
    _what = "context"

    def __init__(
        self,
        model,
        *,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_seq_max: int = 1,
        n_threads: int = 0,
        kv_type: str = "f16",
        numerics: str = "batch_invariant",
        abort: Optional[Callable[[], bool]] = None,
    ):
        super().__init__(None)
        if kv_type not in KV_TYPES:
            raise ValueError(f"kv_type must be one of {sorted(KV_TYPES)}, not {kv_type!r}")
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {sorted(NUMERICS)}, not {numerics!r}")
        p = lib.rf_context_params_default()
        p.n_ctx, p.n_batch, p.n_seq_max, p.n_threads = n_ctx, n_batch, n_seq_max, n_threads
        p.kv_type = KV_TYPES[kv_type]
        p.numerics = NUMERICS[numerics]
        self._raised: list[BaseException] = []
        if abort is not None:

            def on_abort(_user: object) -> int:
                try:
                    return 1 if abort() else 0
                except BaseException as e:  # noqa: BLE001 - re-raised by decode
                    self._raised.append(e)
                    return 1

            # The library calls it during every decode: it lives as long as the context.
            self._abort_callback = _ffi.AbortCallback(on_abort)
            p.abort_callback = self._abort_callback
        out = ctypes.POINTER(_ffi.Context_t)()
        errors.check("rf_context_new", lib.rf_context_new(model.ptr, ctypes.byref(p), ctypes.byref(out)))
        self._ptr = out
        self.model = model
        self.n_ctx, self.n_batch, self.n_seq_max = n_ctx, n_batch, n_seq_max
        self._batch: Optional[Batch] = None

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
        super().close()

    # Decoding -------------------------------------------------------------------------

    def decode(self, batch: Batch) -> None:
        """Runs ``batch`` through the model, all or nothing. Raises :class:`KvCacheFull`
        (no room), :class:`Aborted` (the abort callback), :class:`InvalidArgument` (a bad
        batch); after any of them the cache is as before."""
        s = lib.rf_decode(self.ptr, batch.ptr)
        if self._raised:
            e, self._raised[:] = self._raised[0], []
            raise e
        errors.check("rf_decode", s)

    def decode_greedy(self, batch: Batch) -> None:
        """:meth:`decode` keeping only each output row's greedy token (:meth:`greedy_token`),
        not its logits: on a GPU only the tokens are copied back. :meth:`logits` raises
        :class:`InvalidArgument` until the next :meth:`decode`."""
        s = lib.rf_decode_greedy(self.ptr, batch.ptr)
        if self._raised:
            e, self._raised[:] = self._raised[0], []
            raise e
        errors.check("rf_decode_greedy", s)

    def greedy_token(self, i: int = -1) -> int:
        """The greedy token (highest logit, lowest id on ties) of output row ``i`` (-1: the
        last) of the last decode, :meth:`decode_greedy` or :meth:`decode`."""
        out = ctypes.c_int32()
        errors.check("rf_greedy_token", lib.rf_greedy_token(self.ptr, i, ctypes.byref(out)))
        return out.value

    def eval(self, tokens: Sequence[int], seq_id: int = 0, pos: Optional[int] = None) -> None:
        """Decodes ``tokens`` into sequence ``seq_id`` from ``pos`` (default: after what the
        sequence holds), ``n_batch`` at a time, asking for the last token's logits."""
        if not tokens:
            raise ValueError("eval needs at least one token")
        if pos is None:
            pos = self.kv_pos_range(seq_id)[1] + 1
        if self._batch is None:
            self._batch = Batch(self.n_batch)
        b = self._batch
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            b.clear()
            for j, t in enumerate(chunk):
                b.add(t, pos + start + j, seq_id, start + j == len(tokens) - 1)
            self.decode(b)

    def logits(self, i: int = -1, out=None) -> memoryview:
        """The logits of output row ``i`` (-1: the last) of the last decode, as a memoryview
        of float32 (``tolist()``, indexing, or ``numpy.frombuffer`` without a copy).

        The view is over a copy, so it stays valid after later decodes. Pass ``out`` (any
        writable float32 buffer of at least n_vocab items: ``array('f')``, a numpy array)
        to copy into it instead; the view is then over ``out``.
        """
        if out is None:
            out = array.array("f", bytes(4 * self.model.info.n_vocab))
        view = memoryview(out)
        if view.format != "f" or view.readonly or not view.c_contiguous:
            raise TypeError("out must be a writable, contiguous float32 ('f') buffer")
        n = view.nbytes // 4
        dst = (ctypes.c_float * n).from_buffer(view.cast("B"))
        errors.check("rf_logits_copy", lib.rf_logits_copy(self.ptr, i, dst, n))
        del dst
        return view

    # The KV cache ---------------------------------------------------------------------

    def kv_free(self, seq_id: int) -> None:
        """Empties sequence ``seq_id``, returning its blocks to the pool."""
        errors.check("rf_kv_free", lib.rf_kv_free(self.ptr, seq_id))

    def kv_remove(self, seq_id: int, p0: int = -1, p1: int = -1) -> None:
        """Drops positions ``[p0, p1)`` of a sequence (-1: from its start / to its end)."""
        errors.check("rf_kv_seq_remove", lib.rf_kv_seq_remove(self.ptr, seq_id, p0, p1))

    def kv_copy(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Makes ``dst`` share ``src``'s positions ``[p0, p1)`` (copy-on-write blocks)."""
        errors.check("rf_kv_seq_copy", lib.rf_kv_seq_copy(self.ptr, src, dst, p0, p1))

    def kv_keep(self, seq_id: int) -> None:
        """Drops every sequence but ``seq_id``."""
        errors.check("rf_kv_seq_keep", lib.rf_kv_seq_keep(self.ptr, seq_id))

    def kv_clear(self) -> None:
        """Empties every sequence."""
        errors.check("rf_kv_clear", lib.rf_kv_clear(self.ptr))

    def kv_pos_range(self, seq_id: int = 0) -> tuple[int, int]:
        """The first and last position ``seq_id`` holds; ``(-1, -1)`` when empty."""
        lo, hi = ctypes.c_int32(), ctypes.c_int32()
        errors.check(
            "rf_kv_seq_pos_range",
            lib.rf_kv_seq_pos_range(self.ptr, seq_id, ctypes.byref(lo), ctypes.byref(hi)),
        )
        return lo.value, hi.value

    def kv_stats(self) -> KvStats:
        s = _ffi.KvStats(struct_size=ctypes.sizeof(_ffi.KvStats))
        errors.check("rf_kv_get_stats", lib.rf_kv_get_stats(self.ptr, ctypes.byref(s)))
        return KvStats(s.block_size, s.n_blocks_total, s.n_blocks_used, s.n_blocks_shared, s.n_seqs, s.bytes_total)

    # Generation -----------------------------------------------------------------------

    def generate(
        self,
        prompt: Union[str, Sequence[int]],
        max_tokens: int = 128,
        sampler: Optional[Sampler] = None,
        stop: Iterable[str] = (),
        seq_id: int = 0,
    ) -> "TextStream":
        """Streams the continuation of ``prompt`` (text, tokenized with BOS and special
        tokens parsed, or token ids) as text pieces::

            for piece in ctx.generate("Once upon a time", max_tokens=64):
                print(piece, end="", flush=True)

        The prompt continues sequence ``seq_id`` (clear it first for a fresh start).
        Greedy unless a ``sampler`` is given. Generation ends at an end-of-generation
        token, after ``max_tokens``, or before the first ``stop`` string (none of which is
        emitted); the stream's ``finish_reason`` then says which ("stop" or "length").
        Pieces are whole UTF-8 characters."""
        tokens = self.model.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        return TextStream(self, tokens, max_tokens, sampler, tuple(stop), seq_id)


class TextStream:
    """The text pieces of one :meth:`Context.generate`; ``tokens`` (generated so far),
    ``finish_reason`` (None until the end, then "stop" or "length") and ``text()``."""

    def __init__(self, ctx: Context, prompt: list[int], max_tokens: int, sampler, stop, seq_id: int):
        self.tokens: list[int] = []
        self.finish_reason: Optional[str] = None
        self._it = self._run(ctx, prompt, max_tokens, sampler, stop, seq_id)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._it)

    def text(self) -> str:
        """Runs the rest of the generation and returns its text."""
        return "".join(self)

    def _run(self, ctx: Context, prompt, max_tokens, sampler, stop, seq_id) -> Iterator[str]:
        own = sampler is None
        if own:
            sampler = Sampler().greedy()
        try:
            for t in prompt:
                sampler.accept(t)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            held = StopFilter(stop)
            pending = prompt
            while True:
                if len(self.tokens) >= max_tokens:
                    self.finish_reason = "length"
                    break
                ctx.eval(pending, seq_id)
                tok = sampler.sample(ctx)
                sampler.accept(tok)
                if ctx.model.is_eog(tok):
                    self.finish_reason = "stop"
                    break
                self.tokens.append(tok)
                piece, stopped = held.push(decoder.decode(ctx.model.token_to_piece(tok)))
                if piece:
                    yield piece
                if stopped:
                    self.finish_reason = "stop"
                    return
                pending = [tok]
            tail, _ = held.push(decoder.decode(b"", final=True))
            tail += held.flush()
            if tail:
                yield tail
        finally:
            if own:
                sampler.close()


class StopFilter:
    """Holds back text that may be the start of a stop string, and cuts before the first
    stop string that appears."""

    def __init__(self, stop: Sequence[str]):
        self.stop = [s for s in stop if s]
        self.held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """What may be emitted after ``text``, and whether a stop string was reached."""
        buf = self.held + text
        hits = [i for i in (buf.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.held = ""
            return buf[: min(hits)], True
        keep = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self.held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out
