//! The paybatch orchestrator: one stream of transactions for many accounts in, one merged
//! result out, with every transaction processed exactly once even across crashes.
//!
//! The work is pure planning and merging around a thin async driver:
//! - [`Settings`] — the compiled-in defaults, a config file and `PAYBATCH__…` overrides;
//! - [`InputReader`] / [`RecordSource`] and [`Job`] — streaming input, validation, spilling;
//! - [`plan_account`] — per account, bound transactions stay in their batch, the rest are split;
//! - [`GatewayProtocol`] — the per-account gateway steps ([`SolaFileDrop`] first);
//! - [`Orchestrator`] — reserve → upload → verify → trigger → poll → collect → clean, resumable.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use paybatch_demo::{DemoSpec, World, spawn_gateway};
//! use orchestrator::{Format, InputReader, InvalidPolicy, Job, LineOutcome, Orchestrator, Settings, Shutdown, SubmitOptions};
//!
//! // A generated world on local folders, with the gateway simulator standing in for Sola.
//! let dir = tempfile::tempdir()?;
//! let spec = DemoSpec { accounts: 2, transactions: 50, failing_accounts: 0, ..DemoSpec::default() };
//! let world = World::create(dir.path(), spec, Format::Kvp)?;
//! let (stop, gateway) = spawn_gateway(world.gateway(false).await?);
//!
//! let settings = Arc::new(Settings::load_with_env(Some(&world.config), [], &paybatch_demo::protocols())?);
//! let mut input = InputReader::open(&world.input, None)?;
//! let job = Job::load(&mut input, &settings, InvalidPolicy::RejectInput, &mut |p, _| eprintln!("{p}"))?;
//! let report = Orchestrator::builder(settings)
//!     .build()?
//!     .submit(Arc::new(job), &SubmitOptions::default(), Shutdown::never())
//!     .await?;
//! assert!(report.is_complete());
//! assert_eq!(report.totals().total(), 50);
//! assert!(report.totals().count(LineOutcome::Approved) > 0);
//! # let _ = stop.send(());
//! # gateway.await??;
//! # Ok(()) }
//! ```
//!
//! Guarantees: nothing carrying a sequence number is uploaded before the number and its
//! transactions are durable in the ledger; a REQUEST is verified before its PROCESS; one batch
//! per account is in flight; a rerun finishes unfinished batches with the same number and bytes.
#![warn(missing_docs)]

mod account_ledger;
mod account_locks;
mod builder;
mod clock;
mod collect;
mod driver;
mod dry_run;
mod error;
mod input;
mod job;
mod merge;
mod outcome;
mod output;
mod own_request;
mod plan;
mod planning;
mod progress;
mod report;
mod runner;
mod scratch;
mod settings;
mod shutdown;
mod spill;
mod validate;
mod verdict;
mod worker;

pub use account_locks::AccountGuard;
pub use builder::OrchestratorBuilder;
pub use driver::{Orchestrator, OutputSpec, SubmitOptions, WaitMode};
pub use dry_run::DryRunBatch;
pub use error::{Error, Result};
pub use gateway_protocol::Masking;
pub use input::{Format, InputReader, InputRecord, RecordSource};
pub use job::{InvalidPolicy, Job, Transaction};
pub use outcome::{AccountSummary, LineOutcome};
pub use output::{CSV_RESPONSE_COLUMNS, OutputWriter};
pub use own_request::{RequestCheck, Withdrawn, check_request, withdraw_own_request};
pub use plan::RejectedBatches;
pub use progress::{
    LeaseWait, Progress, ProgressSnapshot, SLOW_AFTER, SlowBatch, StorageErrorKind,
};
pub use report::{AccountReport, RunReport};
pub use settings::{
    DEFAULT_CONFIG, DEFAULT_PROTOCOL, ENV_PREFIX, InputSettings, LedgerSettings, LimitSettings,
    PollSettings, Settings,
};
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use validate::InputProblem;
pub use worker::CRASH_POINTS;

/// The protocols the engine's own tests configure accounts with.
#[cfg(test)]
pub(crate) fn test_protocols() -> Vec<std::sync::Arc<dyn gateway_protocol::AccountFactory>> {
    vec![sola_file_drop::factory(), aps_batch::factory()]
}
