"""Model: a loaded GGUF file, its metadata, tokenizer and chat template."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

from . import _ffi, errors
from ._handle import Handle, read_bytes

lib = _ffi.lib

BACKENDS = {"auto": 0, "cpu": 1, "cuda": 2, "hip": 3}


@dataclass(frozen=True)
class ModelInfo:
    """What ``rf_model_describe`` reports."""

    architecture: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_params: int
    n_tensors: int
    file_size: int
    file_type: int
    file_type_name: str


@dataclass(frozen=True)
class VocabInfo:
    """The vocabulary's size and special tokens (-1 where the model has none)."""

    n_tokens: int
    bos: int
    eos: int
    eot: int
    pad: int
    add_bos: bool
    add_eos: bool


def _token_array(tokens: Sequence[int]):
    arr = (ctypes.c_int32 * len(tokens))()
    for i, t in enumerate(tokens):
        if not -(2**31) <= t < 2**31:
            raise errors.InvalidArgument(
                "token", errors.ERR_INVALID_ARG, f"token {t} is out of range"
            )
        arr[i] = t
    return arr


def chat_messages(messages: Iterable[Mapping[str, str]]):
    """A C array of rf_chat_message from ``[{"role": ..., "content": ...}, ...]``; the
    encoded strings are kept alive by the array (its ``_keep`` attribute)."""
    items = [(m["role"].encode(), m["content"].encode()) for m in messages]
    arr = (_ffi.ChatMessage * len(items))()
    for i, (role, content) in enumerate(items):
        arr[i].role = role
        arr[i].content = content
    arr._keep = items
    return arr


class Model(Handle):
    """A loaded model. Immutable and thread-safe: contexts and engines made from it may run
    on any threads, and they keep the model's memory alive after ``close()``.

    ``Model(path, backend="auto", n_gpu_layers=-1, device=0, vocab_only=False,
    progress=None)``. ``progress(fraction)`` is called while loading; returning ``False``
    cancels the load (:class:`Aborted`), and an exception it raises cancels it and is
    raised again from the constructor.
    """

    _free = lib.rf_model_free
    _what = "model"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        backend: str = "auto",
        n_gpu_layers: int = -1,
        device: int = 0,
        vocab_only: bool = False,
        progress: Optional[Callable[[float], Optional[bool]]] = None,
    ):
        super().__init__(None)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {backend!r}")
        params = lib.rf_model_params_default()
        params.backend = BACKENDS[backend]
        params.n_gpu_layers = n_gpu_layers
        params.device = device
        params.vocab_only = 1 if vocab_only else 0
        raised: list[BaseException] = []
        if progress is not None:

            def on_progress(fraction: float, _user: object) -> int:
                try:
                    return 0 if progress(fraction) is False else 1
                except BaseException as e:  # noqa: BLE001 - re-raised after the call
                    raised.append(e)
                    return 0

            # Held in a local for the whole call: the library calls it during the load.
            callback = _ffi.ProgressCallback(on_progress)
            params.progress_callback = callback
        out = ctypes.POINTER(_ffi.Model_t)()
        s = lib.rf_model_load(os.fsencode(path), ctypes.byref(params), ctypes.byref(out))
        if raised:
            raise raised[0]
        errors.check("rf_model_load", s)
        self._ptr = out
        self.path = os.fspath(path)
        self.info = self._describe()
        self.vocab = self._vocab_info()

    def _describe(self) -> ModelInfo:
        d = _ffi.ModelDesc(struct_size=ctypes.sizeof(_ffi.ModelDesc))
        errors.check("rf_model_describe", lib.rf_model_describe(self.ptr, ctypes.byref(d)))
        return ModelInfo(
            architecture=d.architecture.decode(),
            n_vocab=d.n_vocab,
            n_ctx_train=d.n_ctx_train,
            n_embd=d.n_embd,
            n_layer=d.n_layer,
            n_head=d.n_head,
            n_head_kv=d.n_head_kv,
            n_params=d.n_params,
            n_tensors=d.n_tensors,
            file_size=d.file_size,
            file_type=d.file_type,
            file_type_name=d.file_type_name.decode(),
        )

    def _vocab_info(self) -> VocabInfo:
        v = _ffi.VocabInfo(struct_size=ctypes.sizeof(_ffi.VocabInfo))
        errors.check("rf_vocab_get_info", lib.rf_vocab_get_info(self.ptr, ctypes.byref(v)))
        return VocabInfo(v.n_tokens, v.bos, v.eos, v.eot, v.pad, bool(v.add_bos), bool(v.add_eos))

    def __repr__(self) -> str:
        if self.closed:
            return "<rocmforge.Model closed>"
        i = self.info
        return f"<rocmforge.Model {i.architecture} {i.n_params / 1e6:.0f}M {i.file_type_name}>"

    # Metadata -------------------------------------------------------------------------

    def metadata(self) -> dict[str, str]:
        """Every metadata entry of the file, in file order, values rendered as text
        (numbers in decimal, arrays as ``[a, b, ...]``)."""
        n = ctypes.c_size_t()
        errors.check("rf_model_meta_count", lib.rf_model_meta_count(self.ptr, ctypes.byref(n)))
        out = {}
        for i in range(n.value):
            key = read_bytes("rf_model_meta_key", lib.rf_model_meta_key, self.ptr, i).decode()
            out[key] = self.meta(key)
        return out

    def meta(self, key: str) -> str:
        """One metadata value as text; :class:`NotFound` (a ``LookupError``) when absent."""
        raw = read_bytes("rf_model_meta_str", lib.rf_model_meta_str, self.ptr, key.encode())
        return raw.decode("utf-8", "replace")

    # Tokenizer ------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of ``text``: with ``add_special`` the BOS/EOS the model asks for, with
        ``parse_special`` control-token texts such as ``<|im_start|>`` as their tokens."""
        data = text.encode()
        n = ctypes.c_size_t()
        cap = len(data) + 8
        for _ in range(2):
            buf = (ctypes.c_int32 * cap)()
            s = lib.rf_vocab_tokenize(
                self.ptr, data, len(data), add_special, parse_special, buf, cap, ctypes.byref(n)
            )
            if s == errors.OK:
                return buf[: n.value]
            if s != errors.ERR_BUFFER_TOO_SMALL:
                raise errors.error("rf_vocab_tokenize", s)
            cap = n.value
        raise errors.error("rf_vocab_tokenize", errors.ERR_BUFFER_TOO_SMALL)

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (may end inside a UTF-8 character); control tokens give
        ``b""`` unless ``special``."""
        return read_bytes("rf_token_to_piece", lib.rf_token_to_piece, self.ptr, token, special)

    def detokenize_bytes(
        self, tokens: Sequence[int], remove_special: bool = False, unparse_special: bool = False
    ) -> bytes:
        """The bytes of ``tokens`` (see :meth:`detokenize`)."""
        arr = _token_array(tokens)
        return read_bytes(
            "rf_detokenize",
            lib.rf_detokenize,
            self.ptr,
            arr,
            len(tokens),
            remove_special,
            unparse_special,
            first=max(256, 8 * len(tokens)),
        )

    def detokenize(
        self, tokens: Sequence[int], remove_special: bool = False, unparse_special: bool = False
    ) -> str:
        """The text of ``tokens``; bytes that are not UTF-8 become U+FFFD."""
        return self.detokenize_bytes(tokens, remove_special, unparse_special).decode(
            "utf-8", "replace"
        )

    def is_eog(self, token: int) -> bool:
        """True for tokens that end generation (EOS, end of turn)."""
        return bool(lib.rf_vocab_is_eog(self.ptr, token))

    # Chat -----------------------------------------------------------------------------

    def apply_chat_template(
        self,
        messages: Iterable[Mapping[str, str]],
        add_generation_prompt: bool = True,
        template: Optional[str] = None,
    ) -> str:
        """Renders ``[{"role": ..., "content": ...}, ...]`` with the model's chat template
        (or ``template``, Jinja), opening the assistant's turn when asked.
        :class:`NotFound` when the model has no template and none is given."""
        arr = chat_messages(messages)
        raw = read_bytes(
            "rf_chat_apply_template",
            lib.rf_chat_apply_template,
            self.ptr,
            template.encode() if template is not None else None,
            arr,
            len(arr),
            add_generation_prompt,
            first=4096,
        )
        return raw.decode("utf-8", "replace")

    # Makers ---------------------------------------------------------------------------

    def context(self, **params):
        """A new :class:`~rocmforge.Context` on this model (``Context(model, **params)``)."""
        from .context import Context

        return Context(self, **params)

    def engine(self, **params):
        """A new :class:`~rocmforge.Engine` on this model (``Engine(model, **params)``)."""
        from .engine import Engine

        return Engine(self, **params)
