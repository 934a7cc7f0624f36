//! `rocmforge tokenize`: the tokens of a text, one per line (id and piece) or as JSON.

use std::path::PathBuf;

use crate::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file (only its vocabulary is loaded).
    #[arg(short, long)]
    model: PathBuf,
    /// The text.
    #[arg(short, long, conflicts_with = "file", required_unless_present = "file")]
    prompt: Option<String>,
    /// Read the text from a file.
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Neither add BOS/EOS nor parse control-token texts such as <|im_start|>.
    #[arg(long)]
    no_special: bool,
    /// Print a JSON array of token ids.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args) -> Result<()> {
    let text = match (&a.prompt, &a.file) {
        (Some(p), _) => p.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?,
        (None, None) => return Err("give -p TEXT or -f FILE".into()),
    };
    let m = crate::load::model(&a.model, true, &crate::load::GpuArgs::cpu())?;
    let tok = m.tokenizer();
    let special = !a.no_special;
    let ids = tok.tokenize(&text, special, special);
    if a.json {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("[{}]", list.join(", "));
        return Ok(());
    }
    let mut piece = Vec::new();
    for &t in &ids {
        piece.clear();
        tok.token_to_piece(t, true, &mut piece)?;
        println!("{t:>7} {:?}", String::from_utf8_lossy(&piece));
    }
    eprintln!("{} tokens", ids.len());
    Ok(())
}
