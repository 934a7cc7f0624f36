// Weight formats: each one a struct with QK (elements per block), BYTES (bytes per block) and
// deq8, which turns the eight elements e0..e0+7 of one block (e0 a multiple of 8) into floats.
// Layouts and arithmetic follow ggml-common.h and src/quant/ (the CPU reference).


struct FmtF32 {
    static const int QK = 8, BYTES = 32;
    static __device__ __forceinline__ void deq8(const u8* b, int, float* v) {
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = __uint_as_float(rf_ld32(b + 4 * l));
    }
};

struct FmtF16 {
    static const int QK = 8, BYTES = 16;
    static __device__ __forceinline__ void deq8(const u8* b, int, float* v) {
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = rf_ldh(b + 2 * l);
    }
};

struct FmtBF16 {
    static const int QK = 8, BYTES = 16;
    static __device__ __forceinline__ void deq8(const u8* b, int, float* v) {
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = rf_bf16_to_f32(rf_ld16(b + 2 * l));
    }
};

// Elements j and j + 16 of a 32-element block share byte j: low nibble, then high.
struct FmtQ4_0 {
    static const int QK = 32, BYTES = 18;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        float d = rf_ldh(b);
        int sh = e0 >= 16 ? 4 : 0;
        const u8* q = b + 2 + (e0 & 15);
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = d * (float)(((q[l] >> sh) & 15) - 8);
    }
};

struct FmtQ4_1 {
    static const int QK = 32, BYTES = 20;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        float d = rf_ldh(b), m = rf_ldh(b + 2);
        int sh = e0 >= 16 ? 4 : 0;
        const u8* q = b + 4 + (e0 & 15);
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = d * (float)((q[l] >> sh) & 15) + m;
    }
};

struct FmtQ5_0 {
    static const int QK = 32, BYTES = 22;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        float d = rf_ldh(b);
        u32 qh = rf_ld32(b + 2);
        int sh = e0 >= 16 ? 4 : 0;
        const u8* q = b + 6 + (e0 & 15);
#pragma unroll
        for (int l = 0; l < 8; l++) {
            int x = ((q[l] >> sh) & 15) | (((qh >> (e0 + l)) & 1) << 4);
            v[l] = d * (float)(x - 16);
        }
    }
};

struct FmtQ5_1 {
    static const int QK = 32, BYTES = 24;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        float d = rf_ldh(b), m = rf_ldh(b + 2);
        u32 qh = rf_ld32(b + 4);
        int sh = e0 >= 16 ? 4 : 0;
        const u8* q = b + 8 + (e0 & 15);
#pragma unroll
        for (int l = 0; l < 8; l++) {
            int x = ((q[l] >> sh) & 15) | (((qh >> (e0 + l)) & 1) << 4);
            v[l] = d * (float)x + m;
        }
    }
};

struct FmtQ8_0 {
    static const int QK = 32, BYTES = 34;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        float d = rf_ldh(b);
        const i8* q = (const i8*)(b + 2 + e0);
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = d * (float)q[l];
    }
};

__constant__ i8 RF_IQ4_VALUES[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

struct FmtIQ4_NL {
    static const int QK = 32, BYTES = 18;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        float d = rf_ldh(b);
        int sh = e0 >= 16 ? 4 : 0;
        const u8* q = b + 2 + (e0 & 15);
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = d * (float)RF_IQ4_VALUES[(q[l] >> sh) & 15];
    }
};

struct FmtIQ4_XS {
    static const int QK = 256, BYTES = 136;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        int ib = e0 / 32, j0 = e0 & 31;
        u32 sh_h = rf_ld16(b + 2);
        int lo = (b[4 + ib / 2] >> (4 * (ib & 1))) & 15;
        int hi = (sh_h >> (2 * ib)) & 3;
        float dl = rf_ldh(b) * (float)((lo | (hi << 4)) - 32);
        int sh = j0 >= 16 ? 4 : 0;
        const u8* q = b + 8 + ib * 16 + (j0 & 15);
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = dl * (float)RF_IQ4_VALUES[(q[l] >> sh) & 15];
    }
};

// Q2_K: scales[16] qs[64] d dmin. Element i: half i/128, shift (i%128)/32, l = i%32.
struct FmtQ2_K {
    static const int QK = 256, BYTES = 84;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        float d = rf_ldh(b + 80), dmin = rf_ldh(b + 82);
        int sc = b[e0 / 16];
        float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
        int half = e0 / 128, shift = 2 * ((e0 & 127) / 32), l0 = e0 & 31;
        const u8* q = b + 16 + half * 32 + l0;
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = dl * (float)((q[l] >> shift) & 3) - ml;
    }
};

// Q3_K: hmask[32] qs[64] scales[12] d.
struct FmtQ3_K {
    static const int QK = 256, BYTES = 110;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        const u8* s = b + 96;
        int i = e0 / 16;
        int low = i < 8 ? (s[i] & 15) : (s[i - 8] >> 4);
        int high = (s[8 + (i & 3)] >> (2 * (i / 4))) & 3;
        float dl = rf_ldh(b + 108) * (float)((low | (high << 4)) - 32);
        int half = e0 / 128, shift = 2 * ((e0 & 127) / 32), l0 = e0 & 31, hb = e0 / 32;
        const u8* q = b + 32 + half * 32 + l0;
        const u8* hm = b + l0;
#pragma unroll
        for (int l = 0; l < 8; l++) {
            int x = ((q[l] >> shift) & 3) - (((hm[l] >> hb) & 1) ? 0 : 4);
            v[l] = dl * (float)x;
        }
    }
};

// Scale and min of sub-block j of a Q4_K/Q5_K block (the 12 packed bytes at s).
__device__ __forceinline__ void rf_k_scale_min(const u8* s, int j, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K: d dmin scales[12] qs[128]; sub-block j (32 elements) in nibble j%2 of qs[(j/2)*32..].
struct FmtQ4_K {
    static const int QK = 256, BYTES = 144;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        int j = e0 / 32, sc, m;
        rf_k_scale_min(b + 4, j, sc, m);
        float d1 = rf_ldh(b) * (float)sc, m1 = rf_ldh(b + 2) * (float)m;
        int shift = 4 * (j & 1);
        const u8* q = b + 16 + (j / 2) * 32 + (e0 & 31);
#pragma unroll
        for (int l = 0; l < 8; l++) v[l] = d1 * (float)((q[l] >> shift) & 15) - m1;
    }
};

// Q5_K: d dmin scales[12] qh[32] qs[128].
struct FmtQ5_K {
    static const int QK = 256, BYTES = 176;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        int j = e0 / 32, sc, m;
        rf_k_scale_min(b + 4, j, sc, m);
        float d1 = rf_ldh(b) * (float)sc, m1 = rf_ldh(b + 2) * (float)m;
        int shift = 4 * (j & 1), l0 = e0 & 31;
        const u8* q = b + 48 + (j / 2) * 32 + l0;
        const u8* qh = b + 16 + l0;
#pragma unroll
        for (int l = 0; l < 8; l++) {
            int x = ((q[l] >> shift) & 15) | (((qh[l] >> j) & 1) << 4);
            v[l] = d1 * (float)x - m1;
        }
    }
};

// Q6_K: ql[128] qh[64] scales[16] d.
struct FmtQ6_K {
    static const int QK = 256, BYTES = 210;
    static __device__ __forceinline__ void deq8(const u8* b, int e0, float* v) {
        float d1 = rf_ldh(b + 208) * (float)(i8)b[192 + e0 / 16];
        int half = e0 / 128, r0 = e0 & 127;
        const u8* ql = b + half * 64 + (r0 & 63);
        const u8* qh = b + 128 + half * 32 + (r0 & 31);
        int sl = 4 * (r0 / 64), sh = 2 * (r0 / 32);
#pragma unroll
        for (int l = 0; l < 8; l++) {
            int x = ((ql[l] >> sl) & 15) | (((qh[l] >> sh) & 3) << 4);
            v[l] = d1 * (float)(x - 32);
        }
    }
};

// Every format with the name that the host uses for its kernels (X(suffix, struct)).
#define RF_FORMATS(X)                                                                        \
    X(f32, FmtF32) X(f16, FmtF16) X(bf16, FmtBF16) X(q4_0, FmtQ4_0) X(q4_1, FmtQ4_1)          \
    X(q5_0, FmtQ5_0) X(q5_1, FmtQ5_1) X(q8_0, FmtQ8_0) X(iq4_nl, FmtIQ4_NL)                  \
    X(iq4_xs, FmtIQ4_XS) X(q2_k, FmtQ2_K) X(q3_k, FmtQ3_K) X(q4_k, FmtQ4_K) X(q5_k, FmtQ5_K) \
    X(q6_k, FmtQ6_K)
