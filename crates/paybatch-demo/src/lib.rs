//! The demo world of paybatch: generated workloads and a local gateway world, for
//! `paybatch demo`, the end-to-end tests, the examples and the benchmark. It sits next to the
//! gateway simulator so the engine (`orchestrator`) never depends on it.
//!
//! Main types:
//! - [`DemoSpec`] — what to generate: accounts, transactions, batch size, failing accounts, seed;
//! - [`World`] — a generated world on disk: config, input, ledger, gateway state, one drop per
//!   account (local folders, or the SFTP/S3 targets of `storage_backends::test_env`);
//! - [`spawn_gateway`] — runs the Sola simulator over a world's drops in the background;
//! - [`aps`] — APS demo accounts, a mixed Sola + APS input, and the APS simulator's view of a
//!   configured account ([`aps::sim_merchant`], [`aps::sim_options`]).
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use paybatch_demo::{DemoSpec, World, spawn_gateway};
//!
//! let dir = tempfile::tempdir()?;
//! let spec = DemoSpec { accounts: 2, transactions: 20, ..DemoSpec::default() };
//! let world = World::create(dir.path(), spec, orchestrator::Format::Kvp)?;
//! assert!(world.config.is_file() && world.input.is_file());
//! let (stop, gateway) = spawn_gateway(world.gateway(false).await?);
//! // ... run `paybatch submit --config {world.config} {world.input}` or the library here ...
//! let _ = stop.send(());
//! gateway.await??;
//! # Ok(()) }
//! ```
//!
//! Guarantees: the same [`DemoSpec`] (seed included) gives the same input; every file and
//! folder a world creates is its owner's only (0600 / 0700: the input holds card numbers, the
//! config keys). The keys are demo values, nobody's secrets.
#![warn(missing_docs)]

pub mod aps;
mod error;
mod spec;
mod world;

pub use error::{Error, Result};

/// The gateway protocols a demo world's accounts use (Sola and APS), for
/// `orchestrator::Settings::load` and its siblings.
pub fn protocols() -> Vec<std::sync::Arc<dyn gateway_protocol::AccountFactory>> {
    vec![sola_file_drop::factory(), aps_batch::factory()]
}

/// The Sola file drop of configured account `account` on a backend the caller opened or
/// wrapped (a test's faulty drop, a shared connection), for
/// `orchestrator::OrchestratorBuilder::protocol`.
///
/// # Errors
/// [`Error::Invalid`] when the account is not a configured Sola account or a key's variable is
/// unset.
pub fn sola_drop(
    settings: &orchestrator::Settings,
    account: &str,
    backend: std::sync::Arc<dyn storage_backends::Backend>,
) -> Result<std::sync::Arc<dyn gateway_protocol::GatewayProtocol>> {
    let configured = settings
        .account(account)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let sola = configured
        .as_any()
        .downcast_ref::<sola_file_drop::SolaAccount>()
        .ok_or_else(|| Error::Invalid(format!("account {account} is not a Sola account")))?;
    let drop = sola
        .on_backend(backend)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(std::sync::Arc::new(drop))
}
pub use spec::DemoSpec;
pub use world::{LocalWorld, World, spawn_gateway};
