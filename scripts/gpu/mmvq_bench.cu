// Microbenchmark of the decode products (kernels/matvec_q8.cu) on the GPU machine: the
// library's split-layout kernels, `mmvqs` (tasks of sixteen codes) and `mmvqb` (whole blocks,
// 32 lanes a row, up to three matrices a launch), on the matrix shapes of a Llama-3-8B and a
// SmolLM2 layer (the `qkv` and `gate+up` rows: what one launch over Q, K and V, or gate and
// up, costs), with random weights and activations, each matrix taken from a rotation large
// enough that L2 (50 MB) holds none of them from one call to the next. mmvqb's output is
// checked against mmvqs's before it is timed. On 2026-12-07 this bench chose mmvqb for the
// sixteen-byte formats (docs/GPU.md has the numbers); add a candidate kernel here to try the
// next idea against both.
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
typedef void (*Whole)(const u8*, const u8*, float*, int, const u8*, const u8*, float*, int,
                      const u8*, const u8*, float*, int, const i8*, const float2*, int);

// The library's rule (src/backend/gpu/kernels.rs `mmvq`: the most threads a row leaving
// each at least four slices of sixteen codes).
static int lib_tpr(int k) {
    for (int t : {128, 64})
        if (k / 16 >= t * 4) return t;
    return 32;
}

template <class W, int NT>
static void run_format(const char* fmt, Base base, Whole whole, const std::vector<Shape>& shapes) {
    printf("\n== %s, %d token(s): us per product (GB/s of weights)\n", fmt, NT);
    printf("%-22s %8s", "shape", "mmvqs");
    if (whole) printf(" %14s", "mmvqb");
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
        // Every launch goes to `st`: a launch on the legacy default stream while `st` is
        // being captured breaks the capture.
        cudaStream_t st;
        CK(cudaStreamCreate(&st));
        auto lib = [&](int r, float* y) {
            base<<<(N + 128 / tpr - 1) / (128 / tpr), 128, 0, st>>>(C + cbytes * r, H + hbytes * r, xq, xds,
                                                             K, y, N, tpr);
        };
        auto cand = [&](int r, float* y) {
            whole<<<(N + 3) / 4, 128, 0, st>>>(C + cbytes * r, H + hbytes * r, y, N, nullptr,
                                                 nullptr, nullptr, 0, nullptr, nullptr, nullptr,
                                                 0, xq, xds, K);
        };
        // Time `calls` launches rotating over the R matrices, captured as one graph.
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
        if (whole) {
            // Check on matrix 1 (poisoned output first).
            lib(1, y0);
            CK(cudaMemset(y1, 0xff, (u64)NT * N * 4));
            cand(1, y1);
            CK(cudaGetLastError());
            CK(cudaStreamSynchronize(st));
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
                fprintf(stderr, "%s mmvqb: rel %.3g\n", label, rel);
            } else {
                const float tv = timeit([&](int r) { cand(r, y1); });
                printf(" %7.2f(%4.0f)", tv, mat / (tv * 1e3));
            }
        }
        printf("   [mmvqs %4.0f GB/s]\n", mat / (tb * 1e3));
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
    run_format<DotQ4_0, 1>("Q4_0 (8B)", mmvqs1_q4_0, mmvqb1_q4_0, big);
    run_format<DotQ4_1, 1>("Q4_1 (SmolLM2)", mmvqs1_q4_1, mmvqb1_q4_1, small);
    run_format<DotQ5_0, 1>("Q5_0 (8B)", mmvqs1_q5_0, mmvqb1_q5_0, big);
    run_format<DotIQ4_NL, 1>("IQ4_NL (8B)", mmvqs1_iq4_nl, mmvqb1_iq4_nl, big);
    run_format<DotQ8_0, 1>("Q8_0 (8B)", mmvqs1_q8_0, nullptr, big);
    run_format<DotQ4_0, 4>("Q4_0 (8B)", mmvqs4_q4_0, mmvqb4_q4_0, big);
    return 0;
}
