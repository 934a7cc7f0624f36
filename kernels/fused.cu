// Fused steps of the decode: each does what a sequence of the kernels of ops.cu and
// matvec_q8.cu does, with the same arithmetic in the same order (the same bits), in one
// launch instead of several (each launch costs about a microsecond of GPU time even inside a
// graph).

// Quantizes the 32-value block that 8 consecutive lanes hold (4 values each, in order) as
// quantize_q8 does: lane i4 writes its code word codes[i4], the group's first lane the
// block's scales ds[i4 / 8]. Every lane of the warp calls it (the shuffles need them all);
// `ok` is uniform over each group of 8.
__device__ __forceinline__ void rf_q8_group(float4 v, int* __restrict__ codes,
                                            float2* __restrict__ ds, u64 i4, bool ok) {
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
    amax = fmaxf(amax, rf_shfl_xor(amax, 1));
    amax = fmaxf(amax, rf_shfl_xor(amax, 2));
    amax = fmaxf(amax, rf_shfl_xor(amax, 4));
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const int q0 = (int)rf_rint(v.x * id), q1 = (int)rf_rint(v.y * id);
    const int q2 = (int)rf_rint(v.z * id), q3 = (int)rf_rint(v.w * id);
    // Sums of at most 32 codes of 127 are exact in a float.
    float sum = (float)(q0 + q1 + q2 + q3);
    sum += rf_shfl_xor(sum, 1);
    sum += rf_shfl_xor(sum, 2);
    sum += rf_shfl_xor(sum, 4);
    if (!ok) return;
    codes[i4] = (int)(((u32)q0 & 0xffu) | (((u32)q1 & 0xffu) << 8) | (((u32)q2 & 0xffu) << 16) |
                      (((u32)q3 & 0xffu) << 24));
    if ((i4 & 7) == 0) {
        float2 s;
        s.x = rf_f16_to_f32(rf_f32_to_f16(d));
        s.y = rf_f16_to_f32(rf_f32_to_f16(sum * d));
        ds[i4 / 8] = s;
    }
}

// The values [b0, b0 + len) of y (below n), which this block wrote, rounded as
// quantize_act's `kind` into yh as f16 (the f16 GEMM's input), after a barrier: each 32-lane
// group takes 256-value chunks, as quantize_act does (b0 a multiple of 256).
__device__ __forceinline__ void rf_block_f16(const float* y, u16* yh, u64 b0, u64 len, u64 n,
                                             int kind) {
    __syncthreads();
    for (u64 c = threadIdx.x / 32; c * 256 < len; c += blockDim.x / 32)
        rf_round_chunk(y, nullptr, yh, b0 + c * 256, min(n, b0 + len), kind, threadIdx.x % 32);
}

// The values [b0, b0 + len) of y (below n), which this block wrote, quantized to Q8_K blocks
// as quantize_q8k does (codes q, scales ds: the Q8 buffers' layout), after a barrier: each
// 32-lane group takes 256-value blocks (b0 and n multiples of 256).
__device__ __forceinline__ void rf_block_q8k(const float* y, i8* q, float2* ds, u64 b0, u64 len,
                                             u64 n) {
    __syncthreads();
    for (u64 c = threadIdx.x / 32; c * 256 < len && b0 + c * 256 < n; c += blockDim.x / 32) {
        const u64 at = b0 + c * 256;
        rf_q8k_chunk(y + at, q + at, ds + at / 32, threadIdx.x % 32);
    }
}

// One block per row of d (rows contiguous, 16-byte aligned, d a multiple of 32): with o,
// x += o first (add_inplace); then y = x / rms(x) * w (rms_norm's float4 path, same block
// size); with xq, y also quantized to Q8 blocks (quantize_q8; kind 2: Q8_K blocks as
// quantize_q8k, d a multiple of 256): codes xq, scales xds; with yh, y also rounded into f16
// as quantize_act's `kind` (d a multiple of 256 for kind 2).
extern "C" __global__ void add_rms_norm_q8(float* __restrict__ x, const float* __restrict__ o,
                                           const float* __restrict__ w, float* y,
                                           int* __restrict__ xq, float2* __restrict__ xds,
                                           int d, float eps, u16* yh, int kind) {
    rf_grid_start();
    __shared__ float shared[32];
    const int d4 = d / 4;
    float4* x4 = (float4*)(x + (u64)blockIdx.x * d);
    const float4* o4 = o ? (const float4*)(o + (u64)blockIdx.x * d) : nullptr;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d4; i += blockDim.x) {
        float4 a = x4[i];
        if (o4) {
            const float4 b = o4[i];
            a = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
            x4[i] = a;
        }
        ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
    }
    ss = rf_block_sum(ss, shared);
    const float scale = rsqrtf(ss / (float)d + eps);
    const float4* w4 = (const float4*)w;
    float4* y4 = (float4*)(y + (u64)blockIdx.x * d);
    for (int base = 0; base < d4; base += blockDim.x) {
        const int i = base + threadIdx.x;
        const bool ok = i < d4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (ok) {
            const float4 a = x4[i], g = w4[i];
            v = make_float4(a.x * scale * g.x, a.y * scale * g.y, a.z * scale * g.z,
                            a.w * scale * g.w);
            y4[i] = v;
        }
        if (xq && kind != 2)
            rf_q8_group(v, xq + (u64)blockIdx.x * d4, xds + (u64)blockIdx.x * (d / 32), i, ok);
    }
    if (xq && kind == 2) rf_block_q8k(y, (i8*)xq, xds, (u64)blockIdx.x * d, d, (u64)blockIdx.x * d + d);
    if (yh) rf_block_f16(y, yh, (u64)blockIdx.x * d, d, (u64)blockIdx.x * d + d, kind);
}

// a = swiglu(g, u) (geglu with gelu != 0) over n4 * 4 values (16-byte aligned, n4 a
// multiple of 8), with xq also quantized to Q8 blocks as quantize_q8 does (kind 2: Q8_K
// blocks as quantize_q8k, n4 a multiple of 64), with yh also
// rounded into f16 as quantize_act's `kind` (blockDim.x a multiple of 64, so that a block's
// values are whole 256-value chunks).
extern "C" __global__ void glu_q8(const float* __restrict__ g, const float* __restrict__ u,
                                  float* a, int* __restrict__ xq, float2* __restrict__ xds,
                                  u64 n4, int gelu, u16* yh, int kind) {
    rf_grid_start();
    const u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const bool ok = i < n4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (ok) {
        const float4 gv = ((const float4*)g)[i], uv = ((const float4*)u)[i];
        v = gelu ? make_float4(rf_geglu(gv.x, uv.x), rf_geglu(gv.y, uv.y), rf_geglu(gv.z, uv.z),
                               rf_geglu(gv.w, uv.w))
                 : make_float4(rf_swiglu(gv.x, uv.x), rf_swiglu(gv.y, uv.y),
                               rf_swiglu(gv.z, uv.z), rf_swiglu(gv.w, uv.w));
        ((float4*)a)[i] = v;
    }
    if (xq && kind != 2) rf_q8_group(v, xq, xds, i, ok);
    if (xq && kind == 2)
        rf_block_q8k(a, (i8*)xq, xds, (u64)blockIdx.x * blockDim.x * 4, (u64)blockDim.x * 4, n4 * 4);
    if (yh) rf_block_f16(a, yh, (u64)blockIdx.x * blockDim.x * 4, (u64)blockDim.x * 4, n4 * 4, kind);
}

// RoPE on the queries and keys of every row: the first n_rot dimensions of each head rotated
// by the (cos, sin) of the row's position (cs: n_rot / 2 pairs per row, computed on the host
// exactly as the CPU backend does; neox: pair (i, i + n_rot/2), else (2i, 2i + 1)). Then the
// queries times q_scale when it is not 1, and rounded through f16 as the CPU rounds them
// before an f16 cache. Rows of q and k contiguous (n_head and n_head_kv heads of hd). Grid:
// x one per row, y over the row's (n_head + n_head_kv) * hd / 2 pairs of values, one pair
// per thread: the rotated pairs first in each head, then the pairs past n_rot, which only
// the queries change. With kc, the keys are not written back but stored (f16) into the
// cache row pairs[2 r + 1] of row r, and threads past the pairs store the row's vd values
// of v, two a thread, into vc (what kv_store_f16 does, where every row has one cell).
extern "C" __global__ void rope_qk(float* __restrict__ q, float* __restrict__ k,
                                   const float2* __restrict__ cs, int n_head, int n_head_kv,
                                   int hd, int n_rot, int neox, float q_scale,
                                   const float* __restrict__ v, const u32* __restrict__ pairs,
                                   u16* __restrict__ kc, u16* __restrict__ vc, int vd) {
    rf_grid_start();
    const int per = hd / 2, half = n_rot / 2;
    const int j = blockIdx.y * blockDim.x + threadIdx.x;
    const int nqk = (n_head + n_head_kv) * per;
    if (j >= nqk) {
        const int e = 2 * (j - nqk);
        if (kc == nullptr || e >= vd) return;
        const u64 cell = pairs[2 * blockIdx.x + 1];
        const float* vp = v + (u64)blockIdx.x * vd;
        vc[cell * vd + e] = rf_f32_to_f16(vp[e]);
        if (e + 1 < vd) vc[cell * vd + e + 1] = rf_f32_to_f16(vp[e + 1]);
        return;
    }
    const int head = j / per, i = j % per;
    const bool is_q = head < n_head;
    float* hp = is_q ? q + ((u64)blockIdx.x * n_head + head) * hd
                     : k + ((u64)blockIdx.x * n_head_kv + (head - n_head)) * hd;
    int ia, ib;
    float a, b;
    if (i < half) {
        ia = neox ? i : 2 * i;
        ib = neox ? i + half : 2 * i + 1;
        const float2 c = cs[(u64)blockIdx.x * half + i];
        const float xa = hp[ia], xb = hp[ib];
        a = fmaf(xa, c.x, -(xb * c.y));
        b = fmaf(xa, c.y, xb * c.x);
    } else {
        if (!is_q && kc == nullptr) return;
        ia = n_rot + 2 * (i - half);
        ib = ia + 1;
        a = hp[ia];
        b = hp[ib];
    }
    if (is_q) {
        if (q_scale != 1.0f) {
            a *= q_scale;
            b *= q_scale;
        }
        a = rf_f16_to_f32(rf_f32_to_f16(a));
        b = rf_f16_to_f32(rf_f32_to_f16(b));
    } else if (kc != nullptr) {
        const u64 cell = pairs[2 * blockIdx.x + 1];
        u16* kp = kc + cell * (u64)(n_head_kv * hd) + (u64)(head - n_head) * hd;
        kp[ia] = rf_f32_to_f16(a);
        kp[ib] = rf_f32_to_f16(b);
        return;
    }
    hp[ia] = a;
    hp[ib] = b;
}
