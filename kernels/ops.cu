// Element-wise and row-wise steps of the forward pass. Rows are contiguous, `d` wide.

// Sum of v over the block (blockDim.x a multiple of the warp size, at most 1024).
__device__ __forceinline__ float rf_block_sum(float v, float* shared) {
    const int warp = threadIdx.x / RF_WARP, lane = threadIdx.x % RF_WARP;
    v = rf_warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int nw = blockDim.x / RF_WARP;
    float t = 0.0f;
    for (int i = 0; i < nw; i++) t += shared[i];
    __syncthreads();
    return t;
}

// y = x / rms(x) * w, one block per row. With add != 0: out += that instead (a residual
// add after a post-norm). Rows of x are `ldx` apart (norms of heads inside wider rows).
// Rows whose x, y and w are all 16-byte aligned (and d a multiple of 4) are read as float4:
// one load per thread for a row of 4096 under 1024 threads.
extern "C" __global__ void rms_norm(const float* __restrict__ x, int ldx,
                                    const float* __restrict__ w, float* y, int ldy, int d,
                                    float eps, int add) {
    rf_grid_start();
    __shared__ float shared[32];
    const float* xr = x + (u64)blockIdx.x * ldx;
    float* yr = y + (u64)blockIdx.x * ldy;
    const bool vec = (((u64)xr | (u64)yr | (u64)w) & 15) == 0 && (d & 3) == 0;
    float ss = 0.0f;
    if (vec) {
        const float4* x4 = (const float4*)xr;
        for (int i = threadIdx.x; i < d / 4; i += blockDim.x) {
            const float4 a = x4[i];
            ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
        }
    } else {
        for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    }
    ss = rf_block_sum(ss, shared);
    const float scale = rsqrtf(ss / (float)d + eps);
    if (vec) {
        const float4* x4 = (const float4*)xr;
        const float4* w4 = (const float4*)w;
        float4* y4 = (float4*)yr;
        for (int i = threadIdx.x; i < d / 4; i += blockDim.x) {
            const float4 a = x4[i], g = w4[i];
            float4 v = make_float4(a.x * scale * g.x, a.y * scale * g.y, a.z * scale * g.z,
                                   a.w * scale * g.w);
            if (add) {
                const float4 o = y4[i];
                v = make_float4(o.x + v.x, o.y + v.y, o.z + v.z, o.w + v.w);
            }
            y4[i] = v;
        }
    } else {
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            float v = xr[i] * scale * w[i];
            yr[i] = add ? yr[i] + v : v;
        }
    }
}

extern "C" __global__ void add_inplace(float* x, const float* __restrict__ o, u64 n) {
    rf_grid_start();
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += o[i];
}

// x[r][c] += b[c] for n rows of width d.
extern "C" __global__ void add_bias(float* x, const float* __restrict__ b, int d, u64 n) {
    rf_grid_start();
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += b[i % d];
}

extern "C" __global__ void softcap_inplace(float* x, float cap, u64 n) {
    rf_grid_start();
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

// Whether bits `b` of a float are NaN or infinite.
__device__ __forceinline__ bool rf_non_finite(u32 b) { return (b & 0x7f800000u) == 0x7f800000u; }

// A finite float's place in the total order (Rust's f32::total_cmp, which the CPU's greedy
// sampler ranks by: -0 below +0) as a signed integer.
__device__ __forceinline__ int rf_order_key(float v) {
    const int b = __float_as_int(v);
    return b ^ (int)(((u32)(b >> 31)) >> 1);
}

// What one thread saw of a row in argmax_rows: the best logit's key and index (`d`: none
// yet), and the first non-finite index (`d`: none). A thread's indices only grow, so only a
// strictly greater key replaces the best: ties keep the lowest index.
__device__ __forceinline__ void rf_argmax_see(float v, int i, int& bk, int& bi, int& bad) {
    if (rf_non_finite(__float_as_uint(v))) {
        bad = min(bad, i);
    } else if (bi == 0x7fffffff || rf_order_key(v) > bk) {
        bk = rf_order_key(v);
        bi = i;
    }
}

// The greedy token of each of the grid's rows of `d` logits: the highest logit, the lowest
// index on ties (the CPU's greedy sampler), into out[2 * row]; the first index holding NaN or
// infinity into out[2 * row + 1] (-1: none; the token is then meaningless). One block per
// row, blockDim.x a power of two up to RF_ARGMAX_THREADS.
#define RF_ARGMAX_THREADS 512
extern "C" __global__ void argmax_rows(const float* __restrict__ x, int d, int* out) {
    rf_grid_start();
    __shared__ int sk[RF_ARGMAX_THREADS], si[RF_ARGMAX_THREADS], sb[RF_ARGMAX_THREADS];
    const int t = threadIdx.x, none = 0x7fffffff;
    const float* xr = x + (u64)blockIdx.x * d;
    int bk = 0, bi = none, bad = none;
    if ((((u64)xr) & 15) == 0 && (d & 3) == 0) {
        const float4* x4 = (const float4*)xr;
        for (int i = t; i < d / 4; i += blockDim.x) {
            const float4 a = x4[i];
            rf_argmax_see(a.x, 4 * i, bk, bi, bad);
            rf_argmax_see(a.y, 4 * i + 1, bk, bi, bad);
            rf_argmax_see(a.z, 4 * i + 2, bk, bi, bad);
            rf_argmax_see(a.w, 4 * i + 3, bk, bi, bad);
        }
    } else {
        for (int i = t; i < d; i += blockDim.x) rf_argmax_see(xr[i], i, bk, bi, bad);
    }
    sk[t] = bk;
    si[t] = bi;
    sb[t] = bad;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) {
            const int ok = sk[t + s], oi = si[t + s];
            if (oi != none && (si[t] == none || ok > sk[t] || (ok == sk[t] && oi < si[t]))) {
                sk[t] = ok;
                si[t] = oi;
            }
            sb[t] = min(sb[t], sb[t + s]);
        }
        __syncthreads();
    }
    if (t == 0) {
        out[2 * blockIdx.x] = si[0];
        out[2 * blockIdx.x + 1] = sb[0] == none ? -1 : sb[0];
    }
}

// silu(g) * u.
__device__ __forceinline__ float rf_swiglu(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// gelu_tanh(g) * u, with g and gelu(g) rounded through f16 as ggml's table does.
__device__ __forceinline__ float rf_geglu(float g, float u) {
    const float x = rf_f16_to_f32(rf_f32_to_f16(g));
    const float y = 0.5f * x * (1.0f + tanhf(0.7978846f * x * (1.0f + 0.044715f * x * x)));
    return rf_f16_to_f32(rf_f32_to_f16(y)) * u;
}

extern "C" __global__ void swiglu(const float* __restrict__ g, const float* __restrict__ u,
                                  float* __restrict__ a, u64 n) {
    rf_grid_start();
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] = rf_swiglu(g[i], u[i]);
}

extern "C" __global__ void geglu(const float* __restrict__ g, const float* __restrict__ u,
                                 float* __restrict__ a, u64 n) {
    rf_grid_start();
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] = rf_geglu(g[i], u[i]);
}

// dst row r = src row idx[r] (d floats), e.g. the rows whose logits are wanted.
extern "C" __global__ void gather_rows(const float* __restrict__ src,
                                       const u32* __restrict__ idx, float* __restrict__ dst,
                                       int d) {
    rf_grid_start();
    const float* s = src + (u64)idx[blockIdx.x] * d;
    float* o = dst + (u64)blockIdx.x * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) o[i] = s[i];
}

// dst (rows x width) = columns col0..col0+width of src (rows of ld): splits fused outputs.
extern "C" __global__ void copy_cols(const float* __restrict__ src, int ld, int col0,
                                     float* __restrict__ dst, int width) {
    rf_grid_start();
    const float* s = src + (u64)blockIdx.x * ld + col0;
    float* o = dst + (u64)blockIdx.x * width;
    for (int i = threadIdx.x; i < width; i += blockDim.x) o[i] = s[i];
}

// Stores keys and values into an f16 cache: pair i = (row, cell) writes k row `row`
// (kd floats) into cache row `cell`, and the same for v. Grid: x one per pair, y over the
// wider of kd and vd, one element of each per thread.
extern "C" __global__ void kv_store_f16(const float* __restrict__ k,
                                        const float* __restrict__ v,
                                        const u32* __restrict__ pairs, u16* kc, u16* vc,
                                        int kd, int vd) {
    rf_grid_start();
    const u32 row = pairs[2 * blockIdx.x], cell = pairs[2 * blockIdx.x + 1];
    const int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i < kd) kc[(u64)cell * kd + i] = rf_f32_to_f16(k[(u64)row * kd + i]);
    if (i < vd) vc[(u64)cell * vd + i] = rf_f32_to_f16(v[(u64)row * vd + i]);
}

// Activations rounded as the CPU backend's dot products quantize them for each weight format
// (src/quant/dot.rs), so that GPU and CPU agree: y = the value the quantized block
// represents. kind 0: as they are; 1: Q8_0/Q8_1 (32 values, d = amax/127 stored as f16,
// q = rint(x*127/amax)); 2: Q8_K (256 values, d = -max/127 in f32 from the signed value of
// largest magnitude, q = min(rint(-127/max * x), 127)); 3: f16; 4: bf16 (round to nearest
// even). Into y as f32, or with yh as f16 (the f16 GEMM's input: what to_f16 would make of
// y). One 32-thread group per 256 values (n a multiple of 256 for kind 2, of 32 for kind 1).
__device__ __forceinline__ void rf_act_out(float* __restrict__ y, u16* __restrict__ yh, u64 i,
                                           float v) {
    if (yh != nullptr)
        yh[i] = rf_f32_to_f16(v);
    else
        y[i] = v;
}

// Values base .. base + 255 (below n) of x rounded by one 32-lane group (lane 0..31). Not
// __restrict__: the fused kernels round what their own block wrote before a barrier, which
// must not be read through the read-only cache.
__device__ __forceinline__ void rf_round_chunk(const float* x, float* y, u16* yh, u64 base,
                                               u64 n, int kind, int lane) {
    if (base >= n) return;
    if (kind == 0 || kind == 3 || kind == 4) {
        for (int i = lane; i < 256 && base + i < n; i += 32) {
            float v = x[base + i];
            if (kind == 3) {
                v = rf_f16_to_f32(rf_f32_to_f16(v));
            } else if (kind == 4) {
                u32 b = __float_as_uint(v);
                b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
                v = __uint_as_float(b);
            }
            rf_act_out(y, yh, base + i, v);
        }
        return;
    }
    if (kind == 1) {
        // Eight blocks of 32 per warp; lane l handles element l of each.
        for (int blk = 0; blk < 8 && base + blk * 32 < n; blk++) {
            const u64 at = base + blk * 32;
            float amax = 0.0f;
            for (int i = lane; i < 32; i += 32) amax = fmaxf(amax, fabsf(x[at + i]));
            amax = rf_max32(amax);
            const float d = rf_f16_to_f32(rf_f32_to_f16(amax / 127.0f));
            const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
            for (int i = lane; i < 32; i += 32)
                rf_act_out(y, yh, at + i, d * rf_rint(x[at + i] * id));
        }
        return;
    }
    // kind 2: the first value of largest magnitude sets the sign.
    float amax = -1.0f, mx = 0.0f;
    int idx = 1 << 30;
    for (int i = lane; i < 256; i += 32) {
        const float v = x[base + i];
        if (fabsf(v) > amax) {
            amax = fabsf(v);
            mx = v;
            idx = i;
        }
    }
    for (int m = 16; m > 0; m >>= 1) {
        const float oa = rf_shfl_xor(amax, m), om = rf_shfl_xor(mx, m);
        const int oi = (int)rf_shfl_xor((float)idx, m);
        if (oa > amax || (oa == amax && oi < idx)) {
            amax = oa;
            mx = om;
            idx = oi;
        }
    }
    if (amax == 0.0f) {
        for (int i = lane; i < 256; i += 32) rf_act_out(y, yh, base + i, 0.0f);
        return;
    }
    const float iscale = -127.0f / mx, d = 1.0f / iscale;
    for (int i = lane; i < 256; i += 32)
        rf_act_out(y, yh, base + i, d * fminf(rf_rint(iscale * x[base + i]), 127.0f));
}

extern "C" __global__ void quantize_act(const float* __restrict__ x, float* __restrict__ y,
                                        u16* __restrict__ yh, u64 n, int kind) {
    rf_grid_start();
    // 32-thread groups (also on wave64: the host launches four groups a block of 128).
    const u64 base = ((u64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * 256;
    rf_round_chunk(x, y, yh, base, n, kind, threadIdx.x % 32);
}
