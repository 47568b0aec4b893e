//! `paybatch ledger migrate` (show and apply the shared ledger's schema), `paybatch ledger
//! copy` (a sled ledger into an empty PostgreSQL ledger), and the PostgreSQL side of `ledger
//! export`.
//!
//! The database URL comes from the environment only: `--url-env NAME` names the variable
//! holding it (default `PAYBATCH__LEDGER__URL`, the variable that also overrides `[ledger]
//! url`). A URL given on the command line (`--to URL`) must not carry a password: every user of
//! the machine can read a command line.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use kvp_format::{mask_url_password, url_has_password};
use ledger_postgres::{PgLedger, PgOptions};
use sequence_ledger::SequenceLedger;

use super::usage_error;

/// The variable holding the shared ledger's URL unless `--url-env` names another.
pub const DEFAULT_URL_ENV: &str = "PAYBATCH__LEDGER__URL";

/// Arguments of `paybatch ledger migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The environment variable holding the PostgreSQL ledger's URL
    /// (`postgres://user:password@host:port/database`).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_URL_ENV)]
    pub url_env: kvp_format::EnvName,
    /// Only show the schema version and the SQL of the pending steps; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `paybatch ledger copy`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "to_env"])))]
pub struct CopyArgs {
    /// The sled ledger directory to copy (opened read-only: no process may hold it).
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// The PostgreSQL ledger to copy into, as a URL without a password (the server must let
    /// this user in without one, e.g. by a client certificate or `trust` on a socket).
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The environment variable holding the target's URL (with its password, if any).
    #[arg(long, value_name = "NAME")]
    pub to_env: Option<kvp_format::EnvName>,
}

/// The URL in variable `name`.
fn url_from_env(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => Err(usage_error(format!(
            "the environment variable {} (the PostgreSQL ledger's URL) is not set",
            kvp_format::shown_env_name(name)
        ))),
    }
}

/// A URL given on the command line: refused when it carries a password.
fn url_from_arg(url: &str) -> Result<String> {
    if url_has_password(url) {
        return Err(usage_error(format!(
            "{} carries a password on the command line, where every user of this machine can read it: put the URL into an environment variable and give its name with --to-env",
            mask_url_password(url)
        )));
    }
    Ok(url.to_string())
}

fn options(url: &str) -> Result<PgOptions> {
    PgOptions::new(url).map_err(|e| usage_error(e.to_string()))
}

/// A small runtime of its own: these commands need no settings (the URL is in the
/// environment), so they do not load any.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `paybatch ledger migrate`.
pub fn migrate(args: &MigrateArgs) -> Result<ExitCode> {
    let options = options(&url_from_env(args.url_env.as_str())?)?;
    let describe = options.describe();
    runtime()?.block_on(async {
        let ledger = PgLedger::connect_without_migrating(options).await?;
        let version = ledger.schema_version().await?;
        let pending = ledger.pending_migrations().await?;
        let mut out = io::stdout().lock();
        writeln!(
            out,
            "PostgreSQL ledger {describe}: schema version {version} (this paybatch: {})",
            ledger_postgres::schema::SCHEMA_VERSION
        )?;
        if pending.is_empty() {
            writeln!(out, "up to date: nothing to apply")?;
            return Ok(ExitCode::SUCCESS);
        }
        for m in &pending {
            writeln!(
                out,
                "-- step {}: {}{}",
                m.version,
                m.description,
                m.sql.trim_end()
            )?;
        }
        if args.dry_run {
            writeln!(out, "dry run: {} step(s) not applied", pending.len())?;
            return Ok(ExitCode::SUCCESS);
        }
        let applied = ledger.migrate().await?;
        writeln!(
            out,
            "applied {} step(s); schema version {}",
            applied.len(),
            ledger.schema_version().await?
        )?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `paybatch ledger copy`.
pub fn copy(args: &CopyArgs) -> Result<ExitCode> {
    let url = match (&args.to, &args.to_env) {
        (_, Some(name)) => url_from_env(name.as_str())?,
        (Some(url), None) => url_from_arg(url)?,
        (None, None) => return Err(usage_error("give --to URL or --to-env NAME")),
    };
    let options = options(&url)?;
    let source = Arc::new(super::ledger::open_read_only(&args.from)?);
    runtime()?.block_on(async {
        let target = PgLedger::connect(options).await?;
        if !target.is_empty().await? {
            return Err(usage_error(format!(
                "{} is not empty: `ledger copy` only fills a new ledger",
                target.describe()
            )));
        }
        let copied = target.copy_from(source.clone()).await?;
        // The proof: both exports are the same, line for line.
        let from = {
            let s = source.clone();
            tokio::task::spawn_blocking(move || -> sequence_ledger::Result<Vec<u8>> {
                let mut buf = Vec::new();
                s.export(&mut buf)?;
                Ok(buf)
            })
            .await
            .context("reading the source")??
        };
        let to = export_to_vec(&target).await?;
        if from != to {
            anyhow::bail!(
                "the copy in {} differs from {} (compare `paybatch ledger export` of both)",
                target.describe(),
                args.from.display()
            );
        }
        println!(
            "copied {} account(s) and {} batch(es) ({} with stored results) from {} to {}; both exports match ({} lines)",
            copied.accounts,
            copied.batches,
            copied.with_results,
            args.from.display(),
            target.describe(),
            bytecount_lines(&to)
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn bytecount_lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

async fn export_to_vec(ledger: &dyn SequenceLedger) -> Result<Vec<u8>> {
    #[derive(Debug, Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buf = Shared::default();
    ledger.export(Box::new(buf.clone())).await?;
    let out = buf
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(out)
}

/// `paybatch ledger export --url-env NAME`: the PostgreSQL ledger's export, the same lines as
/// a sled ledger's.
/// The PostgreSQL ledger whose URL is in the environment variable `name`, for reading (its
/// schema is not changed and must be up to date).
///
/// # Errors
/// A missing or invalid URL (usage, exit 2); the connection; the schema.
pub async fn connect_env_for_reading(name: &str) -> Result<Arc<dyn SequenceLedger>> {
    super::common::connect_for_reading(options(&url_from_env(name)?)?).await
}
