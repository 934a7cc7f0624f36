"""What every wrapper shares: owning one C handle, and the two-call buffer protocol."""

from __future__ import annotations

import ctypes
import threading
from typing import Callable

from . import errors


class Handle:
    """Owns one C handle and frees it exactly once: on ``close()``, at the end of a ``with``
    block, or when garbage-collected. Using it after that raises :class:`ClosedError`."""

    _free: Callable[[object], None]
    _what = "handle"

    def __init__(self, ptr):
        self._ptr = ptr
        self._close_lock = threading.Lock()

    @property
    def ptr(self):
        """The C handle (for calls the wrapper does not cover); raises once closed."""
        if self._ptr is None:
            raise errors.ClosedError(f"this {self._what} is closed")
        return self._ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        """Frees the C handle now. Safe to call more than once."""
        with self._close_lock:
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            type(self)._free(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        # At interpreter exit the module may be half torn down; the process frees all.
        try:
            self.close()
        except Exception:
            pass


def read_bytes(call: str, fn: Callable[..., int], *args, first: int = 256) -> bytes:
    """Runs a call of the two-call protocol, ``fn(*args, buf, cap, &len)``: one try with a
    ``first``-byte buffer, and one with the exact size when that was too small."""
    n = ctypes.c_size_t(0)
    cap = first
    for _ in range(2):
        buf = ctypes.create_string_buffer(cap)
        s = fn(*args, buf, cap, ctypes.byref(n))
        if s == errors.OK:
            return buf.raw[: n.value]
        if s != errors.ERR_BUFFER_TOO_SMALL:
            raise errors.error(call, s)
        cap = n.value + 1  # room for the NUL that text calls add
    raise errors.error(call, errors.ERR_BUFFER_TOO_SMALL)
