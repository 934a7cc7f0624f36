// Attention over the paged f16 cache. The host resolves each sequence's block table into the
// cache rows (cells) it holds and their positions, once per decode: entries {cell, pos}. A
// query row attends to the entries of its sequence whose position is within [lo, pos]
// (causal, sliding window).
//
// meta: per query row {offset into the entries, count, pos, lo}. One block per (head, row),
// ATT_WARPS warps each taking every ATT_WARPS-th entry with an online softmax, combined at
// the end. Head sizes up to 256; GQA: query head h reads KV head
// h / (n_head / n_head_kv). Scores: q.k * scale, soft-capped when softcap > 0.

#define ATT_WARPS 4
#define ATT_MAX_D 256

extern "C" __global__ void __launch_bounds__(ATT_WARPS * RF_WARP)
attend_f16(const float* __restrict__ q, const u16* __restrict__ kc,
           const u16* __restrict__ vc, float* __restrict__ out,
           const int4* __restrict__ meta, const uint2* __restrict__ ent, int n_head, int n_head_kv, int hd, int vhd,
           float scale, float softcap) {
    const int h = blockIdx.x, r = blockIdx.y;
    const int warp = threadIdx.x / RF_WARP, lane = threadIdx.x % RF_WARP;
    const int kvh = h / (n_head / n_head_kv);
    const int kd = n_head_kv * hd, vd = n_head_kv * vhd;
    const int4 m = meta[r];
    // Lane `lane` holds dimensions lane, lane + RF_WARP, ... of q and of the output.
    const int NR = ATT_MAX_D / RF_WARP;
    float qr[NR], acc[NR];
    const float* qp = q + ((u64)r * n_head + h) * hd;
#pragma unroll
    for (int i = 0; i < NR; i++) {
        qr[i] = i * RF_WARP + lane < hd ? qp[i * RF_WARP + lane] : 0.0f;
        acc[i] = 0.0f;
    }
    float mx = RF_NEG_INF, l = 0.0f;
    for (int j = warp; j < m.y; j += ATT_WARPS) {
        const uint2 en = ent[m.x + j];
        const int p = (int)en.y;
        if (p > m.z || p < m.w) continue;
        const u64 cell = en.x;
        const u16* kp = kc + cell * kd + (u64)kvh * hd;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < NR; i++)
            if (i * RF_WARP + lane < hd) s += qr[i] * rf_f16_to_f32(kp[i * RF_WARP + lane]);
        s = rf_warp_sum(s) * scale;
        if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
        const float nmx = fmaxf(mx, s);
        const float corr = expf(mx - nmx), e = expf(s - nmx);
        l = l * corr + e;
        const u16* vp = vc + cell * vd + (u64)kvh * vhd;
#pragma unroll
        for (int i = 0; i < NR; i++)
            if (i * RF_WARP + lane < vhd)
                acc[i] = acc[i] * corr + e * rf_f16_to_f32(vp[i * RF_WARP + lane]);
        mx = nmx;
    }
    __shared__ float s_m[ATT_WARPS], s_l[ATT_WARPS];
    __shared__ float s_acc[ATT_WARPS][ATT_MAX_D];
    if (lane == 0) {
        s_m[warp] = mx;
        s_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < NR; i++)
        if (i * RF_WARP + lane < vhd) s_acc[warp][i * RF_WARP + lane] = acc[i];
    __syncthreads();
    float gm = RF_NEG_INF;
    for (int w = 0; w < ATT_WARPS; w++) gm = fmaxf(gm, s_m[w]);
    float tl = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++)
        if (s_m[w] > RF_NEG_INF) tl += s_l[w] * expf(s_m[w] - gm);
    float* op = out + ((u64)r * n_head + h) * vhd;
    for (int i = threadIdx.x; i < vhd; i += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (s_m[w] > RF_NEG_INF) o += s_acc[w][i] * expf(s_m[w] - gm);
        op[i] = tl > 0.0f ? o / tl : 0.0f;
    }
}
