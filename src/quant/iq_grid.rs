//! The codebook ("grid") formats: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S (indices into a
//! table of 8- or 4-value rows, with sign bits) and IQ1_S, IQ1_M (ternary rows plus a shift).
//! All are 256-value super-blocks; dequantization follows gguf-py's arithmetic (bit-exact),
//! and the dot products with Q8_K sum the same values as integers.
//!
//! Layouts (bytes): IQ2_XXS d | 8 x (4 grid indices, u32 of 4 7-bit sign codes + 4-bit scale);
//! IQ2_XS d | 32 x u16 (9-bit index, 7-bit sign code) | 8 scale bytes (two 4-bit scales);
//! IQ2_S d | 32 index bytes | 32 sign bytes | 8 bytes of index high bits | 8 scale bytes;
//! IQ3_XXS d | 64 indices | 8 x u32 (4 sign codes + scale); IQ3_S d | 64 indices | 8 bytes of
//! index high bits | 32 sign bytes | 4 scale bytes; IQ1_S d | 32 indices | 8 x u16 (3 index
//! high bits x 4, 3-bit scale, delta sign); IQ1_M 32 indices | 16 bytes (3 high bits + delta
//! sign per index) | 4 x u16 (3-bit scales x 4, and a nibble of the f16 super-scale each).

use super::grids::*;
use super::{f16_at, rows};

/// Expands packed codebook rows into values at compile time.
const fn expand<const N: usize, const K: usize>(
    codes: &[u32; N],
    map: &[i8],
    bits: u32,
) -> [[i8; K]; N] {
    let mut out = [[0i8; K]; N];
    let mask = (1u32 << bits) - 1;
    let mut i = 0;
    while i < N {
        let mut j = 0;
        while j < K {
            out[i][j] = map[((codes[i] >> (bits * j as u32)) & mask) as usize];
            j += 1;
        }
        i += 1;
    }
    out
}

static GRID_IQ2XXS: [[i8; 8]; 256] = expand(&IQ2XXS_CODES, &IQ2XXS_MAP, IQ2XXS_BITS);
static GRID_IQ2XS: [[i8; 8]; 512] = expand(&IQ2XS_CODES, &IQ2XS_MAP, IQ2XS_BITS);
static GRID_IQ2S: [[i8; 8]; 1024] = expand(&IQ2S_CODES, &IQ2S_MAP, IQ2S_BITS);
static GRID_IQ3XXS: [[i8; 4]; 256] = expand(&IQ3XXS_CODES, &IQ3XXS_MAP, IQ3XXS_BITS);
static GRID_IQ3S: [[i8; 4]; 512] = expand(&IQ3S_CODES, &IQ3S_MAP, IQ3S_BITS);
static GRID_IQ1S: [[i8; 8]; 2048] = expand(&IQ1S_CODES, &IQ1S_MAP, IQ1S_BITS);

/// Sign codes: 7 stored bits, the eighth makes the number of minus signs even.
const fn ksigns() -> [u8; 128] {
    let mut out = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        out[i] = i as u8 | (((i as u32).count_ones() & 1) as u8) << 7;
        i += 1;
    }
    out
}

static KSIGNS: [u8; 128] = ksigns();

#[inline]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub const IQ2_XXS_BYTES: usize = 66;
pub const IQ2_XS_BYTES: usize = 74;
pub const IQ2_S_BYTES: usize = 82;
pub const IQ3_XXS_BYTES: usize = 98;
pub const IQ3_S_BYTES: usize = 110;
pub const IQ1_S_BYTES: usize = 50;
pub const IQ1_M_BYTES: usize = 56;

/// One value of a block: its sub-block factor `ls` (2s + 1 for a 4- or 3-bit scale s), its
/// codebook value `grid`, and `minus`: the sign bit (IQ2, IQ3) or the delta's sign (IQ1).
/// Each format lists its values once as terms, for dequantization and dot products alike.
struct Term {
    ls: i32,
    grid: i32,
    minus: bool,
}

/// Emits the eight values of a codebook row, each with its sign bit from `signs`.
fn signed_row(f: &mut impl FnMut(usize, Term), base: usize, ls: i32, row: &[i8; 8], signs: u8) {
    for (k, &v) in row.iter().enumerate() {
        let minus = (signs >> k) & 1 == 1;
        f(
            base + k,
            Term {
                ls,
                grid: i32::from(v),
                minus,
            },
        );
    }
}

fn iq2_xxs_terms(b: &[u8], mut f: impl FnMut(usize, Term)) {
    for g in 0..8 {
        let aux1 = u32_at(b, 2 + 8 * g + 4);
        let ls = 2 * (aux1 >> 28) as i32 + 1;
        for j in 0..4 {
            let row = &GRID_IQ2XXS[usize::from(b[2 + 8 * g + j])];
            let signs = KSIGNS[((aux1 >> (7 * j)) & 127) as usize];
            signed_row(&mut f, 32 * g + 8 * j, ls, row, signs);
        }
    }
}

fn iq2_xs_terms(b: &[u8], mut f: impl FnMut(usize, Term)) {
    for i in 0..32 {
        let q = u16_at(b, 2 + 2 * i);
        let s = (b[66 + i / 4] >> (4 * ((i / 2) % 2))) & 0x0f;
        let ls = 2 * i32::from(s) + 1;
        let row = &GRID_IQ2XS[usize::from(q & 511)];
        let signs = KSIGNS[usize::from(q >> 9)];
        signed_row(&mut f, 8 * i, ls, row, signs);
    }
}

fn iq2_s_terms(b: &[u8], mut f: impl FnMut(usize, Term)) {
    for i in 0..32 {
        let idx = usize::from(b[2 + i]) | usize::from((b[66 + i / 4] >> (2 * (i % 4))) & 3) << 8;
        let s = (b[74 + i / 4] >> (4 * ((i / 2) % 2))) & 0x0f;
        let ls = 2 * i32::from(s) + 1;
        let row = &GRID_IQ2S[idx];
        let signs = b[34 + i];
        signed_row(&mut f, 8 * i, ls, row, signs);
    }
}

fn iq3_xxs_terms(b: &[u8], mut f: impl FnMut(usize, Term)) {
    for g in 0..8 {
        let aux = u32_at(b, 66 + 4 * g);
        let ls = 2 * (aux >> 28) as i32 + 1;
        for e in 0..32 {
            let row = &GRID_IQ3XXS[usize::from(b[2 + 8 * g + e / 4])];
            let signs = KSIGNS[((aux >> (7 * (e / 8))) & 127) as usize];
            f(
                32 * g + e,
                Term {
                    ls,
                    grid: i32::from(row[e % 4]),
                    minus: (signs >> (e % 8)) & 1 == 1,
                },
            );
        }
    }
}

fn iq3_s_terms(b: &[u8], mut f: impl FnMut(usize, Term)) {
    for e in 0..256 {
        let i = e / 4;
        let idx = usize::from(b[2 + i]) | usize::from((b[66 + i / 8] >> (i % 8)) & 1) << 8;
        let s = (b[106 + e / 64] >> (4 * ((e / 32) % 2))) & 0x0f;
        let grid = i32::from(GRID_IQ3S[idx][e % 4]);
        let minus = (b[74 + e / 8] >> (e % 8)) & 1 == 1;
        f(
            e,
            Term {
                ls: 2 * i32::from(s) + 1,
                grid,
                minus,
            },
        );
    }
}

/// IQ1 values are grid + delta with delta = +-1/8.
fn iq1_s_terms(b: &[u8], mut f: impl FnMut(usize, Term)) {
    for g in 0..8 {
        let qh = u16_at(b, 34 + 2 * g);
        let ls = 2 * i32::from((qh >> 12) & 7) + 1;
        let minus = qh & 0x8000 != 0;
        for j in 0..4 {
            let i = 4 * g + j;
            let idx = usize::from(b[2 + i]) | usize::from((qh >> (3 * j)) & 7) << 8;
            for (k, &v) in GRID_IQ1S[idx].iter().enumerate() {
                f(
                    8 * i + k,
                    Term {
                        ls,
                        grid: i32::from(v),
                        minus,
                    },
                );
            }
        }
    }
}

/// The f16 super-scale of an IQ1_M block, kept in the top nibbles of its four scale words.
fn iq1_m_d(b: &[u8]) -> f32 {
    let sc = |w: usize| u16_at(b, 48 + 2 * w);
    let bits = (sc(0) >> 12) | ((sc(1) >> 8) & 0x00f0) | ((sc(2) >> 4) & 0x0f00) | (sc(3) & 0xf000);
    half::f16::from_bits(bits).to_f32()
}

fn iq1_m_terms(b: &[u8], mut f: impl FnMut(usize, Term)) {
    for i in 0..32 {
        let h = (b[32 + i / 2] >> (4 * (i % 2))) & 0x0f;
        let idx = usize::from(b[i]) | usize::from(h & 7) << 8;
        let minus = h & 8 != 0;
        for (k, &v) in GRID_IQ1S[idx].iter().enumerate() {
            let e = 8 * i + k;
            let s = (u16_at(b, 48 + 2 * (e / 64)) >> (3 * ((e / 16) % 4))) & 7;
            f(
                e,
                Term {
                    ls: 2 * i32::from(s) + 1,
                    grid: i32::from(v),
                    minus,
                },
            );
        }
    }
}

/// How a term becomes a float (in gguf-py's order of operations) and an integer for dot
/// products (over the power of two given per format below).
fn d0(b: &[u8]) -> f32 {
    f16_at(b, 0)
}

fn sign(t: &Term) -> f32 {
    if t.minus { -1.0 } else { 1.0 }
}

/// The 4-bit scale s of ls = 2s + 1.
fn half_step(t: &Term) -> f32 {
    ((t.ls - 1) / 2) as f32
}

/// d * (0.5 + s) * 0.25 * grid * sign = d * ls * grid * sign / 8.
fn dq_iq2(d: f32, t: &Term) -> f32 {
    d * (0.5 + half_step(t)) * 0.25 * t.grid as f32 * sign(t)
}

/// d * (0.5 + s) * 0.5 * grid * sign = d * ls * grid * sign / 4.
fn dq_iq3_xxs(d: f32, t: &Term) -> f32 {
    d * (0.5 + half_step(t)) * 0.5 * t.grid as f32 * sign(t)
}

/// d * (1 + 2s) * grid * sign.
fn dq_iq3_s(d: f32, t: &Term) -> f32 {
    d * t.ls as f32 * t.grid as f32 * sign(t)
}

fn int_signed(t: &Term) -> i32 {
    if t.minus { -t.grid } else { t.grid }
}

/// d * (2s + 1) * (grid + delta), delta = -1/8 when `minus`, else 1/8.
fn dq_iq1(d: f32, t: &Term) -> f32 {
    let delta = if t.minus { -0.125 } else { 0.125 };
    d * t.ls as f32 * (t.grid as f32 + delta)
}

/// 8 * (grid + delta).
fn int_iq1(t: &Term) -> i32 {
    8 * t.grid + if t.minus { -1 } else { 1 }
}

/// The dequantize and dot-product entry points of one format: its term walk, its float scale,
/// how a term becomes a float and an integer, and the power of two the integer is over. A
/// macro rather than function pointers so that each walk is inlined into its loops.
macro_rules! entry_points {
    ($terms:ident, $bytes:ident, $d:expr, $dq:expr, $int:expr, $denom:expr, $deq:ident, $dot:ident) => {
        pub fn $deq(src: &[u8], dst: &mut [f32]) {
            rows::<$bytes, 256>(src, dst, |b, y| {
                let d = $d(b);
                $terms(b, |e, t| y[e] = $dq(d, &t));
            });
        }

        /// Dot product with Q8_K activations: integer sums of ls * value * a per block.
        pub fn $dot(w: &[u8], a: &[u8]) -> f32 {
            let mut sum = 0f32;
            for (x, y) in w.as_chunks::<$bytes>().0.iter().zip(a.as_chunks::<292>().0) {
                let mut isum = 0i32;
                $terms(x, |e, t| {
                    isum += t.ls * $int(&t) * i32::from(y[4 + e] as i8)
                });
                sum += $d(x) * super::kquants::q8_k_d(y) * (isum as f32 / $denom);
            }
            sum
        }
    };
}

entry_points!(
    iq2_xxs_terms,
    IQ2_XXS_BYTES,
    d0,
    dq_iq2,
    int_signed,
    8.0,
    dequantize_iq2_xxs,
    dot_iq2_xxs_q8_k
);
entry_points!(
    iq2_xs_terms,
    IQ2_XS_BYTES,
    d0,
    dq_iq2,
    int_signed,
    8.0,
    dequantize_iq2_xs,
    dot_iq2_xs_q8_k
);
entry_points!(
    iq2_s_terms,
    IQ2_S_BYTES,
    d0,
    dq_iq2,
    int_signed,
    8.0,
    dequantize_iq2_s,
    dot_iq2_s_q8_k
);
entry_points!(
    iq3_xxs_terms,
    IQ3_XXS_BYTES,
    d0,
    dq_iq3_xxs,
    int_signed,
    4.0,
    dequantize_iq3_xxs,
    dot_iq3_xxs_q8_k
);
entry_points!(
    iq3_s_terms,
    IQ3_S_BYTES,
    d0,
    dq_iq3_s,
    int_signed,
    1.0,
    dequantize_iq3_s,
    dot_iq3_s_q8_k
);
entry_points!(
    iq1_s_terms,
    IQ1_S_BYTES,
    d0,
    dq_iq1,
    int_iq1,
    8.0,
    dequantize_iq1_s,
    dot_iq1_s_q8_k
);
entry_points!(
    iq1_m_terms,
    IQ1_M_BYTES,
    iq1_m_d,
    dq_iq1,
    int_iq1,
    8.0,
    dequantize_iq1_m,
    dot_iq1_m_q8_k
);
