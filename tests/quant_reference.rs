//! The quantization formats against gguf-py 0.19.0 (the reference numpy implementation of
//! ggml's formats): dequantization and quantization bit for bit on the fixtures made by
//! scripts/gen-quant-fixtures.py; Q8_1 and Q8_K (no gguf-py reference) against their
//! definitions; every dot product against the dequantized values.

use rocmforge::gguf::GgmlType;
use rocmforge::quant::{self, Dot, dequantize_row, quantize_row, vec_dot};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/quant/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .as_chunks::<4>()
        .0
        .iter()
        .map(|b| f32::from_le_bytes(*b))
        .collect()
}

/// The fixture's file name for a type (gguf-py's enum names).
fn fixture_name(ty: GgmlType) -> &'static str {
    ty.name()
}

const DEQUANT: [GgmlType; 25] = [
    GgmlType::Bf16,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
    GgmlType::Mxfp4,
    GgmlType::Nvfp4,
    GgmlType::Iq3S,
    GgmlType::Iq3Xxs,
    GgmlType::Iq2S,
    GgmlType::Iq2Xs,
    GgmlType::Iq2Xxs,
    GgmlType::Iq1S,
    GgmlType::Iq1M,
    GgmlType::Tq1_0,
    GgmlType::Tq2_0,
];

const QUANT: [GgmlType; 9] = [
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Mxfp4,
    GgmlType::Tq1_0,
    GgmlType::Tq2_0,
];

/// Splits a dequantize fixture into (blocks, expected values).
fn dequant_fixture(ty: GgmlType) -> (Vec<u8>, Vec<f32>) {
    let data = fixture(&format!("{}.dequant.bin", fixture_name(ty)));
    let (elems, bytes) = (ty.block_elems() as usize, ty.block_bytes() as usize);
    let n_blocks = data.len() / (bytes + 4 * elems);
    assert_eq!(
        data.len(),
        n_blocks * (bytes + 4 * elems),
        "{ty} fixture size"
    );
    let (blocks, values) = data.split_at(n_blocks * bytes);
    (blocks.to_vec(), f32s(values))
}

#[test]
fn dequantize_is_bit_exact_with_gguf_py() {
    for ty in DEQUANT {
        let (blocks, expected) = dequant_fixture(ty);
        let mut out = vec![0f32; expected.len()];
        dequantize_row(ty, &blocks, &mut out).unwrap();
        for (i, (a, e)) in out.iter().zip(&expected).enumerate() {
            assert!(
                a.to_bits() == e.to_bits(),
                "{ty} value {i} (block {}): {a:e} != {e:e}",
                i / ty.block_elems() as usize
            );
        }
    }
}

#[test]
fn quantize_is_bit_exact_with_gguf_py() {
    for ty in QUANT {
        let data = fixture(&format!("{}.quant.bin", fixture_name(ty)));
        let (elems, bytes) = (ty.block_elems() as usize, ty.block_bytes() as usize);
        // Inputs are rows of max(32, block) values; the blocks follow them.
        let per_value = 4 + bytes / elems;
        let n = if elems == 1 {
            data.len() / per_value
        } else {
            data.len() / (4 * elems + bytes) * elems
        };
        let (input, expected) = data.split_at(4 * n);
        let input = f32s(input);
        let mut out = vec![0u8; expected.len()];
        quantize_row(ty, &input, &mut out).unwrap();
        for (i, (a, e)) in out.iter().zip(expected).enumerate() {
            assert!(
                a == e,
                "{ty} byte {i} (block {}): {a:#04x} != {e:#04x}",
                i / bytes
            );
        }
    }
}

/// Deterministic pseudo-random values for the tests below.
fn randoms(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Roughly normal: sum of uniforms, centred.
            let u = |k: u64| ((s >> k) & 0xffff) as f32 / 65536.0;
            (u(0) + u(16) + u(32) + u(48) - 2.0) * 2.0
        })
        .collect()
}

#[test]
fn q8_1_is_q8_0_plus_the_scaled_sum() {
    let x = randoms(32 * 8, 1);
    let mut q80 = vec![0u8; 34 * 8];
    let mut q81 = vec![0u8; 36 * 8];
    quantize_row(GgmlType::Q8_0, &x, &mut q80).unwrap();
    quantize_row(GgmlType::Q8_1, &x, &mut q81).unwrap();
    for ((b0, b1), xs) in q80.chunks(34).zip(q81.chunks(36)).zip(x.chunks(32)) {
        assert_eq!(b0[0..2], b1[0..2], "same d");
        assert_eq!(b0[2..], b1[4..], "same quants");
        // s uses the f32 scale, before it is rounded to f16 for storage.
        let d = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        let sum: i32 = b1[4..].iter().map(|&q| i32::from(q as i8)).sum();
        let s = half::f16::from_le_bytes([b1[2], b1[3]]);
        assert_eq!(s, half::f16::from_f32(sum as f32 * d), "s = d * sum(q)");
    }
    // Round trip: every value within half a step.
    let mut back = vec![0f32; x.len()];
    dequantize_row(GgmlType::Q8_1, &q81, &mut back).unwrap();
    for (blk, (xs, ys)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in xs.iter().zip(ys) {
            assert!(
                (a - b).abs() <= amax / 127.0 * 0.5 + amax * 1e-3,
                "block {blk}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn q8_k_matches_its_definition() {
    let mut x = randoms(256 * 4, 2);
    x[256..512].fill(0.0); // an all-zero block
    x[600] = -9.0; // a negative extreme: the scale takes its sign
    let mut q = vec![0u8; 292 * 4];
    quantize_row(GgmlType::Q8K, &x, &mut q).unwrap();
    for (xs, b) in x.chunks(256).zip(q.chunks(292)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let qs: Vec<i32> = b[4..260].iter().map(|&v| i32::from(v as i8)).collect();
        for g in 0..16 {
            let bsum = i16::from_le_bytes([b[260 + 2 * g], b[261 + 2 * g]]);
            assert_eq!(i32::from(bsum), qs[g * 16..g * 16 + 16].iter().sum::<i32>());
        }
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        if amax == 0.0 {
            assert!(d == 0.0 && qs.iter().all(|&v| v == 0));
            continue;
        }
        // The extreme value maps to -127 * sign, and every value is within half a step.
        let imax = xs.iter().position(|v| v.abs() == amax).unwrap();
        assert_eq!(qs[imax], -127);
        assert!(d.abs() > 0.0 && (d.abs() - amax / 127.0).abs() <= amax * 1e-6);
        for (i, &v) in xs.iter().enumerate() {
            assert!(
                (v - d * qs[i] as f32).abs() <= d.abs() * 0.5 + amax * 1e-6,
                "{i}"
            );
        }
    }
}

/// Weight rows for the dot tests: the dequantize fixture's random blocks, or quantized values
/// for the float formats.
fn weight_row(ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::F32 => randoms(512, 3)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        // The fixture's random E8M0 exponents reach 2^127, where products overflow.
        GgmlType::Mxfp4 => {
            let mut q = vec![0u8; 17 * 16];
            quantize_row(ty, &randoms(512, 5), &mut q).unwrap();
            q
        }
        _ => dequant_fixture(ty).0,
    }
}

#[test]
fn every_dot_product_equals_the_dot_of_dequantized_rows() {
    let mut tested = Vec::new();
    for f in &quant::FORMATS {
        let Some(dot) = f.dot else { continue };
        let w = weight_row(f.ty);
        let n = w.len() / f.block_bytes * f.block_elems;
        let a = randoms(n, 4);
        let mut wf = vec![0f32; n];
        dequantize_row(f.ty, &w, &mut wf).unwrap();
        // The activations as the kernel sees them.
        let af: Vec<f32> = match dot {
            Dot::Float(_) => a.clone(),
            Dot::Quant { act, .. } => {
                let mut q = vec![0u8; quant::row_bytes(act, n).unwrap()];
                quantize_row(act, &a, &mut q).unwrap();
                let mut back = vec![0f32; n];
                dequantize_row(act, &q, &mut back).unwrap();
                back
            }
        };
        let exact: f64 = wf
            .iter()
            .zip(&af)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let scale: f64 = wf
            .iter()
            .zip(&af)
            .map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs())
            .sum();
        let got = f64::from(vec_dot(f.ty, &w, &a).unwrap());
        assert!(
            (got - exact).abs() <= 1e-5 * scale + 1e-30,
            "{}: {got} vs {exact} (scale {scale})",
            f.ty
        );
        tested.push(f.ty.name());
    }
    assert_eq!(tested.len(), 26, "{tested:?}");
}

#[test]
fn sizes_are_checked() {
    let mut out = vec![0f32; 32];
    assert!(dequantize_row(GgmlType::Q4_0, &[0u8; 17], &mut out).is_err());
    assert!(dequantize_row(GgmlType::Q4_0, &[0u8; 18], &mut out[..31]).is_err());
    assert!(dequantize_row(GgmlType::I32, &[0u8; 4], &mut [0f32; 1]).is_err());
    assert!(quantize_row(GgmlType::Q2K, &[0f32; 256], &mut [0u8; 84]).is_err());
    assert!(vec_dot(GgmlType::Q8K, &[0u8; 292], &[0f32; 256]).is_err());
    assert!(vec_dot(GgmlType::Q4_0, &[0u8; 18], &[0f32; 64]).is_err());
}

/// Relative RMS error of a quantize-dequantize round trip.
fn round_trip_error(ty: GgmlType, x: &[f32]) -> f32 {
    let mut q = vec![0u8; quant::row_bytes(ty, x.len()).unwrap()];
    quantize_row(ty, x, &mut q).unwrap();
    let mut back = vec![0f32; x.len()];
    dequantize_row(ty, &q, &mut back).unwrap();
    let err: f32 = x.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum();
    let sig: f32 = x.iter().map(|a| a * a).sum();
    (err / sig.max(1e-30)).sqrt()
}

#[test]
fn k_quant_round_trips_stay_within_stated_bounds() {
    // Stated bounds on roughly normal data (relative RMS error), with the error of the
    // simpler formats of the same bit width for comparison: the K-quants must not be worse.
    let x = randoms(256 * 64, 11);
    let q4k = round_trip_error(GgmlType::Q4K, &x);
    let q5k = round_trip_error(GgmlType::Q5K, &x);
    let q6k = round_trip_error(GgmlType::Q6K, &x);
    let (q4_1, q5_1, q8_0) = (
        round_trip_error(GgmlType::Q4_1, &x),
        round_trip_error(GgmlType::Q5_1, &x),
        round_trip_error(GgmlType::Q8_0, &x),
    );
    eprintln!(
        "relative RMS error: Q4_K {q4k:.4} (Q4_1 {q4_1:.4}), Q5_K {q5k:.4} (Q5_1 {q5_1:.4}), Q6_K {q6k:.4} (Q8_0 {q8_0:.4})"
    );
    assert!(q4k < 0.075 && q4k <= q4_1 * 1.05, "Q4_K {q4k}");
    assert!(q5k < 0.038 && q5k <= q5_1 * 1.05, "Q5_K {q5k}");
    assert!(q6k < 0.019, "Q6_K {q6k}");
    // Special blocks: zeros come back as zeros; constants and outliers stay bounded.
    for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
        let zeros = vec![0f32; 256];
        assert_eq!(round_trip_error(ty, &zeros), 0.0, "{ty} zeros");
        let mut spiky = randoms(256, 12);
        spiky[77] = 30.0;
        assert!(round_trip_error(ty, &spiky) < 0.2, "{ty} outlier");
        assert!(round_trip_error(ty, &[0.5f32; 256]) < 0.05, "{ty} constant");
        assert!(
            round_trip_error(ty, &[-0.5f32; 256]) < 0.05,
            "{ty} negative constant"
        );
    }
}

#[test]
fn iq1_m_takes_the_delta_sign_from_bit_3_as_ggml_does() {
    // gguf-py 0.19.0 reads every IQ1_M delta as negative (an operator-precedence slip), so its
    // fixtures set bit 3 everywhere; ggml's definition: bit 3 clear means +1/8.
    let mut block = [0u8; 56];
    // d = 1.0 (f16 0x3c00) in the top nibbles of the four scale words; all scales 0 (ls = 1).
    for (w, nibble) in [0x0u16, 0x0, 0xc, 0x3].into_iter().enumerate() {
        block[48 + 2 * w..50 + 2 * w].copy_from_slice(&(nibble << 12).to_le_bytes());
    }
    // Index 0 of the IQ1 grid is eight -1s.
    let mut out = [0f32; 256];
    dequantize_row(GgmlType::Iq1M, &block, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == -0.875), "{:?}", &out[..8]);
    block[32..48].fill(0x88);
    dequantize_row(GgmlType::Iq1M, &block, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == -1.125), "{:?}", &out[..8]);
}

#[test]
fn runtime_activation_quantizers_differ_from_the_reference_only_at_rounding_ties() {
    // llama.cpp's SIMD activation quantizers use id = 127 / amax and round half to even; the
    // reference divides by d and rounds half away. Same scale; a quant may differ by one, and
    // only where x * id sits at a rounding tie (within float error of .5).
    let x = randoms(32 * 64, 21);
    for (act, off, bytes) in [(GgmlType::Q8_0, 2, 34), (GgmlType::Q8_1, 4, 36)] {
        let mut reference = vec![0u8; bytes * 64];
        let mut runtime = vec![0u8; bytes * 64];
        quantize_row(act, &x, &mut reference).unwrap();
        quant::activation_quantizer(act).unwrap()(&x, &mut runtime);
        for (blk, (a, b)) in reference
            .chunks(bytes)
            .zip(runtime.chunks(bytes))
            .enumerate()
        {
            assert_eq!(a[..2], b[..2], "{act} block {blk}: same d");
            let xs = &x[32 * blk..32 * blk + 32];
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            for j in 0..32 {
                let (qa, qb) = (a[off + j] as i8, b[off + j] as i8);
                if qa != qb {
                    let frac = (xs[j] * 127.0 / amax).abs().fract();
                    assert!(
                        (qa - qb).abs() == 1 && (frac - 0.5).abs() < 1e-3,
                        "{act} block {blk} value {j}"
                    );
                }
            }
        }
    }
}
