// Declarations CUDA's headers would give, for compiling kernels/ with clang alone
// (scripts/gpu/cuda-check.sh): clang only needs to see them declared to emit PTX.
#define __device__ __attribute__((device))
#define __global__ __attribute__((global))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
__device__ uint4 make_uint4(unsigned, unsigned, unsigned, unsigned);
__device__ float4 make_float4(float, float, float, float);
__device__ float2 make_float2(float, float);
__device__ float __shfl_xor_sync(unsigned, float, int);
__device__ int __shfl_sync(unsigned, int, int);
__device__ void __syncthreads();
__device__ void __syncwarp();
__device__ void __threadfence();
__device__ int atomicAdd(int*, int);
__device__ float __uint_as_float(unsigned);
__device__ float __int_as_float(int);
__device__ unsigned __float_as_uint(float);
__device__ int __float_as_int(float);
extern "C" __device__ float fmaxf(float, float);
extern "C" __device__ float fminf(float, float);
extern "C" __device__ float fabsf(float);
extern "C" __device__ float expf(float);
extern "C" __device__ float tanhf(float);
extern "C" __device__ float rsqrtf(float);
extern "C" __device__ float fmaf(float, float, float);
__device__ int min(int, int);
__device__ int max(int, int);
