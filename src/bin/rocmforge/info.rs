//! `rocmforge info`: what a model is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rocmforge::gguf::{Array, Value};

use crate::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    model: PathBuf,
    /// Print every metadata value in full (long arrays are shortened otherwise).
    #[arg(long)]
    all: bool,
}

fn shorten(s: &str, all: bool) -> String {
    let s = s.replace('\n', "\\n");
    if all || s.chars().count() <= 72 {
        return s;
    }
    let head: String = s.chars().take(72).collect();
    format!("{head}... ({} chars)", s.chars().count())
}

fn array(a: &Array, all: bool) -> String {
    macro_rules! list {
        ($v:expr, $ty:literal) => {{
            let n = $v.len();
            let shown: Vec<String> = $v
                .iter()
                .take(if all { n } else { 6 })
                .map(|x| format!("{x:?}"))
                .collect();
            let more = if n > shown.len() { ", ..." } else { "" };
            format!("[{}; {n}] [{}{more}]", $ty, shown.join(", "))
        }};
    }
    match a {
        Array::U8(v) => list!(v, "u8"),
        Array::I8(v) => list!(v, "i8"),
        Array::U16(v) => list!(v, "u16"),
        Array::I16(v) => list!(v, "i16"),
        Array::U32(v) => list!(v, "u32"),
        Array::I32(v) => list!(v, "i32"),
        Array::U64(v) => list!(v, "u64"),
        Array::I64(v) => list!(v, "i64"),
        Array::F32(v) => list!(v, "f32"),
        Array::F64(v) => list!(v, "f64"),
        Array::Bool(v) => list!(v, "bool"),
        Array::String(v) => {
            let texts: Vec<String> = v
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            list!(texts, "string")
        }
        Array::Array(v) => format!("[array; {}]", v.len()),
    }
}

fn value(v: &Value, all: bool) -> String {
    match v {
        Value::String(b) => format!("{:?}", shorten(&String::from_utf8_lossy(b), all)),
        Value::Array(a) => shorten(&array(a, all), all),
        Value::Bool(b) => b.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        other => other
            .as_i128()
            .map_or_else(|| format!("{other:?}"), |i| i.to_string()),
    }
}

pub fn run(a: &Args) -> Result<()> {
    let m = crate::load::model(&a.model, true, &crate::load::GpuArgs::cpu())?;
    let d = m.describe();
    println!("file:        {}", a.model.display());
    println!("architecture {}", d.arch);
    println!("parameters   {:.1} M", d.n_params as f64 / 1e6);
    println!(
        "file size    {:.1} MiB ({} bytes)",
        d.file_size as f64 / 1048576.0,
        d.file_size
    );
    println!("file type    {}", d.file_type_name);
    println!("vocabulary   {}", d.n_vocab);
    println!("context      {} (trained)", d.n_ctx_train);
    println!(
        "embedding    {}, {} layers, {} heads ({} KV)",
        d.n_embd, d.n_layer, d.n_head, d.n_head_kv
    );
    let file = m.gguf();
    let mut types: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in file.tensors() {
        let e = types.entry(t.ty.to_string()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    println!("tensors      {}", d.n_tensors);
    for (ty, (n, bytes)) in &types {
        println!(
            "  {ty:<8} {n:>5} tensors  {:>9.1} MiB",
            *bytes as f64 / 1048576.0
        );
    }
    println!(
        "metadata     {} keys (GGUF v{})",
        file.metadata().len(),
        file.version()
    );
    for (k, v) in file.metadata() {
        println!("  {k} = {}", value(v, a.all));
    }
    Ok(())
}
