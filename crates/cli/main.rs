//! The `paybatch` command line: parse raw arguments, turn them into validated settings, call
//! the libraries. Every subcommand lives in its own file under `cmd/`.
//!
//! Exit codes (documented in `--help` and the README):
//! - `0`: success, everything valid / every batch reached a final state;
//! - `1`: the command ran but found problems (invalid input, Stuck batches, a failed account);
//! - `2`: usage or configuration error (bad arguments, unreadable config, unknown keys);
//! - `3`: an I/O or backend failure stopped the command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod logging;

/// glibc's malloc gives each thread that contends for memory an arena of its own, up to eight
/// per core, and keeps what was freed in each. paybatch's allocations move between the runtime's
/// workers and the blocking pool's threads (a batch is built on one, written on another), so
/// every arena ended up holding freed memory: a million-transaction submit peaked at 241 MiB
/// with the default and 169 MiB with one arena, at the same CPU (`cargo bench --bench
/// throughput`). Set before any thread starts; an arena limit in the environment
/// (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`) wins.
#[allow(unsafe_code)]
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"))
    {
        // SAFETY: mallopt only sets a malloc parameter; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Push large volumes of payment transactions through gateways' batch interfaces, safely.
#[derive(Debug, Parser)]
#[command(name = "paybatch", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: cmd::Global,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 problems found (invalid input, Stuck batches, \
a failed account); 2 usage or configuration error; 3 I/O or backend failure.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode or encode KVP lines (one JSON array of [key, value] pairs per line).
    #[command(subcommand)]
    Kvp(cmd::kvp::KvpCommand),
    /// Validate REQUEST/PROCESS/RESPONSE/COMPLETE files, recognised by their names.
    Validate(cmd::validate::Args),
    /// Inspect the sequence ledger (show, export), set an account's sequence floor, or prune old
    /// results.
    #[command(subcommand)]
    Ledger(cmd::ledger::LedgerCommand),
    /// Check an account's drop (storage location).
    #[command(subcommand)]
    Store(cmd::store::StoreCommand),
    /// Run the gateway simulator for every account of a config.
    GatewaySim(cmd::gateway_sim::Args),
    /// Submit transactions: fan out, upload, (optionally) wait, collect and merge.
    Submit(cmd::submit::Args),
    /// Collect the results of submitted batches and write the merged output.
    Collect(cmd::collect::Args),
    /// Show per-account sequence numbers and batches by state.
    Status(cmd::status::Args),
    /// Record an operator's decision on a Stuck batch.
    Resolve(cmd::resolve::Args),
    /// Run as a service: jobs over HTTP, metrics, health and a status page.
    Serve(cmd::serve::Args),
    /// Show the effective configuration (secrets masked).
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Run the whole job on generated data against an in-process gateway simulator.
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    if let Err(err) = cmd::init_logging(&cli.global) {
        eprintln!("paybatch: {err:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Kvp(c) => cmd::kvp::run(c, &cli.global),
        Command::Validate(a) => cmd::validate::run(a, &cli.global),
        Command::Ledger(c) => cmd::ledger::run(c, &cli.global),
        Command::Store(c) => cmd::store::run(c, &cli.global),
        Command::GatewaySim(a) => cmd::gateway_sim::run(a, &cli.global),
        Command::Submit(a) => cmd::submit::run(a, &cli.global),
        Command::Collect(a) => cmd::collect::run(a, &cli.global),
        Command::Status(a) => cmd::status::run(a, &cli.global),
        Command::Resolve(a) => cmd::resolve::run(a, &cli.global),
        Command::Serve(a) => cmd::serve::run(a, &cli.global),
        Command::Config(c) => cmd::config::run(c, &cli.global),
        Command::Demo(a) => cmd::demo::run(a, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("paybatch: {err:#}");
            ExitCode::from(cmd::exit_code_for(&err))
        }
    }
}
