// Quantized matrix products. W is N rows of K weights in a ggml format (row_bytes apart);
// x holds NT rows of K floats; y gets NT rows of N floats.
//
// mmv: one 32-thread group per output row, the lanes striding over the row eight elements at a time,
// every weight dequantized once and used for all NT tokens (decode and small batches).
// mmv_id: one token a pair through the matrix of the pair's expert (mixture of experts,
// kernels/moe.cu): blockIdx.x is the pair, blockIdx.y the block of four output rows.
// deq_f16: the whole matrix to f16 for the vendor BLAS (prefill).
// embed: the embedding rows of a batch's tokens.

template <class F, int NT>
__device__ __forceinline__ void mmv(const u8* __restrict__ W, u64 row_bytes,
                                    const float* __restrict__ x, int K,
                                    float* __restrict__ y, int N, int row_block) {
    // 32-thread groups (also on wave64: the host launches four rows a block of 128).
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = row_block * (blockDim.x / 32) + warp;
    if (row >= N) return;
    const u8* w = W + (u64)row * row_bytes;
    const int nch = K / 8, cpb = F::QK / 8;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int c = lane; c < nch; c += 32) {
        float v[8];
        F::deq8(w + (u64)(c / cpb) * F::BYTES, (c % cpb) * 8, v);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float4* xp = (const float4*)(x + (u64)t * K + c * 8);
            float4 a = xp[0], b = xp[1];
            acc[t] += v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w + v[4] * b.x +
                      v[5] * b.y + v[6] * b.z + v[7] * b.w;
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float s = rf_sum32(acc[t]);
        if (lane == 0) y[(u64)t * N + row] = s;
    }
}

// Pair p = blockIdx.x: expert ids[p]'s matrix (expert_bytes apart in W) times input row
// p / x_div of x (x_div: the pairs per row for the gate and up products, 1 for down).
template <class F>
__device__ __forceinline__ void mmv_id(const u8* __restrict__ W, u64 row_bytes,
                                       u64 expert_bytes, int n_expert,
                                       const int* __restrict__ ids, const float* __restrict__ x,
                                       int x_div, int K, float* __restrict__ y, int N) {
    const int p = blockIdx.x, e = ids[p];
    if (e < 0 || e >= n_expert) {
        // Not an expert of this tensor (the router never makes one): zeros, no stray read.
        const int row = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
        if (threadIdx.x % 32 == 0 && row < N) y[(u64)p * N + row] = 0.0f;
        return;
    }
    mmv<F, 1>(W + (u64)e * expert_bytes, row_bytes, x + (u64)(p / x_div) * K, K,
              y + (u64)p * N, N, blockIdx.y);
}

template <class F>
__device__ __forceinline__ void deq_f16(const u8* __restrict__ W, u64 row_bytes,
                                        u16* __restrict__ out, int N, int K) {
    const u64 nch = (u64)K / 8;
    const u64 id = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= nch * (u64)N) return;
    const u64 row = id / nch;
    const int c = (int)(id % nch), cpb = F::QK / 8;
    float v[8];
    F::deq8(W + row * row_bytes + (u64)(c / cpb) * F::BYTES, (c % cpb) * 8, v);
    rf_store8_f16(out + row * (u64)K + (u64)c * 8, v);
}

template <class F>
__device__ __forceinline__ void embed(const u8* __restrict__ W, u64 row_bytes,
                                      const u32* __restrict__ tokens, float* __restrict__ x,
                                      int d, float scale) {
    const u8* w = W + (u64)tokens[blockIdx.x] * row_bytes;
    float* o = x + (u64)blockIdx.x * d;
    const int cpb = F::QK / 8;
    for (int c = threadIdx.x; c < d / 8; c += blockDim.x) {
        float v[8];
        F::deq8(w + (u64)(c / cpb) * F::BYTES, (c % cpb) * 8, v);
#pragma unroll
        for (int l = 0; l < 8; l++) o[c * 8 + l] = v[l] * scale;
    }
}

#define RF_MMV_ONE(name, F, NT)                                                          \
    extern "C" __global__ void mmv##NT##_##name(const u8* W, u64 row_bytes,             \
                                                const float* x, int K, float* y, int N) { \
        rf_grid_start();                                                                  \
        mmv<F, NT>(W, row_bytes, x, K, y, N, blockIdx.x);                               \
    }

#define RF_MATVEC_KERNELS(name, F)                                                      \
    RF_MMV_ONE(name, F, 1) RF_MMV_ONE(name, F, 2) RF_MMV_ONE(name, F, 3)                \
    RF_MMV_ONE(name, F, 4) RF_MMV_ONE(name, F, 5) RF_MMV_ONE(name, F, 6)                \
    RF_MMV_ONE(name, F, 7) RF_MMV_ONE(name, F, 8)                                       \
    extern "C" __global__ void mmv_id_##name(const u8* W, u64 row_bytes, u64 expert_bytes,\
                                             int n_expert, const int* ids, const float* x,\
                                             int x_div, int K, float* y, int N) {        \
        rf_grid_start();                                                                 \
        mmv_id<F>(W, row_bytes, expert_bytes, n_expert, ids, x, x_div, K, y, N);         \
    }                                                                                   \
    extern "C" __global__ void deq_f16_##name(const u8* W, u64 row_bytes, u16* out,     \
                                              int N, int K) {                           \
        rf_grid_start();                                                                \
        deq_f16<F>(W, row_bytes, out, N, K);                                            \
    }                                                                                   \
    extern "C" __global__ void embed_##name(const u8* W, u64 row_bytes, const u32* tok, \
                                            float* x, int d, float scale) {             \
        rf_grid_start();                                                                \
        embed<F>(W, row_bytes, tok, x, d, scale);                                       \
    }

RF_FORMATS(RF_MATVEC_KERNELS)
