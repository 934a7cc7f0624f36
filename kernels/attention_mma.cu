// Prefill attention on tensor cores (flash attention): the work of attend_rows_f16 (many
// rows of one entry list a block, one KV head) with the two products as f16 mma
// (rf_mma_f16: m16n8k16, f32 sums). A block of four 32-lane groups takes up to ATM_Q
// queries of one KV head (its rows times the G query heads that read it), 16 a group; per
// tile of ATM_KEYS entries it stages the keys (rows padded so that the fragment loads hit 32
// banks) and the values transposed (each dimension's keys in a row: the B operand of P V)
// in shared memory. A group then computes its 16 x ATM_KEYS scores from the queries' f16
// fragments held in registers, scales, soft-caps and masks them (causal position and
// sliding window per query), keeps an online softmax per query (two a lane) and adds
// P V, with P rounded to f16 and its row sums taken of the rounded values (so that the
// weights the products use sum to the divisor). Head sizes up to ATM_D, multiples of 16
// (keys) and 8 (values).

#define ATM_Q 64
#define ATM_KEYS 64
#define ATM_D 128
#define ATM_KW (ATM_D / 2 + 4)
#define ATM_VW (ATM_KEYS / 2 + 4)

// Two floats as the f16 pair of one fragment register (the first in the low half).
__device__ __forceinline__ u32 atm_pack(float lo, float hi) {
    return (u32)rf_f32_to_f16(lo) | ((u32)rf_f32_to_f16(hi) << 16);
}

extern "C" __global__ void __launch_bounds__(128)
attend_rows_mma(const float* __restrict__ q, const u16* __restrict__ kc,
                const u16* __restrict__ vc, float* __restrict__ out,
                const int4* __restrict__ meta, const uint2* __restrict__ ent, int n_head,
                int n_head_kv, int hd, int vhd, int n_rows, float scale, float softcap) {
    rf_grid_start();
    __shared__ u32 Ks[ATM_KEYS][ATM_KW];
    __shared__ u32 Vt[ATM_D][ATM_VW];
    __shared__ int Pos[ATM_KEYS];
    const int G = n_head / n_head_kv, kvh = blockIdx.x;
    const int rows = ATM_Q / G;
    const int r0 = blockIdx.y * rows, rend = min(r0 + rows, n_rows);
    const int grp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int kd = n_head_kv * hd, vd = n_head_kv * vhd, hw = hd / 2, vw = vhd / 2;
    const int ks = hd / 16, vt = vhd / 8;
    u16* vt16 = (u16*)&Vt[0][0];
    for (int rs = r0; rs < rend;) {
        int re, maxpos, minlo;
        const int4 m0 = att_run(meta, rs, rend, &re, &maxpos, &minlo);
        const int nq = (re - rs) * G;
        // This lane's two queries (fragment rows g and g + 8 of its group's 16): their row's
        // newest and oldest visible positions; a query past nq sees nothing.
        int qi[2], hi[2], lo[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            qi[h] = 16 * grp + g + 8 * h;
            hi[h] = -1;
            lo[h] = 0x7fffffff;
            if (qi[h] < nq) {
                const int4 mr = meta[rs + qi[h] / G];
                hi[h] = mr.z;
                lo[h] = mr.w;
            }
        }
        // The queries as A fragments, rounded to f16 (zeros past nq).
        u32 qf[ATM_D / 16][4];
#pragma unroll
        for (int st = 0; st < ATM_D / 16; st++) {
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int h = r & 1, d = 16 * st + 2 * t + 8 * (r >> 1);
                qf[st][r] = 0;
                if (st < ks && qi[h] < nq) {
                    const float* qp = q + ((u64)(rs + qi[h] / G) * n_head +
                                           (u64)kvh * G + qi[h] % G) * hd + d;
                    qf[st][r] = atm_pack(qp[0], qp[1]);
                }
            }
        }
        float o[ATM_D / 8][4], mx[2], l[2];
#pragma unroll
        for (int j = 0; j < ATM_D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
        mx[0] = mx[1] = RF_NEG_INF;
        l[0] = l[1] = 0.0f;
        for (int t0 = 0; t0 < m0.y; t0 += ATM_KEYS) {
            const int nk = min(ATM_KEYS, m0.y - t0);
            if ((int)ent[m0.x + t0].y > maxpos) break;
            if ((int)ent[m0.x + t0 + nk - 1].y < minlo) continue;
            __syncthreads();
            for (int i = threadIdx.x; i < ATM_KEYS * hw; i += blockDim.x) {
                const int j = i / hw, w = i % hw;
                u32 kw = 0;
                if (j < nk) kw = ((const u32*)(kc + (u64)ent[m0.x + t0 + j].x * kd + (u64)kvh * hd))[w];
                Ks[j][w] = kw;
            }
            for (int i = threadIdx.x; i < ATM_KEYS * vw; i += blockDim.x) {
                const int j = i / vw, w = i % vw;
                u32 vv = 0;
                if (j < nk) vv = ((const u32*)(vc + (u64)ent[m0.x + t0 + j].x * vd + (u64)kvh * vhd))[w];
                vt16[(2 * w) * (2 * ATM_VW) + j] = (u16)vv;
                vt16[(2 * w + 1) * (2 * ATM_VW) + j] = (u16)(vv >> 16);
            }
            if (threadIdx.x < ATM_KEYS)
                Pos[threadIdx.x] = threadIdx.x < nk ? (int)ent[m0.x + t0 + threadIdx.x].y : 0x7fffffff;
            __syncthreads();
            // Scores: 8 tiles of 8 keys, each the sum over the head's 16-dimension steps.
            float s[ATM_KEYS / 8][4];
#pragma unroll
            for (int n = 0; n < ATM_KEYS / 8; n++) {
                s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
                for (int st = 0; st < ATM_D / 16; st++) {
                    if (st < ks) {
                        const u32 b[2] = {Ks[8 * n + g][8 * st + t], Ks[8 * n + g][8 * st + 4 + t]};
                        rf_mma_f16(s[n], qf[st], b);
                    }
                }
            }
            // Scale, soft-cap and mask; each query's new maximum over its four lanes.
            float tmax[2] = {RF_NEG_INF, RF_NEG_INF};
#pragma unroll
            for (int n = 0; n < ATM_KEYS / 8; n++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int h = e >> 1, p = Pos[8 * n + 2 * t + (e & 1)];
                    float v = s[n][e] * scale;
                    if (softcap > 0.0f) v = softcap * tanhf(v / softcap);
                    v = (p <= hi[h] && p >= lo[h]) ? v : RF_NEG_INF;
                    s[n][e] = v;
                    tmax[h] = fmaxf(tmax[h], v);
                }
            }
            float corr[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
            for (int h = 0; h < 2; h++) {
                tmax[h] = fmaxf(tmax[h], rf_shfl_xor(tmax[h], 1));
                tmax[h] = fmaxf(tmax[h], rf_shfl_xor(tmax[h], 2));
                const float nmx = fmaxf(mx[h], tmax[h]);
                corr[h] = nmx == RF_NEG_INF ? 1.0f : expf(mx[h] - nmx);
                mx[h] = nmx;
            }
            // P in f16 as the A fragments of four 16-key steps: score tile 2k gives a[0] and
            // a[1] (rows g, g + 8), tile 2k + 1 gives a[2] and a[3].
            u32 pf[ATM_KEYS / 16][4];
#pragma unroll
            for (int n = 0; n < ATM_KEYS / 8; n++) {
                float e[4];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int h = i >> 1;
                    const float x = s[n][i] == RF_NEG_INF ? 0.0f : expf(s[n][i] - mx[h]);
                    e[i] = rf_f16_to_f32(rf_f32_to_f16(x));
                    sum[h] += e[i];
                }
                pf[n / 2][2 * (n & 1)] = atm_pack(e[0], e[1]);
                pf[n / 2][2 * (n & 1) + 1] = atm_pack(e[2], e[3]);
            }
#pragma unroll
            for (int h = 0; h < 2; h++) {
                sum[h] += rf_shfl_xor(sum[h], 1);
                sum[h] += rf_shfl_xor(sum[h], 2);
                l[h] = l[h] * corr[h] + sum[h];
            }
            // O = O * corr + P V: per 8-dimension tile, four 16-key steps.
#pragma unroll
            for (int j = 0; j < ATM_D / 8; j++) {
                if (j < vt) {
                    o[j][0] *= corr[0];
                    o[j][1] *= corr[0];
                    o[j][2] *= corr[1];
                    o[j][3] *= corr[1];
#pragma unroll
                    for (int k = 0; k < ATM_KEYS / 16; k++) {
                        const u32 b[2] = {Vt[8 * j + g][8 * k + t], Vt[8 * j + g][8 * k + 4 + t]};
                        rf_mma_f16(o[j], pf[k], b);
                    }
                }
            }
        }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            if (qi[h] < nq) {
                float* op = out + ((u64)(rs + qi[h] / G) * n_head + (u64)kvh * G + qi[h] % G) * vhd;
#pragma unroll
                for (int j = 0; j < ATM_D / 8; j++) {
                    if (j < vt) {
                        op[8 * j + 2 * t] = l[h] > 0.0f ? o[j][2 * h] / l[h] : 0.0f;
                        op[8 * j + 2 * t + 1] = l[h] > 0.0f ? o[j][2 * h + 1] / l[h] : 0.0f;
                    }
                }
            }
        }
        __syncthreads();
        rs = re;
    }
}
