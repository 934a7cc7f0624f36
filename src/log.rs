//! The library's log: one process-wide sink, settable by the embedder (`rf_log_set`).
//!
//! Without a sink, warnings and errors go to stderr and the rest is dropped: an embedded
//! library must not chatter on a host program's terminal. A sink may be called from any thread
//! and must not call back into the library.

use std::sync::Arc;

use parking_lot::RwLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

pub type Sink = Arc<dyn Fn(Level, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Replaces the sink; `None` restores the default (warnings and errors to stderr).
pub fn set_sink(sink: Option<Sink>) {
    *SINK.write() = sink;
}

pub fn log(level: Level, msg: &str) {
    // Clone the sink out so it runs without the lock held: a sink that logs or replaces the
    // sink cannot deadlock.
    let sink = SINK.read().clone();
    match sink {
        Some(s) => s(level, msg),
        None if level >= Level::Warn => eprintln!("rocmforge {}: {msg}", level.name()),
        None => {}
    }
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}

pub fn info(msg: &str) {
    log(Level::Info, msg)
}

pub fn warn(msg: &str) {
    log(Level::Warn, msg)
}
