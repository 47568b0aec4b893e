//! `paybatch serve` — the long-running service: jobs over HTTP (API on `[serve] listen`, bearer
//! tokens), metrics, health and a status page (on `[serve] admin_listen`). The service itself
//! is the `paybatch-service` crate; this command loads the settings, builds the engine with its
//! ledger, starts the service and stops it in order on SIGTERM or Ctrl-C.
//!
//! Exit codes: 0 stopped by a signal (running work reached a safe point; the next start resumes
//! it); 2 configuration (no token in the `tokens_env` variable, a bad `[serve]` key);
//! 3 the ledger is in use or a listener cannot be bound.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use paybatch_service::ServeConfig;

use super::{Global, common, usage_error};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file (over the compiled-in defaults; `PAYBATCH__SERVE__…` variables override both).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    let settings = Arc::new(common::load_settings(args.config.as_deref())?);
    let config = ServeConfig::from_settings(&settings, |name| std::env::var(name).ok())
        .map_err(|e| usage_error(e.to_string()))?;
    let rt = common::runtime(&settings.limits)?;
    rt.block_on(async {
        let engine = common::engine_builder(&settings).await?.build()?;
        let running = paybatch_service::start(settings, config, engine).await?;
        let scheme = if running.is_tls() { "https" } else { "http" };
        if !global.quiet {
            eprintln!(
                "paybatch: serving the API on {scheme}://{} and metrics, health and the status page on {scheme}://{}",
                running.api_addr(),
                running.admin_addr()
            );
        }
        super::common::termination_signal().await;
        if !global.quiet {
            eprintln!(
                "paybatch: stopping: new jobs are refused, running work stops at its next safe point (the next start resumes it)"
            );
        }
        running.stop().await?;
        Ok(ExitCode::SUCCESS)
    })
}
