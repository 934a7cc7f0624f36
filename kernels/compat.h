// Portability header: the one place where the CUDA and HIP dialects differ. Everything
// else in kernels/ is written against these names. Compiled by NVRTC (NVIDIA) or hipRTC /
// hipcc (AMD); no system headers are needed, so the run-time compilers need no include path.
// RF_EMU: the CPU emulator of `--features gpu-emulator` (src/backend/gpu/emulator/), which
// defines the CUDA names this file leans on and a warp of RF_EMU_WARP lanes (32 or 64).


#if defined(__HIPCC__) || defined(__HIP_DEVICE_COMPILE__) || defined(__HIP__)
#define RF_HIP 1
#endif

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;

#if defined(RF_EMU)
#define RF_WARP RF_EMU_WARP
__device__ __forceinline__ float rf_shfl_xor(float v, int m) { return rfemu::shfl_xor(v, m); }
__device__ __forceinline__ float rf_f16_to_f32(u16 h) { return rfemu::f16_to_f32(h); }
__device__ __forceinline__ u16 rf_f32_to_f16(float x) { return rfemu::f32_to_f16(x); }
#elif defined(RF_HIP)
// AMD: wave64 on CDNA (gfx9), wave32 on RDNA; the compiler says which.
#define RF_WARP __AMDGCN_WAVEFRONT_SIZE
__device__ __forceinline__ float rf_shfl_xor(float v, int m) { return __shfl_xor(v, m); }
__device__ __forceinline__ float rf_f16_to_f32(u16 h) {
    _Float16 f;
    __builtin_memcpy(&f, &h, 2);
    return (float)f;
}
__device__ __forceinline__ u16 rf_f32_to_f16(float x) {
    _Float16 f = (_Float16)x;
    u16 h;
    __builtin_memcpy(&h, &f, 2);
    return h;
}
#else
#define RF_WARP 32
__device__ __forceinline__ float rf_shfl_xor(float v, int m) {
    return __shfl_xor_sync(0xffffffffu, v, m);
}
__device__ __forceinline__ float rf_f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 rf_f32_to_f16(float x) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
}
#endif

// Eight floats to f16, stored with one 16-byte store (`o` 16-byte aligned): a warp's
// stores then fill whole sectors instead of touching each eight times.
__device__ __forceinline__ void rf_store8_f16(u16* o, const float* v) {
    u32 w[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
        w[i] = (u32)rf_f32_to_f16(v[2 * i]) | ((u32)rf_f32_to_f16(v[2 * i + 1]) << 16);
    *(uint4*)o = make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ float rf_bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }

// Orders shared-memory accesses among the lanes of one warp (a wavefront runs in lockstep on
// AMD; the barrier keeps the compiler from reordering across it).
#if defined(RF_EMU)
__device__ __forceinline__ void rf_syncwarp() { rfemu::sync_warp(); }
#elif defined(RF_HIP)
__device__ __forceinline__ void rf_syncwarp() { __builtin_amdgcn_wave_barrier(); }
#else
__device__ __forceinline__ void rf_syncwarp() { __syncwarp(); }
#endif

// Sum over the lanes of a warp (every lane gets the total).
__device__ __forceinline__ float rf_warp_sum(float v) {
#pragma unroll
    for (int m = RF_WARP / 2; m > 0; m >>= 1) v += rf_shfl_xor(v, m);
    return v;
}

// The same over 32-lane groups, whatever the hardware warp: on wave64 the lane masks under
// 32 keep each half of the wave apart. Kernels whose host code counts 32 threads a row or
// a block of values use these (and 32, not RF_WARP, in their lane arithmetic).
__device__ __forceinline__ float rf_sum32(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v += rf_shfl_xor(v, m);
    return v;
}

__device__ __forceinline__ float rf_max32(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, rf_shfl_xor(v, m));
    return v;
}

__device__ __forceinline__ float rf_warp_max(float v) {
#pragma unroll
    for (int m = RF_WARP / 2; m > 0; m >>= 1) v = fmaxf(v, rf_shfl_xor(v, m));
    return v;
}

// Little-endian loads at any byte offset (blocks of 18, 20, 22 bytes are not 4-aligned).
__device__ __forceinline__ u16 rf_ld16(const u8* p) { return (u16)p[0] | ((u16)p[1] << 8); }
__device__ __forceinline__ u32 rf_ld32(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}
__device__ __forceinline__ float rf_ldh(const u8* p) { return rf_f16_to_f32(rf_ld16(p)); }

// Loads from addresses known to be 2-byte aligned (every block size and field offset of the
// 32-element formats is even).
__device__ __forceinline__ u32 rf_ld32h(const u8* p) {
    const u16* h = (const u16*)p;
    return (u32)h[0] | ((u32)h[1] << 16);
}

// Round half to even, as ggml's nearest_int: exact for |v| <= 2^22.
__device__ __forceinline__ float rf_rint(float v) {
    const float magic = 12582912.0f;  // 1.5 * 2^23
    return (v + magic) - magic;
}

// c + the dot product of the four signed bytes of a and of b.
#if defined(RF_HIP) || defined(RF_EMU)
__device__ __forceinline__ int rf_dp4a(int a, int b, int c) {
#pragma unroll
    for (int i = 0; i < 32; i += 8) c += (int)(i8)(a >> i) * (int)(i8)(b >> i);
    return c;
}
#else
__device__ __forceinline__ int rf_dp4a(int a, int b, int c) {
    int r;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
#endif

#define RF_NEG_INF __int_as_float(0xff800000)

// Programmatic dependent launch (NVIDIA sm_90 and later; the host launches every kernel with
// the attribute that allows it, docs/GPU.md "Overlapped launches"). rf_grid_go() lets the
// stream's next kernel be scheduled now: its blocks start and wait in rf_grid_wait(), which
// returns once every earlier kernel of the stream has finished and its writes are visible.
// Every kernel begins with rf_grid_start() (both), before it reads or writes any buffer; a
// matrix-vector product calls rf_grid_go(), asks L2 for its weight rows (rf_prefetch_l2: a
// hint, which reads nothing back), then rf_grid_wait(), so that the weights stream in while
// the kernels before it finish. Elsewhere (AMD, the emulator, older NVIDIA) all three do
// nothing and kernels run one after another as usual.
#if !defined(RF_HIP) && !defined(RF_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void rf_grid_go() {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
__device__ __forceinline__ void rf_grid_wait() {
    asm volatile("griddepcontrol.wait;" ::: "memory");
}
__device__ __forceinline__ void rf_prefetch_line(const u8* p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}
#else
__device__ __forceinline__ void rf_grid_go() {}
__device__ __forceinline__ void rf_grid_wait() {}
__device__ __forceinline__ void rf_prefetch_line(const u8*) {}
#endif
// The last-block pattern of split kernels: each block writes its part, calls rf_fence (its
// global writes become visible to the whole device), then one thread takes a ticket
// (atomic increment, the value before); the block with the last ticket reads every part
// after a second rf_fence.
__device__ __forceinline__ void rf_fence() { __threadfence(); }
__device__ __forceinline__ int rf_ticket(int* counter) { return atomicAdd(counter, 1); }

__device__ __forceinline__ void rf_grid_start() {
    rf_grid_go();
    rf_grid_wait();
}

// Asks L2 for the 128-byte lines that begin in [p, p + bytes): lane `lane` of a 32-lane
// group every 32nd line (a line that begins before p, when p is not aligned, is left out).
__device__ __forceinline__ void rf_prefetch_l2(const u8* p, u64 bytes, int lane) {
    for (u64 o = (u64)lane * 128; o < bytes; o += 32 * 128) rf_prefetch_line(p + o);
}

// Lane `src` of the calling thread's 32-lane group's value of v (src < 32).
#if defined(RF_EMU)
__device__ __forceinline__ int rf_shfl_idx32(int v, int src) { return rfemu::shfl_idx32(v, src); }
#elif defined(RF_HIP)
__device__ __forceinline__ int rf_shfl_idx32(int v, int src) {
    return __shfl(v, (int)(threadIdx.x % RF_WARP) - (int)(threadIdx.x % 32) + src);
}
#else
__device__ __forceinline__ int rf_shfl_idx32(int v, int src) {
    return __shfl_sync(0xffffffffu, v, src);
}
#endif

// c += A * B for one 32-lane group's fragments of a 16x32 int8 A (row-major), a 32x8 int8 B
// (column-major) and the 16x8 int32 sums, in the register layout of PTX's
// mma.m16n8k32.s8 (lane = 4 * g + t): a[0] = A[g][4t..4t+3], a[1] = A[g+8][4t..],
// a[2] = A[g][16+4t..], a[3] = A[g+8][16+4t..]; b[0] = B[4t..4t+3][g], b[1] = B[16+4t..][g];
// c[0] = C[g][2t], c[1] = C[g][2t+1], c[2] = C[g+8][2t], c[3] = C[g+8][2t+1].
// The tensor-core instruction on NVIDIA sm_80 and later; elsewhere the same sums from
// shuffles and dp4a (the emulator runs it, as AMD would: RF_EMU_GENERIC_MMA compiles the
// emulator's build with this portable version instead of its model of the instruction).
__device__ __forceinline__ void rf_mma_s8_portable(int* c, const u32* a, const u32* b) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        // Row g's words q and 4 + q are lane 4g + q's a[0] and a[2] (row g + 8: a[1], a[3]);
        // column n's words q and 4 + q are lane 4n + q's b[0] and b[1].
        const int sa = 4 * g + q, sb0 = 8 * t + q, sb1 = 8 * t + 4 + q;
        const int a0 = rf_shfl_idx32((int)a[0], sa), a1 = rf_shfl_idx32((int)a[1], sa);
        const int a2 = rf_shfl_idx32((int)a[2], sa), a3 = rf_shfl_idx32((int)a[3], sa);
        const int b00 = rf_shfl_idx32((int)b[0], sb0), b01 = rf_shfl_idx32((int)b[1], sb0);
        const int b10 = rf_shfl_idx32((int)b[0], sb1), b11 = rf_shfl_idx32((int)b[1], sb1);
        c[0] = rf_dp4a(a2, b01, rf_dp4a(a0, b00, c[0]));
        c[1] = rf_dp4a(a2, b11, rf_dp4a(a0, b10, c[1]));
        c[2] = rf_dp4a(a3, b01, rf_dp4a(a1, b00, c[2]));
        c[3] = rf_dp4a(a3, b11, rf_dp4a(a1, b10, c[3]));
    }
}

#if defined(RF_EMU) && !defined(RF_EMU_GENERIC_MMA)
__device__ __forceinline__ void rf_mma_s8(int* c, const u32* a, const u32* b) {
    rfemu::mma_s8(c, a, b);
}
#elif !defined(RF_HIP) && !defined(RF_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ void rf_mma_s8(int* c, const u32* a, const u32* b) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
__device__ __forceinline__ void rf_mma_s8(int* c, const u32* a, const u32* b) {
    rf_mma_s8_portable(c, a, b);
}
#endif

// c += A * B for one 32-lane group's fragments of a 16x16 f16 A (row-major), a 16x8 f16 B
// (column-major) and the 16x8 f32 sums, in the register layout of PTX's
// mma.m16n8k16.f32.f16.f16.f32 (lane = 4 * g + t; each u32 holds two f16, the lower index
// in the low half): a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][8+2t..],
// a[3] = A[g+8][8+2t..]; b[0] = B[2t..2t+1][g], b[1] = B[8+2t..][g]; c[0] = C[g][2t],
// c[1] = C[g][2t+1], c[2] = C[g+8][2t], c[3] = C[g+8][2t+1]. The tensor-core instruction on
// NVIDIA sm_80 and later; elsewhere (AMD, the emulator, older NVIDIA) the same sums from
// shuffles and float products.
__device__ __forceinline__ float rf_dot2_f16(u32 x, u32 y) {
    return rf_f16_to_f32((u16)x) * rf_f16_to_f32((u16)y) +
           rf_f16_to_f32((u16)(x >> 16)) * rf_f16_to_f32((u16)(y >> 16));
}
__device__ __forceinline__ void rf_mma_f16_portable(float* c, const u32* a, const u32* b) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        // Row g's pairs q and 4 + q are lane 4g + q's a[0] and a[2] (row g + 8: a[1], a[3]);
        // column n's are lane 4n + q's b[0] and b[1].
        const int sa = 4 * g + q, sb0 = 8 * t + q, sb1 = 8 * t + 4 + q;
        const u32 a0 = (u32)rf_shfl_idx32((int)a[0], sa), a1 = (u32)rf_shfl_idx32((int)a[1], sa);
        const u32 a2 = (u32)rf_shfl_idx32((int)a[2], sa), a3 = (u32)rf_shfl_idx32((int)a[3], sa);
        const u32 b00 = (u32)rf_shfl_idx32((int)b[0], sb0), b01 = (u32)rf_shfl_idx32((int)b[1], sb0);
        const u32 b10 = (u32)rf_shfl_idx32((int)b[0], sb1), b11 = (u32)rf_shfl_idx32((int)b[1], sb1);
        c[0] += rf_dot2_f16(a0, b00) + rf_dot2_f16(a2, b01);
        c[1] += rf_dot2_f16(a0, b10) + rf_dot2_f16(a2, b11);
        c[2] += rf_dot2_f16(a1, b00) + rf_dot2_f16(a3, b01);
        c[3] += rf_dot2_f16(a1, b10) + rf_dot2_f16(a3, b11);
    }
}

#if !defined(RF_HIP) && !defined(RF_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ void rf_mma_f16(float* c, const u32* a, const u32* b) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
__device__ __forceinline__ void rf_mma_f16(float* c, const u32* a, const u32* b) {
    rf_mma_f16_portable(c, a, b);
}
#endif
