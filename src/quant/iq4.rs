//! IQ4_NL (32-element blocks) and IQ4_XS (256-element super-blocks with 6-bit sub-block
//! scales): 4-bit indices into a fixed non-linear table of values.

use super::{f16_at, rows};

/// The non-linear 4-bit value table shared by IQ4_NL and IQ4_XS.
pub const IQ4_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

pub const IQ4_NL_BYTES: usize = 18;
pub const IQ4_XS_BYTES: usize = 136;

pub fn dequantize_iq4_nl(src: &[u8], dst: &mut [f32]) {
    rows::<IQ4_NL_BYTES, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            y[j] = d * f32::from(IQ4_VALUES[usize::from(q & 0x0f)]);
            y[j + 16] = d * f32::from(IQ4_VALUES[usize::from(q >> 4)]);
        }
    });
}

/// The signed scale (-32..32) of sub-block `ib` (0..8) of an IQ4_XS block.
pub fn iq4_xs_scale(b: &[u8], ib: usize) -> i8 {
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let low = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f;
    let high = ((scales_h >> (2 * ib)) & 3) as u8;
    (low | high << 4) as i8 - 32
}

pub fn dequantize_iq4_xs(src: &[u8], dst: &mut [f32]) {
    rows::<IQ4_XS_BYTES, 256>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let qs = &b[8..136];
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let dl = d * f32::from(iq4_xs_scale(b, ib));
            for j in 0..16 {
                let q = qs[ib * 16 + j];
                y[j] = dl * f32::from(IQ4_VALUES[usize::from(q & 0x0f)]);
                y[j + 16] = dl * f32::from(IQ4_VALUES[usize::from(q >> 4)]);
            }
        }
    });
}
