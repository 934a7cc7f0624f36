// Tiled products of Q4_K, Q5_K and Q6_K (plain rows of 256-element blocks) with Q8_K
// activations on int8 tensor cores: what mmvqk (matvec_q8k.cu) and the CPU compute, for
// batches too large for it. Per 256-block and (row, token) the exact integer sums
// isum = sum_g sc_g * dot_g over the block's sub-blocks (one mma k step of 32 values each; Q6_K's
// two 16-value halves with their own scales take one mma each, the other half zeroed) and
// (Q4_K, Q5_K) msum = sum_j m_j * (sum of sub-block j's activation codes); then, in block
// order as the CPU adds them, acc += dy * d * isum - dy * dmin * msum (Q6_K: d * dy * isum).
//
// Tiles as mmq.cu's (64 rows x 64 tokens a block of 128 threads, a 32 x 32 corner a
// 32-thread group); one 256-block a shared-memory stage.

// Row stride of the staged words: 64 a 256-block, padded against bank conflicts.
#define MMQK_LD (64 + 4)

// A format's (row, sub-block j) unit: its 32 codes as eight signed-byte words, the scales of
// its two 16-value halves, its minimum's scale; the block's d and dmin.
template <class KF>
struct MqKm {
    static const bool MIN = true, HALVES = false;
    static __device__ __forceinline__ void unit(const u8* blk, int j, u32* w, int& s0, int& s1,
                                                int& m) {
        KF::codes(blk, j, (int*)w);
        rf_k_scale_min(blk + 4, j, s0, m);
        s1 = s0;
    }
    static __device__ __forceinline__ float d(const u8* blk) { return rf_ldh(blk); }
    static __device__ __forceinline__ float dmin(const u8* blk) { return rf_ldh(blk + 2); }
};

struct MqQ6_K {
    static const bool MIN = false, HALVES = true;
    static __device__ __forceinline__ void unit(const u8* blk, int j, u32* w, int& s0, int& s1,
                                                int& m) {
        KQ6_K::codes(blk, j, (int*)w);
        KQ6_K::scales(blk, j, s0, s1);
        m = 0;
    }
    static __device__ __forceinline__ float d(const u8* blk) { return rf_ldh(blk + 208); }
    static __device__ __forceinline__ float dmin(const u8*) { return 0.0f; }
};

template <class KF, class U>
__device__ __forceinline__ void mmqk(const u8* __restrict__ W, u64 row_bytes,
                                     const i8* __restrict__ xq, const float2* __restrict__ xds,
                                     int K, int n, float* __restrict__ y, int N) {
    __shared__ u32 Ws[MMQ_ROWS][MMQK_LD];
    __shared__ int Wsc[MMQ_ROWS][16], Wm[MMQ_ROWS][8];
    __shared__ float Wd[MMQ_ROWS], Wdm[MMQ_ROWS];
    __shared__ u32 Xs[MMQ_TOKS][MMQK_LD];
    __shared__ int Xb[MMQ_TOKS][8];
    __shared__ float Xdy[MMQ_TOKS];
    const int nb = K / 256;
    const int row0 = blockIdx.x * MMQ_ROWS, tok0 = blockIdx.y * MMQ_TOKS;
    const int grp = threadIdx.x / 32;
    const int wr = (grp / 2) * 32, wt = (grp % 2) * 32;
    float acc[2][4][4];
    mmq_zero(acc);
    for (int b = 0; b < nb; b++) {
        for (int u = threadIdx.x; u < MMQ_ROWS * 8; u += blockDim.x) {
            const int r = u / 8, j = u % 8;
            u32 w[8];
            int s0 = 0, s1 = 0, m = 0;
            float d = 0.0f, dmin = 0.0f;
            if (row0 + r < N) {
                const u8* blk = W + (u64)(row0 + r) * row_bytes + (u64)b * KF::BYTES;
                U::unit(blk, j, w, s0, s1, m);
                d = U::d(blk);
                dmin = U::dmin(blk);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) w[i] = 0;
            }
#pragma unroll
            for (int i = 0; i < 8; i++) Ws[r][j * 8 + i] = w[i];
            Wsc[r][2 * j] = s0;
            Wsc[r][2 * j + 1] = s1;
            Wm[r][j] = m;
            if (j == 0) {
                Wd[r] = d;
                Wdm[r] = dmin;
            }
        }
        for (int u = threadIdx.x; u < MMQ_TOKS * 8; u += blockDim.x) {
            const int tk = u / 8, j = u % 8, tok = tok0 + tk;
            u32* o = &Xs[tk][j * 8];
            int bs = 0;
            float dy = 0.0f;
            if (tok < n) {
                const u64 at = (u64)tok * K + (u64)b * 256;
                rf_words8(xq + at + j * 32, o);
#pragma unroll
                for (int i = 0; i < 8; i++) bs = rf_dp4a(0x01010101, (int)o[i], bs);
                dy = xds[at / 32].x;
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) o[i] = 0;
            }
            Xb[tk][j] = bs;
            if (j == 0) Xdy[tk] = dy;
        }
        __syncthreads();
        int isum[2][4][4];
        mmq_zero(isum);
        for (int ks = 0; ks < 8; ks++) {
            u32 a[2][4], bf[4][2];
            mmq_frags<MMQK_LD>(Ws, Xs, ks * 8, wr, wt, a, bf);
#pragma unroll
            for (int i = 0; i < 2; i++) {
                // The first and second 16 values of the step alone (A's words 0, 1 and 2, 3).
                const u32 lo[4] = {a[i][0], a[i][1], 0u, 0u}, hi[4] = {0u, 0u, a[i][2], a[i][3]};
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    int c[4] = {0, 0, 0, 0}, c1[4] = {0, 0, 0, 0};
                    if (U::HALVES) {
                        rf_mma_s8(c, lo, bf[j]);
                        rf_mma_s8(c1, hi, bf[j]);
                    } else {
                        rf_mma_s8(c, a[i], bf[j]);
                    }
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int r = mmq_row(wr, i, e);
                        isum[i][j][e] += Wsc[r][2 * ks] * c[e];
                        if (U::HALVES) isum[i][j][e] += Wsc[r][2 * ks + 1] * c1[e];
                    }
                }
            }
        }
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = mmq_row(wr, i, e), tk = mmq_tok(wt, j, e);
                    const float dy = Xdy[tk];
                    if (U::MIN) {
                        int msum = 0;
#pragma unroll
                        for (int s = 0; s < 8; s++) msum += Wm[r][s] * Xb[tk][s];
                        acc[i][j][e] += dy * Wd[r] * (float)isum[i][j][e] -
                                        dy * Wdm[r] * (float)msum;
                    } else {
                        acc[i][j][e] += Wd[r] * dy * (float)isum[i][j][e];
                    }
                }
        __syncthreads();
    }
    mmq_store(acc, row0 + wr, tok0 + wt, y, N, n);
}

#define RF_MMQK_KERNEL(name, KF, U)                                                          \
    extern "C" __global__ void __launch_bounds__(128)                                        \
    mmqk_##name(const u8* W, u64 row_bytes, const i8* xq, const float2* xds, int K, int n,   \
                float* y, int N) {                                                           \
        rf_grid_start();                                                                     \
        mmqk<KF, U>(W, row_bytes, xq, xds, K, n, y, N);                                      \
    }

RF_MMQK_KERNEL(q4_k, KQ4_K, MqKm<KQ4_K>)
RF_MMQK_KERNEL(q5_k, KQ5_K, MqKm<KQ5_K>)
RF_MMQK_KERNEL(q6_k, KQ6_K, MqQ6_K)
