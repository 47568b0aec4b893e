//! Process-wide logging of the `paybatch` binary: `tracing` events, and the `log` records of
//! dependencies that use the `log` crate (russh), to stderr as text or JSON lines. The
//! libraries only emit `tracing` events; setting up where they go is the binary's job.
//!
//! sled's `log` records are deliberately not bridged. sled logs from closures that
//! crossbeam-epoch runs inside a thread-local destructor when a thread exits; by then
//! tracing-subscriber's per-thread format buffer may already be destroyed, and formatting the
//! event aborts the whole process ("thread local panicked on drop") — seen at `-vvv` after a
//! successful `submit`. sled's debug/trace records are page-cache internals an operator has no
//! use for. `tests/logging_thread_exit.rs` compiles this file on its own and checks it.

use std::fmt;

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging could not be set up (a subscriber or `log` logger was already installed, or the
/// filter does not parse).
#[derive(Debug)]
pub struct LoggingError(String);

impl fmt::Display for LoggingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot set up logging: {}", self.0)
    }
}

impl std::error::Error for LoggingError {}

/// `log` targets kept out of the `log` → `tracing` bridge (see the module docs).
const UNBRIDGED_LOG_CRATES: &[&str] = &["sled"];

/// Installs the process-wide subscriber writing to stderr. `filter` is an
/// [`EnvFilter`] directive (`"warn"`, `"info,orchestrator=debug"`); `RUST_LOG`, when set,
/// takes precedence. Call once, early in `main`.
///
/// # Errors
/// [`LoggingError`] when a global subscriber or `log` logger is already installed, or the
/// filter is invalid.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), LoggingError> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(from_env) => from_env,
        Err(_) => EnvFilter::try_new(filter).map_err(|e| LoggingError(e.to_string()))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => tracing::subscriber::set_global_default(builder.finish()),
        LogFormat::Json => tracing::subscriber::set_global_default(builder.json().finish()),
    };
    installed.map_err(|e| LoggingError(e.to_string()))?;
    let mut bridge = tracing_log::LogTracer::builder();
    for name in UNBRIDGED_LOG_CRATES {
        bridge = bridge.ignore_crate(*name);
    }
    bridge.init().map_err(|e| LoggingError(e.to_string()))
}
