//! `rocmforge serve`: an OpenAI-compatible HTTP server over the continuous-batching engine.
//!
//! Routes: `POST /v1/completions`, `POST /v1/chat/completions` (both with `stream: true` as
//! Server-Sent Events ending in `data: [DONE]`), `GET /v1/models`, `GET /health`,
//! `GET /metrics` (Prometheus text). With `--api-key` every route but /health wants
//! `Authorization: Bearer KEY`. Text reaches the HTTP side through each request's piece
//! callback and a channel, so no async task ever blocks on the engine; a client that goes
//! away drops its request handle, which cancels the request and frees its KV blocks.
//! SIGINT/SIGTERM stop accepting connections, let running requests finish for up to
//! `--shutdown-timeout` seconds, then cancel the rest and exit 0.

mod openai;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rocmforge::engine::{FinishReason, Prompt, Request, RequestSpec};
use rocmforge::{Engine, EngineParams, Error};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Result;
use openai::{ChatRequest, CompletionRequest, Options, PromptField, error_body, finish_name};

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    model: PathBuf,
    #[command(flatten)]
    gpu: crate::load::GpuArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one; the chosen address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long)]
    api_key: Option<String>,
    /// KV positions shared by all requests.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    ctx: usize,
    /// Requests generating at once.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Tokens decoded per step at most.
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: usize,
    /// Requests waiting at most; beyond, 429.
    #[arg(long, default_value_t = 64)]
    max_queued: usize,
    /// Threads (default: every core).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Request bodies larger than this many bytes get 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Seconds running requests may finish in after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10)]
    shutdown_timeout: u64,
    /// Do not keep finished requests' KV for later prompts with the same start.
    #[arg(long)]
    no_prefix_cache: bool,
}

struct App {
    engine: Engine,
    model_id: String,
    api_key: Option<String>,
    max_body: usize,
    started: Instant,
    next_id: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
}

type Shared = Arc<App>;

/// An error answered as OpenAI's JSON.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.0 {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        (self.0, axum::Json(error_body(&self.1, kind))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match e {
            Error::InvalidArg(_) | Error::NotFound(_) | Error::Unsupported(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

pub fn run(a: &Args) -> Result<()> {
    // SAFETY: before any thread starts; a client that hangs up must be a failed write, not
    // a SIGPIPE that ends the server (main restores the default action for the other tools).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let model = crate::load::model(&a.model, false, &a.gpu)?;
    let engine = Engine::new(
        model,
        EngineParams {
            n_ctx: a.ctx,
            n_seq_max: a.parallel,
            n_batch: a.batch,
            n_threads: if a.threads == 0 {
                rocmforge::context::available_threads()
            } else {
                a.threads
            },
            max_queued: a.max_queued,
            prefix_cache: !a.no_prefix_cache,
            ..EngineParams::default()
        },
    )?;
    let model_id = a
        .model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let app = Arc::new(App {
        engine,
        model_id,
        api_key: a.api_key.clone(),
        max_body: a.max_body,
        started: Instant::now(),
        next_id: AtomicU64::new(1),
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bound = Duration::from_secs(a.shutdown_timeout);
    let addr = format!("{}:{}", a.host, a.port);
    let outcome: Result<()> = rt.block_on(serve(app.clone(), &addr, bound));
    // Tasks still streaming after the bound are dropped here: their request handles cancel.
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(app);
    outcome
}

async fn serve(app: Shared, addr: &str, bound: Duration) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local: SocketAddr = listener.local_addr()?;
    eprintln!("rocmforge: listening on http://{local}");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("rocmforge: shutting down (running requests get {bound:?})");
        let _ = tx.send(true);
    });
    let mut graceful = rx.clone();
    let mut timer = rx;
    let server = axum::serve(listener, router(app)).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|&v| v).await;
    });
    tokio::select! {
        r = server => r?,
        _ = async move {
            let _ = timer.wait_for(|&v| v).await;
            tokio::time::sleep(bound).await;
        } => eprintln!("rocmforge: shutdown bound reached; cancelling what still runs"),
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
        _ => std::future::pending().await,
    }
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth))
        .route("/health", get(health))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .with_state(app)
}

/// Equal in time whatever the first difference (the key must not leak by timing).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn auth(State(app): State<Shared>, req: HttpRequest, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.as_bytes(), key.as_bytes())) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "a valid API key is required".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn models(State(app): State<Shared>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": app.model_id, "object": "model", "created": 0, "owned_by": "rocmforge"}]
    }))
    .into_response()
}

async fn metrics(State(app): State<Shared>) -> Response {
    let s = app.engine.stats();
    let up = app.started.elapsed().as_secs_f64().max(1e-9);
    let lines = [
        (
            "requests_total",
            "counter",
            "HTTP generation requests received",
            app.requests.load(Ordering::Relaxed) as f64,
        ),
        (
            "request_errors_total",
            "counter",
            "generation requests answered with an error",
            app.errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "prompt_tokens_total",
            "counter",
            "prompt tokens prefilled",
            s.n_prompt_tokens as f64,
        ),
        (
            "generated_tokens_total",
            "counter",
            "tokens generated",
            s.n_generated_tokens as f64,
        ),
        (
            "generated_tokens_per_second",
            "gauge",
            "tokens generated per second since start",
            s.n_generated_tokens as f64 / up,
        ),
        (
            "requests_running",
            "gauge",
            "requests generating now",
            s.n_running as f64,
        ),
        (
            "queue_length",
            "gauge",
            "requests waiting",
            s.n_waiting as f64,
        ),
        (
            "kv_blocks_used",
            "gauge",
            "KV blocks held by running requests",
            s.kv_blocks_used as f64,
        ),
        (
            "kv_blocks_cached",
            "gauge",
            "KV blocks held only by the prefix cache",
            s.kv_blocks_cached as f64,
        ),
        (
            "kv_blocks_total",
            "gauge",
            "KV blocks in all",
            s.kv_blocks_total as f64,
        ),
        (
            "prefix_cache_hits_total",
            "counter",
            "requests that started from cached blocks",
            s.n_prefix_hits as f64,
        ),
        (
            "prefix_cache_tokens_total",
            "counter",
            "prompt tokens taken from the prefix cache",
            s.n_cached_tokens as f64,
        ),
        (
            "preemptions_total",
            "counter",
            "requests preempted and recomputed",
            s.n_preemptions as f64,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, v) in lines {
        out.push_str(&format!(
            "# HELP rocmforge_{name} {help}\n# TYPE rocmforge_{name} {kind}\nrocmforge_{name} {v}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The body as JSON of type T: 413 beyond the size limit, 400 for invalid JSON or a field
/// of the wrong type.
async fn parse<T: serde::de::DeserializeOwned>(
    app: &App,
    body: Body,
) -> std::result::Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, app.max_body)
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {} bytes", app.max_body),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid request body: {e}")))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Completion,
    Chat,
}

async fn completions(State(app): State<Shared>, _h: HeaderMap, body: Body) -> Response {
    app.requests.fetch_add(1, Ordering::Relaxed);
    let result = async {
        let r: CompletionRequest = parse(&app, body).await?;
        let prompt = match r.prompt {
            PromptField::Text(t) => Prompt::Text(t),
            PromptField::Tokens(t) => Prompt::Tokens(t),
            PromptField::Texts(mut v) if v.len() == 1 => Prompt::Text(v.remove(0)),
            PromptField::Texts(_) => return Err(bad("prompt must be one string")),
        };
        generate(&app, Kind::Completion, prompt, r.options, Some(16)).await
    }
    .await;
    respond(&app, result)
}

async fn chat(State(app): State<Shared>, body: Body) -> Response {
    app.requests.fetch_add(1, Ordering::Relaxed);
    let result = async {
        let r: ChatRequest = parse(&app, body).await?;
        if r.messages.is_empty() {
            return Err(bad("messages must not be empty"));
        }
        let msgs = r
            .messages
            .iter()
            .map(|m| Ok((m.role.clone(), m.text().map_err(bad)?)))
            .collect::<std::result::Result<Vec<_>, ApiError>>()?;
        generate(&app, Kind::Chat, Prompt::Chat(msgs), r.options, None).await
    }
    .await;
    respond(&app, result)
}

fn respond(app: &App, r: std::result::Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| {
        app.errors.fetch_add(1, Ordering::Relaxed);
        e.into_response()
    })
}

enum Msg {
    Text(Vec<u8>),
    Done(FinishReason),
}

/// One response in the making: the request (dropping it cancels), its channel and names.
struct Job {
    request: Request,
    rx: mpsc::UnboundedReceiver<Msg>,
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

async fn generate(
    app: &App,
    kind: Kind,
    prompt: Prompt,
    o: Options,
    default_max: Option<usize>,
) -> std::result::Result<Response, ApiError> {
    if o.n.is_some_and(|n| n != 1) {
        return Err(bad("only n = 1 is supported"));
    }
    // Tokenized once here; the engine takes the ids as they are.
    let tokens = app.engine.prompt_tokens(&prompt)?;
    let room = app.engine.capacity().saturating_sub(tokens.len()).max(1);
    let max_tokens = match o.max_completion_tokens.or(o.max_tokens) {
        Some(0) => return Err(bad("max_tokens must be at least 1")),
        Some(n) => Some(usize::try_from(n).map_err(|_| bad("max_tokens is too large"))?),
        // OpenAI's default of 16 for completions, cut to what the context leaves.
        None => default_max.map(|d| d.min(room)),
    };
    let sampler = openai::sampler(&o).map_err(bad)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let spec = RequestSpec {
        prompt: Prompt::Tokens(tokens),
        sampler,
        max_tokens,
        stop: o.stop.map(openai::OneOrMany::into_vec).unwrap_or_default(),
        on_piece: Some(Box::new(move |piece, finish| {
            // A send fails only when the HTTP side is gone; the dropped handle cancels.
            let _ = match finish {
                None => tx.send(Msg::Text(piece.to_vec())),
                Some(f) => tx.send(Msg::Done(f)),
            };
        })),
        ignore_eog: false,
    };
    let request = app.engine.submit(spec)?;
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let job = Job {
        request,
        rx,
        id: format!("{prefix}-{}", app.next_id.fetch_add(1, Ordering::Relaxed)),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: o.model.unwrap_or_else(|| app.model_id.clone()),
        kind,
    };
    if o.stream.unwrap_or(false) {
        Ok(stream(job))
    } else {
        whole(job).await
    }
}

fn usage(r: &Request) -> Value {
    let s = r.stats();
    json!({
        "prompt_tokens": s.n_prompt_tokens,
        "completion_tokens": s.n_generated_tokens,
        "total_tokens": s.n_prompt_tokens + s.n_generated_tokens,
    })
}

async fn whole(mut job: Job) -> std::result::Result<Response, ApiError> {
    let mut text = Vec::new();
    let finish = loop {
        match job.rx.recv().await {
            Some(Msg::Text(t)) => text.extend(t),
            Some(Msg::Done(f)) => break f,
            None => break FinishReason::Error,
        }
    };
    if finish == FinishReason::Error || finish == FinishReason::Cancelled {
        let why = job
            .request
            .error()
            .unwrap_or_else(|| "the request was cancelled".into());
        return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, why));
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let choice = match job.kind {
        Kind::Completion => json!({
            "index": 0, "text": text, "logprobs": null, "finish_reason": finish_name(finish)
        }),
        Kind::Chat => json!({
            "index": 0, "message": {"role": "assistant", "content": text},
            "logprobs": null, "finish_reason": finish_name(finish)
        }),
    };
    let object = match job.kind {
        Kind::Completion => "text_completion",
        Kind::Chat => "chat.completion",
    };
    Ok(axum::Json(json!({
        "id": job.id, "object": object, "created": job.created, "model": job.model,
        "choices": [choice], "usage": usage(&job.request),
    }))
    .into_response())
}

/// One SSE event of a streamed response.
fn chunk(job: &Job, text: Option<&str>, finish: Option<FinishReason>, first: bool) -> Bytes {
    let finish = finish.map(finish_name);
    let (object, choice) = match job.kind {
        Kind::Completion => (
            "text_completion",
            json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}),
        ),
        Kind::Chat => {
            let mut delta = serde_json::Map::new();
            if first {
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = text {
                delta.insert("content".into(), json!(t));
            }
            (
                "chat.completion.chunk",
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}),
            )
        }
    };
    let mut event = json!({
        "id": job.id, "object": object, "created": job.created, "model": job.model,
        "choices": [choice],
    });
    if finish.is_some() {
        event["usage"] = usage(&job.request);
    }
    Bytes::from(format!("data: {event}\n\n"))
}

/// Server-Sent Events: a chunk per piece, the finish, then `data: [DONE]`. The stream owns
/// the job, so a client that disconnects drops it and the request is cancelled.
fn stream(job: Job) -> Response {
    enum St {
        Open(Box<Job>, bool),
        Done,
    }
    let events = futures_util::stream::unfold(St::Open(Box::new(job), true), |st| async move {
        let St::Open(mut job, first) = st else {
            return None;
        };
        let out = match job.rx.recv().await {
            Some(Msg::Text(t)) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                let c = chunk(&job, Some(&text), None, first);
                (c, St::Open(job, false))
            }
            Some(Msg::Done(f)) if f == FinishReason::Stop || f == FinishReason::Length => {
                let mut c = chunk(&job, None, Some(f), first).to_vec();
                c.extend_from_slice(b"data: [DONE]\n\n");
                (Bytes::from(c), St::Done)
            }
            _ => {
                let why = job
                    .request
                    .error()
                    .unwrap_or_else(|| "the request was cancelled".into());
                let e = error_body(&why, "server_error");
                (
                    Bytes::from(format!("data: {e}\n\ndata: [DONE]\n\n")),
                    St::Done,
                )
            }
        };
        Some((Ok::<Bytes, std::convert::Infallible>(out.0), out.1))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
