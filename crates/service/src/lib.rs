//! paybatch as a long-running service: jobs handed over HTTP are as safe as `submit` (durable
//! before they are acknowledged, resumed after a crash, every transaction processed exactly
//! once), observable (Prometheus metrics, health, a status page) and authenticated (bearer
//! tokens).
//!
//! The main types:
//! - [`ServeConfig`] — `[serve]` checked: addresses, tokens, the data directory, limits, TLS;
//! - [`start`] / [`Running`] — the service around one [`orchestrator::Orchestrator`]: both
//!   listeners, the jobs resumed, the orderly [`Running::stop`];
//! - [`Jobs`] / [`JobRecord`] — accepting, running and resuming jobs; what a job's record holds;
//! - [`status::status`] and [`resolve::resolve`] — shared with `paybatch status` and
//!   `paybatch resolve`, so the CLI and the API give the same answers;
//! - [`ApiDoc`] — the OpenAPI 3 document of the API, generated from the handlers.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use orchestrator::{Orchestrator, Settings};
//!
//! let protocols = vec![sola_file_drop::factory()];
//! let settings = Arc::new(Settings::load(Some("paybatch.toml".as_ref()), &protocols)?);
//! let config = paybatch_service::ServeConfig::from_settings(&settings, |k| std::env::var(k).ok())?;
//! let engine = Orchestrator::builder(settings.clone()).build()?;
//! let running = paybatch_service::start(settings, config, engine).await?;
//! println!("API on {}", running.api_addr());
//! tokio::signal::ctrl_c().await?;
//! running.stop().await?;
//! # Ok(()) }
//! ```
//!
//! Guarantees: `POST /v1/jobs` answers 202 only after the body and the job's record are
//! fsynced in the data directory (and the folder renamed into place and its parent fsynced);
//! an invalid input is answered 422 with every problem and nothing is kept or reserved. Every
//! job a stop or a crash left `accepted` or `running` is run again at the next start, and the
//! engine's resume finishes its bound batches with the same numbers (exactly once). Jobs run
//! concurrently through one engine, whose per-account lock keeps one batch per account in
//! flight: jobs sharing an account queue behind each other.
#![warn(missing_docs)]

pub mod api;
mod auth;
mod error;
pub mod jobs;
pub mod metrics;
pub mod page;
pub mod record;
pub mod resolve;
mod server;
pub mod settings;
pub mod status;
pub mod store;
pub mod tls;

pub use api::ApiDoc;
pub use error::{Error, Result};
pub use jobs::Jobs;
pub use record::{JobAccount, JobId, JobRecord, JobState};
pub use server::{DRAIN_TIMEOUT, Running, start};
pub use settings::{ServeConfig, ServeSection, Tokens};
