"""Exceptions: one class per rf_status, each carrying the status and the library's message.

Every error status of the C API becomes an exception whose text is the call, the status
name and ``rf_last_error_message()``, read on the calling thread right after the call. The
three outcomes that are not errors in C (``RF_KV_FULL``, ``RF_ABORTED``, ``RF_BUSY``) are
exceptions here too, because a Python caller that ignores them must not go on as if the
call had worked; they derive from :class:`Outcome` so they can be caught together.
"""

from __future__ import annotations

from . import _ffi

OK = 0
KV_FULL = 1
ABORTED = 2
BUSY = 3
ERR_INVALID_ARG = -1
ERR_BUFFER_TOO_SMALL = -2
ERR_OVERFLOW = -3
ERR_IO = -4
ERR_MODEL_FORMAT = -5
ERR_UNSUPPORTED = -6
ERR_OOM = -7
ERR_DEVICE = -8
ERR_INTERNAL = -9
ERR_NOT_FOUND = -10


class RocmforgeError(Exception):
    """A call into the library did not succeed.

    Attributes: ``status`` (the rf_status value), ``message`` (rf_last_error_message, or
    the status's description when the library gave none) and ``call`` (the C function).
    """

    def __init__(self, call: str, status: int, message: str):
        self.call = call
        self.status = status
        self.message = message
        # The library's messages begin with the status's description already.
        name = _ffi.lib.rf_status_str(status).decode()
        super().__init__(f"{call}: {message or name}")


class Outcome(RocmforgeError):
    """A positive status: nothing went wrong and nothing changed, but the call did not do
    its work (the cache is full, a callback stopped it, the queue is full)."""


class KvCacheFull(Outcome):
    """RF_KV_FULL: no room in the KV cache for the batch; free sequences or decode fewer."""


class Aborted(Outcome):
    """RF_ABORTED: an abort or progress callback stopped the work; nothing is half-done."""


class Busy(Outcome):
    """RF_BUSY: the engine's queue is full; submit again later."""


class InvalidArgument(RocmforgeError, ValueError):
    """RF_ERR_INVALID_ARG: an argument the library refused (the message says which)."""


class BufferTooSmall(RocmforgeError):
    """RF_ERR_BUFFER_TOO_SMALL: an output buffer is too small."""


class Overflow(RocmforgeError, OverflowError):
    """RF_ERR_OVERFLOW: a size computed from the arguments overflows."""


class ModelIOError(RocmforgeError, OSError):
    """RF_ERR_IO: a file could not be opened or read."""


class ModelFormatError(RocmforgeError):
    """RF_ERR_MODEL_FORMAT: a model file is malformed (the message names where)."""


class Unsupported(RocmforgeError):
    """RF_ERR_UNSUPPORTED: valid, but not supported by this build or this model."""


class OutOfMemory(RocmforgeError, MemoryError):
    """RF_ERR_OOM: memory could not be allocated."""


class DeviceError(RocmforgeError):
    """RF_ERR_DEVICE: a GPU device or driver failed or is absent (the message says why)."""


class InternalError(RocmforgeError):
    """RF_ERR_INTERNAL: a bug in rocmforge; please report the message."""


class NotFound(RocmforgeError, LookupError):
    """RF_ERR_NOT_FOUND: a named item (metadata key, chat template) does not exist."""


class ClosedError(ValueError):
    """A handle was used after close() (or after its ``with`` block)."""


_BY_STATUS = {
    KV_FULL: KvCacheFull,
    ABORTED: Aborted,
    BUSY: Busy,
    ERR_INVALID_ARG: InvalidArgument,
    ERR_BUFFER_TOO_SMALL: BufferTooSmall,
    ERR_OVERFLOW: Overflow,
    ERR_IO: ModelIOError,
    ERR_MODEL_FORMAT: ModelFormatError,
    ERR_UNSUPPORTED: Unsupported,
    ERR_OOM: OutOfMemory,
    ERR_DEVICE: DeviceError,
    ERR_INTERNAL: InternalError,
    ERR_NOT_FOUND: NotFound,
}


def error(call: str, status: int) -> RocmforgeError:
    """The exception for ``status`` returned by ``call``, with this thread's last message."""
    raw = _ffi.lib.rf_last_error_message()
    message = raw.decode("utf-8", "replace") if raw else ""
    return _BY_STATUS.get(status, RocmforgeError)(call, status, message)


def check(call: str, status: int) -> None:
    """Raises the exception for ``status`` unless it is RF_OK."""
    if status != OK:
        raise error(call, status)
