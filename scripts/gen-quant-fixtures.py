#!/usr/bin/env python3
"""Generate the quantization fixtures in tests/fixtures/quant/ with gguf-py, the reference
numpy implementation of ggml's formats.

    pip install gguf==0.19.0 numpy
    python3 scripts/gen-quant-fixtures.py

For every format gguf-py can dequantize, `<TYPE>.dequant.bin` holds random blocks followed by
gguf-py's float32 output for them. For every format gguf-py can quantize, `<TYPE>.quant.bin`
holds float32 inputs followed by gguf-py's blocks. tests/quant_reference.rs compares rocmforge
with both, bit for bit. The generator is seeded: rerunning it reproduces the same files.

Random blocks are random bytes, except that f16 scale fields are set to finite values (random
bytes would make some NaN, whose payload conversions are not part of any format's meaning).
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "quant")

# Byte offsets of the f16 scale fields within one block, per format.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0], T.MXFP4: [], T.NVFP4: [],
    T.IQ3_S: [0], T.IQ3_XXS: [0], T.IQ2_S: [0], T.IQ2_XS: [0], T.IQ2_XXS: [0], T.IQ1_S: [0],
    T.IQ1_M: [], T.TQ1_0: [52], T.TQ2_0: [64],
}

DEQUANT = [T.BF16, T.F16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K,
           T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS, T.MXFP4, T.NVFP4, T.IQ3_S, T.IQ3_XXS, T.IQ2_S,
           T.IQ2_XS, T.IQ2_XXS, T.IQ1_S, T.IQ1_M, T.TQ1_0, T.TQ2_0]
QUANT = [T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.MXFP4, T.TQ1_0, T.TQ2_0]


def random_scales(rng, n):
    """Finite f16 values: mostly normal-sized, some tiny (subnormal), some zero, both signs."""
    v = rng.standard_normal(n).astype(np.float32) * np.float32(0.05)
    v[rng.random(n) < 0.1] = np.float32(3e-6)  # subnormal in f16
    v[rng.random(n) < 0.05] = 0
    return v.astype(np.float16)


def random_blocks(rng, qtype, n_blocks):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    if qtype == T.F16:
        return (rng.standard_normal(n_blocks) * 10).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    if qtype == T.BF16:
        f = (rng.standard_normal(n_blocks) * 10).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(n_blocks, 2)
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        blocks[:, off:off + 2] = random_scales(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    if qtype == T.IQ1_M:
        # The f16 super-scale is spread over the top nibbles of the four scale words.
        d = random_scales(rng, n_blocks).view(np.uint16).astype(np.uint16)
        words = blocks[:, 48:56].copy().view(np.uint16) & np.uint16(0x0FFF)
        for w in range(4):
            words[:, w] |= ((d >> np.uint16(4 * w)) & np.uint16(0xF)) << np.uint16(12)
        blocks[:, 48:56] = words.view(np.uint8)
        # gguf-py 0.19.0 reads every IQ1_M delta as negative (`qh & 0x08 == 0` parses as
        # `qh & False`), where ggml takes the sign from bit 3. Set bit 3 everywhere so both
        # agree; tests/quant_reference.rs checks the other sign against ggml's definition.
        blocks[:, 32:48] |= np.uint8(0x88)
    return blocks


def random_inputs(rng, block_elems, n_blocks):
    """Normal values plus blocks that stress the quantizers: zeros, a constant, an outlier,
    tiny values, all negative."""
    x = rng.standard_normal((n_blocks, block_elems)).astype(np.float32)
    x[0] = 0
    x[1] = 0.75
    x[2, 3] = 40.0
    x[3] *= np.float32(1e-6)
    x[4] = -np.abs(x[4])
    return x


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261125)
    for qtype in DEQUANT:
        block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
        n_blocks = max(16, 512 // block_elems) if block_elems > 1 else 256
        blocks = random_blocks(rng, qtype, n_blocks)
        values = dequantize(blocks.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert values.size == n_blocks * block_elems
        with open(os.path.join(OUT, f"{qtype.name}.dequant.bin"), "wb") as f:
            f.write(blocks.tobytes())
            f.write(values.tobytes())
    for qtype in QUANT:
        block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
        row = max(block_elems, 32)
        x = random_inputs(rng, row, max(16, 512 // row)).reshape(-1)
        q = quantize(x.reshape(1, -1), qtype).reshape(-1).view(np.uint8)
        with open(os.path.join(OUT, f"{qtype.name}.quant.bin"), "wb") as f:
            f.write(x.tobytes())
            f.write(q.tobytes())
    print(f"wrote fixtures for {len(DEQUANT)} dequantize and {len(QUANT)} quantize formats to {OUT}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
