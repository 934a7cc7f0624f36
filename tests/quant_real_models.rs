//! The quant layer on the real models' tensors: token-embedding rows equal llama.cpp's
//! GET_ROWS output for prompt 0 (the first node of ../shared/reference/<model>/trace.txt), and
//! on rows of every quantized tensor type the models use, the SIMD dot product agrees with the
//! scalar reference and with the dot of the dequantized rows.

mod common;

use std::path::{Path, PathBuf};

use common::{GEMMA3, SMOLLM2, in_ci, model};
use rocmforge::gguf::{GgufFile, TensorInfo};
use rocmforge::quant::{self, Dot, cpu, kernel};

fn reference_dir(name: &str) -> Option<PathBuf> {
    let dir = common::root().join("../shared/reference").join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(!in_ci(), "{} is missing under CI", dir.display());
    eprintln!("SKIPPED: {} is missing", dir.display());
    None
}

/// Prompt 0's tokens from logits.jsonl (a flat JSON array after `"tokens":`).
fn prompt0_tokens(dir: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(dir.join("logits.jsonl")).unwrap();
    let line = text.lines().next().unwrap();
    let start = line.find("\"tokens\":[").unwrap() + "\"tokens\":[".len();
    let end = start + line[start..].find(']').unwrap();
    line[start..end]
        .split(',')
        .map(|t| t.trim().parse().unwrap())
        .collect()
}

/// The first trace node: (first three values, last three values, sum) of GET_ROWS.
fn trace_embd(dir: &Path) -> ([f32; 3], [f32; 3], f64) {
    let text = std::fs::read_to_string(dir.join("trace.txt")).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().contains("GET_ROWS(token_embd.weight"));
    let row = lines.next().unwrap();
    let inner = &row[row.find('[').unwrap() + 1..row.find(']').unwrap()];
    let v: Vec<f32> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| *s != "...")
        .map(|s| s.parse().unwrap())
        .collect();
    let sum_line = lines.next().unwrap();
    let sum = sum_line
        .trim()
        .trim_start_matches("sum =")
        .trim()
        .parse()
        .unwrap();
    ([v[0], v[1], v[2]], [v[3], v[4], v[5]], sum)
}

fn row(file: &GgufFile, t: &TensorInfo, r: usize) -> Vec<f32> {
    let n = t.dims[0] as usize;
    let bytes = quant::row_bytes(t.ty, n).unwrap();
    let data = file.tensor_data(t).unwrap();
    let mut out = vec![0f32; n];
    quant::dequantize_row(t.ty, &data[r * bytes..(r + 1) * bytes], &mut out).unwrap();
    out
}

fn check_embeddings(model_name: &str, reference: &str) {
    let (Some(path), Some(dir)) = (model(model_name), reference_dir(reference)) else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let embd = file.tensor("token_embd.weight").unwrap();
    let tokens = prompt0_tokens(&dir);
    let (first, last, sum) = trace_embd(&dir);
    let rows: Vec<Vec<f32>> = tokens.iter().map(|&t| row(&file, embd, t)).collect();
    let r0 = &rows[0];
    let n = r0.len();
    for (got, want) in r0[..3]
        .iter()
        .chain(&r0[n - 3..])
        .zip(first.iter().chain(&last))
    {
        assert!(
            (got - want).abs() <= 6e-5,
            "{model_name}: {got} vs trace {want}"
        );
    }
    let total: f64 = rows.iter().flatten().map(|&v| f64::from(v)).sum();
    assert!(
        (total - sum).abs() <= 1e-4 * sum.abs().max(1.0),
        "{model_name}: sum {total} vs trace {sum}"
    );
}

#[test]
fn smollm2_embedding_rows_match_llama_cpp() {
    check_embeddings(SMOLLM2, "smollm2");
}

#[test]
fn gemma3_embedding_rows_match_llama_cpp() {
    check_embeddings(GEMMA3, "gemma3");
}

#[test]
fn simd_dots_agree_with_scalar_on_every_real_tensor_type() {
    let mut seen = Vec::new();
    for name in [SMOLLM2, GEMMA3] {
        let Some(path) = model(name) else { return };
        let file = GgufFile::open(&path).unwrap();
        for t in file.tensors() {
            if t.n_dims != 2 || seen.contains(&t.ty) {
                continue;
            }
            let Some(scalar) = quant::lookup(t.ty).and_then(|f| f.dot) else {
                continue;
            };
            seen.push(t.ty);
            let n = t.dims[0] as usize;
            let bytes = quant::row_bytes(t.ty, n).unwrap();
            let data = file.tensor_data(t).unwrap();
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            for r in [0, t.dims[1] as usize / 2, t.dims[1] as usize - 1] {
                let w = &data[r * bytes..(r + 1) * bytes];
                let wf = row(&file, t, r);
                assert!(
                    wf.iter().all(|v| v.is_finite()),
                    "{} row {r} not finite",
                    t.name
                );
                let scale: f32 = wf.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1e-30;
                let act = match scalar {
                    Dot::Float(_) => None,
                    Dot::Quant { act, .. } => {
                        let mut q = vec![0u8; quant::row_bytes(act, n).unwrap()];
                        quant::quantize_row(act, &x, &mut q).unwrap();
                        Some((act, q))
                    }
                };
                let run = |d: Dot| match (d, &act) {
                    (Dot::Float(f), None) => f(w, &x),
                    (Dot::Quant { f, .. }, Some((_, q))) => f(w, q),
                    _ => unreachable!("kernels of one format share the activation format"),
                };
                let reference = run(scalar);
                // The dot of the dequantized weights with the (quantized) activations.
                let exact: f32 = match &act {
                    None => wf.iter().zip(&x).map(|(a, b)| a * b).sum(),
                    Some((at, q)) => {
                        let mut xa = vec![0f32; n];
                        quant::dequantize_row(*at, q, &mut xa).unwrap();
                        wf.iter().zip(&xa).map(|(a, b)| a * b).sum()
                    }
                };
                assert!(
                    (reference - exact).abs() <= 1e-4 * scale,
                    "{}: scalar {reference} vs {exact}",
                    t.name
                );
                for level in cpu::levels() {
                    let got = run(kernel(t.ty, level).unwrap());
                    assert!(
                        (got - reference).abs() <= 2e-5 * scale,
                        "{} row {r} at {level:?}: {got} vs scalar {reference}",
                        t.name
                    );
                }
            }
        }
    }
    eprintln!("checked tensor types {seen:?}");
}
