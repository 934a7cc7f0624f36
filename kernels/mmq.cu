// Tiled products of the 32-element formats (split layout, matvec_q8.cu, or the file's
// blocks) with Q8-quantized activations on int8 tensor cores: what mmvq computes, for
// batches too large for it (prefill, many sequences), without dequantizing the weights to
// f16. Per block of 32 weights and 32 activation codes the exact integer sum (mma
// m16n8k32: a quant block is one k step), then, in block order as the CPU adds them,
// acc += (d_w * d_x) * sum, and for the formats with a minimum acc += m_w * s_x.
//
// A block of 128 threads takes MMQ_ROWS weight rows x MMQ_TOKS tokens; each 32-thread group a
// 32 x 32 corner of it (2 x 4 mma tiles). Stages of MMQ_KB quant blocks go through shared
// memory: the weights unpacked to signed bytes (code - OFF, so the sums need no correction),
// the activation codes as they are, and both blocks' scales.

#define MMQ_ROWS 64
#define MMQ_TOKS 64
#define MMQ_KB 4
// Row stride of the staged words: 8 a block, padded so that a fragment's 32 loads fall in
// 32 different banks.
#define MMQ_LD (MMQ_KB * 8 + 4)

// A whole block's codes as eight words in activation order, signed: sixteen code bytes
// through the format's `block`, minus OFF (IQ4_NL's table values are signed already, OFF 0).
// AL: the codes are 16-byte aligned (split layout); else 2-byte (the file's blocks).
template <bool AL>
__device__ __forceinline__ void mmq_words(const u8* q, u32* w, int n) {
    if (AL) {
        for (int i = 0; i < n; i += 4) {
            const uint4 v = *(const uint4*)(q + 4 * i);
            w[i] = v.x;
            w[i + 1] = v.y;
            w[i + 2] = v.z;
            w[i + 3] = v.w;
        }
    } else {
        for (int i = 0; i < n; i++) w[i] = rf_ld32h(q + 4 * i);
    }
}

template <class F>
struct MmqBlock {
    template <bool AL>
    static __device__ __forceinline__ void unpack(const u8* h, const u8* q, u32* w) {
        u32 c[4];
        mmq_words<AL>(q, c, 4);
        F::block(h, c, (int*)w);
        if (F::OFF != 0)
#pragma unroll
            for (int i = 0; i < 8; i++) w[i] = rf_sub_bytes(w[i], F::OFF);
    }
};

// Q8_0: 32 signed code bytes, as they are.
template <>
struct MmqBlock<DotQ8_0> {
    template <bool AL>
    static __device__ __forceinline__ void unpack(const u8*, const u8* q, u32* w) {
        mmq_words<AL>(q, w, 8);
    }
};

// Where block b of row r sits: the split layout (codes C, headers H, nb blocks a row) or
// the file's blocks (rows of row_bytes from W, each block its HB header bytes, then codes).
template <class F>
struct MmqSplit {
    static const bool AL = true;
    const u8* C;
    const u8* H;
    int nb;
    __device__ __forceinline__ void at(int r, int b, const u8*& h, const u8*& q) const {
        const u64 blk = (u64)r * nb + b;
        h = H + blk * F::HB;
        q = C + blk * F::QB;
    }
};
template <class F>
struct MmqRows {
    static const bool AL = false;
    const u8* W;
    u64 row_bytes;
    __device__ __forceinline__ void at(int r, int b, const u8*& h, const u8*& q) const {
        h = W + (u64)r * row_bytes + (u64)b * (F::HB + F::QB);
        q = h + F::HB;
    }
};

// The fragments of the 32 x 32 corner (rows wr.., tokens wt..) of one k step (eight words
// from word w0 of each staged row): a[i] rows wr + 16 i .. (m16n8k32's A: rows g and g + 8,
// words t and 4 + t), bf[j] tokens wt + 8 j .. (B: token g, words t and 4 + t).
template <int LD>
__device__ __forceinline__ void mmq_frags(const u32 (*Ws)[LD], const u32 (*Xs)[LD], int w0,
                                          int wr, int wt, u32 a[2][4], u32 bf[4][2]) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = wr + 16 * i + g;
        a[i][0] = Ws[r][w0 + t];
        a[i][1] = Ws[r + 8][w0 + t];
        a[i][2] = Ws[r][w0 + 4 + t];
        a[i][3] = Ws[r + 8][w0 + 4 + t];
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int tk = wt + 8 * j + g;
        bf[j][0] = Xs[tk][w0 + t];
        bf[j][1] = Xs[tk][w0 + 4 + t];
    }
}

// The row and token of a lane's result e of tile (i, j) (m16n8's C: rows g, g + 8, tokens
// 2t, 2t + 1).
__device__ __forceinline__ int mmq_row(int wr, int i, int e) {
    return wr + 16 * i + (threadIdx.x % 32) / 4 + (e >= 2 ? 8 : 0);
}
__device__ __forceinline__ int mmq_tok(int wt, int j, int e) {
    return wt + 8 * j + 2 * (threadIdx.x % 4) + (e & 1);
}

// A 32 x 32 corner's 2 x 4 tiles of four values a lane, zeroed.
template <class T>
__device__ __forceinline__ void mmq_zero(T (&a)[2][4][4]) {
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) a[i][j][e] = T(0);
}

// A 32 x 32 corner's sums to y (token-major rows of N), inside the n x N result.
__device__ __forceinline__ void mmq_store(const float (*acc)[4][4], int r0, int t0,
                                          float* __restrict__ y, int N, int n) {
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = mmq_row(r0, i, e), tok = mmq_tok(t0, j, e);
                if (row < N && tok < n) y[(u64)tok * N + row] = acc[i][j][e];
            }
}

template <class F, class L>
__device__ __forceinline__ void mmq(const L lay, const i8* __restrict__ xq,
                                    const float2* __restrict__ xds, int K, int n,
                                    float* __restrict__ y, int N) {
    __shared__ u32 Ws[MMQ_ROWS][MMQ_LD];
    __shared__ float Wd[MMQ_ROWS][MMQ_KB], Wm[MMQ_ROWS][MMQ_KB];
    __shared__ u32 Xs[MMQ_TOKS][MMQ_LD];
    __shared__ float2 Xd[MMQ_TOKS][MMQ_KB];
    const int nb = K / 32;
    const int row0 = blockIdx.x * MMQ_ROWS, tok0 = blockIdx.y * MMQ_TOKS;
    const int grp = threadIdx.x / 32;
    const int wr = (grp / 2) * 32, wt = (grp % 2) * 32;
    float acc[2][4][4];
    mmq_zero(acc);
    for (int kb0 = 0; kb0 < nb; kb0 += MMQ_KB) {
        for (int u = threadIdx.x; u < MMQ_ROWS * MMQ_KB; u += blockDim.x) {
            const int r = u / MMQ_KB, kb = u % MMQ_KB, b = kb0 + kb;
            u32 w[8];
            float d = 0.0f, m = 0.0f;
            if (b < nb && row0 + r < N) {
                const u8 *h, *q;
                lay.at(row0 + r, b, h, q);
                MmqBlock<F>::template unpack<L::AL>(h, q, w);
                d = rf_f16_to_f32(*(const u16*)h);
                if (F::MIN) m = rf_f16_to_f32(*(const u16*)(h + 2));
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) w[i] = 0;
            }
#pragma unroll
            for (int i = 0; i < 8; i++) Ws[r][kb * 8 + i] = w[i];
            Wd[r][kb] = d;
            Wm[r][kb] = m;
        }
        for (int u = threadIdx.x; u < MMQ_TOKS * MMQ_KB; u += blockDim.x) {
            const int tk = u / MMQ_KB, kb = u % MMQ_KB, b = kb0 + kb, tok = tok0 + tk;
            u32* o = &Xs[tk][kb * 8];
            float2 ds = make_float2(0.0f, 0.0f);
            if (b < nb && tok < n) {
                rf_words8(xq + (u64)tok * K + (u64)b * 32, o);
                ds = xds[(u64)tok * nb + b];
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) o[i] = 0;
            }
            Xd[tk][kb] = ds;
        }
        __syncthreads();
        const int kbs = nb - kb0 < MMQ_KB ? nb - kb0 : MMQ_KB;
        for (int kb = 0; kb < kbs; kb++) {
            u32 a[2][4], bf[4][2];
            mmq_frags<MMQ_LD>(Ws, Xs, kb * 8, wr, wt, a, bf);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    int c[4] = {0, 0, 0, 0};
                    rf_mma_s8(c, a[i], bf[j]);
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int r = mmq_row(wr, i, e), tk = mmq_tok(wt, j, e);
                        const float2 ds = Xd[tk][kb];
                        acc[i][j][e] += (Wd[r][kb] * ds.x) * (float)c[e];
                        if (F::MIN) acc[i][j][e] += Wm[r][kb] * ds.y;
                    }
                }
        }
        __syncthreads();
    }
    mmq_store(acc, row0 + wr, tok0 + wt, y, N, n);
}

// mmq_*: the split layout; mmqr_*: the file's blocks (a tied output matrix, which the
// embedding lookup reads in that layout).
#define RF_MMQ_KERNEL(name, F)                                                               \
    extern "C" __global__ void __launch_bounds__(128)                                        \
    mmq_##name(const u8* C, const u8* H, const i8* xq, const float2* xds, int K, int n,      \
               float* y, int N) {                                                            \
        rf_grid_start();                                                                     \
        mmq<F>(MmqSplit<F>{C, H, K / 32}, xq, xds, K, n, y, N);                              \
    }                                                                                        \
    extern "C" __global__ void __launch_bounds__(128)                                        \
    mmqr_##name(const u8* W, u64 row_bytes, const i8* xq, const float2* xds, int K, int n,   \
                float* y, int N) {                                                           \
        rf_grid_start();                                                                     \
        mmq<F>(MmqRows<F>{W, row_bytes}, xq, xds, K, n, y, N);                               \
    }

RF_MMQ_KERNEL(q4_0, DotQ4_0)
RF_MMQ_KERNEL(q4_1, DotQ4_1)
RF_MMQ_KERNEL(q5_0, DotQ5_0)
RF_MMQ_KERNEL(q5_1, DotQ5_1)
RF_MMQ_KERNEL(q8_0, DotQ8_0)
RF_MMQ_KERNEL(iq4_nl, DotIQ4_NL)
