// Products of the 32-element formats (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL) with activations
// quantized to 8 bits, as the CPU's dot products compute them (src/quant/dot.rs): per block of
// 32, an exact integer sum of weight codes times activation codes, scaled by d_w * d_x, plus
// m_w * s_x for the formats with a minimum (s_x = d_x * sum of the codes, Q8_1's extra field).
//
// Activations: xq holds the int8 codes, rows of K; xds one float2 {d, s} per 32 codes, both
// rounded through f16 as the CPU's Q8_0 / Q8_1 blocks store them.
//
// mmvq: `tpr` threads per output row (32, 64 or 128; blockDim 128), each thread taking
// sixteen codes of one weight block at a time ("slices": QS per block) for all NT tokens, so
// every weight byte is read once and the activations a quarter as often as floats would be.

// Every format's block is HB header bytes (d, then m or qh where the format has them)
// followed by QB bytes of codes. Two layouts on the device:
// - blocks: the file's, row after row (row_bytes apart), each block header then codes;
// - split (SPLIT): all the codes first, block (row, b) at (row * nb + b) * QB, then all the
//   headers, at (row * nb + b) * HB. The codes are then 16-byte aligned and a warp reads
//   them in whole lines with vector loads (src/backend/gpu/weights.rs makes this layout for
//   every matrix but the embedding).
//
// A slice is sixteen codes of a block (QS = 2 per block). `words` gives them as four words
// of signed bytes; `acts` loads the four activation words they multiply (of the block's
// eight). OFF: the constant the CPU subtracts from every code (applied as OFF * the sum of
// the activation codes).
__device__ __forceinline__ u32 rf_nib_lo(u32 q) { return q & 0x0f0f0f0fu; }

// Subtracts `off` (> 0) from each of the four bytes of w (values 0 .. 2 * off - 1): signed
// bytes. The high bit set first keeps a byte's borrow from reaching the next one.
__device__ __forceinline__ u32 rf_sub_bytes(u32 w, u32 off) {
    return ((w | 0x80808080u) - off * 0x01010101u) ^ 0x80808080u;
}

// Eight words from two 16-byte loads at p (16-byte aligned).
__device__ __forceinline__ void rf_words8(const void* p, u32* w) {
    const uint4 v0 = ((const uint4*)p)[0], v1 = ((const uint4*)p)[1];
    w[0] = v0.x;
    w[1] = v0.y;
    w[2] = v0.z;
    w[3] = v0.w;
    w[4] = v1.x;
    w[5] = v1.y;
    w[6] = v1.z;
    w[7] = v1.w;
}
__device__ __forceinline__ u32 rf_nib_hi(u32 q) { return (q >> 4) & 0x0f0f0f0fu; }

// Bits 0..3 of h to bit 4 of bytes 0..3.
__device__ __forceinline__ u32 rf_spread4(u32 h) {
    return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

// Two / four words of codes at p: vector loads where the layout aligns them (AL), else
// 2-byte loads.
template <bool AL>
__device__ __forceinline__ void rf_codes2(const u8* p, u32* c) {
    if (AL) {
        const uint2 v = *(const uint2*)p;
        c[0] = v.x;
        c[1] = v.y;
    } else {
        c[0] = rf_ld32h(p);
        c[1] = rf_ld32h(p + 4);
    }
}

template <bool AL>
__device__ __forceinline__ void rf_codes4(const u8* p, u32* c) {
    if (AL) {
        const uint4 v = *(const uint4*)p;
        c[0] = v.x;
        c[1] = v.y;
        c[2] = v.z;
        c[3] = v.w;
    } else {
#pragma unroll
        for (int j = 0; j < 4; j++) c[j] = rf_ld32h(p + 4 * j);
    }
}

// Nibble formats: bytes 8s..8s+7 of the codes hold codes 8s..8s+7 (low nibbles) and
// 16+8s..16+8s+7 (high nibbles): activation words 2s, 2s+1, 4+2s, 5+2s.
template <bool AL>
__device__ __forceinline__ void rf_nibble_words(const u8* q, int s, int* w) {
    u32 c[2];
    rf_codes2<AL>(q + 8 * s, c);
    w[0] = (int)rf_nib_lo(c[0]);
    w[1] = (int)rf_nib_lo(c[1]);
    w[2] = (int)rf_nib_hi(c[0]);
    w[3] = (int)rf_nib_hi(c[1]);
}

__device__ __forceinline__ void rf_nibble_acts(const int* xw, int s, int* a) {
    const int2 lo = ((const int2*)xw)[s], hi = ((const int2*)xw)[2 + s];
    a[0] = lo.x;
    a[1] = lo.y;
    a[2] = hi.x;
    a[3] = hi.y;
}

// The fifth bits of a Q5 block (qh) joined to the nibbles of slice s.
template <bool AL>
__device__ __forceinline__ void rf_q5_words(const u8* q, u32 qh, int s, int* w) {
    rf_nibble_words<AL>(q, s, w);
    w[0] |= (int)rf_spread4(qh >> (8 * s));
    w[1] |= (int)rf_spread4(qh >> (8 * s + 4));
    w[2] |= (int)rf_spread4(qh >> (16 + 8 * s));
    w[3] |= (int)rf_spread4(qh >> (20 + 8 * s));
}

// A whole nibble block: byte k holds code k (low nibble) and code 16 + k (high nibble), so
// word i's low nibbles are activation word i and its high nibbles activation word 4 + i.
__device__ __forceinline__ void rf_nibble_block(const u32* c, int* w) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        w[i] = (int)rf_nib_lo(c[i]);
        w[4 + i] = (int)rf_nib_hi(c[i]);
    }
}

// The same with a Q5 block's fifth bits (bit k of qh belongs to code k).
__device__ __forceinline__ void rf_q5_block(const u32* c, u32 qh, int* w) {
    rf_nibble_block(c, w);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        w[i] |= (int)rf_spread4(qh >> (4 * i));
        w[4 + i] |= (int)rf_spread4(qh >> (16 + 4 * i));
    }
}

struct DotQ4_0 {
    static const int QS = 2, HB = 2, QB = 16, OFF = 8;
    static const bool MIN = false;
    // A whole block: c = its sixteen code bytes as four words; w = eight words of codes in
    // the order of the block's eight activation words.
    static __device__ __forceinline__ void block(const u8*, const u32* c, int* w) {
        rf_nibble_block(c, w);
    }
    template <bool AL>
    static __device__ __forceinline__ void words(const u8*, const u8* q, int s, int* w) {
        rf_nibble_words<AL>(q, s, w);
    }
    static __device__ __forceinline__ void acts(const int* xw, int s, int* a) {
        rf_nibble_acts(xw, s, a);
    }
};

struct DotQ4_1 {
    static const int QS = 2, HB = 4, QB = 16, OFF = 0;
    static const bool MIN = true;
    static __device__ __forceinline__ void block(const u8*, const u32* c, int* w) {
        rf_nibble_block(c, w);
    }
    template <bool AL>
    static __device__ __forceinline__ void words(const u8*, const u8* q, int s, int* w) {
        rf_nibble_words<AL>(q, s, w);
    }
    static __device__ __forceinline__ void acts(const int* xw, int s, int* a) {
        rf_nibble_acts(xw, s, a);
    }
};

struct DotQ5_0 {
    static const int QS = 2, HB = 6, QB = 16, OFF = 16;
    static const bool MIN = false;
    static __device__ __forceinline__ void block(const u8* h, const u32* c, int* w) {
        rf_q5_block(c, rf_ld32h(h + 2), w);
    }
    template <bool AL>
    static __device__ __forceinline__ void words(const u8* h, const u8* q, int s, int* w) {
        rf_q5_words<AL>(q, rf_ld32h(h + 2), s, w);
    }
    static __device__ __forceinline__ void acts(const int* xw, int s, int* a) {
        rf_nibble_acts(xw, s, a);
    }
};

struct DotQ5_1 {
    static const int QS = 2, HB = 8, QB = 16, OFF = 0;
    static const bool MIN = true;
    static __device__ __forceinline__ void block(const u8* h, const u32* c, int* w) {
        rf_q5_block(c, rf_ld32h(h + 4), w);
    }
    template <bool AL>
    static __device__ __forceinline__ void words(const u8* h, const u8* q, int s, int* w) {
        rf_q5_words<AL>(q, rf_ld32h(h + 4), s, w);
    }
    static __device__ __forceinline__ void acts(const int* xw, int s, int* a) {
        rf_nibble_acts(xw, s, a);
    }
};

// Bytes 16s..16s+15 are codes 16s..16s+15: activation words 4s..4s+3.
struct DotQ8_0 {
    static const int QS = 2, HB = 2, QB = 32, OFF = 0;
    static const bool MIN = false;
    template <bool AL>
    static __device__ __forceinline__ void words(const u8*, const u8* q, int s, int* w) {
        rf_codes4<AL>(q + 16 * s, (u32*)w);
    }
    static __device__ __forceinline__ void acts(const int* xw, int s, int* a) {
        const int4 v = ((const int4*)xw)[s];
        a[0] = v.x;
        a[1] = v.y;
        a[2] = v.z;
        a[3] = v.w;
    }
};

// The four codes of n (one per byte) through the IQ4_NL table.
__device__ __forceinline__ int rf_iq4_word(u32 n) {
    return (int)((u32)(u8)RF_IQ4_VALUES[n & 15] | ((u32)(u8)RF_IQ4_VALUES[(n >> 8) & 15] << 8) |
                 ((u32)(u8)RF_IQ4_VALUES[(n >> 16) & 15] << 16) |
                 ((u32)(u8)RF_IQ4_VALUES[(n >> 24) & 15] << 24));
}

struct DotIQ4_NL {
    static const int QS = 2, HB = 2, QB = 16, OFF = 0;
    static const bool MIN = false;
    static __device__ __forceinline__ void block(const u8*, const u32* c, int* w) {
        rf_nibble_block(c, w);
#pragma unroll
        for (int j = 0; j < 8; j++) w[j] = rf_iq4_word((u32)w[j]);
    }
    template <bool AL>
    static __device__ __forceinline__ void words(const u8*, const u8* q, int s, int* w) {
        rf_nibble_words<AL>(q, s, w);
#pragma unroll
        for (int j = 0; j < 4; j++) w[j] = rf_iq4_word((u32)w[j]);
    }
    static __device__ __forceinline__ void acts(const int* xw, int s, int* a) {
        rf_nibble_acts(xw, s, a);
    }
};

// x (rows of K floats, nblk = rows * K / 32 blocks in all) to codes and scales: one thread a
// block, as src/quant/legacy.rs q8_block_runtime (id = 127 / amax, round half to even).
extern "C" __global__ void quantize_q8(const float* __restrict__ x, i8* __restrict__ xq,
                                       float2* __restrict__ xds, u64 nblk) {
    rf_grid_start();
    const u64 b = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nblk) return;
    const float4* xp = (const float4*)(x + b * 32);
    float v[32];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const float4 f = xp[i];
        v[4 * i] = f.x;
        v[4 * i + 1] = f.y;
        v[4 * i + 2] = f.z;
        v[4 * i + 3] = f.w;
    }
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[i]));
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    int* out = (int*)(xq + b * 32);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        u32 word = 0;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int q = (int)rf_rint(v[4 * i + j] * id);
            sum += q;
            word |= ((u32)q & 0xffu) << (8 * j);
        }
        out[i] = (int)word;
    }
    float2 ds;
    ds.x = rf_f16_to_f32(rf_f32_to_f16(d));
    ds.y = rf_f16_to_f32(rf_f32_to_f16((float)sum * d));
    xds[b] = ds;
}

#ifndef RF_MMVQ_UNROLL
#define RF_MMVQ_UNROLL 2
#endif

// W: the blocks (row_bytes apart), or with SPLIT the codes, H the headers.
template <class F, int NT, bool SPLIT>
__device__ __forceinline__ void mmvq(const u8* __restrict__ W, u64 row_bytes,
                                     const u8* __restrict__ H, const i8* __restrict__ xq,
                                     const float2* __restrict__ xds, int K,
                                     float* __restrict__ y, int N, int tpr) {
    __shared__ float part[NT][128 / 32];
    const int r_in = threadIdx.x / tpr, t = threadIdx.x % tpr;
    const int row = blockIdx.x * (blockDim.x / tpr) + r_in;
    const int nb = K / 32, tasks = nb * F::QS;
    float acc[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j] = 0.0f;
    if (row < N) {
        const u8* w = W + (u64)row * row_bytes;
        const u64 first = (u64)row * nb;
        // RF_MMVQ_UNROLL tasks at a time, their loads issued before any arithmetic.
        for (int i0 = t; i0 < tasks; i0 += RF_MMVQ_UNROLL * tpr) {
            int wq[RF_MMVQ_UNROLL][4], bs[RF_MMVQ_UNROLL], ss[RF_MMVQ_UNROLL];
            float dw[RF_MMVQ_UNROLL], mw[RF_MMVQ_UNROLL];
#pragma unroll
            for (int u = 0; u < RF_MMVQ_UNROLL; u++) {
                // A task past the end repeats the last one, weighted 0.
                const bool live = i0 + u * tpr < tasks;
                const int i = live ? i0 + u * tpr : tasks - 1;
                const int b = i / F::QS, sl = i % F::QS;
                const u8* h = SPLIT ? H + (first + b) * F::HB : w + (u64)b * (F::HB + F::QB);
                const u8* q = SPLIT ? W + (first + b) * F::QB : h + F::HB;
                F::template words<SPLIT>(h, q, sl, wq[u]);
                bs[u] = b;
                ss[u] = sl;
                dw[u] = live ? rf_f16_to_f32(*(const u16*)h) : 0.0f;
                mw[u] = live && F::MIN && sl == 0 ? rf_f16_to_f32(*(const u16*)(h + 2)) : 0.0f;
            }
#pragma unroll
            for (int j = 0; j < NT; j++) {
#pragma unroll
                for (int u = 0; u < RF_MMVQ_UNROLL; u++) {
                    int a[4];
                    F::acts((const int*)(xq + (u64)j * K + (u64)bs[u] * 32), ss[u], a);
                    int sumi = 0, sumx = 0;
#pragma unroll
                    for (int l = 0; l < 4; l++) {
                        sumi = rf_dp4a(wq[u][l], a[l], sumi);
                        if (F::OFF) sumx = rf_dp4a(0x01010101, a[l], sumx);
                    }
                    sumi -= F::OFF * sumx;
                    const float2 ds = xds[(u64)j * nb + bs[u]];
                    acc[j] += (dw[u] * ds.x) * (float)sumi;
                    if (F::MIN) acc[j] += mw[u] * ds.y;
                }
            }
        }
    }
    // Sum within groups of min(tpr, warp) lanes, then over a row's groups.
    const int width = tpr < RF_WARP ? tpr : RF_WARP;
    const int group = threadIdx.x / width, per_row = tpr / width;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        float v = acc[j];
        for (int m = width / 2; m > 0; m >>= 1) v += rf_shfl_xor(v, m);
        if (threadIdx.x % width == 0) part[j][group] = v;
    }
    __syncthreads();
    if (t == 0 && row < N) {
#pragma unroll
        for (int j = 0; j < NT; j++) {
            float v = 0.0f;
            for (int g = 0; g < per_row; g++) v += part[j][r_in * per_row + g];
            y[(u64)j * N + row] = v;
        }
    }
}

// The split layout's matrix to f16 for the vendor BLAS (deq_f16 of matvec.cu reads the
// blocks layout): each thread reassembles its block in the file's order and dequantizes
// eight of its values with the format's own deq8.
template <class F, class D>
__device__ __forceinline__ void deq_f16_split(const u8* __restrict__ C, const u8* __restrict__ H,
                                              u16* __restrict__ out, int N, int K) {
    const u64 nch = (u64)K / 8;
    const u64 id = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= nch * (u64)N) return;
    const u64 row = id / nch;
    const int c = (int)(id % nch), nb = K / 32;
    const u64 blk = row * nb + c / 4;
    u16 b16[(D::HB + D::QB) / 2];
#pragma unroll
    for (int i = 0; i < D::HB / 2; i++) b16[i] = ((const u16*)(H + blk * D::HB))[i];
#pragma unroll
    for (int i = 0; i < D::QB / 16; i++) {
        const uint4 v = ((const uint4*)(C + blk * D::QB))[i];
        const u32 w4[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            b16[D::HB / 2 + 8 * i + 2 * j] = (u16)w4[j];
            b16[D::HB / 2 + 8 * i + 2 * j + 1] = (u16)(w4[j] >> 16);
        }
    }
    float v[8];
    F::deq8((const u8*)b16, (c % 4) * 8, v);
    rf_store8_f16(out + row * (u64)K + (u64)c * 8, v);
}

#define RF_MMVQ_ONE(name, F, NT)                                                             \
    extern "C" __global__ void mmvq##NT##_##name(const u8* W, u64 row_bytes, const i8* xq,  \
                                                 const float2* xds, int K, float* y, int N, \
                                                 int tpr) {                                 \
        rf_grid_start();                                                                    \
        mmvq<F, NT, false>(W, row_bytes, nullptr, xq, xds, K, y, N, tpr);                   \
    }                                                                                        \
    extern "C" __global__ void mmvqs##NT##_##name(const u8* C, const u8* H, const i8* xq,   \
                                                  const float2* xds, int K, float* y, int N, \
                                                  int tpr) {                                 \
        rf_grid_start();                                                                     \
        mmvq<F, NT, true>(C, 0, H, xq, xds, K, y, N, tpr);                                   \
    }

#define RF_MMVQ_KERNELS(name, F, FMT)                                                        \
    RF_MMVQ_ONE(name, F, 1) RF_MMVQ_ONE(name, F, 2) RF_MMVQ_ONE(name, F, 3)                   \
    RF_MMVQ_ONE(name, F, 4) RF_MMVQ_ONE(name, F, 5) RF_MMVQ_ONE(name, F, 6)                   \
    RF_MMVQ_ONE(name, F, 7) RF_MMVQ_ONE(name, F, 8)                                           \
    extern "C" __global__ void deqs_f16_##name(const u8* C, const u8* H, u16* out, int N,   \
                                               int K) {                                      \
        rf_grid_start();                                                                     \
        deq_f16_split<FMT, F>(C, H, out, N, K);                                              \
    }

RF_MMVQ_KERNELS(q4_0, DotQ4_0, FmtQ4_0)
RF_MMVQ_KERNELS(q4_1, DotQ4_1, FmtQ4_1)
RF_MMVQ_KERNELS(q5_0, DotQ5_0, FmtQ5_0)
RF_MMVQ_KERNELS(q5_1, DotQ5_1, FmtQ5_1)
RF_MMVQ_KERNELS(q8_0, DotQ8_0, FmtQ8_0)
RF_MMVQ_KERNELS(iq4_nl, DotIQ4_NL, FmtIQ4_NL)

// Whole-block products (mmvqb) for the formats of sixteen code bytes a block in the split
// layout: 32 lanes a row, each lane taking whole blocks (one 16-byte load of codes), two
// blocks' loads in flight before any arithmetic; the sums meet in a 32-lane shuffle. One
// launch takes up to three matrices of the same format and K (the rows of matrix 0, then of
// 1, then of 2, each into its own output; N = 0 for an absent one): a layer's Q, K and V, or
// gate and up, cost one launch instead of three or two. Measured on an H100
// (scripts/gpu/mmvq_bench.cu, 2026-12-07), Q4_0 8B shapes, one token: q 5.70 us against
// 6.44 for mmvqs; q+k+v in one launch 7.67 against 14.78 in three; gate+up 26.3 against
// 34.2; four tokens 9.1 against 11.6. Q8_0 (32 code bytes a block) stays on mmvqs, which
// was as fast or faster there.
template <class F, int NT>
__device__ __forceinline__ void mmvqb(const u8* __restrict__ C0, const u8* __restrict__ H0,
                                      float* __restrict__ y0, int N0,
                                      const u8* __restrict__ C1, const u8* __restrict__ H1,
                                      float* __restrict__ y1, int N1,
                                      const u8* __restrict__ C2, const u8* __restrict__ H2,
                                      float* __restrict__ y2, int N2, const i8* __restrict__ xq,
                                      const float2* __restrict__ xds, int K) {
    const int lane = threadIdx.x % 32;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const u8* C = C0;
    const u8* H = H0;
    float* y = y0;
    int N = N0;
    if (row >= N0) {
        row -= N0;
        C = C1;
        H = H1;
        y = y1;
        N = N1;
        if (row >= N1) {
            row -= N1;
            C = C2;
            H = H2;
            y = y2;
            N = N2;
        }
    }
    // Every lane reaches the shuffles (a row past the end computes nothing and stores
    // nothing): a warp never splits around them.
    const bool live = row < N;
    const int nb = K / 32;
    // The kernel began with rf_grid_go(): the row's codes and headers are asked for while
    // the kernels before this one finish (no kernel writes weights), then the wait.
    if (live) {
        rf_prefetch_l2(C + (u64)row * nb * 16, (u64)nb * 16, lane);
        rf_prefetch_l2(H + (u64)row * nb * F::HB, (u64)nb * F::HB, lane);
    }
    rf_grid_wait();
    float acc[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j] = 0.0f;
    if (live) {
        const u64 first = (u64)row * nb;
        for (int b0 = lane; b0 < nb; b0 += 2 * 32) {
            u32 c[2][4];
            float dw[2], mw[2];
            int bs[2];
            const u8* hs[2];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                // A block past the end repeats the last one, weighted 0.
                const bool on = b0 + 32 * u < nb;
                const int b = on ? b0 + 32 * u : nb - 1;
                const uint4 v = *(const uint4*)(C + (first + b) * 16);
                c[u][0] = v.x;
                c[u][1] = v.y;
                c[u][2] = v.z;
                c[u][3] = v.w;
                const u8* h = H + (first + b) * F::HB;
                hs[u] = h;
                dw[u] = on ? rf_f16_to_f32(*(const u16*)h) : 0.0f;
                mw[u] = on && F::MIN ? rf_f16_to_f32(*(const u16*)(h + 2)) : 0.0f;
                bs[u] = b;
            }
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int w[8];
                F::block(hs[u], c[u], w);
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const int4* xa = (const int4*)(xq + (u64)j * K + (u64)bs[u] * 32);
                    const int4 a0 = xa[0], a1 = xa[1];
                    const int a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                    int sumi = 0, sumx = 0;
#pragma unroll
                    for (int l = 0; l < 8; l++) {
                        sumi = rf_dp4a(w[l], a[l], sumi);
                        if (F::OFF) sumx = rf_dp4a(0x01010101, a[l], sumx);
                    }
                    sumi -= F::OFF * sumx;
                    const float2 ds = xds[(u64)j * nb + bs[u]];
                    acc[j] += (dw[u] * ds.x) * (float)sumi;
                    if (F::MIN) acc[j] += mw[u] * ds.y;
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        float v = acc[j];
#pragma unroll
        for (int m = 16; m > 0; m >>= 1) v += rf_shfl_xor(v, m);
        if (live && lane == 0) y[(u64)j * N + row] = v;
    }
}

#define RF_MMVQB_ONE(name, F, NT)                                                            \
    extern "C" __global__ void mmvqb##NT##_##name(                                           \
        const u8* C0, const u8* H0, float* y0, int N0, const u8* C1, const u8* H1, float* y1, \
        int N1, const u8* C2, const u8* H2, float* y2, int N2, const i8* xq,                  \
        const float2* xds, int K) {                                                          \
        rf_grid_go();                                                                        \
        mmvqb<F, NT>(C0, H0, y0, N0, C1, H1, y1, N1, C2, H2, y2, N2, xq, xds, K);            \
    }

#define RF_MMVQB_KERNELS(name, F)                                                            \
    RF_MMVQB_ONE(name, F, 1) RF_MMVQB_ONE(name, F, 2) RF_MMVQB_ONE(name, F, 3)                \
    RF_MMVQB_ONE(name, F, 4) RF_MMVQB_ONE(name, F, 5) RF_MMVQB_ONE(name, F, 6)                \
    RF_MMVQB_ONE(name, F, 7) RF_MMVQB_ONE(name, F, 8)

RF_MMVQB_KERNELS(q4_0, DotQ4_0)
RF_MMVQB_KERNELS(q4_1, DotQ4_1)
RF_MMVQB_KERNELS(q5_0, DotQ5_0)
RF_MMVQB_KERNELS(q5_1, DotQ5_1)
RF_MMVQB_KERNELS(iq4_nl, DotIQ4_NL)
