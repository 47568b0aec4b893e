//! `paybatch ledger show|export`: look into the sequence ledger without changing it;
//! `paybatch ledger set-floor`: an account's sequence floor; `paybatch ledger prune`: drop the
//! stored results of batches cleaned before a date (retention). `migrate` and `copy` (the
//! shared PostgreSQL ledger) are in `ledger_shared.rs`.
//!
//! Each reads or writes the ledger `--config FILE` names (the shared PostgreSQL ledger when
//! `[ledger] url`/`url_env` is set, else the sled ledger at `[ledger] path`) or a sled
//! `--ledger PATH`. `show` and `export` open a sled ledger read-only
//! (`Ledger::open_read_only`: a shared lock while the database is copied to a private
//! temporary directory; no file of the ledger is written).
//! `set-floor` and `prune` open it read-write. While a `submit` or `collect` holds a sled
//! ledger all of them fail with "ledger ... is in use by pid N"; a shared PostgreSQL ledger is
//! read and written beside the runs (`show` and `export` leave its schema alone).

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use sequence_ledger::{
    AccountId, AccountInfo, BatchRecord, BatchState, DEFAULT_LEASE_TTL, Lease, LeaseOwner, Ledger,
    SequenceLedger, SequenceLedgerExt, SledLedger,
};
use serde::Serialize;

use super::{Global, usage_error};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Show accounts (high-water mark, floor, next number, batches by state) and every batch
    /// still in flight; with --account, that account's batches one per line.
    #[command(after_help = crate::EXIT_CODES)]
    Show(ShowArgs),
    /// Write the whole ledger as JSON lines (format, account, batch, binding and result
    /// records, each with a "type" field).
    #[command(after_help = crate::EXIT_CODES)]
    Export(ExportArgs),
    /// Record that an account's gateway has already seen sequence numbers up to N, so its next
    /// batch is numbered above N (and above every number the ledger already used). A lower
    /// floor than before is accepted (to correct a typo); used numbers stay used.
    #[command(after_help = crate::EXIT_CODES)]
    SetFloor(SetFloorArgs),
    /// Drop the stored per-line results of batches cleaned before a date, keeping what
    /// idempotency needs (references, digests, states, verdicts): a later merge reports their
    /// lines `unknown` ("results pruned"), and their transactions are still never sent twice.
    /// Results of batches the gateway rejected are kept (they decide which lines may be sent
    /// again).
    #[command(after_help = crate::EXIT_CODES)]
    Prune(PruneArgs),
    /// Show the shared PostgreSQL ledger's schema version and the SQL of the steps not
    /// applied yet, then apply them (each in one transaction); --dry-run only shows.
    #[command(after_help = crate::EXIT_CODES)]
    Migrate(super::ledger_shared::MigrateArgs),
    /// Copy a sled ledger into a new, empty PostgreSQL ledger (one transaction; refused when
    /// the target holds anything), then check that both exports are the same.
    #[command(after_help = crate::EXIT_CODES)]
    Copy(super::ledger_shared::CopyArgs),
}

/// Arguments of `paybatch ledger prune`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["config", "ledger"])))]
pub struct PruneArgs {
    /// Config file: the ledger it names (`[ledger] url`/`url_env` for the shared PostgreSQL
    /// ledger, else `[ledger] path`).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The ledger directory, instead of --config.
    #[arg(long, value_name = "PATH")]
    pub ledger: Option<PathBuf>,
    /// Drop results of batches cleaned before this moment: an RFC 3339 date and time
    /// (`2025-06-30T12:00:00Z`, `2025-06-30T14:00:00+02:00`) or a day (`2025-06-30`, its
    /// start in UTC).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub collected_before: SystemTime,
}

/// Arguments of `paybatch ledger set-floor`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["config", "ledger"])))]
pub struct SetFloorArgs {
    /// Config file: the ledger it names (`[ledger] url`/`url_env` for the shared PostgreSQL
    /// ledger, else `[ledger] path`); the account must be configured.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The ledger directory (created if missing), instead of --config.
    #[arg(long, value_name = "PATH")]
    pub ledger: Option<PathBuf>,
    /// The account.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: String,
    /// The highest sequence number the account's gateway has seen (1..=999999999).
    #[arg(value_name = "N")]
    pub floor: u32,
}

/// Arguments of `paybatch ledger show`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["config", "ledger", "url_env"])))]
pub struct ShowArgs {
    /// Config file: the ledger it names (`[ledger] url`/`url_env` for the shared PostgreSQL
    /// ledger, else `[ledger] path`).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The ledger directory (a sled ledger), instead of --config.
    #[arg(long, value_name = "PATH")]
    pub ledger: Option<PathBuf>,
    /// The environment variable holding a PostgreSQL ledger's URL, instead of --config.
    #[arg(long, value_name = "NAME")]
    pub url_env: Option<kvp_format::EnvName>,
    /// Only this account, with all its batches.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `paybatch ledger export`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["config", "ledger", "url_env"])))]
pub struct ExportArgs {
    /// Config file: the ledger it names (`[ledger] url`/`url_env` for the shared PostgreSQL
    /// ledger, else `[ledger] path`).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The ledger directory (a sled ledger), instead of --config.
    #[arg(long, value_name = "PATH")]
    pub ledger: Option<PathBuf>,
    /// The environment variable holding a PostgreSQL ledger's URL, instead of --ledger.
    #[arg(long, value_name = "NAME")]
    pub url_env: Option<kvp_format::EnvName>,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: LedgerCommand, _global: &Global) -> Result<ExitCode> {
    match args {
        LedgerCommand::Show(a) => show(&a),
        LedgerCommand::Export(a) => export(&a),
        LedgerCommand::SetFloor(a) => set_floor(&a),
        LedgerCommand::Prune(a) => prune(&a),
        LedgerCommand::Migrate(a) => super::ledger_shared::migrate(&a),
        LedgerCommand::Copy(a) => super::ledger_shared::copy(&a),
    }
}

/// `YYYY-MM-DD` (00:00 UTC) or RFC 3339 with `Z` or a `±HH:MM` offset.
fn parse_date(s: &str) -> std::result::Result<SystemTime, String> {
    let bad = |why: String| {
        format!("{s:?} is not a date: {why} (expected e.g. 2025-06-30 or 2025-06-30T12:00:00Z)")
    };
    let utc = |t: &str| humantime::parse_rfc3339(t).map_err(|e| bad(e.to_string()));
    if s.len() == 10 {
        return utc(&format!("{s}T00:00:00Z"));
    }
    if s.ends_with(['Z', 'z']) {
        return utc(&format!("{}Z", &s[..s.len() - 1]));
    }
    let split = s.len().checked_sub(6).filter(|at| s.is_char_boundary(*at));
    let Some((local, offset)) = split.map(|at| s.split_at(at)) else {
        return Err(bad("no time zone".into()));
    };
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1i64,
        Some(b'-') => -1,
        _ => return Err(bad("no time zone (Z or ±HH:MM)".into())),
    };
    let (h, m) = offset[1..]
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<u64>().ok()?, m.parse::<u64>().ok()?)))
        .filter(|(h, m)| *h < 24 && *m < 60)
        .ok_or_else(|| bad(format!("bad offset {offset:?}")))?;
    let shift = Duration::from_secs(h * 3600 + m * 60);
    let t = utc(&format!("{local}Z"))?;
    // 14:00+02:00 is 12:00Z.
    let shifted = if sign > 0 {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    };
    shifted.ok_or_else(|| bad("out of range".into()))
}

fn prune(args: &PruneArgs) -> Result<ExitCode> {
    let pruned = with_ledger(
        args.config.as_deref(),
        args.ledger.as_deref(),
        None,
        true,
        |ledger| {
            let before = args.collected_before;
            async move { Ok(ledger.prune(before).await?) }
        },
    )?;
    let before = humantime::format_rfc3339_seconds(args.collected_before);
    let mut out = io::stdout().lock();
    let mut written = writeln!(
        out,
        "pruned the stored results of {} batch(es) cleaned before {before}: {} line(s), {} bytes",
        pruned.batches, pruned.lines, pruned.bytes
    );
    for (account, (batches, lines)) in &pruned.by_account {
        written = written
            .and_then(|()| writeln!(out, "  {account}: {batches} batch(es), {lines} line(s)"));
    }
    if pruned.kept_rejected > 0 {
        written = written.and_then(|()| {
            writeln!(
                out,
                "kept the results of {} rejected batch(es): which of their lines were answered decides which may be sent again",
                pruned.kept_rejected
            )
        });
    }
    finish_output(written.and_then(|()| out.flush()), "stdout")
}

fn set_floor(args: &SetFloorArgs) -> Result<ExitCode> {
    let floor =
        kvp_format::SequenceNumber::new(args.floor).map_err(|e| usage_error(e.to_string()))?;
    let account = AccountId::new(args.account.as_str()).map_err(|e| usage_error(e.to_string()))?;
    let (before, after, next) = with_ledger(
        args.config.as_deref(),
        args.ledger.as_deref(),
        Some(&args.account),
        false,
        |ledger| {
            let account = account.clone();
            async move {
                // A write like any other: under the account's lease (refused, naming the
                // holder, while another process drives the account on a shared ledger).
                let lease = ledger
                    .lease_now(&account, &LeaseOwner::this_process(), DEFAULT_LEASE_TTL)
                    .await?;
                let result = floor_under(&*ledger, &lease, &account, floor).await;
                if let Err(e) = ledger.release_lease(&lease).await {
                    eprintln!(
                        "paybatch: warning: the lease of account {account} was not released ({e}); it expires on its own"
                    );
                }
                result
            }
        },
    )?;
    let mut out = io::stdout().lock();
    let written = writeln!(
        out,
        "account {account}: floor {} (was {}); last number used {}; next batch gets {next}",
        opt(after.floor),
        opt(before.floor),
        opt(after.high_water)
    )
    .and_then(|()| match after.high_water {
        Some(hw) if hw >= floor => writeln!(
            out,
            "note: the ledger already used numbers up to {hw}, above this floor; they stay used"
        ),
        _ => Ok(()),
    });
    finish_output(written.and_then(|()| out.flush()), "stdout")
}

/// Sets the floor under `lease` and warns about batches it strands; returns the account
/// before and after, and what the next batch gets.
async fn floor_under(
    ledger: &dyn SequenceLedger,
    lease: &Lease,
    account: &AccountId,
    floor: kvp_format::SequenceNumber,
) -> Result<(AccountInfo, AccountInfo, String)> {
    let before = ledger.account_info(account).await?;
    ledger.set_floor(lease, floor).await?;
    // A batch never triggered at or below the floor can never be processed under its number
    // (the gateway ignores numbers it has seen): its transactions stay bound to it until an
    // operator abandons it.
    for rec in ledger.batches(account).await? {
        if rec.sequence <= floor
            && matches!(
                rec.state,
                BatchState::Reserved | BatchState::RequestUploaded
            )
        {
            eprintln!(
                "paybatch: warning: batch {seq} of account {account} is {state}, at or below the new floor {floor}: the gateway ignores numbers it has already seen, so it can never be processed as {seq}. If it was never triggered, abandon it (`paybatch resolve --account {account} --seq {seq} --abandon --reason \"...\"`) and re-run to send its transactions under a new number",
                seq = rec.sequence,
                state = rec.state.name(),
            );
        }
    }
    let after = ledger.account_info(account).await?;
    let next = ledger
        .next_sequence(account)
        .await
        .map_or_else(|_| "none (exhausted)".to_string(), |n| n.to_string());
    Ok((before, after, next))
}

/// Runs `work` on the ledger a write command names: `--ledger PATH` (sled), or the one the
/// configuration names — the shared ledger when `[ledger] url` (or `url_env`,
/// `PAYBATCH__LEDGER__URL`) is set, else the sled ledger at `[ledger] path`. `account`, when
/// given with `--config`, must be configured. A sled ledger that does not exist yet is created
/// (a floor may be set before the first run), unless `must_exist`.
fn with_ledger<T, F, Fut>(
    config: Option<&Path>,
    path: Option<&Path>,
    account: Option<&str>,
    must_exist: bool,
    work: F,
) -> Result<T>
where
    F: FnOnce(Arc<dyn SequenceLedger>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (settings, path) = match (config, path) {
        (_, Some(path)) => (None, path.to_owned()),
        (Some(config), None) => {
            let settings = super::common::load_settings(Some(config))?;
            if let Some(account) = account {
                settings
                    .account(account)
                    .map_err(|e| usage_error(e.to_string()))?;
            }
            let path = settings.ledger.path.clone();
            (Some(settings), path)
        }
        (None, None) => return Err(usage_error("give --config FILE or --ledger PATH")),
    };
    let rt = super::common::default_runtime()?;
    rt.block_on(async {
        let shared = match &settings {
            Some(settings) => super::common::shared_ledger(settings).await?,
            None => None,
        };
        let ledger: Arc<dyn SequenceLedger> = match shared {
            Some(shared) => shared,
            None => {
                if must_exist && !path.join("db").is_file() {
                    return Err(usage_error(format!("no ledger at {}", path.display())));
                }
                Arc::new(SledLedger::new(Arc::new(Ledger::open(&path)?)))
            }
        };
        work(ledger).await
    })
}

/// Opens read-only; a missing ledger is the caller's mistake (exit 2).
pub fn open_read_only(path: &Path) -> Result<Ledger> {
    match Ledger::open_read_only(path) {
        Ok(l) => Ok(l),
        Err(e @ sequence_ledger::Error::NotFound { .. }) => Err(usage_error(e.to_string())),
        Err(e) => Err(anyhow::Error::new(e)),
    }
}

#[derive(Debug, Serialize)]
struct AccountView {
    account: AccountId,
    #[serde(flatten)]
    info: AccountInfo,
    /// The number the next batch would get; `null` when exhausted.
    next: Option<u32>,
    batches_by_state: BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batches: Option<Vec<BatchRecord>>,
}

#[derive(Debug, Serialize)]
struct ShowView {
    /// The ledger's path (sled) or its description with the password masked (PostgreSQL).
    ledger: String,
    accounts: Vec<AccountView>,
    in_flight: Vec<BatchRecord>,
}

/// The ledger a reading command names, opened for reading only, and what to call it: `--ledger
/// PATH` (sled, read-only: see the module docs), `--url-env NAME` (PostgreSQL), or the ledger
/// `--config FILE` names — the shared one when `[ledger] url` (or `url_env`,
/// `PAYBATCH__LEDGER__URL`) is set, else the sled ledger at `[ledger] path`, read-only. A
/// PostgreSQL ledger's schema is not changed: one not up to date is refused.
async fn reader(
    config: Option<&Path>,
    path: Option<&Path>,
    url_env: Option<&str>,
) -> Result<(Arc<dyn SequenceLedger>, String)> {
    let sled = |path: &Path| -> Result<(Arc<dyn SequenceLedger>, String)> {
        let ledger = SledLedger::new(Arc::new(open_read_only(path)?));
        Ok((Arc::new(ledger), path.display().to_string()))
    };
    match (config, path, url_env) {
        (_, Some(path), _) => sled(path),
        (_, None, Some(name)) => {
            let ledger = super::ledger_shared::connect_env_for_reading(name).await?;
            let name = ledger.describe();
            Ok((ledger, name))
        }
        (Some(config), None, None) => {
            let settings = super::common::load_settings(Some(config))?;
            match super::common::shared_ledger_for_reading(&settings).await? {
                Some(ledger) => {
                    let name = ledger.describe();
                    Ok((ledger, name))
                }
                None => sled(&settings.ledger.path),
            }
        }
        (None, None, None) => Err(usage_error(
            "give --config FILE, --ledger PATH or --url-env NAME",
        )),
    }
}

fn show(args: &ShowArgs) -> Result<ExitCode> {
    let only = match &args.account {
        Some(a) => Some(AccountId::new(a.as_str()).map_err(|e| usage_error(e.to_string()))?),
        None => None,
    };
    let view = super::common::default_runtime()?.block_on(async {
        let (ledger, name) = reader(
            args.config.as_deref(),
            args.ledger.as_deref(),
            args.url_env.as_ref().map(kvp_format::EnvName::as_str),
        )
        .await?;
        let accounts = match &only {
            Some(a) => vec![a.clone()],
            None => ledger.accounts().await?,
        };
        let mut views = Vec::with_capacity(accounts.len());
        for account in accounts {
            let info = ledger.account_info(&account).await?;
            let batches = ledger.batches(&account).await?;
            let mut by_state = BTreeMap::new();
            for b in &batches {
                *by_state.entry(b.state.name()).or_insert(0u64) += 1;
            }
            views.push(AccountView {
                next: ledger.next_sequence(&account).await.ok().map(|s| s.get()),
                account,
                info,
                batches_by_state: by_state,
                batches: only.is_some().then_some(batches),
            });
        }
        let in_flight = ledger
            .in_flight()
            .await?
            .into_iter()
            .filter(|(a, _)| only.as_ref().is_none_or(|o| o == a))
            .map(|(_, b)| b)
            .collect();
        anyhow::Ok(ShowView {
            ledger: name,
            accounts: views,
            in_flight,
        })
    })?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &view)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_text(&mut out, &view)
    };
    finish_output(written.and_then(|()| out.flush()), "stdout")
}

fn finish_output(result: io::Result<()>, what: &str) -> Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The reader of our output went away (`| head`): not an error of ours.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot write to {what}"))),
    }
}

fn opt(n: Option<kvp_format::SequenceNumber>) -> String {
    n.map_or_else(|| "-".to_string(), |s| s.to_string())
}

fn when(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn batch_line(out: &mut impl Write, b: &BatchRecord) -> io::Result<()> {
    let since = b
        .transitions
        .last()
        .map_or_else(String::new, |s| when(s.at_unix_ms));
    write!(
        out,
        "  {:<18} {:>10}  {:<24} {:>7} lines {:>11} bytes  since {since}",
        b.account.as_str(),
        b.sequence,
        b.state.to_string(),
        b.line_count,
        b.request_len
    )?;
    if let Some(v) = &b.verdict
        && let Some(e) = &v.error
    {
        write!(out, "  gateway: {}: {e}", v.status)?;
    }
    if let Some(r) = &b.external_reference {
        write!(out, "  reference: {r}")?;
    }
    if let Some(id) = &b.gateway_batch_id {
        write!(out, "  batch_id: {id}")?;
    }
    if let Some(note) = &b.note {
        write!(out, "  note: {note}")?;
    }
    if let Some(at) = b.results_pruned_at {
        write!(out, "  results pruned {}", when(at))?;
    }
    writeln!(out)
}

fn write_text(out: &mut impl Write, view: &ShowView) -> io::Result<()> {
    writeln!(out, "ledger {}", view.ledger)?;
    if view.accounts.is_empty() {
        writeln!(out, "no accounts")?;
    } else {
        writeln!(
            out,
            "{:<20} {:>10} {:>10} {:>10} {:>10}  batches by state",
            "account", "high-water", "floor", "triggered", "next"
        )?;
    }
    for a in &view.accounts {
        let states: Vec<String> = a
            .batches_by_state
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        writeln!(
            out,
            "{:<20} {:>10} {:>10} {:>10} {:>10}  {}",
            a.account.as_str(),
            opt(a.info.high_water),
            opt(a.info.floor),
            opt(a.info.triggered),
            a.next
                .map_or_else(|| "exhausted".to_string(), |n| n.to_string()),
            if states.is_empty() {
                "-".to_string()
            } else {
                states.join(", ")
            }
        )?;
        if let Some(batches) = &a.batches {
            for b in batches {
                batch_line(out, b)?;
            }
        }
    }
    if view.in_flight.is_empty() {
        writeln!(out, "in flight: none")?;
    } else {
        writeln!(out, "in flight: {}", view.in_flight.len())?;
        for b in &view.in_flight {
            batch_line(out, b)?;
        }
    }
    Ok(())
}

fn export(args: &ExportArgs) -> Result<ExitCode> {
    super::common::default_runtime()?.block_on(async {
        // The ledger first: a ledger in use must not cost the old export file.
        let (ledger, _) = reader(
            args.config.as_deref(),
            args.ledger.as_deref(),
            args.url_env.as_ref().map(kvp_format::EnvName::as_str),
        )
        .await?;
        // A file is written beside its name (0600) and renamed into place once whole: a failed
        // export leaves the old file as it was, not a part of the new one.
        let (out, what, file): (Box<dyn Write + Send>, String, _) = match &args.output {
            Some(path) if path.as_os_str() != "-" => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let temp = tempfile::Builder::new()
                    .prefix(".paybatch-export-")
                    .tempfile_in(dir)
                    .with_context(|| format!("cannot create a file in {}", dir.display()))?;
                let f = temp
                    .reopen()
                    .with_context(|| format!("cannot open {}", temp.path().display()))?;
                (Box::new(f), path.display().to_string(), Some((temp, path)))
            }
            _ => (Box::new(io::stdout()), "stdout".to_string(), None),
        };
        let out = BufWriter::with_capacity(1 << 16, out);
        match ledger.export(Box::new(out)).await {
            Ok(lines) => {
                if let Some((temp, path)) = file {
                    temp.as_file()
                        .sync_all()
                        .with_context(|| format!("cannot write {}", temp.path().display()))?;
                    temp.persist(path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                tracing::info!(lines, to = %what, "ledger exported");
                Ok(ExitCode::SUCCESS)
            }
            Err(sequence_ledger::Error::Export { source }) => finish_output(Err(source), &what),
            Err(e) => Err(e.into()),
        }
    })
}
