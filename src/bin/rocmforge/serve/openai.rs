//! The OpenAI request bodies the server accepts and the JSON it answers with. Unknown fields
//! are ignored (clients send extras); a known field of the wrong type is a 400.

use rocmforge::engine::FinishReason;
use rocmforge::sampling::SEED_RANDOM;
use rocmforge::{Sampler, SamplerChain};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

/// The generation options both endpoints share.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Options {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
    pub stream: Option<bool>,
    pub n: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    pub prompt: PromptField,
    #[serde(flatten)]
    pub options: Options,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

#[derive(Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub options: Options,
}

impl Message {
    /// The message's text; only text parts are supported.
    pub fn text(&self) -> Result<String, String> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(t)) => Ok(t.clone()),
            Some(Content::Parts(parts)) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => Ok(t.as_str()),
                    (k, _) => Err(format!("content parts of type {k:?} are not supported")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.concat()),
        }
    }
}

/// The sampler chain the options ask for: greedy at temperature 0, else penalties, top-k,
/// top-p, min-p, temperature and a seeded draw (OpenAI's default temperature is 1).
pub fn sampler(o: &Options) -> Result<SamplerChain, String> {
    let mut c = SamplerChain::new(o.seed.unwrap_or(SEED_RANDOM));
    let add = |c: &mut SamplerChain, s: Sampler| c.add(s).map_err(|e| e.to_string());
    let temp = o.temperature.unwrap_or(1.0);
    if !temp.is_finite() || !(0.0..=2.0).contains(&temp) {
        return Err(format!("temperature {temp} is outside 0 to 2"));
    }
    if temp == 0.0 {
        add(&mut c, Sampler::Greedy)?;
        return Ok(c);
    }
    let (presence, frequency) = (
        o.presence_penalty.unwrap_or(0.0),
        o.frequency_penalty.unwrap_or(0.0),
    );
    for (name, v) in [
        ("presence_penalty", presence),
        ("frequency_penalty", frequency),
    ] {
        if !v.is_finite() || !(-2.0..=2.0).contains(&v) {
            return Err(format!("{name} {v} is outside -2 to 2"));
        }
    }
    if presence != 0.0 || frequency != 0.0 {
        add(
            &mut c,
            Sampler::Penalties {
                last_n: 64,
                repeat: 1.0,
                frequency,
                presence,
            },
        )?;
    }
    if let Some(k) = o.top_k {
        add(&mut c, Sampler::TopK(k))?;
    }
    if let Some(p) = o.top_p {
        add(&mut c, Sampler::TopP { p, min_keep: 1 })?;
    }
    if let Some(p) = o.min_p {
        add(&mut c, Sampler::MinP { p, min_keep: 1 })?;
    }
    add(&mut c, Sampler::Temperature(temp))?;
    add(&mut c, Sampler::Dist)?;
    Ok(c)
}

pub fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        _ => "stop",
    }
}

/// An OpenAI-style error body.
pub fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}
