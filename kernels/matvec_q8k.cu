// Integer-dot products for Q4_K, Q5_K and Q6_K on Q8_K activations, as the CPU computes them
// (src/quant/dot.rs dot_q4_k_q8_k, dot_q5_k_q8_k, dot_q6_k_q8_k): per 256-element block the
// integer sums isum = sum_j sc_j * sum(q * q8) and (Q4_K, Q5_K) msum = sum_j m_j * sum(q8)
// over its sub-blocks, then dy * d * isum - dy * dmin * msum in f32 (Q6_K: d * dy * isum).
// Only the sum over a row's blocks is in another order.
//
// quantize_q8k: x (rows of K floats, nblk = rows * K / 256 blocks) to int8 codes and, per
// 32 codes, {dy, 0} (so the buffers are those of quantize_q8); rounding as the CPU's Q8_K
// (and quantize_act kind 2): the first value of largest magnitude sets dy = max / -127,
// q = min(rint(x * -127 / max), 127). One warp a block.
//
// mmvqk: one warp a row (four rows a block of 128 threads); eight lanes a 256-block, lane j
// of the eight taking values 32j .. 32j + 31 (Q4_K, Q5_K: sub-block j, two 16-byte loads,
// nibbles j % 2 of the block's codes 32 * (j / 2) ...), four blocks a step. The eight lanes' integer sums meet by
// shuffles before the block's two float products.

// One Q8_K block: the 256 values at xp to codes q and 8 scale pairs ds, by the 32 lanes of
// a group (lane: the caller's; also on wave64: the shuffles' lane masks stay under 32).
__device__ __forceinline__ void rf_q8k_chunk(const float* xp, i8* q, float2* ds, int lane) {
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
    for (int i = lane; i < 256; i += 32) q[i] = (i8)(int)fminf(rf_rint(iscale * xp[i]), 127.0f);
    if (lane < 8) ds[lane] = make_float2(d, 0.0f);
}

extern "C" __global__ void quantize_q8k(const float* __restrict__ x, i8* __restrict__ xq,
                                        float2* __restrict__ xds, u64 nblk) {
    rf_grid_start();
    const u64 b = (u64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (b >= nblk) return;
    rf_q8k_chunk(x + b * 256, xq + b * 256, xds + b * 8, threadIdx.x % 32);
}

__device__ __forceinline__ int rf_shfl_xor_i(int v, int m) {
    return __float_as_int(rf_shfl_xor(__int_as_float(v), m));
}

// A row's NT sums (one partial a lane) to y: the 32 lanes' total, written by lane 0.
template <int NT>
__device__ __forceinline__ void rf_row_out(const float* acc, bool live, int lane,
                                           float* __restrict__ y, int N, int row) {
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float s = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += rf_shfl_xor(s, o);
        if (live && lane == 0) y[(u64)t * N + row] = s;
    }
}

// The codes of sub-block j (32 values) of a Q4_K / Q5_K block as eight words of bytes, and
// the block's layout (16-byte aligned blocks: whole-line loads).
struct KQ4_K {
    static const int BYTES = 144;
    static __device__ __forceinline__ void codes(const u8* blk, int j, int* wq) {
        u32 cw[8];
        rf_words8(blk + 16 + (j / 2) * 32, cw);
        const int sh = 4 * (j & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) wq[i] = (int)((cw[i] >> sh) & 0x0f0f0f0fu);
    }
};

// Q5_K: d dmin scales[12] qh[32] qs[128]; the fifth bit of value l of sub-block j is bit j of
// qh[l].
struct KQ5_K {
    static const int BYTES = 176;
    static __device__ __forceinline__ void codes(const u8* blk, int j, int* wq) {
        u32 cw[8], hw[8];
        rf_words8(blk + 48 + (j / 2) * 32, cw);
        rf_words8(blk + 16, hw);
        const int sh = 4 * (j & 1);
#pragma unroll
        for (int i = 0; i < 8; i++)
            wq[i] = (int)(((cw[i] >> sh) & 0x0f0f0f0fu) | (((hw[i] >> j) & 0x01010101u) << 4));
    }
};

// Q4_K and Q5_K: per block isum = sum_j sc_j * dot_j and msum = sum_j m_j * (sum of the
// sub-block's activation codes), then dy * d * isum - dy * dmin * msum (dot_k_scale_min).
template <class KF, int NT>
__device__ __forceinline__ void mmvqk_km(const u8* __restrict__ W, u64 row_bytes,
                                         const i8* __restrict__ xq,
                                         const float2* __restrict__ xds, int K,
                                         float* __restrict__ y, int N) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + warp;
    // Every lane stays to the end (shuffles); rows past N compute nothing.
    const bool live = row < N;
    const u8* w = W + (u64)(live ? row : 0) * row_bytes;
    const int j = lane & 7, nb = K / 256;
    // Begun with rf_grid_go(): the row is asked for, then the wait (see mmvqb).
    if (live) rf_prefetch_l2(w, row_bytes, lane);
    rf_grid_wait();
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += 4) {
        const int b = b0 + (lane >> 3);
        const bool on = live && b < nb;
        int isum[NT], msum[NT];
        float d = 0.0f, dmin = 0.0f;
        if (on) {
            const u8* blk = w + (u64)b * KF::BYTES;
            int sc, m;
            rf_k_scale_min(blk + 4, j, sc, m);
            d = rf_ldh(blk);
            dmin = rf_ldh(blk + 2);
            int wq[8];
            KF::codes(blk, j, wq);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                int aw[8];
                rf_words8(xq + (u64)t * K + (u64)b * 256 + j * 32, (u32*)aw);
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
    rf_row_out<NT>(acc, live, lane, y, N, row);
}

// Q6_K: ql[128] qh[64] scales[16] (signed) d, 210 bytes (2-byte aligned only: 16-bit loads).
// Value i = 128 h + 32 q + l (h half, q quarter) is the nibble q / 2 of ql[64 h + 32 (q % 2)
// + l] joined to bits 2q, 2q + 1 of qh[32 h + l], minus 32; sub-block i / 16 has its own
// scale. Values 32j .. 32j + 31 (h = j / 4, q = j % 4) are sub-blocks 2j and 2j + 1.
struct KQ6_K {
    static const int BYTES = 210;
    static __device__ __forceinline__ void codes(const u8* blk, int j, int* wq) {
        const int h = j / 4, q = j % 4;
        const u8* ql = blk + 64 * h + 32 * (q % 2);
        const u8* qh = blk + 128 + 32 * h;
        const int sh = 4 * (q / 2), hs = 2 * q;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const u32 lo = (rf_ld32h(ql + 4 * i) >> sh) & 0x0f0f0f0fu;
            const u32 hi = ((rf_ld32h(qh + 4 * i) >> hs) & 0x03030303u) << 4;
            wq[i] = (int)rf_sub_bytes(lo | hi, 32);
        }
    }
    // The signed scales of sub-blocks 2j and 2j + 1.
    static __device__ __forceinline__ void scales(const u8* blk, int j, int& s0, int& s1) {
        s0 = (int)(i8)blk[192 + 2 * j];
        s1 = (int)(i8)blk[193 + 2 * j];
    }
};

// Q6_K: lane j of a block's eight takes values 32j .. 32j + 31. Per block isum = sum_g sc_g *
// dot_g, then (d * dy) * isum (dot_q6_k_q8_k).
template <int NT>
__device__ __forceinline__ void mmvqk_q6k(const u8* __restrict__ W, u64 row_bytes,
                                          const i8* __restrict__ xq,
                                          const float2* __restrict__ xds, int K,
                                          float* __restrict__ y, int N) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + warp;
    const bool live = row < N;
    const u8* w = W + (u64)(live ? row : 0) * row_bytes;
    const int j = lane & 7, nb = K / 256;
    // Begun with rf_grid_go(): the row is asked for, then the wait (see mmvqb).
    if (live) rf_prefetch_l2(w, row_bytes, lane);
    rf_grid_wait();
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += 4) {
        const int b = b0 + (lane >> 3);
        const bool on = live && b < nb;
        int isum[NT];
        float d = 0.0f;
        if (on) {
            const u8* blk = w + (u64)b * KQ6_K::BYTES;
            int wq[8], sc0, sc1;
            KQ6_K::codes(blk, j, wq);
            KQ6_K::scales(blk, j, sc0, sc1);
            d = rf_ldh(blk + 208);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                int aw[8];
                rf_words8(xq + (u64)t * K + (u64)b * 256 + j * 32, (u32*)aw);
                int s0 = 0, s1 = 0;
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    s0 = rf_dp4a(wq[i], aw[i], s0);
                    s1 = rf_dp4a(wq[4 + i], aw[4 + i], s1);
                }
                isum[t] = sc0 * s0 + sc1 * s1;
            }
        } else {
#pragma unroll
            for (int t = 0; t < NT; t++) isum[t] = 0;
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
#pragma unroll
            for (int o = 4; o > 0; o >>= 1) isum[t] += rf_shfl_xor_i(isum[t], o);
            if (on && j == 0) {
                const float dy = xds[((u64)t * K + (u64)b * 256) / 32].x;
                acc[t] += d * dy * (float)isum[t];
            }
        }
    }
    rf_row_out<NT>(acc, live, lane, y, N, row);
}

#define RF_MMVQK_ONE(NT)                                                                     \
    extern "C" __global__ void __launch_bounds__(128)                                        \
        mmvqk##NT##_q4_k(const u8* W, u64 row_bytes, const i8* xq, const float2* xds, int K, \
                         float* y, int N) {                                                  \
        rf_grid_go();                                                                        \
        mmvqk_km<KQ4_K, NT>(W, row_bytes, xq, xds, K, y, N);                                 \
    }                                                                                        \
    extern "C" __global__ void __launch_bounds__(128)                                        \
        mmvqk##NT##_q5_k(const u8* W, u64 row_bytes, const i8* xq, const float2* xds, int K, \
                         float* y, int N) {                                                  \
        rf_grid_go();                                                                        \
        mmvqk_km<KQ5_K, NT>(W, row_bytes, xq, xds, K, y, N);                                 \
    }                                                                                        \
    extern "C" __global__ void __launch_bounds__(128)                                        \
        mmvqk##NT##_q6_k(const u8* W, u64 row_bytes, const i8* xq, const float2* xds, int K, \
                         float* y, int N) {                                                  \
        rf_grid_go();                                                                        \
        mmvqk_q6k<NT>(W, row_bytes, xq, xds, K, y, N);                                       \
    }
RF_MMVQK_ONE(1)
RF_MMVQK_ONE(2)
RF_MMVQK_ONE(3)
RF_MMVQK_ONE(4)
RF_MMVQK_ONE(5)
RF_MMVQK_ONE(6)
RF_MMVQK_ONE(7)
RF_MMVQK_ONE(8)
