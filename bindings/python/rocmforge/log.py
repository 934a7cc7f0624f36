"""Routing the library's log messages: to a function, to Python's logging, or the default."""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Callable, Optional

from . import _ffi

DEBUG, INFO, WARN, ERROR = 0, 1, 2, 3
_TO_LOGGING = {DEBUG: logging.DEBUG, INFO: logging.INFO, WARN: logging.WARNING, ERROR: logging.ERROR}

_lock = threading.Lock()
_installed: Optional[object] = None  # the ctypes callback the library holds


def set_log_callback(fn: Optional[Callable[[int, str], None]]) -> None:
    """Sends every log message of the library, from every thread, to ``fn(level, text)``
    (levels DEBUG 0, INFO 1, WARN 2, ERROR 3). ``None`` restores the default: warnings
    and errors to stderr. ``fn`` may be called from the library's threads, concurrently;
    what it raises is ignored (it is printed by ctypes)."""
    global _installed
    with _lock:
        if fn is None:
            _ffi.lib.rf_log_set(_ffi.LogCallback(), None)
            _installed = None
            return

        def on_log(level: int, text: bytes, _user: object) -> None:
            fn(level, text.decode("utf-8", "replace"))

        callback = _ffi.LogCallback(on_log)
        _ffi.lib.rf_log_set(callback, None)
        # Replaced only after the library holds the new one: the old one stays callable
        # until then.
        _installed = callback


def log_to_logging(logger: Optional[logging.Logger] = None) -> None:
    """Routes the library's messages to ``logger`` (default ``logging.getLogger("rocmforge")``)
    at the matching levels; configure the logger to choose what is shown."""
    target = logger or logging.getLogger("rocmforge")
    set_log_callback(lambda level, text: target.log(_TO_LOGGING.get(level, logging.INFO), text))


@atexit.register
def _restore_default() -> None:
    # A library thread must not call into an interpreter that is shutting down.
    if _installed is not None:
        _ffi.lib.rf_log_set(_ffi.LogCallback(), None)
