//! Every SIMD level the CPU supports computes the same dot products as the scalar reference,
//! within float tolerance (integer block sums are exact; only the float accumulation order
//! differs), on random weights of every format, several row lengths, and activations of mixed
//! magnitudes.

use rocmforge::gguf::GgmlType;
use rocmforge::quant::{self, Dot, SimdLevel, cpu, kernel};

fn randoms(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            // Mixed magnitudes: some rows of tiny values, a few outliers.
            if i % 97 == 0 { u * 50.0 } else { u }
        })
        .collect()
}

/// Random bytes with finite f16 scales where the format has them: the dequantize fixtures.
fn fixture_blocks(ty: GgmlType) -> Option<Vec<u8>> {
    let path = format!(
        "{}/tests/fixtures/quant/{}.dequant.bin",
        env!("CARGO_MANIFEST_DIR"),
        ty.name()
    );
    let data = std::fs::read(path).ok()?;
    let (elems, bytes) = (ty.block_elems() as usize, ty.block_bytes() as usize);
    let n = data.len() / (bytes + 4 * elems);
    Some(data[..n * bytes].to_vec())
}

/// A weight row of `n_blocks` blocks: quantized random values where the format can be
/// quantized, otherwise random fixture blocks.
fn weights(ty: GgmlType, n_elems: usize, seed: u64) -> Vec<u8> {
    let f = quant::lookup(ty).unwrap();
    let mut w = vec![0u8; quant::row_bytes(ty, n_elems).unwrap()];
    if f.quantize.is_some() {
        quant::quantize_row(ty, &randoms(n_elems, seed), &mut w).unwrap();
    } else {
        let blocks = fixture_blocks(ty).expect("fixture");
        for (i, b) in w.iter_mut().enumerate() {
            *b = blocks[(i + seed as usize * f.block_bytes) % blocks.len()];
        }
    }
    w
}

#[test]
fn simd_levels_match_the_scalar_reference() {
    let levels: Vec<SimdLevel> = cpu::levels();
    eprintln!(
        "testing SIMD levels {levels:?} (detected {:?})",
        cpu::detected()
    );
    let mut checked = 0;
    let mut tiled = 0;
    let mut wide = 0;
    let mut rows16 = 0;
    for f in &quant::FORMATS {
        let Some(scalar) = f.dot else { continue };
        for (seed, blocks) in [(1u64, 1usize), (2, 3), (3, 8), (4, 17)] {
            let n = blocks * f.block_elems.max(32);
            let n = n - n % f.block_elems;
            let w = weights(f.ty, n, seed);
            let a = randoms(n, seed + 100);
            // Activations as every kernel of this format sees them.
            let (reference, act) = match scalar {
                Dot::Float(k) => (k(&w, &a), None),
                Dot::Quant { act, f: k, .. } => {
                    let mut q = vec![0u8; quant::row_bytes(act, n).unwrap()];
                    quant::quantize_row(act, &a, &mut q).unwrap();
                    (k(&w, &q), Some(q))
                }
            };
            // Tolerance from the magnitude of the terms.
            let mut wf = vec![0f32; n];
            quant::dequantize_row(f.ty, &w, &mut wf).unwrap();
            let scale: f32 = wf.iter().zip(&a).map(|(x, y)| (x * y).abs()).sum::<f32>() + 1e-30;
            for &level in &levels {
                let got = match (kernel(f.ty, level).unwrap(), &act) {
                    (Dot::Float(k), None) => k(&w, &a),
                    (Dot::Quant { act: at, f: k, .. }, Some(q)) => {
                        assert_eq!(
                            Some(at),
                            match scalar {
                                Dot::Quant { act, .. } => Some(act),
                                _ => None,
                            }
                        );
                        k(&w, q)
                    }
                    _ => panic!("{}: level {level:?} changes the kernel kind", f.ty),
                };
                assert!(
                    (got - reference).abs() <= 2e-5 * scale,
                    "{} at {level:?}, {n} values: {got} vs scalar {reference} (scale {scale})",
                    f.ty
                );
                checked += 1;
                // The multi-token and multi-row kernels of every table this format has at
                // this level: llama.cpp's one-row order, its repacked GEMV order (matrices of
                // a multiple of 8 rows) and the batch-invariant order.
                let tables = [
                    Some(kernel(f.ty, level).unwrap()),
                    quant::matmul_kernel(f.ty, 8, 1, quant::MatOp::MulMat, level).map(|k| k.dot),
                    quant::invariant_kernel(f.ty, 8, quant::MatOp::MulMat, level).map(|k| k.dot),
                ];
                for dot in tables.into_iter().flatten() {
                    let c = check_tiles(f.ty, dot, scalar, n, seed, scale, level);
                    (checked, tiled, wide, rows16) =
                        (checked + c.0, tiled + c.1, wide + c.2, rows16 + c.3);
                }
            }
        }
    }
    assert!(checked >= 16 * 4 * levels.len(), "{checked} checks");
    if cfg!(target_arch = "x86_64") && cpu::detected() >= SimdLevel::Avx2 {
        assert!(tiled >= 7 * 4, "{tiled} multi-row checks");
    }
    if cfg!(target_arch = "x86_64") && cpu::detected() >= SimdLevel::Avx512 {
        // Eight-token panels for five formats, sixteen-token ones for six (Q4_0 and IQ4_NL
        // repacked, Q4_1, Q5_0, Q8_0 and Q6_K batch-invariant).
        assert!(wide >= 11 * 4, "{wide} 512-bit panel checks");
        // Sixteen rows in the lanes for the same four.
        assert!(rows16 >= 5 * 4, "{rows16} sixteen-row checks");
    }
}

/// The four-token kernel, the multi-row kernels and the 512-bit panels of `dot` against its
/// own one-row kernel (bit for bit) and the scalar reference (within tolerance). Returns how
/// many (four-token, multi-row, panel) checks ran.
fn check_tiles(
    ty: GgmlType,
    dot: Dot,
    scalar: Dot,
    n: usize,
    seed: u64,
    scale: f32,
    level: SimdLevel,
) -> (usize, usize, usize, usize) {
    let (
        Dot::Quant {
            act: at,
            f: one,
            f4: Some(four),
            tiles,
        },
        Dot::Quant { f: scalar_one, .. },
    ) = (dot, scalar)
    else {
        return (0, 0, 0, 0);
    };
    let w = weights(ty, n, seed);
    let acts = |count: u64, salt: u64| -> Vec<Vec<u8>> {
        (0..count)
            .map(|k| {
                let mut q = vec![0u8; quant::row_bytes(at, n).unwrap()];
                quant::quantize_row(at, &randoms(n, seed * salt + k), &mut q).unwrap();
                q
            })
            .collect()
    };
    let rows = acts(4, 10);
    let got4 = four(&w, &[&rows[0], &rows[1], &rows[2], &rows[3]]);
    for k in 0..4 {
        let want = scalar_one(&w, &rows[k]);
        assert!(
            (got4[k] - want).abs() <= 2e-5 * scale * 4.0 + 1e-6,
            "{ty} x4 at {level:?}, row {k}: {} vs scalar {want}",
            got4[k]
        );
        assert_eq!(got4[k], one(&w, &rows[k]), "{ty} x4 equals x1 at {level:?}");
    }
    let Some(t) = tiles else {
        return (1, 0, 0, 0);
    };
    // The multi-row kernels: every output equals the one-row kernel's.
    let ws: Vec<Vec<u8>> = (0..4).map(|k| weights(ty, n, seed * 7 + k)).collect();
    let got = (t.rows4)(&[&ws[0], &ws[1], &ws[2], &ws[3]], &rows[0]);
    for r in 0..4 {
        assert_eq!(got[r], one(&ws[r], &rows[0]), "{ty} rows4 row {r}");
    }
    let got = (t.r2x4)(&[&ws[0], &ws[1]], &[&rows[0], &rows[1], &rows[2], &rows[3]]);
    for r in 0..2 {
        for k in 0..4 {
            assert_eq!(got[r][k], one(&ws[r], &rows[k]), "{ty} r2x4 {r} {k}");
        }
    }
    // Sixteen rows in the lanes (decoding), on rows of one buffer as a matrix has them.
    let mut rows16 = 0;
    if let Some(f16) = t.rows16 {
        let matrix: Vec<u8> = (0..16)
            .flat_map(|k| weights(ty, n, seed * 11 + k))
            .collect();
        let ms: Vec<&[u8]> = matrix.chunks(matrix.len() / 16).collect();
        let got = f16(&std::array::from_fn(|r| ms[r]), &rows[1]);
        for r in 0..16 {
            assert_eq!(
                got[r],
                one(ms[r], &rows[1]),
                "{ty} rows16 row {r} at {level:?}"
            );
        }
        rows16 = 1;
    }
    let Some(wd) = t.wide else {
        return (1, 1, 0, rows16);
    };
    // One panel of activation rows, packed.
    let acts = acts(wd.tokens as u64, 31);
    let refs: Vec<&[u8]> = acts.iter().map(|a| &a[..]).collect();
    let mut panel = vec![0u8; n / 32 * wd.panel_block_bytes];
    (wd.pack)(&refs, &mut panel);
    let mut decoded = vec![0u8; n / 32 * wd.rows_block_bytes];
    (wd.rows)(&[&ws[0], &ws[1], &ws[2], &ws[3]], &mut decoded);
    let got = (wd.kernel)(&decoded, &panel);
    for r in 0..4 {
        for k in 0..wd.tokens {
            assert_eq!(got[r][k], one(&ws[r], &acts[k]), "{ty} wide {r} {k}");
        }
    }
    (1, 1, 1, rows16)
}

#[test]
fn forced_levels_never_exceed_the_cpu() {
    for ty in [GgmlType::Q4_0, GgmlType::Q4K, GgmlType::F16] {
        for level in SimdLevel::ALL {
            // Asking for more than the CPU has falls back; it never hands out an unsupported kernel.
            assert!(kernel(ty, level).is_some());
        }
    }
    cpu::set_level_cap(Some(SimdLevel::Scalar));
    assert_eq!(cpu::level(), SimdLevel::Scalar);
    cpu::set_level_cap(None);
    assert!(cpu::level() <= cpu::detected());
}

/// Every level's activation quantizers write the scalar ones' bytes: random rows of mixed
/// magnitudes, rounding ties, all-zero blocks, blocks with NaN or infinity, and blocks whose
/// largest magnitude appears with both signs (Q8_K takes the first one's sign).
#[test]
fn activation_quantizers_match_the_scalar_ones_byte_for_byte() {
    let n = 1024;
    let mut rows: Vec<Vec<f32>> = (0..8).map(|s| randoms(n, 100 + s)).collect();
    // Ties: amax 127 makes the scale 1, and eighth steps hit every half.
    rows.push(
        (0..n)
            .map(|i| {
                if i % 32 == 0 {
                    127.0
                } else {
                    -127.0 + (i % 2040) as f32 / 8.0
                }
            })
            .collect(),
    );
    let mut special = randoms(n, 7);
    special[..256].fill(0.0);
    special[300] = f32::NAN;
    special[600] = f32::INFINITY;
    special[700] = f32::NEG_INFINITY;
    special[800] = -100.0;
    special[801] = 100.0;
    let mut positive_first = special.clone();
    (positive_first[800], positive_first[801]) = (100.0, -100.0);
    rows.push(special);
    rows.push(positive_first);
    rows.push(vec![1e-30; n]);
    for act in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8K] {
        let scalar = quant::activation_quantizer_at(act, SimdLevel::Scalar).unwrap();
        let bytes = quant::row_bytes(act, n).unwrap();
        for level in cpu::levels() {
            let q = quant::activation_quantizer_at(act, level).unwrap();
            for (i, x) in rows.iter().enumerate() {
                let (mut want, mut got) = (vec![0u8; bytes], vec![0xa5u8; bytes]);
                scalar(x, &mut want);
                q(x, &mut got);
                assert_eq!(got, want, "{act} at {level:?}, row {i}");
            }
        }
    }
}
