//! The `rocmforge` command line: every subcommand's help, argument errors (missing model, bad
//! flags) with the right exit status, `tokenize` equal to the library, `generate` at
//! temperature 0 equal to llama.cpp's greedy text (`--numerics llama-cpp`; the default float
//! order agrees until the first near-tie), `perplexity` within 0.5% of llama.cpp's
//! value, `bench -o json` with llama-bench's fields, and `info`.

mod common;

use std::process::{Command, Output};

use common::{SMOLLM2, in_ci, model, root};

fn rocmforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rocmforge"))
        .args(args)
        .output()
        .expect("run rocmforge")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn zoo() -> Option<String> {
    common::zoo_model("llama.F32.gguf").map(|p| p.to_string_lossy().into_owned())
}

#[test]
fn help_and_argument_errors() {
    let out = rocmforge(&["--help"]);
    assert!(out.status.success());
    for sub in [
        "info",
        "tokenize",
        "generate",
        "chat",
        "perplexity",
        "bench",
        "bench-engine",
        "serve",
    ] {
        assert!(text(&out.stdout).contains(sub), "{sub} missing from --help");
        let h = rocmforge(&[sub, "--help"]);
        assert!(h.status.success(), "{sub} --help");
        assert!(
            text(&h.stdout).contains("--model"),
            "{sub} --help names --model"
        );
    }
    // Usage errors: exit status 2, a message on stderr.
    for args in [
        &["generate", "-m", "x.gguf"][..],
        &["bench"],
        &["info", "-m", "x", "--bogus"],
        &["bench", "-m", "x", "-o", "xml"],
        &["bench", "-m", "x", "-r", "0"],
        &["tokenize", "-m", "x"],
        &["serve", "-m", "x", "--port", "70000"],
        &["bench-engine", "-m", "x", "--requests", "many"],
        &["nonsense"],
    ] {
        let out = rocmforge(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty() && out.stdout.is_empty(), "{args:?}");
    }
    // A missing model: exit status 1, the path and the reason.
    for sub in [
        "info",
        "generate",
        "perplexity",
        "bench",
        "bench-engine",
        "serve",
    ] {
        let mut args = vec![sub, "-m", "/nonexistent/model.gguf"];
        match sub {
            "generate" => args.extend(["-p", "hi"]),
            "perplexity" => args.extend(["-f", "Cargo.toml"]),
            _ => {}
        }
        let out = rocmforge(&args);
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("rocmforge: error: ") && err.contains("/nonexistent/model.gguf"),
            "{sub}: {err}"
        );
    }
}

#[test]
fn info_tokenize_and_bench_on_a_small_model() {
    let Some(zoo) = zoo() else { return };
    let out = rocmforge(&["info", "-m", &zoo]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = text(&out.stdout);
    assert!(
        info.contains("architecture llama") && info.contains("general.architecture = \"llama\""),
        "{info}"
    );
    let out = rocmforge(&["tokenize", "-m", &zoo, "-p", "hello world", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Vec<u32> = serde_json::from_slice(&out.stdout).unwrap();
    let m = common::load(std::path::Path::new(&zoo));
    assert_eq!(got, m.tokenizer().tokenize(b"hello world", true, true));
    let out = rocmforge(&[
        "bench",
        "-m",
        &format!("{zoo},{zoo}"),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "2",
        "-t",
        "2",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "pp and tg for each model");
    for r in rows {
        for key in [
            "model_filename",
            "n_prompt",
            "n_gen",
            "n_depth",
            "n_threads",
            "avg_ts",
            "stddev_ts",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert_eq!(r["model_filename"], "llama.F32.gguf");
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(
        (rows[0]["n_prompt"].as_u64(), rows[1]["n_gen"].as_u64()),
        (Some(16), Some(4))
    );
    let out = rocmforge(&[
        "bench", "-m", &zoo, "-p", "8", "-n", "2", "-r", "1", "-t", "2",
    ]);
    let md = text(&out.stdout);
    assert!(
        md.contains("| pp8 |") && md.contains("| tg2 |") && md.contains("peak resident memory"),
        "{md}"
    );
    // At a depth: the tests' tokens follow 40 cached ones (more than a context of -p and -n
    // alone holds), and say so.
    let out = rocmforge(&[
        "bench", "-m", &zoo, "-p", "8", "-n", "2", "-d", "40", "-r", "1", "-t", "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.contains("| pp8 @ d40 |") && md.contains("| tg2 @ d40 |"),
        "{md}"
    );
    let out = rocmforge(&[
        "bench-engine",
        "-m",
        &zoo,
        "--requests",
        "4",
        "--serial",
        "1",
        "-p",
        "8",
        "-n",
        "4",
        "--parallel",
        "2",
        "-t",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.contains("| together | 4 |") && md.contains("| one at a time | 1 |"),
        "{md}"
    );
    // The step timing of the requests run together, and their generation-only steps.
    assert!(md.contains("engine, requests together: "), "{md}");
    assert!(md.contains("generation-only steps: "), "{md}");
    let out = rocmforge(&["bench-engine", "-m", &zoo, "-n", "0"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn generate_at_temperature_0_is_llama_cpps_greedy_text() {
    let Some(path) = model(SMOLLM2) else { return };
    let Ok(refs) = std::fs::read_to_string(root().join("../shared/reference/smollm2/logits.jsonl"))
    else {
        assert!(!in_ci(), "reference missing under CI");
        return;
    };
    let rec: serde_json::Value = serde_json::from_str(refs.lines().next().unwrap()).unwrap();
    let p = path.to_string_lossy();
    let out = rocmforge(&[
        "generate",
        "-m",
        &p,
        "-p",
        "The capital of France is",
        "-n",
        "32",
        "--temp",
        "0",
        "-t",
        "2",
        "--numerics",
        "llama-cpp",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = format!(
        "The capital of France is{}\n",
        rec["greedy_text"].as_str().unwrap()
    );
    assert_eq!(text(&out.stdout), want);
    assert!(
        text(&out.stderr).contains("generated 32 tokens"),
        "{}",
        text(&out.stderr)
    );
    // The default float order differs from llama.cpp's by rounding: the same answer, until
    // two candidates are nearly tied (here the sixth token: " answer" or llama.cpp's " United").
    let out = rocmforge(&[
        "generate",
        "-m",
        &p,
        "-p",
        "The capital of France is",
        "-n",
        "5",
        "--temp",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "The capital of France is Paris.\n\nThe\n"
    );
    // --chat renders the model's template: SmolLM2's chat reference prompt, same answer.
    let chat = refs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["prompt"].as_str().unwrap().contains("What is 2+2?"))
        .expect("the reference's chat prompt");
    let out = rocmforge(&[
        "generate",
        "-m",
        &p,
        "--chat",
        "-p",
        "What is 2+2?",
        "-n",
        "32",
        "--temp",
        "0",
        "-t",
        "2",
        "--numerics",
        "llama-cpp",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim_end(),
        chat["greedy_text"].as_str().unwrap().trim_end()
    );
}

#[test]
fn perplexity_matches_llama_cpp() {
    let Some(path) = model(SMOLLM2) else { return };
    let file = "/usr/share/common-licenses/Apache-2.0";
    if !std::path::Path::new(file).is_file() {
        assert!(!in_ci(), "{file} is missing (base-files)");
        return;
    }
    let out = rocmforge(&[
        "perplexity",
        "-m",
        &path.to_string_lossy(),
        "-f",
        file,
        "-t",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[1]") && stdout.contains("[4]"),
        "running values: {stdout}"
    );
    let ppl: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PPL = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no PPL line in {stdout}"));
    let want = 15.9289;
    eprintln!("rocmforge perplexity: {ppl} (llama.cpp {want})");
    assert!((ppl - want).abs() / want < 0.005, "{ppl}");
}

/// Generating 128 tokens with SmolLM2 at n_ctx 4096 stays under the model file + the KV
/// cache + 64 MiB of resident memory: the weights are used from the map, not copied.
#[test]
fn generate_stays_within_its_memory_budget() {
    let Some(path) = model(SMOLLM2) else { return };
    let out = rocmforge(&[
        "generate",
        "-m",
        &path.to_string_lossy(),
        "-p",
        "Once upon a time",
        "-n",
        "128",
        "-c",
        "4096",
        "--temp",
        "0",
        "-t",
        "2",
    ]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let number = |after: &str| -> u64 {
        let i = err
            .find(after)
            .unwrap_or_else(|| panic!("no '{after}' in {err}"))
            + after.len();
        err[i..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (kv, rss) = (number("KV cache "), number("peak resident memory "));
    let file = std::fs::metadata(&path).unwrap().len();
    let budget = file + kv + 64 * 1024 * 1024;
    eprintln!("peak RSS {rss} bytes; budget {budget} (file {file} + KV {kv} + 64 MiB)");
    assert!(kv > 0 && rss > file / 2, "implausible readings: {err}");
    assert!(rss < budget, "peak RSS {rss} over {budget}");
}

/// `chat` with piped input: the first answer is `generate --chat`'s (both greedy), a second
/// turn continues the same conversation (the cache cut back to the common prefix), and the
/// empty line ends it with success.
#[test]
fn chat_answers_turn_by_turn() {
    use std::io::Write;
    let Some(path) = model(SMOLLM2) else { return };
    let p = path.to_string_lossy().into_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rocmforge"))
        .args(["chat", "-m", &p, "--temp", "0", "-n", "24", "-t", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is 2+2?\nAnd 3+3?\n\nnot read\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answers = text(&out.stdout);
    let lines: Vec<&str> = answers.lines().filter(|l| !l.trim().is_empty()).collect();
    let single = rocmforge(&[
        "generate",
        "-m",
        &p,
        "--chat",
        "-p",
        "What is 2+2?",
        "-n",
        "24",
        "--temp",
        "0",
        "-t",
        "2",
    ]);
    assert_eq!(lines.first().copied(), text(&single.stdout).lines().next());
    assert!(lines.len() >= 2, "a second answer: {answers}");
}

/// The load progress bar: on a terminal (a pseudo-terminal from util-linux's `script`) it
/// counts up to 100% and clears its line before the output; piped, stderr has no bar.
#[test]
fn loading_shows_a_progress_bar_on_a_terminal_only() {
    let Some(path) = model(SMOLLM2) else { return };
    let piped = rocmforge(&["info", "-m", &path.to_string_lossy()]);
    assert!(piped.status.success());
    assert!(!text(&piped.stderr).contains("loading"), "a bar when piped");
    if Command::new("script").arg("--version").output().is_err() {
        assert!(!common::in_ci(), "script (util-linux) is missing under CI");
        eprintln!("SKIPPED: the terminal case needs script (util-linux)");
        return;
    }
    let cmd = format!(
        "{} info -m '{}'",
        env!("CARGO_BIN_EXE_rocmforge"),
        path.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tty = text(&out.stdout);
    let pcts: Vec<u32> = tty
        .split("loading [")
        .skip(1)
        .map(|s| {
            let s = &s[s.find(']').unwrap() + 1..];
            s[..s.find('%').unwrap()].trim().parse().unwrap()
        })
        .collect();
    assert!(pcts.len() > 10, "{tty:?}");
    assert!(pcts.windows(2).all(|w| w[0] < w[1]), "{pcts:?}");
    assert_eq!(pcts.last(), Some(&100));
    assert!(tty.contains("[####################] 100%"));
    let cleared = tty.rfind("\r\x1b[2K").expect("the bar's line is cleared");
    assert!(
        tty[cleared..].contains("architecture"),
        "output after the bar"
    );
}
