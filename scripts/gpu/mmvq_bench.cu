// Microbenchmark of the decode products (kernels/matvec_q8.cu) on the GPU machine: the
// library's split-layout `mmvqs` (tasks of sixteen codes) against candidates that take whole
// blocks (one 16-byte load of codes for the nibble formats, U blocks' loads in flight), on the matrix shapes of a
// Llama-3-8B and a SmolLM2 layer, with random weights and activations, each matrix taken from
// a rotation large enough that L2 (50 MB) holds none of them from one call to the next.
// Every candidate's output is checked against the library kernel's before it is timed.
//
// Build and run there (scripts/gpu/device.sh mmvq):
//   nvcc -arch=sm_90 -O3 -std=c++17 -o /tmp/mmvq_bench scripts/gpu/mmvq_bench.cu && /tmp/mmvq_bench
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../../kernels/all.cu"

#define CK(x)                                                                       \
    do {                                                                            \
        cudaError_t e_ = (x);                                                       \
        if (e_ != cudaSuccess) {                                                    \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x,               \
                    cudaGetErrorString(e_));                                        \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

// ---------------------------------------------------------------------------------------
// Candidate: whole blocks per task. Each task is one weight block: its codes in one or two
// 16-byte loads, U tasks' loads issued before any arithmetic; a row's tpr threads stride over
// its blocks; BS threads a CTA.
// ---------------------------------------------------------------------------------------
struct WQ4_0 {
    static const int HB = 2, QB = 16, OFF = 8;
    static const bool MIN = false;
    // w: 8 words of signed codes matching the block's 8 activation words.
    static __device__ __forceinline__ void decode(const u32* c, const u8*, int* w) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[i] = (int)rf_nib_lo(c[i]);
            w[4 + i] = (int)rf_nib_hi(c[i]);
        }
    }
};
struct WQ4_1 : WQ4_0 {
    static const int HB = 4, OFF = 0;
    static const bool MIN = true;
};
struct WQ8_0 {
    static const int HB = 2, QB = 32, OFF = 0;
    static const bool MIN = false;
    static __device__ __forceinline__ void decode(const u32* c, const u8*, int* w) {
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = (int)c[i];
    }
};

template <class F, int NT, int U, int BS>
__global__ void __launch_bounds__(BS) mmvq_blk(const u8* __restrict__ C, const u8* __restrict__ H,
                                                const i8* __restrict__ xq,
                                                const float2* __restrict__ xds, int K,
                                                float* __restrict__ y, int N, int tpr) {
    __shared__ float part[NT][BS / 32];
    const int r_in = threadIdx.x / tpr, t = threadIdx.x % tpr;
    const int row = blockIdx.x * (BS / tpr) + r_in;
    const int nb = K / 32;
    float acc[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j] = 0.0f;
    if (row < N) {
        const u64 first = (u64)row * nb;
        for (int b0 = t; b0 < nb; b0 += U * tpr) {
            u32 c[U][F::QB / 4];
            float dw[U], mw[U];
            int bs[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const bool live = b0 + u * tpr < nb;
                const int b = live ? b0 + u * tpr : nb - 1;
                const uint4* q = (const uint4*)(C + (first + b) * F::QB);
#pragma unroll
                for (int v = 0; v < F::QB / 16; v++) {
                    const uint4 x = q[v];
                    c[u][4 * v] = x.x;
                    c[u][4 * v + 1] = x.y;
                    c[u][4 * v + 2] = x.z;
                    c[u][4 * v + 3] = x.w;
                }
                const u8* h = H + (first + b) * F::HB;
                dw[u] = live ? rf_f16_to_f32(*(const u16*)h) : 0.0f;
                mw[u] = live && F::MIN ? rf_f16_to_f32(*(const u16*)(h + 2)) : 0.0f;
                bs[u] = b;
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                int w[8];
                F::decode(c[u], nullptr, w);
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
    const int width = tpr < 32 ? tpr : 32;
    const int group = threadIdx.x / width, per_row = tpr / width;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        float v = acc[j];
        for (int m = width / 2; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
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

__global__ void fill_bytes(u8* p, u64 n, u64 seed) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        u64 z = (i + seed) * 0x9E3779B97F4A7C15ull;
        z ^= z >> 29;
        z *= 0xBF58476D1CE4E5B9ull;
        z ^= z >> 32;
        p[i] = (u8)z;
    }
}

// Headers: every u16 a small positive f16 (0.001 .. 0.03), so sums stay finite.
__global__ void fill_heads(u16* p, u64 n, u64 seed) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        u64 z = (i + seed) * 0x9E3779B97F4A7C15ull;
        z ^= z >> 31;
        const float v = 0.001f + (float)(z % 1000) * 0.00003f;
        p[i] = rf_f32_to_f16(v);
    }
}

__global__ void fill_floats(float* p, u64 n, u64 seed) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        u64 z = (i + seed) * 0x9E3779B97F4A7C15ull;
        z ^= z >> 29;
        z *= 0xBF58476D1CE4E5B9ull;
        p[i] = (float)(z >> 40) / (float)(1ull << 24) * 2.0f - 1.0f;
    }
}

struct Shape {
    const char* what;
    int n, k;
};

typedef void (*Base)(const u8*, const u8*, const i8*, const float2*, int, float*, int, int);
typedef void (*Cand)(const u8*, const u8*, const i8*, const float2*, int, float*, int, int);

struct Variant {
    const char* name;
    Cand f;
    int bs, tpr;  // tpr 0: the most of 128/64/32 leaving each thread >= 2 blocks
};

// The library's rule (src/backend/gpu/kernels.rs `mmvq`: the most threads a row leaving
// each at least four slices of sixteen codes).
static int lib_tpr(int k) {
    for (int t : {128, 64})
        if (k / 16 >= t * 4) return t;
    return 32;
}

template <class W, int NT>
static void run_format(const char* fmt, Base base, const std::vector<Variant>& vars,
                       const std::vector<Shape>& shapes) {
    printf("\n== %s, %d token(s): us per product (GB/s of weights)\n", fmt, NT);
    printf("%-22s %8s", "shape", "library");
    for (auto& v : vars) printf(" %14s", v.name);
    printf("\n");
    for (auto& sh : shapes) {
        const int N = sh.n, K = sh.k, nb = K / 32;
        const u64 cbytes = (u64)N * nb * W::QB, hbytes = (u64)N * nb * W::HB;
        const u64 mat = cbytes + hbytes;
        int R = (int)((400ull << 20) / mat);
        if (R < 2) R = 2;
        if (R > 64) R = 64;
        u8 *C, *H;
        CK(cudaMalloc(&C, cbytes * R));
        CK(cudaMalloc(&H, hbytes * R + 16));
        fill_bytes<<<1024, 256>>>(C, cbytes * R, 1);
        fill_heads<<<1024, 256>>>((u16*)H, hbytes * R / 2, 2);
        float* x;
        i8* xq;
        float2* xds;
        float *y0, *y1;
        CK(cudaMalloc(&x, (u64)NT * K * 4));
        CK(cudaMalloc(&xq, (u64)NT * K));
        CK(cudaMalloc(&xds, (u64)NT * nb * 8));
        CK(cudaMalloc(&y0, (u64)NT * N * 4));
        CK(cudaMalloc(&y1, (u64)NT * N * 4));
        fill_floats<<<256, 256>>>(x, (u64)NT * K, 3);
        quantize_q8<<<(NT * nb + 127) / 128, 128>>>(x, xq, xds, (u64)NT * nb);
        CK(cudaDeviceSynchronize());
        const int tpr = lib_tpr(K);
        auto lib = [&](int r, float* y) {
            base<<<(N + 128 / tpr - 1) / (128 / tpr), 128>>>(C + cbytes * r, H + hbytes * r, xq, xds,
                                                             K, y, N, tpr);
        };
        auto cand = [&](const Variant& v, int r, float* y) {
            int t = v.tpr;
            if (t == 0) {
                t = 32;
                for (int c : {128, 64})
                    if (nb >= c * 2) {
                        t = c;
                        break;
                    }
            }
            const int rows = v.bs / t;
            v.f<<<(N + rows - 1) / rows, v.bs>>>(C + cbytes * r, H + hbytes * r, xq, xds, K, y, N, t);
        };
        // Time `calls` launches rotating over the R matrices, captured as one graph.
        cudaStream_t st;
        CK(cudaStreamCreate(&st));
        auto timeit = [&](auto&& one) {
            const int calls = 200;
            cudaGraph_t g;
            cudaGraphExec_t ge;
            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
            for (int i = 0; i < calls; i++) one(i % R);
            CK(cudaStreamEndCapture(st, &g));
            CK(cudaGraphInstantiate(&ge, g, 0));
            CK(cudaGraphLaunch(ge, st));
            CK(cudaStreamSynchronize(st));
            cudaEvent_t a, b;
            CK(cudaEventCreate(&a));
            CK(cudaEventCreate(&b));
            std::vector<float> ts;
            for (int rep = 0; rep < 5; rep++) {
                CK(cudaEventRecord(a, st));
                CK(cudaGraphLaunch(ge, st));
                CK(cudaEventRecord(b, st));
                CK(cudaEventSynchronize(b));
                float ms;
                CK(cudaEventElapsedTime(&ms, a, b));
                ts.push_back(ms * 1000.0f / calls);
            }
            CK(cudaGraphExecDestroy(ge));
            CK(cudaGraphDestroy(g));
            std::sort(ts.begin(), ts.end());
            return ts[2];
        };
        char label[64];
        snprintf(label, sizeof label, "%s %dx%d", sh.what, N, K);
        const float tb = timeit([&](int r) { lib(r, y0); });
        printf("%-22s %8.2f", label, tb);
        std::vector<float> h0((u64)NT * N), h1((u64)NT * N);
        for (auto& v : vars) {
            // Check on matrix 1 (poisoned output first).
            lib(1, y0);
            CK(cudaMemset(y1, 0xff, (u64)NT * N * 4));
            cand(v, 1, y1);
            CK(cudaGetLastError());
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(h0.data(), y0, h0.size() * 4, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(h1.data(), y1, h1.size() * 4, cudaMemcpyDeviceToHost));
            double num = 0, den = 0;
            bool nan = false;
            for (size_t i = 0; i < h0.size(); i++) {
                if (!std::isfinite(h1[i])) nan = true;
                num += (double)(h1[i] - h0[i]) * (h1[i] - h0[i]);
                den += (double)h0[i] * h0[i];
            }
            const double rel = std::sqrt(num / (den > 0 ? den : 1));
            if (nan || rel > 1e-5) {
                printf(" %14s", nan ? "NaN!" : "WRONG");
                fprintf(stderr, "%s %s: rel %.3g\n", label, v.name, rel);
                continue;
            }
            const float tv = timeit([&](int r) { cand(v, r, y1); });
            printf(" %7.2f(%4.0f)", tv, mat / (tv * 1e3));
        }
        printf("   [library %4.0f GB/s]\n", mat / (tb * 1e3));
        CK(cudaStreamDestroy(st));
        cudaFree(C);
        cudaFree(H);
        cudaFree(x);
        cudaFree(xq);
        cudaFree(xds);
        cudaFree(y0);
        cudaFree(y1);
    }
}

#define VARS(W, NT)                                                                    \
    std::vector<Variant>{{"t32u2", mmvq_blk<W, NT, 2, 128>, 128, 32},                  \
                         {"t32u4", mmvq_blk<W, NT, 4, 128>, 128, 32},                  \
                         {"t32u8", mmvq_blk<W, NT, 8, 128>, 128, 32},                  \
                         {"t64u4", mmvq_blk<W, NT, 4, 128>, 128, 64},                  \
                         {"auto-u2", mmvq_blk<W, NT, 2, 128>, 128, 0},                 \
                         {"auto-u4b256", mmvq_blk<W, NT, 4, 256>, 256, 0}}

int main() {
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    printf("%s, %d SMs, L2 %d MB\n", p.name, p.multiProcessorCount, p.l2CacheSize >> 20);
    const std::vector<Shape> big = {{"q/o", 4096, 4096},    {"k/v", 1024, 4096},
                                    {"qkv", 6144, 4096},    {"gate/up", 14336, 4096},
                                    {"gate+up", 28672, 4096}, {"down", 4096, 14336},
                                    {"head", 128256, 4096}};
    const std::vector<Shape> small = {{"q/o", 576, 576},   {"k/v", 192, 576},
                                      {"qkv", 960, 576},   {"gate/up", 1536, 576},
                                      {"gate+up", 3072, 576}, {"down", 576, 1536},
                                      {"head", 49152, 576}};
    run_format<WQ4_0, 1>("Q4_0 (8B)", mmvqs1_q4_0, VARS(WQ4_0, 1), big);
    run_format<WQ4_1, 1>("Q4_1 (SmolLM2)", mmvqs1_q4_1, VARS(WQ4_1, 1), small);
    run_format<WQ8_0, 1>("Q8_0 (8B)", mmvqs1_q8_0, VARS(WQ8_0, 1), big);
    run_format<WQ4_0, 4>("Q4_0 (8B)", mmvqs4_q4_0, VARS(WQ4_0, 4), big);
    return 0;
}
