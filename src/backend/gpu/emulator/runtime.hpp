// The GPU emulator's runtime: what CUDA provides to kernels/, on the CPU, so that the
// library's kernel source compiles with the host's C++ compiler and runs here (tests without
// a GPU: src/backend/gpu/emulator/mod.rs says how it is used).
//
// A launch runs its blocks one after another on the calling thread. The threads of a block
// are fibers (a stack each, switched by `rfemu_switch`, x86-64 only): each runs until it
// reaches a barrier (`__syncthreads`, a warp's `rf_syncwarp`, both halves of a shuffle),
// then the next one runs; a barrier opens when every thread of its block or warp that has
// not returned has reached it. Threads waiting at different barriers forever is reported as
// a deadlock. Shared memory is `static thread_local`: one copy per host thread, reused by
// the blocks that run there one at a time. A warp is RF_EMU_WARP lanes (32 as NVIDIA's, or
// 64 as AMD's CDNA wavefronts), so the AMD wave64 arithmetic is tested here too.

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

#ifndef RF_EMU_WARP
#define RF_EMU_WARP 32
#endif
#define RF_EMU 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static const

struct rf_dim3 {
    unsigned x, y, z;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

template <class To, class From>
inline To rfemu_bits(From v) {
    static_assert(sizeof(To) == sizeof(From), "same size");
    To t;
    memcpy(&t, &v, sizeof t);
    return t;
}
inline float __uint_as_float(unsigned u) { return rfemu_bits<float>(u); }
inline float __int_as_float(int i) { return rfemu_bits<float>(i); }
inline unsigned __float_as_uint(float f) { return rfemu_bits<unsigned>(f); }
inline int __float_as_int(float f) { return rfemu_bits<int>(f); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
// CUDA's integer min and max (the float ones are fminf and fmaxf).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

extern "C" void rfemu_switch(void** save_sp, void* load_sp);
// Saves the callee-saved registers and the stack pointer in *save_sp, switches to the stack
// at load_sp and restores the registers saved there (SysV x86-64; MXCSR and the x87 control
// word are the same for every fiber and are not switched).
asm(R"(
    .text
    .globl rfemu_switch
    .hidden rfemu_switch
    .type rfemu_switch, @function
rfemu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size rfemu_switch, .-rfemu_switch
)");

namespace rfemu {

// A launch's kernel and its arguments, copied when the launch was made (a recorded graph
// replays them later, as CUDA's graphs do).
struct Launch {
    virtual ~Launch() {}
    virtual void call() const = 0;
};

template <class... A>
struct Bound final : Launch {
    void (*k)(A...);
    std::tuple<A...> a;
    Bound(void (*k)(A...), std::tuple<A...> a) : k(k), a(a) {}
    void call() const override { std::apply(k, a); }
};

template <class... A, size_t... I>
Launch* bind_impl(void (*k)(A...), void** args, std::index_sequence<I...>) {
    return new (std::nothrow) Bound<A...>(k, std::tuple<A...>(*static_cast<A*>(args[I])...));
}

template <class... A>
Launch* bind(void (*k)(A...), void** args) {
    return bind_impl(k, args, std::index_sequence_for<A...>{});
}

// What a fiber waits for: its 32-lane group's barrier, its warp's, or its block's. On wave32
// a group is a warp. On wave64 (AMD CDNA) a shuffle whose lane mask is under 32 and
// `rf_syncwarp` wait for the 32 lanes of their half only: the kernels work in 32-lane groups
// (compat.h), and where the two halves of a wavefront take different branches each half
// still exchanges values within itself, as the hardware's lane swizzles do.
enum Wait { NONE = 0, GROUP = 1, WARP = 2, BLOCK = 3 };

struct Fiber {
    void* sp;
    rf_dim3 tid;
    int group, warp, lane;
    Wait wait;
    unsigned gen;
    bool done;
    uint32_t slot;  // a shuffle's value
    uint32_t frag[6];  // an mma's A and B registers
};

constexpr size_t STACK = 256 * 1024;
constexpr size_t GUARD = 4096;
constexpr int MAX_THREADS = 1024;
constexpr int MAX_GROUPS = MAX_THREADS / 32;

// A barrier: it opens when every thread of it that has not returned has arrived.
struct Barrier {
    int arrived, alive;
    unsigned gen;
    // Opens the barrier if everyone is there (after an arrival or a return).
    bool try_open() {
        if (alive > 0 && arrived == alive) {
            arrived = 0;
            gen++;
            return true;
        }
        return false;
    }
};

struct Sched {
    void* main_sp;
    Fiber fibers[MAX_THREADS];
    Fiber* cur;
    int n;
    rf_dim3 block_idx, block_dim, grid_dim;
    Barrier block, groups[MAX_GROUPS], warps[MAX_GROUPS];
    const Launch* launch;
    char* stacks;  // MAX_THREADS stacks of STACK bytes, each above a guard page
};

static thread_local Sched* t_sched;

inline Barrier& barrier_of(Sched* s, const Fiber* f, Wait w) {
    return w == GROUP ? s->groups[f->group] : w == WARP ? s->warps[f->warp] : s->block;
}

// Arrives at a barrier: the last thread to arrive opens it and goes on; the others return
// to the scheduler until it opens.
inline void arrive(Wait w) {
    Sched* s = t_sched;
    Fiber* f = s->cur;
    Barrier& b = barrier_of(s, f, w);
    b.arrived++;
    if (b.try_open()) return;
    f->wait = w;
    f->gen = b.gen;
    rfemu_switch(&f->sp, s->main_sp);
}

// rf_syncwarp: the 32 lanes of the thread's group (all of a wave32 warp).
inline void sync_warp() { arrive(GROUP); }

inline void sync_block() { arrive(BLOCK); }

// __shfl_xor_sync: every lane publishes its value, then reads lane ^ m's.
inline float shfl_xor(float v, int m) {
    Sched* s = t_sched;
    Fiber* f = s->cur;
    const Wait w = m < 32 ? GROUP : WARP;
    f->slot = rfemu_bits<uint32_t>(v);
    arrive(w);
    const int src = (f->lane ^ m) + f->warp * RF_EMU_WARP;
    const float r = src < s->n ? rfemu_bits<float>(s->fibers[src].slot) : v;
    arrive(w);
    return r;
}

// __shfl_sync over the thread's 32-lane group: lane src's value of v.
inline int shfl_idx32(int v, int src) {
    Sched* s = t_sched;
    Fiber* f = s->cur;
    f->slot = (uint32_t)v;
    arrive(GROUP);
    const int at = f->group * 32 + src;
    const int r = at < s->n ? (int)s->fibers[at].slot : v;
    arrive(GROUP);
    return r;
}

// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 over the thread's 32-lane group, as the
// PTX ISA lays out the fragments (compat.h, rf_mma_s8): every lane publishes its A and B
// registers, then sums its four outputs from everyone's.
inline int8_t byte_of(uint32_t w, int i) { return (int8_t)(w >> (8 * i)); }

inline void mma_s8(int* c, const uint32_t* a, const uint32_t* b) {
    Sched* s = t_sched;
    Fiber* f = s->cur;
    for (int i = 0; i < 4; i++) f->frag[i] = a[i];
    f->frag[4] = b[0];
    f->frag[5] = b[1];
    arrive(GROUP);
    const int lane = f->lane % 32, g = lane / 4, t = lane % 4;
    const Fiber* grp = &s->fibers[f->group * 32];
    // A[r][k] and B[k][n] from the owning lanes' registers.
    auto A = [&](int r, int k) {
        const int reg = (r >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0);
        return (int)byte_of(grp[4 * (r % 8) + (k % 16) / 4].frag[reg], k % 4);
    };
    auto B = [&](int k, int n) {
        return (int)byte_of(grp[4 * n + (k % 16) / 4].frag[4 + (k >= 16 ? 1 : 0)], k % 4);
    };
    int out[4];
    for (int e = 0; e < 4; e++) {
        const int r = g + (e >= 2 ? 8 : 0), n = 2 * t + (e & 1);
        int sum = c[e];
        for (int k = 0; k < 32; k++) sum += A(r, k) * B(k, n);
        out[e] = sum;
    }
    arrive(GROUP);
    for (int e = 0; e < 4; e++) c[e] = out[e];
}

// IEEE binary16 conversions, rounding to nearest even (as cvt.rn.f16.f32).
inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return rfemu_bits<float>(sign | 0x7f800000u | (m << 13));
    if (e != 0) return rfemu_bits<float>(sign | ((e + 112) << 23) | (m << 13));
    const float f = (float)m * (1.0f / 16777216.0f);  // m * 2^-24
    return sign ? -f : f;
}

inline uint16_t f32_to_f16(float x) {
    const uint32_t b = rfemu_bits<uint32_t>(x);
    const uint16_t sign = (uint16_t)((b >> 16) & 0x8000);
    const uint32_t a = b & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 | ((a >> 13) & 0x3ff) : 0);
    if (a >= 0x477ff000u) return sign | 0x7c00;  // rounds past 65504
    if (a < 0x38800000u) {                       // below 2^-14: a subnormal (or zero)
        const float f = rfemu_bits<float>(a) * 16777216.0f;  // exact: units of 2^-24
        return sign | (uint16_t)lrintf(f);                    // to nearest even
    }
    const uint32_t mant = a & 0x7fffff, e = (a >> 23) - 112;
    uint32_t r = (e << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++;
    return sign | (uint16_t)r;
}

[[noreturn]] static void fiber_entry() {
    Sched* s = t_sched;
    s->launch->call();
    s->cur->done = true;
    rfemu_switch(&s->cur->sp, s->main_sp);
    __builtin_unreachable();
}

// A fresh fiber whose first switch enters fiber_entry, with the stack aligned as after a call.
inline void start(Fiber& f, char* top) {
    uintptr_t* sp = (uintptr_t*)((uintptr_t)top & ~(uintptr_t)15);
    *--sp = 0;                          // where fiber_entry's caller would have returned
    *--sp = (uintptr_t)&fiber_entry;   // rfemu_switch's ret
    for (int i = 0; i < 6; i++) *--sp = 0;  // rbp rbx r12 r13 r14 r15
    f.sp = sp;
}

// Runs the block at s->block_idx; 0, or -1 with `err` filled on a deadlock.
inline int run_block(Sched* s, char* err, size_t errlen) {
    const int n = s->n;
    for (int g = 0; g < (n + 31) / 32; g++) s->groups[g] = {0, 0, 0};
    for (int w = 0; w < (n + RF_EMU_WARP - 1) / RF_EMU_WARP; w++) s->warps[w] = {0, 0, 0};
    s->block = {0, n, 0};
    for (int i = 0; i < n; i++) {
        Fiber& f = s->fibers[i];
        f.tid = {(unsigned)i, 0, 0};
        f.group = i / 32;
        f.warp = i / RF_EMU_WARP;
        f.lane = i % RF_EMU_WARP;
        f.wait = NONE;
        f.done = false;
        s->groups[f.group].alive++;
        s->warps[f.warp].alive++;
        start(f, s->stacks + (size_t)i * (STACK + GUARD) + STACK);
    }
    int live = n;
    while (live > 0) {
        bool ran = false;
        for (int i = 0; i < n; i++) {
            Fiber& f = s->fibers[i];
            if (f.done) continue;
            if (f.wait != NONE && barrier_of(s, &f, f.wait).gen == f.gen) continue;
            f.wait = NONE;
            s->cur = &f;
            rfemu_switch(&s->main_sp, f.sp);
            ran = true;
            if (f.done) {
                live--;
                s->groups[f.group].alive--;
                s->warps[f.warp].alive--;
                s->block.alive--;
                s->groups[f.group].try_open();
                s->warps[f.warp].try_open();
                s->block.try_open();
            }
        }
        if (!ran) {
            int at[4] = {0, 0, 0, 0};
            for (int i = 0; i < n; i++)
                if (!s->fibers[i].done) at[s->fibers[i].wait]++;
            snprintf(err, errlen,
                     "deadlock in block (%u, %u, %u): threads wait at different barriers (%d at "
                     "a 32-lane group's, %d at a warp's, %d at __syncthreads; %d returned)",
                     s->block_idx.x, s->block_idx.y, s->block_idx.z, at[GROUP], at[WARP],
                     at[BLOCK], n - live);
            return -1;
        }
    }
    return 0;
}

constexpr size_t STACKS_BYTES = (size_t)MAX_THREADS * (STACK + GUARD) + GUARD;

// Frees a host thread's scheduler and stacks when the thread ends (the module is never
// unloaded, so the destructor is still there then).
struct SchedOwner {
    ~SchedOwner() {
        if (!t_sched) return;
        munmap(t_sched->stacks - GUARD, STACKS_BYTES);
        delete t_sched;
        t_sched = nullptr;
    }
};
static thread_local SchedOwner t_owner;

inline Sched* sched(char* err, size_t errlen) {
    if (t_sched) return t_sched;
    (void)&t_owner;  // constructs it on this thread, so that its destructor runs
    Sched* s = new (std::nothrow) Sched();
    const size_t bytes = STACKS_BYTES;
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (!s || m == MAP_FAILED) {
        snprintf(err, errlen, "the emulator could not allocate its fiber stacks");
        delete s;
        if (m != MAP_FAILED) munmap(m, bytes);
        return nullptr;
    }
    s->stacks = (char*)m;
    // A guard page below every stack: an overflow faults instead of corrupting a neighbour.
    for (int i = 0; i <= MAX_THREADS; i++) mprotect(s->stacks + (size_t)i * (STACK + GUARD), GUARD, PROT_NONE);
    s->stacks += GUARD;
    t_sched = s;
    return s;
}

}  // namespace rfemu

#define threadIdx (rfemu::t_sched->cur->tid)
#define blockIdx (rfemu::t_sched->block_idx)
#define blockDim (rfemu::t_sched->block_dim)
#define gridDim (rfemu::t_sched->grid_dim)
#define __syncthreads() rfemu::sync_block()
// Blocks run one after another and a block's fibers switch only at barriers, so a plain
// read-modify-write is atomic and every write is visible to the next block.
inline int atomicAdd(int* p, int v) {
    const int old = *p;
    *p = old + v;
    return old;
}
inline void __threadfence() {}


extern "C" {

__attribute__((visibility("default"))) void rfemu_free(void* launch) {
    delete static_cast<rfemu::Launch*>(launch);
}

// Runs a bound launch over its grid; 0, or -1 with the reason in `err`.
__attribute__((visibility("default"))) int rfemu_run(void* launch, unsigned gx, unsigned gy,
                                                     unsigned gz, unsigned block, char* err,
                                                     size_t errlen) {
    if (block == 0 || block > (unsigned)rfemu::MAX_THREADS) {
        snprintf(err, errlen, "a block of %u threads (the emulator takes 1 to %d)", block,
                 rfemu::MAX_THREADS);
        return -1;
    }
    rfemu::Sched* s = rfemu::sched(err, errlen);
    if (!s) return -1;
    s->launch = static_cast<const rfemu::Launch*>(launch);
    s->n = (int)block;
    s->block_dim = {block, 1, 1};
    s->grid_dim = {gx, gy, gz};
    for (unsigned z = 0; z < gz; z++)
        for (unsigned y = 0; y < gy; y++)
            for (unsigned x = 0; x < gx; x++) {
                s->block_idx = {x, y, z};
                if (rfemu::run_block(s, err, errlen) != 0) return -1;
            }
    return 0;
}

__attribute__((visibility("default"))) int rfemu_warp() { return RF_EMU_WARP; }

}  // extern "C"
