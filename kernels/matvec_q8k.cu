// Integer-dot products for Q4_K on Q8_K activations, as the CPU computes them
// (src/quant/dot.rs dot_q4_k_q8_k): per 256-element block the integer sums
// isum = sum_j sc_j * sum(q4 * q8) and msum = sum_j m_j * sum(q8) over its eight sub-blocks,
// then dy * d * isum - dy * dmin * msum in f32. Only the sum over a row's blocks is in
// another order.
//
// quantize_q8k: x (rows of K floats, nblk = rows * K / 256 blocks) to int8 codes and, per
// 32 codes, {dy, 0} (so the buffers are those of quantize_q8); rounding as the CPU's Q8_K
// (and quantize_act kind 2): the first value of largest magnitude sets dy = max / -127,
// q = min(rint(x * -127 / max), 127). One warp a block.
//
// mmvqk: one warp a row (four rows a block of 128 threads); eight lanes a 256-block, lane j
// of the eight taking sub-block j (32 codes: two 16-byte loads, nibbles j % 2 of the block's
// codes 32 * (j / 2) ...), four blocks a step. The eight lanes' integer sums meet by
// shuffles before the block's two float products.

extern "C" __global__ void quantize_q8k(const float* __restrict__ x, i8* __restrict__ xq,
                                        float2* __restrict__ xds, u64 nblk) {
    // 32-thread groups (also on wave64: the shuffles' lane masks stay under 32).
    const int lane = threadIdx.x % 32;
    const u64 b = (u64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (b >= nblk) return;
    const float* xp = x + b * 256;
    float amax = -1.0f, mx = 0.0f;
    int idx = 1 << 30;
    for (int i = lane; i < 256; i += 32) {
        const float v = xp[i];
        if (fabsf(v) > amax) {
            amax = fabsf(v);
            mx = v;
            idx = i;
        }
    }
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) {
        const float oa = rf_shfl_xor(amax, m), om = rf_shfl_xor(mx, m);
        const int oi = (int)rf_shfl_xor((float)idx, m);
        if (oa > amax || (oa == amax && oi < idx)) {
            amax = oa;
            mx = om;
            idx = oi;
        }
    }
    const float iscale = amax == 0.0f ? 0.0f : -127.0f / mx;
    const float d = amax == 0.0f ? 0.0f : 1.0f / iscale;
    for (int i = lane; i < 256; i += 32)
        xq[b * 256 + i] = (i8)(int)fminf(rf_rint(iscale * xp[i]), 127.0f);
    if (lane < 8) xds[b * 8 + lane] = make_float2(d, 0.0f);
}

__device__ __forceinline__ int rf_shfl_xor_i(int v, int m) {
    return __float_as_int(rf_shfl_xor(__int_as_float(v), m));
}

template <int NT>
__device__ __forceinline__ void mmvqk_q4k(const u8* __restrict__ W, u64 row_bytes,
                                          const i8* __restrict__ xq,
                                          const float2* __restrict__ xds, int K,
                                          float* __restrict__ y, int N) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + warp;
    // Every lane stays to the end (shuffles); rows past N compute nothing.
    const bool live = row < N;
    const u8* w = W + (u64)(live ? row : 0) * row_bytes;
    const int j = lane & 7, nb = K / 256;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += 4) {
        const int b = b0 + (lane >> 3);
        const bool on = live && b < nb;
        int isum[NT], msum[NT];
        float d = 0.0f, dmin = 0.0f;
        if (on) {
            const u8* blk = w + (u64)b * 144;
            int sc, m;
            rf_k_scale_min(blk + 4, j, sc, m);
            d = rf_ldh(blk);
            dmin = rf_ldh(blk + 2);
            const uint4* qp = (const uint4*)(blk + 16 + (j / 2) * 32);
            const uint4 c0 = qp[0], c1 = qp[1];
            const int sh = 4 * (j & 1);
            const u32 cw[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
            int wq[8];
#pragma unroll
            for (int i = 0; i < 8; i++) wq[i] = (int)((cw[i] >> sh) & 0x0f0f0f0fu);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const uint4* ap = (const uint4*)(xq + (u64)t * K + (u64)b * 256 + j * 32);
                const uint4 a0 = ap[0], a1 = ap[1];
                const int aw[8] = {(int)a0.x, (int)a0.y, (int)a0.z, (int)a0.w,
                                   (int)a1.x, (int)a1.y, (int)a1.z, (int)a1.w};
                int s = 0, bs = 0;
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    s = rf_dp4a(wq[i], aw[i], s);
                    bs = rf_dp4a(0x01010101, aw[i], bs);
                }
                isum[t] = sc * s;
                msum[t] = m * bs;
            }
        } else {
#pragma unroll
            for (int t = 0; t < NT; t++) isum[t] = msum[t] = 0;
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
#pragma unroll
            for (int o = 4; o > 0; o >>= 1) {
                isum[t] += rf_shfl_xor_i(isum[t], o);
                msum[t] += rf_shfl_xor_i(msum[t], o);
            }
            if (on && j == 0) {
                const float dy = xds[((u64)t * K + (u64)b * 256) / 32].x;
                acc[t] += dy * d * (float)isum[t] - dy * dmin * (float)msum[t];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float s = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += rf_shfl_xor(s, o);
        if (live && lane == 0) y[(u64)t * N + row] = s;
    }
}

#define RF_MMVQK_ONE(NT)                                                                     \
    extern "C" __global__ void __launch_bounds__(128)                                        \
        mmvqk##NT##_q4_k(const u8* W, u64 row_bytes, const i8* xq, const float2* xds, int K, \
                         float* y, int N) {                                                  \
        mmvqk_q4k<NT>(W, row_bytes, xq, xds, K, y, N);                                       \
    }
RF_MMVQK_ONE(1)
RF_MMVQK_ONE(2)
RF_MMVQK_ONE(3)
RF_MMVQK_ONE(4)
RF_MMVQK_ONE(5)
RF_MMVQK_ONE(6)
RF_MMVQK_ONE(7)
RF_MMVQK_ONE(8)
