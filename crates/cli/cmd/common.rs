//! Helpers shared by `submit`, `collect`, `status`, `resolve`, `config` and `demo`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use orchestrator::{
    Format, InputProblem, InputReader, InputRecord, InvalidPolicy, Job, LimitSettings,
    OrchestratorBuilder, OutputWriter, Progress, ProgressSnapshot, RunReport, SLOW_AFTER, Settings,
    Shutdown, SlowBatch,
};
use sequence_ledger::SequenceLedger;

use super::{Exit, Global, usage_error};

/// The gateway protocols this binary speaks: the Sola file drop (the default) and the APS
/// batch API.
pub fn protocols() -> Vec<Arc<dyn gateway_protocol::AccountFactory>> {
    vec![sola_file_drop::factory(), aps_batch::factory()]
}

/// Loads settings; any problem is a configuration error (exit code 2).
pub fn load_settings(config: Option<&Path>) -> Result<Settings> {
    Settings::load(config, &protocols()).map_err(|e| usage_error(e.to_string()))
}

/// The shared ledger the settings name (`[ledger] url`, `url_env` or `PAYBATCH__LEDGER__URL`):
/// connected, its schema brought up to date. `None` for the embedded sled ledger at `[ledger]
/// path`, which the engine opens itself.
///
/// # Errors
/// A URL that cannot be parsed (a usage error); an unreachable database or a refused login.
pub async fn shared_ledger(settings: &Settings) -> Result<Option<Arc<dyn SequenceLedger>>> {
    let Some(options) = shared_ledger_options(settings)? else {
        return Ok(None);
    };
    let describe = options.describe();
    let ledger = ledger_postgres::PgLedger::connect(options)
        .await
        .with_context(|| format!("cannot open the shared ledger {describe}"))?;
    Ok(Some(Arc::new(ledger)))
}

/// The connection options of the shared ledger the settings name, if any.
fn shared_ledger_options(settings: &Settings) -> Result<Option<ledger_postgres::PgOptions>> {
    let Some(url) = settings.ledger_url() else {
        return Ok(None);
    };
    let mut options =
        ledger_postgres::PgOptions::new(url).map_err(|e| usage_error(e.to_string()))?;
    if let Some(ca) = &settings.ledger.ca_file {
        options = options.ca_file(ca);
    }
    Ok(Some(options))
}

/// [`shared_ledger`] for commands that only read: the schema is left as it is, and one that is
/// not up to date is refused (`paybatch ledger migrate` brings it up to date).
///
/// # Errors
/// As [`shared_ledger`]; a schema older or newer than this code.
pub async fn shared_ledger_for_reading(
    settings: &Settings,
) -> Result<Option<Arc<dyn SequenceLedger>>> {
    match shared_ledger_options(settings)? {
        Some(options) => Ok(Some(connect_for_reading(options).await?)),
        None => Ok(None),
    }
}

/// Connects to a PostgreSQL ledger without changing its schema, which must be up to date.
///
/// # Errors
/// An unreachable database or a refused login; a schema older or newer than this code.
pub async fn connect_for_reading(
    options: ledger_postgres::PgOptions,
) -> Result<Arc<dyn SequenceLedger>> {
    let describe = options.describe();
    let ledger = ledger_postgres::PgLedger::connect_without_migrating(options)
        .await
        .with_context(|| format!("cannot open the shared ledger {describe}"))?;
    let pending = ledger
        .pending_migrations()
        .await
        .with_context(|| format!("cannot read the schema of the shared ledger {describe}"))?;
    if !pending.is_empty() {
        return Err(usage_error(format!(
            "the shared ledger {describe} is not at this version's schema ({} step(s) to apply); run `paybatch ledger migrate` first",
            pending.len()
        )));
    }
    Ok(Arc::new(ledger))
}

/// An engine builder over the ledger the settings name: the shared ledger when a URL is set
/// ([`shared_ledger`]), else the sled ledger at `[ledger] path` (opened by `build`).
///
/// # Errors
/// As [`shared_ledger`].
pub async fn engine_builder(settings: &Arc<Settings>) -> Result<OrchestratorBuilder> {
    let builder = orchestrator::Orchestrator::builder(settings.clone());
    Ok(match shared_ledger(settings).await? {
        Some(ledger) => builder.ledger(ledger),
        None => builder,
    })
}

/// A multi-threaded runtime for one command, with at most `limits.blocking_threads` threads
/// for blocking work (ledger writes, local files).
pub fn runtime(limits: &LimitSettings) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(limits.blocking_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// [`runtime`] with the limits of the embedded defaults and their `PAYBATCH__LIMITS__*`
/// overrides, for commands that read no config file.
pub fn default_runtime() -> Result<tokio::runtime::Runtime> {
    runtime(&load_settings(None)?.limits)
}

/// A shutdown signal fired by Ctrl-C (or SIGTERM); must be called inside the runtime.
pub fn shutdown_on_signal() -> Shutdown {
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        termination_signal().await;
        eprintln!("paybatch: stopping at the next safe point (re-run the same command to resume)");
        trigger.trigger();
    });
    shutdown
}

/// Resolves on Ctrl-C or SIGTERM (Ctrl-C alone where SIGTERM cannot be watched).
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reads and validates the whole input, printing each problem as `FILE:LINE: message`.
/// With `skip_invalid`, invalid records are written (masked) to `rejects` and the rest kept.
pub fn load_job(
    settings: &Settings,
    input: &Path,
    format: Option<Format>,
    skip_invalid: bool,
    rejects: Option<&Path>,
) -> Result<Arc<Job>> {
    let mut reader = InputReader::open(input, format).map_err(|e| usage_error(e.to_string()))?;
    let mut rejects_out = match (skip_invalid, rejects) {
        (true, Some(path)) => Some(OutputWriter::create(
            path,
            Format::from_path(path).unwrap_or(Format::Jsonl),
            &["line", "reason"],
        )?),
        _ => None,
    };
    let mut write_error: Option<orchestrator::Error> = None;
    let mut on_problem = |p: &InputProblem, rec: &InputRecord| {
        eprintln!("{p}");
        if let Some(out) = rejects_out.as_mut() {
            let mut pairs = vec![
                ("line".to_owned(), p.line.to_string()),
                ("reason".to_owned(), p.message.clone()),
            ];
            pairs.extend(rec.fields.iter().map(|(k, v)| masked_cell(k, v)));
            if let Err(e) = out.write(&pairs) {
                write_error.get_or_insert(e);
            }
        }
    };
    let policy = if skip_invalid {
        InvalidPolicy::SkipInvalid
    } else {
        InvalidPolicy::RejectInput
    };
    let job = Job::load(&mut reader, settings, policy, &mut on_problem);
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if let Some(out) = rejects_out {
        let path = out.finish()?;
        eprintln!("paybatch: rejected records written to {}", path.display());
    }
    match job {
        Ok(job) => Ok(Arc::new(job)),
        Err(e @ orchestrator::Error::Invalid { .. }) => Err(Exit {
            code: 1,
            message: e.to_string(),
        }
        .into()),
        Err(e @ orchestrator::Error::Input { .. }) => Err(Exit {
            code: 1,
            message: format!("{e}; nothing was reserved or uploaded"),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// A field of a rejected record as the rejects file shows it: sensitive values masked
/// (`mask_value`: cards first 6 / last 4, CVV, track data and keys fully), and every digit run
/// that could be a card number masked in the name and in any other value — a rejected record
/// is often one whose columns are not what they seem (a CSV exported without its header).
fn masked_cell(key: &str, value: &str) -> (String, String) {
    let value = kvp_format::mask_value(key, value);
    (
        kvp_format::mask_key(key).into_owned(),
        kvp_format::mask_digit_runs(&value).into_owned(),
    )
}

/// Parses `--format kvp|csv|jsonl`.
pub fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Progress on stderr: bars on a terminal (transactions uploaded, completed, accounts done,
/// and under them the accounts whose batch has waited for COMPLETE longer than
/// [`SLOW_AFTER`]); a plain line every few seconds otherwise (when it changed), naming the slow
/// accounts too. Nothing with `-q`.
/// Stop with [`Bars::finish`].
pub struct Bars {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How many slow accounts the progress names; the others are counted (`+N more`).
const SLOW_SHOWN: usize = 3;

/// The lines under the bars: the [`SLOW_SHOWN`] longest waits (`slow` is longest first, as
/// [`Progress::slow_batches`] gives it), then `+N more` when there are others; none when no
/// account is slow.
fn slow_lines(slow: &[SlowBatch]) -> Vec<String> {
    let mut lines: Vec<String> = slow
        .iter()
        .take(SLOW_SHOWN)
        .map(|s| format!("{:>10} {s}", "slow"))
        .collect();
    if slow.len() > SLOW_SHOWN {
        lines.push(format!(
            "{:>10} +{} more slow accounts",
            "",
            slow.len() - SLOW_SHOWN
        ));
    }
    lines
}

/// The plain (non-terminal) progress line for a [`Progress::snapshot`] and the slow accounts.
fn plain_line(counters: ProgressSnapshot, slow: &[SlowBatch]) -> String {
    let ProgressSnapshot {
        transactions: total,
        lines_uploaded: up,
        batches_uploaded: up_b,
        lines_completed: done,
        batches_completed: done_b,
        batches_stuck: stuck,
        accounts_done: acc_done,
        accounts_total: acc_total,
    } = counters;
    let mut line = format!(
        "paybatch: progress: uploaded {up}/{total} transactions ({up_b} batches), completed {done}/{total} ({done_b} batches, {stuck} stuck), accounts {acc_done}/{acc_total}"
    );
    if !slow.is_empty() {
        let named: Vec<String> = slow
            .iter()
            .take(SLOW_SHOWN)
            .map(|s| s.to_string())
            .collect();
        line.push_str("; slow: ");
        line.push_str(&named.join(", "));
        if slow.len() > SLOW_SHOWN {
            line.push_str(&format!(" (+{} more)", slow.len() - SLOW_SHOWN));
        }
    }
    line
}

impl Bars {
    /// Starts reporting `progress` unless quiet.
    pub fn start(progress: Arc<Progress>, global: &Global) -> Self {
        if global.quiet {
            return Self {
                stop: None,
                thread: None,
            };
        }
        let terminal = std::io::stderr().is_terminal();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if terminal {
                draw_bars(&progress, &rx);
            } else {
                print_lines(&progress, &rx);
            }
        });
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops reporting.
    pub fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw_bars(progress: &Progress, rx: &std::sync::mpsc::Receiver<()>) {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = |name: &'static str| {
        multi.add(
            ProgressBar::new(0)
                .with_style(style.clone())
                .with_prefix(name),
        )
    };
    let (uploaded, completed, accounts) = (bar("uploaded"), bar("completed"), bar("accounts"));
    // Added only while some account is slow, so no blank line is drawn otherwise.
    let mut slow_bar: Option<ProgressBar> = None;
    let message_style =
        ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
    loop {
        let ProgressSnapshot {
            transactions: total,
            lines_uploaded: up,
            batches_uploaded: up_b,
            lines_completed: done,
            batches_completed: done_b,
            batches_stuck: stuck,
            accounts_done: acc_done,
            accounts_total: acc_total,
        } = progress.snapshot();
        uploaded.set_length(total);
        uploaded.set_position(up);
        uploaded.set_message(format!("{up_b} batches"));
        completed.set_length(total);
        completed.set_position(done);
        let stuck = if stuck > 0 {
            format!(", {stuck} stuck")
        } else {
            String::new()
        };
        completed.set_message(format!("{done_b} batches{stuck}"));
        accounts.set_length(acc_total);
        accounts.set_position(acc_done);
        let mut lines = slow_lines(&progress.slow_batches(SLOW_AFTER));
        lines.extend(lease_lines(&progress.lease_waits()));
        match (&slow_bar, lines.is_empty()) {
            (Some(b), true) => {
                b.finish_and_clear();
                multi.remove(b);
                slow_bar = None;
            }
            (Some(b), false) => b.set_message(lines.join("\n")),
            (None, false) => {
                let b = multi.add(ProgressBar::new(0).with_style(message_style.clone()));
                b.set_message(lines.join("\n"));
                slow_bar = Some(b);
            }
            (None, true) => {}
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    if let Some(b) = slow_bar {
        b.finish_and_clear();
    }
    for b in [uploaded, completed, accounts] {
        b.finish();
    }
}

/// One line per account waiting for its lease (a shared ledger): who holds it, until when.
fn lease_lines(waits: &[orchestrator::LeaseWait]) -> Vec<String> {
    waits
        .iter()
        .map(|w| format!("{:>10} {w}", "waiting"))
        .collect()
}

fn print_lines(progress: &Progress, rx: &std::sync::mpsc::Receiver<()>) {
    // Which batches are slow, not for how long: a line when that set changes, not every tick.
    let slow_set = |slow: &[SlowBatch]| -> Vec<(String, u32)> {
        slow.iter()
            .map(|s| (s.account.clone(), s.sequence.get()))
            .collect()
    };
    let mut last = (progress.snapshot(), Vec::new());
    let mut last_waits = Vec::new();
    let mut last_line = std::time::Instant::now();
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        rx.recv_timeout(Duration::from_millis(500))
    {
        // A wait for a lease is said at once (it can be short), once per holder (not at
        // each of its renewals); the counters every 5 s.
        let waits = progress.lease_waits();
        for w in &waits {
            let seen = last_waits
                .iter()
                .any(|l: &orchestrator::LeaseWait| l.account == w.account && l.holder == w.holder);
            if !seen {
                eprintln!("paybatch: {w}");
            }
        }
        last_waits = waits;
        if last_line.elapsed() < Duration::from_secs(5) {
            continue;
        }
        last_line = std::time::Instant::now();
        let slow = progress.slow_batches(SLOW_AFTER);
        let now = (progress.snapshot(), slow_set(&slow));
        if now != last {
            eprintln!("{}", plain_line(now.0, &slow));
            last = now;
        }
    }
}

/// Prints the per-account summary to stderr.
pub fn print_summary(report: &RunReport) {
    eprintln!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>13} {:>9} {:>16}  note",
        "account",
        "approved",
        "declined",
        "error",
        "not_proc",
        "unknown",
        "batches",
        "approved amount"
    );
    let row = |name: &str, s: &orchestrator::AccountSummary, note: &str| {
        use orchestrator::LineOutcome;
        eprintln!(
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>13} {:>9} {:>16}  {}",
            name,
            s.count(LineOutcome::Approved),
            s.count(LineOutcome::Declined),
            s.count(LineOutcome::Error),
            s.count(LineOutcome::NotProcessed),
            s.count(LineOutcome::Unknown),
            s.batches.values().sum::<u64>(),
            s.approved_text(),
            note
        );
    };
    for (name, a) in &report.accounts {
        let mut note = String::new();
        if !a.stuck.is_empty() {
            note.push_str(&format!("STUCK batches {:?}; ", a.stuck));
        }
        if !a.pending.is_empty() {
            note.push_str(&format!(
                "awaiting COMPLETE for {:?} (run `paybatch collect`); ",
                a.pending
            ));
        }
        if let Some(f) = &a.summary.failure {
            note.push_str(&format!("FAILED: {f}"));
        }
        row(name, &a.summary, note.trim_end_matches("; "));
    }
    row("TOTAL", &report.totals(), "");
}

/// Writes the report as JSON, owner-only (0600).
pub fn write_summary(report: &RunReport, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    kvp_format::owner_only::write(path, text)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The default ledger path relative to nothing: used in messages.
pub fn ledger_path(settings: &Settings) -> PathBuf {
    settings.ledger.path.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(account: &str, sequence: u32, secs: u64) -> SlowBatch {
        SlowBatch {
            account: account.into(),
            sequence: kvp_format::SequenceNumber::new(sequence).unwrap(),
            waited: Duration::from_secs(secs),
        }
    }

    #[test]
    fn the_bars_show_the_longest_waits_then_a_count() {
        let many = [
            slow("acme", 17, 65),
            slow("beta", 3, 50),
            slow("core", 9, 40),
            slow("dove", 1, 35),
            slow("echo", 2, 31),
        ];
        let cases: &[(&[SlowBatch], &[&str])] = &[
            (&[], &[]),
            (
                &many[..1],
                &["      slow acme: batch 17 waiting for COMPLETE for 1m05s"],
            ),
            (
                &many[..3],
                &[
                    "      slow acme: batch 17 waiting for COMPLETE for 1m05s",
                    "      slow beta: batch 3 waiting for COMPLETE for 50s",
                    "      slow core: batch 9 waiting for COMPLETE for 40s",
                ],
            ),
            (
                &many,
                &[
                    "      slow acme: batch 17 waiting for COMPLETE for 1m05s",
                    "      slow beta: batch 3 waiting for COMPLETE for 50s",
                    "      slow core: batch 9 waiting for COMPLETE for 40s",
                    "           +2 more slow accounts",
                ],
            ),
        ];
        for (slow, expected) in cases {
            assert_eq!(slow_lines(slow), *expected, "{} slow", slow.len());
        }
    }

    #[test]
    fn the_plain_line_names_slow_accounts() {
        let counters = ProgressSnapshot {
            transactions: 100,
            lines_uploaded: 60,
            batches_uploaded: 2,
            lines_completed: 30,
            batches_completed: 1,
            batches_stuck: 0,
            accounts_done: 1,
            accounts_total: 3,
        };
        let base = "paybatch: progress: uploaded 60/100 transactions (2 batches), completed 30/100 (1 batches, 0 stuck), accounts 1/3";
        assert_eq!(plain_line(counters, &[]), base);
        assert_eq!(
            plain_line(counters, &[slow("acme", 17, 65)]),
            format!("{base}; slow: acme: batch 17 waiting for COMPLETE for 1m05s")
        );
        let many: Vec<SlowBatch> = (1..=5)
            .map(|i| slow(&format!("a{i}"), i, 100 - u64::from(i)))
            .collect();
        let line = plain_line(counters, &many);
        assert!(
            line.ends_with("; slow: a1: batch 1 waiting for COMPLETE for 1m39s, a2: batch 2 waiting for COMPLETE for 1m38s, a3: batch 3 waiting for COMPLETE for 1m37s (+2 more)"),
            "{line}"
        );
    }
}
