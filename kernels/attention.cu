// Attention over the paged f16 cache. The host resolves each sequence's block table into the
// cache rows (cells) it holds and their positions, once per decode: entries {cell, pos}. A
// query row attends to the entries of its sequence whose position is within [lo, pos]
// (causal, sliding window).
//
// meta: per query row {offset into the entries, count, pos, lo}. One block per (head, row),
// ATT_WARPS 32-thread groups (also on wave64) each taking every ATT_WARPS-th entry with an online softmax, combined at
// the end. Head sizes up to 256; GQA: query head h reads KV head
// h / (n_head / n_head_kv). Scores: q.k * scale, soft-capped when softcap > 0. With xq, the
// output is also quantized to Q8 blocks (codes xq, scales xds) for the next product.

#define ATT_WARPS 4
#define ATT_MAX_D 256

// Output dimension i of a block's attention: its groups' partial sums, each rescaled to the
// common maximum gm, over the total weight tl.
__device__ __forceinline__ float att_out(const float (*s_acc)[ATT_MAX_D], const float* s_m,
                                         float gm, float tl, int i) {
    float o = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++)
        if (s_m[w] > RF_NEG_INF) o += s_acc[w][i] * expf(s_m[w] - gm);
    return tl > 0.0f ? o / tl : 0.0f;
}

// Stores a block's n outputs op[i] = out(i) (n a multiple of 32 with xq), and with xq also
// quantizes them to Q8 blocks as quantize_q8 would, for the output projection's integer-dot
// products: four outputs a lane, eight lanes a block of 32, codes and scales from block row4
// / 8 on (row4: the index of op's first four outputs); with kind 2 Q8_K blocks instead
// (quantize_q8k; n and op's first value's index multiples of 256). Without xq, with yh (op's first
// value's slot of the f16 GEMM input) the outputs are also rounded as quantize_act's `kind`
// into f16 (op's first value on a boundary of that kind's blocks). Every thread of the block
// calls it.
template <class Out>
__device__ __forceinline__ void att_store(float* __restrict__ op, int n, int* __restrict__ xq,
                                          float2* __restrict__ xds, u64 row4, u16* yh, int kind,
                                          Out out) {
    if (xq == nullptr || kind == 2) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) op[i] = out(i);
        if (yh) rf_block_f16(op, yh, 0, n, n, kind);
        if (xq) rf_block_q8k(op, (i8*)xq + row4 * 4, xds + row4 / 8, 0, n, n);
        return;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int base = warp * 32; base < n / 4; base += blockDim.x) {
        const int i4 = base + lane;
        const bool ok = i4 < n / 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (ok) {
            v = make_float4(out(4 * i4), out(4 * i4 + 1), out(4 * i4 + 2), out(4 * i4 + 3));
            op[4 * i4] = v.x;
            op[4 * i4 + 1] = v.y;
            op[4 * i4 + 2] = v.z;
            op[4 * i4 + 3] = v.w;
        }
        rf_q8_group(v, xq, xds, row4 + i4, ok);
    }
}

extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32)
attend_f16(const float* __restrict__ q, const u16* __restrict__ kc,
           const u16* __restrict__ vc, float* __restrict__ out,
           const int4* __restrict__ meta, const uint2* __restrict__ ent, int n_head, int n_head_kv, int hd, int vhd,
           float scale, float softcap, int* __restrict__ xq, float2* __restrict__ xds,
           u16* yh, int kind) {
    rf_grid_start();
    const int h = blockIdx.x, r = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kvh = h / (n_head / n_head_kv);
    const int kd = n_head_kv * hd, vd = n_head_kv * vhd;
    const int4 m = meta[r];
    // Lane `lane` holds dimensions lane, lane + 32, ... of q and of the output.
    const int NR = ATT_MAX_D / 32;
    float qr[NR], acc[NR];
    const float* qp = q + ((u64)r * n_head + h) * hd;
#pragma unroll
    for (int i = 0; i < NR; i++) {
        qr[i] = i * 32 + lane < hd ? qp[i * 32 + lane] : 0.0f;
        acc[i] = 0.0f;
    }
    float mx = RF_NEG_INF, l = 0.0f;
    // A group's entries j, j + ATT_WARPS, ... in order, two a step: both entries' keys and
    // values are loaded before either is taken (two chains of dependent loads in flight,
    // not one: a decode of few rows has few blocks, and each waits on its loads).
    for (int j0 = warp; j0 < m.y; j0 += 2 * ATT_WARPS) {
        u16 kh[2][NR], vh[2][NR];
        bool live[2];
#pragma unroll
        for (int t = 0; t < 2; t++) {
            const int j = j0 + t * ATT_WARPS;
            live[t] = false;
            u64 cell = 0;
            if (j < m.y) {
                const uint2 en = ent[m.x + j];
                const int p = (int)en.y;
                live[t] = p <= m.z && p >= m.w;
                cell = live[t] ? en.x : 0;
            }
            const u16* kp = kc + cell * kd + (u64)kvh * hd;
            const u16* vp = vc + cell * vd + (u64)kvh * vhd;
#pragma unroll
            for (int i = 0; i < NR; i++) {
                kh[t][i] = live[t] && i * 32 + lane < hd ? kp[i * 32 + lane] : (u16)0;
                vh[t][i] = live[t] && i * 32 + lane < vhd ? vp[i * 32 + lane] : (u16)0;
            }
        }
#pragma unroll
        for (int t = 0; t < 2; t++) {
            if (!live[t]) continue;
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < NR; i++)
                if (i * 32 + lane < hd) s += qr[i] * rf_f16_to_f32(kh[t][i]);
            s = rf_sum32(s) * scale;
            if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
            const float nmx = fmaxf(mx, s);
            const float corr = expf(mx - nmx), e = expf(s - nmx);
            l = l * corr + e;
#pragma unroll
            for (int i = 0; i < NR; i++)
                if (i * 32 + lane < vhd)
                    acc[i] = acc[i] * corr + e * rf_f16_to_f32(vh[t][i]);
            mx = nmx;
        }
    }
    __shared__ float s_m[ATT_WARPS], s_l[ATT_WARPS];
    __shared__ float s_acc[ATT_WARPS][ATT_MAX_D];
    if (lane == 0) {
        s_m[warp] = mx;
        s_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < NR; i++)
        if (i * 32 + lane < vhd) s_acc[warp][i * 32 + lane] = acc[i];
    __syncthreads();
    float gm = RF_NEG_INF;
    for (int w = 0; w < ATT_WARPS; w++) gm = fmaxf(gm, s_m[w]);
    float tl = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++)
        if (s_m[w] > RF_NEG_INF) tl += s_l[w] * expf(s_m[w] - gm);
    float* op = out + ((u64)r * n_head + h) * vhd;
    u16* oh = yh ? yh + ((u64)r * n_head + h) * vhd : nullptr;
    att_store(op, vhd, xq, xds, ((u64)r * n_head + h) * vhd / 4, oh, kind,
              [&](int i) { return att_out(s_acc, s_m, gm, tl, i); });
}

// Attention for many rows that each have their own entry list (the decode steps of many
// sequences): one block per (KV head, row), so the G = n_head / n_head_kv query heads that
// read a KV head share every key and value the block loads (attend_f16 loads them once per
// query head). The four 32-thread groups take tiles of 32 entries in turn (group w: tiles w,
// w + 4, ...). In a tile a lane scores its own entry against the G queries (its key read
// with 16-byte loads), the group's online softmax takes the whole tile at once (one max and
// one sum per query instead of one per entry), and the values are accumulated with the
// output dimensions spread over the lanes, four entries' loads in flight. An entry whose
// weight is 0 for every query adds nothing and is not read (a masked entry's cell may hold
// anything). The groups' results are combined at the end as attend_f16 combines its own.
// Same arguments as attend_f16 (with xq, the outputs are also quantized to Q8 blocks).
// G up to ATH_G, G * vhd up to ATH_OUT, hd a multiple of 8 and vhd of 2, both up to
// ATT_MAX_D.

#define ATH_G 8
#define ATH_OUT 1024
#define ATH_SPLIT 32

// Words of one block's partial result in a split launch: max and weight per query, then
// the G * vhd unnormalized sums.
__device__ __forceinline__ int ath_partial_words(int G, int vhd) { return G * (vhd + 2); }

// Output i (of the block's G * vhd) from the groups' partial sums, over the total weight.
__device__ __forceinline__ float ath_out(const float (*s_acc)[ATH_OUT],
                                         const float (*s_m)[ATH_G], const float (*s_l)[ATH_G],
                                         int g, int i) {
    float gm = RF_NEG_INF;
    for (int w = 0; w < 4; w++) gm = fmaxf(gm, s_m[w][g]);
    float tl = 0.0f, o = 0.0f;
    for (int w = 0; w < 4; w++)
        if (s_m[w][g] > RF_NEG_INF) {
            const float c = expf(s_m[w][g] - gm);
            tl += s_l[w][g] * c;
            o += s_acc[w][i] * c;
        }
    return tl > 0.0f ? o / tl : 0.0f;
}

extern "C" __global__ void __launch_bounds__(128)
attend_heads_f16(const float* __restrict__ q, const u16* __restrict__ kc,
                 const u16* __restrict__ vc, float* __restrict__ out,
                 const int4* __restrict__ meta, const uint2* __restrict__ ent, int n_head,
                 int n_head_kv, int hd, int vhd, float scale, float softcap,
                 int* __restrict__ xq, float2* __restrict__ xds, u16* yh, int kind,
                 int n_split, float* part, int* tickets) {
    rf_grid_start();
    __shared__ float Qs[ATH_G][ATT_MAX_D];
    __shared__ float Ps[4][ATH_G][32];
    __shared__ u32 Cs[4][32];
    __shared__ float s_m[4][ATH_G], s_l[4][ATH_G];
    __shared__ float s_acc[4][ATH_OUT];
    const int kvh = blockIdx.x, r = blockIdx.y;
    const int G = n_head / n_head_kv;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kd = n_head_kv * hd, vd = n_head_kv * vhd, vw = vhd / 2;
    const int4 m = meta[r];
    // Split: the list's tiles of 32 entries go to its first n_live blocks (one a tile at
    // most; the rest have nothing to do), tile t to block t % n_live, its group t / n_live % 4.
    const int n_live = max(1, min(n_split, (m.y + 31) / 32));
    if ((int)blockIdx.z >= n_live) return;
    const int step = 4 * n_live * 32, first_tile = (int)blockIdx.z;
    const float* qp = q + ((u64)r * n_head + (u64)kvh * G) * hd;
    if (first_tile * 32 < m.y)
        for (int i = threadIdx.x; i < G * hd; i += blockDim.x) Qs[i / hd][i % hd] = qp[i];
    __syncthreads();
    // Lane `lane` holds value words lane + 32 i (dimensions 2w and 2w + 1) of each query.
    const int VR = ATT_MAX_D / 64;
    float acc[ATH_G][2 * VR], mx[ATH_G], l[ATH_G];
#pragma unroll
    for (int g = 0; g < ATH_G; g++) {
        mx[g] = RF_NEG_INF;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < 2 * VR; i++) acc[g][i] = 0.0f;
    }
    for (int t0 = (first_tile + warp * n_live) * 32; t0 < m.y; t0 += step) {
        const int j = t0 + lane;
        bool ok = false;
        u32 cell = 0;
        if (j < m.y) {
            const uint2 en = ent[m.x + j];
            const int p = (int)en.y;
            ok = p <= m.z && p >= m.w;
            cell = ok ? en.x : 0;
        }
        float s[ATH_G];
#pragma unroll
        for (int g = 0; g < ATH_G; g++) s[g] = 0.0f;
        if (ok) {
            const uint4* kp = (const uint4*)(kc + (u64)cell * kd + (u64)kvh * hd);
            for (int c = 0; c < hd / 8; c++) {
                const uint4 kv = kp[c];
                const u32 kw[4] = {kv.x, kv.y, kv.z, kv.w};
                float kf[8];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    kf[2 * e] = rf_f16_to_f32((u16)kw[e]);
                    kf[2 * e + 1] = rf_f16_to_f32((u16)(kw[e] >> 16));
                }
#pragma unroll
                for (int g = 0; g < ATH_G; g++)
                    if (g < G)
#pragma unroll
                        for (int e = 0; e < 8; e++) s[g] += Qs[g][8 * c + e] * kf[e];
            }
        }
#pragma unroll
        for (int g = 0; g < ATH_G; g++) {
            if (g >= G) continue;
            float sg = s[g] * scale;
            if (softcap > 0.0f) sg = softcap * tanhf(sg / softcap);
            sg = ok ? sg : RF_NEG_INF;
            const float nmx = fmaxf(mx[g], rf_max32(sg));
            float e = 0.0f;
            if (nmx != RF_NEG_INF) {
                const float corr = expf(mx[g] - nmx);
                e = ok ? expf(sg - nmx) : 0.0f;
                l[g] = l[g] * corr + rf_sum32(e);
                mx[g] = nmx;
#pragma unroll
                for (int i = 0; i < 2 * VR; i++) acc[g][i] *= corr;
            }
            Ps[warp][g][lane] = e;
        }
        Cs[warp][lane] = cell;
        rf_syncwarp();
        const int nj = min(32, m.y - t0);
        for (int j0 = 0; j0 < nj; j0 += 4) {
            u32 vv[4][VR];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const u32* vp =
                    (const u32*)(vc + (u64)(j0 + u < nj ? Cs[warp][j0 + u] : 0) * vd +
                                 (u64)kvh * vhd);
#pragma unroll
                for (int i = 0; i < VR; i++) {
                    const int w = lane + 32 * i;
                    vv[u][i] = w < vw && j0 + u < nj ? vp[w] : 0u;
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
#pragma unroll
                for (int g = 0; g < ATH_G; g++) {
                    const float pw = g < G && j0 + u < nj ? Ps[warp][g][j0 + u] : 0.0f;
                    if (pw == 0.0f) continue;
#pragma unroll
                    for (int i = 0; i < VR; i++) {
                        acc[g][2 * i] += pw * rf_f16_to_f32((u16)vv[u][i]);
                        acc[g][2 * i + 1] += pw * rf_f16_to_f32((u16)(vv[u][i] >> 16));
                    }
                }
            }
        }
        rf_syncwarp();
    }
#pragma unroll
    for (int g = 0; g < ATH_G; g++) {
        if (g >= G) continue;
        if (lane == 0) {
            s_m[warp][g] = mx[g];
            s_l[warp][g] = l[g];
        }
#pragma unroll
        for (int i = 0; i < VR; i++) {
            const int w = lane + 32 * i;
            if (w < vw) {
                s_acc[warp][g * vhd + 2 * w] = acc[g][2 * i];
                s_acc[warp][g * vhd + 2 * w + 1] = acc[g][2 * i + 1];
            }
        }
    }
    __syncthreads();
    const u64 first = ((u64)r * n_head + (u64)kvh * G) * vhd;
    if (n_live == 1) {
        att_store(out + first, G * vhd, xq, xds, first / 4, yh ? yh + first : nullptr, kind,
                  [&](int i) { return ath_out(s_acc, s_m, s_l, i / vhd, i); });
        return;
    }
    // Split: the block's partial result (per query: max, weight, unnormalized sums) goes to
    // `part`; the last of the row and KV head's n_live blocks to finish combines them.
    __shared__ float Sc[ATH_G][ATH_SPLIT], Sm[ATH_SPLIT][ATH_G], Sl[ATH_SPLIT][ATH_G];
    __shared__ bool s_last;
    const int pw = ath_partial_words(G, vhd);
    const int unit = (r * n_head_kv + kvh) * n_split;
    float* mine = part + (u64)(unit + blockIdx.z) * pw;
    if (threadIdx.x < G) {
        const int g = threadIdx.x;
        float gm = RF_NEG_INF, tl = 0.0f;
        for (int w = 0; w < 4; w++) gm = fmaxf(gm, s_m[w][g]);
        for (int w = 0; w < 4; w++)
            if (s_m[w][g] > RF_NEG_INF) tl += s_l[w][g] * expf(s_m[w][g] - gm);
        mine[g] = gm;
        mine[G + g] = tl;
    }
    // A block that saw no entry of some query writes no sums for it (its max says so).
    for (int i = threadIdx.x; i < G * vhd; i += blockDim.x) {
        const int g = i / vhd;
        float gm = RF_NEG_INF, o = 0.0f;
        for (int w = 0; w < 4; w++) gm = fmaxf(gm, s_m[w][g]);
        if (gm == RF_NEG_INF) continue;
        for (int w = 0; w < 4; w++)
            if (s_m[w][g] > RF_NEG_INF) o += s_acc[w][i] * expf(s_m[w][g] - gm);
        mine[2 * G + i] = o;
    }
    rf_fence();
    __syncthreads();
    if (threadIdx.x == 0) s_last = rf_ticket(tickets + r * n_head_kv + kvh) == n_live - 1;
    __syncthreads();
    if (!s_last) return;
    rf_fence();
    if (threadIdx.x == 0) tickets[r * n_head_kv + kvh] = 0;  // for the next launch
    const volatile float* all = part + (u64)unit * pw;
    // Every block's max and weight at once (one load a thread: they are L2 round trips),
    // then Sc[g][z]: block z's share of query g's output (0 where it saw nothing).
    for (int t = threadIdx.x; t < n_live * G; t += blockDim.x) {
        Sm[t / G][t % G] = all[(t / G) * pw + t % G];
        Sl[t / G][t % G] = all[(t / G) * pw + G + t % G];
    }
    __syncthreads();
    if (threadIdx.x < G) {
        const int g = threadIdx.x;
        float gm = RF_NEG_INF, tl = 0.0f;
        for (int z = 0; z < n_live; z++) gm = fmaxf(gm, Sm[z][g]);
        for (int z = 0; z < n_live; z++) {
            Sc[g][z] = Sm[z][g] > RF_NEG_INF ? expf(Sm[z][g] - gm) : 0.0f;
            tl += Sc[g][z] * Sl[z][g];
        }
        for (int z = 0; z < n_live; z++) Sc[g][z] = tl > 0.0f ? Sc[g][z] / tl : 0.0f;
    }
    __syncthreads();
    // Eight blocks' sums loaded before any is used (loads in flight together); a block that
    // saw nothing of query g left its sums unwritten: its share is 0 and its value unused.
    att_store(out + first, G * vhd, xq, xds, first / 4, yh ? yh + first : nullptr, kind,
              [&](int i) {
                  const int g = i / vhd;
                  float o = 0.0f;
                  for (int z0 = 0; z0 < n_live; z0 += 8) {
                      float v[8];
#pragma unroll
                      for (int k = 0; k < 8; k++)
                          v[k] = z0 + k < n_live ? all[(z0 + k) * pw + 2 * G + i] : 0.0f;
#pragma unroll
                      for (int k = 0; k < 8; k++) {
                          const float c = z0 + k < n_live ? Sc[g][z0 + k] : 0.0f;
                          o += c != 0.0f ? c * v[k] : 0.0f;
                      }
                  }
                  return o;
              });
}

// Attention for batches with many rows of one sequence (prefill): one block per KV head and
// ATR_Q / G consecutive rows (G = n_head / n_head_kv query heads share a KV head), so up to
// ATR_Q queries share every key and value the block loads. The rows of a block that share
// one entry list (a group: consecutive rows, same meta.x and meta.y) are taken together:
// tiles of ATR_KEYS entries go to shared memory (keys padded against bank conflicts), each
// of the four 32-thread sub-warps takes ATR_Q / 4 queries, a lane scores one key of the
// tile, and the tile's probabilities update an online softmax whose output dimensions are
// spread over the lanes. Entries are in ascending position (`held_cells`), so a tile past
// every row's position ends the list and a tile before every row's window is skipped.
// Queries are f16 values already (rounded as the CPU rounds Q for an f16 cache), so they
// sit in shared memory as f16 exactly. Head sizes even and up to ATT_MAX_D; G up to ATR_Q.
// Works on wave64 too: the sub-warps' shuffles use lane masks under 32.

#define ATR_Q 16
#define ATR_KEYS 32

// The run of rows rs..*re (below rend) that share row rs's entry list, with the newest
// position any of them sees (*maxpos) and the oldest (*minlo): what a block of many rows
// attends to at once.
__device__ __forceinline__ int4 att_run(const int4* __restrict__ meta, int rs, int rend, int* re,
                                        int* maxpos, int* minlo) {
    const int4 m0 = meta[rs];
    int e = rs + 1, hi = m0.z, lo = m0.w;
    while (e < rend && meta[e].x == m0.x && meta[e].y == m0.y) {
        hi = max(hi, meta[e].z);
        lo = min(lo, meta[e].w);
        e++;
    }
    *re = e;
    *maxpos = hi;
    *minlo = lo;
    return m0;
}

extern "C" __global__ void __launch_bounds__(128)
attend_rows_f16(const float* __restrict__ q, const u16* __restrict__ kc,
                const u16* __restrict__ vc, float* __restrict__ out,
                const int4* __restrict__ meta, const uint2* __restrict__ ent, int n_head,
                int n_head_kv, int hd, int vhd, int n_rows, float scale, float softcap) {
    rf_grid_start();
    __shared__ u32 Ks[ATR_KEYS][ATT_MAX_D / 2 + 1];
    __shared__ u32 Vs[ATR_KEYS][ATT_MAX_D / 2];
    __shared__ u32 Qs[ATR_Q][ATT_MAX_D / 2];
    __shared__ float Ps[4][ATR_KEYS];
    __shared__ int Pos[ATR_KEYS];
    const int G = n_head / n_head_kv, kvh = blockIdx.x;
    const int rows = ATR_Q / G;
    const int r0 = blockIdx.y * rows, rend = min(r0 + rows, n_rows);
    const int sw = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kd = n_head_kv * hd, vd = n_head_kv * vhd, hw = hd / 2, vw = vhd / 2;
    const int NR = ATT_MAX_D / 32, QW = ATR_Q / 4;
    for (int rs = r0; rs < rend;) {
        int re, maxpos, minlo;
        const int4 m0 = att_run(meta, rs, rend, &re, &maxpos, &minlo);
        const int nq = (re - rs) * G;
        for (int i = threadIdx.x; i < nq * hw; i += blockDim.x) {
            const int qi = i / hw, w = i % hw;
            const float* qp =
                q + ((u64)(rs + qi / G) * n_head + (u64)kvh * G + qi % G) * hd + 2 * w;
            Qs[qi][w] = (u32)rf_f32_to_f16(qp[0]) | ((u32)rf_f32_to_f16(qp[1]) << 16);
        }
        float acc[QW][NR], mx[QW], l[QW];
#pragma unroll
        for (int k = 0; k < QW; k++) {
            mx[k] = RF_NEG_INF;
            l[k] = 0.0f;
#pragma unroll
            for (int i = 0; i < NR; i++) acc[k][i] = 0.0f;
        }
        for (int t0 = 0; t0 < m0.y; t0 += ATR_KEYS) {
            const int nk = min(ATR_KEYS, m0.y - t0);
            if ((int)ent[m0.x + t0].y > maxpos) break;
            if ((int)ent[m0.x + t0 + nk - 1].y < minlo) continue;
            __syncthreads();
            for (int i = threadIdx.x; i < ATR_KEYS * hw; i += blockDim.x) {
                const int j = i / hw, w = i % hw;
                u32 kw = 0;
                if (j < nk) kw = ((const u32*)(kc + (u64)ent[m0.x + t0 + j].x * kd + (u64)kvh * hd))[w];
                Ks[j][w] = kw;
            }
            for (int i = threadIdx.x; i < ATR_KEYS * vw; i += blockDim.x) {
                const int j = i / vw, w = i % vw;
                u32 vv = 0;
                if (j < nk) vv = ((const u32*)(vc + (u64)ent[m0.x + t0 + j].x * vd + (u64)kvh * vhd))[w];
                Vs[j][w] = vv;
            }
            if (threadIdx.x < ATR_KEYS)
                Pos[threadIdx.x] = threadIdx.x < nk ? (int)ent[m0.x + t0 + threadIdx.x].y : 0x7fffffff;
            __syncthreads();
#pragma unroll
            for (int k = 0; k < QW; k++) {
                const int qi = sw + 4 * k;
                // Uniform over the sub-warp: qi, and the tile's maximum below.
                if (qi < nq) {
                    const int4 mr = meta[rs + qi / G];
                    float s = 0.0f;
                    for (int w = 0; w < hw; w++) {
                        const u32 a = Qs[qi][w], b = Ks[lane][w];
                        s += rf_f16_to_f32((u16)a) * rf_f16_to_f32((u16)b) +
                             rf_f16_to_f32((u16)(a >> 16)) * rf_f16_to_f32((u16)(b >> 16));
                    }
                    s *= scale;
                    if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
                    const int p = Pos[lane];
                    const bool ok = p <= mr.z && p >= mr.w;
                    s = ok ? s : RF_NEG_INF;
                    const float nmx = fmaxf(mx[k], rf_max32(s));
                    if (nmx != RF_NEG_INF) {
                        const float corr = expf(mx[k] - nmx), e = ok ? expf(s - nmx) : 0.0f;
                        l[k] = l[k] * corr + rf_sum32(e);
                        mx[k] = nmx;
                        Ps[sw][lane] = e;
                        rf_syncwarp();
#pragma unroll
                        for (int i = 0; i < NR; i++) {
                            const int d = lane + 32 * i;
                            if (d < vhd) {
                                float a = acc[k][i] * corr;
                                const u16* vcol = (const u16*)&Vs[0][0] + d;
                                for (int j = 0; j < ATR_KEYS; j++)
                                    a += Ps[sw][j] * rf_f16_to_f32(vcol[j * ATT_MAX_D]);
                                acc[k][i] = a;
                            }
                        }
                        rf_syncwarp();
                    }
                }
            }
        }
#pragma unroll
        for (int k = 0; k < QW; k++) {
            const int qi = sw + 4 * k;
            if (qi < nq) {
                float* op = out + ((u64)(rs + qi / G) * n_head + (u64)kvh * G + qi % G) * vhd;
#pragma unroll
                for (int i = 0; i < NR; i++) {
                    const int d = lane + 32 * i;
                    if (d < vhd) op[d] = l[k] > 0.0f ? acc[k][i] / l[k] : 0.0f;
                }
            }
        }
        __syncthreads();
        rs = re;
    }
}
