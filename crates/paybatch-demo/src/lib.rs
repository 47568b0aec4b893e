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
pub use spec::DemoSpec;
pub use world::{LocalWorld, World, spawn_gateway};
