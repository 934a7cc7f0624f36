"""rocmforge: LLM inference from GGUF files, through the library's C API (ctypes; no
compiled extension, no numpy).

    import rocmforge as rf

    with rf.Model("SmolLM2-135M-Instruct.Q4_1.gguf") as model, model.context() as ctx:
        for piece in ctx.generate("The capital of France is", max_tokens=32):
            print(piece, end="", flush=True)

The shared library is found through ``ROCMFORGE_LIBRARY`` (a path), next to this package,
on the system's library path (``make install``), or in the source checkout's
``target/release``. docs/PYTHON.md is the guide.
"""

from ._ffi import LIBRARY_PATH, VERSION
from .context import Batch, Context, KvStats, TextStream
from .engine import Engine, EngineStats, Request, RequestStats
from .errors import (
    Aborted,
    BufferTooSmall,
    Busy,
    ClosedError,
    DeviceError,
    InternalError,
    InvalidArgument,
    KvCacheFull,
    ModelFormatError,
    ModelIOError,
    NotFound,
    OutOfMemory,
    Outcome,
    Overflow,
    RocmforgeError,
    Unsupported,
)
from .log import log_to_logging, set_log_callback
from .model import Model, ModelInfo, VocabInfo
from .sampler import Sampler

__version__ = VERSION

__all__ = [
    "LIBRARY_PATH",
    "VERSION",
    "Aborted",
    "Batch",
    "BufferTooSmall",
    "Busy",
    "ClosedError",
    "Context",
    "DeviceError",
    "Engine",
    "EngineStats",
    "InternalError",
    "InvalidArgument",
    "KvCacheFull",
    "KvStats",
    "Model",
    "ModelFormatError",
    "ModelIOError",
    "ModelInfo",
    "NotFound",
    "OutOfMemory",
    "Outcome",
    "Overflow",
    "Request",
    "RequestStats",
    "RocmforgeError",
    "Sampler",
    "TextStream",
    "Unsupported",
    "VocabInfo",
    "log_to_logging",
    "set_log_callback",
]
