//! Helpers shared by the root integration tests: running the real `paybatch` binary, reading
//! the records of an input or output file, and counting the gateway-sim journal.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use orchestrator::{Format, InputReader, InputRecord, RecordSource};
use paybatch_demo::World;

/// `p` as an argument string.
pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `paybatch ARGS`, with no inherited crash point or log filter: a test decides both.
pub fn paybatch_cmd<I, A>(args: I) -> Command
where
    I: IntoIterator<Item = A>,
    A: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybatch"));
    cmd.args(args)
        .env_remove("PAYBATCH_CRASH_AT")
        .env_remove("RUST_LOG");
    cmd
}

/// Runs [`paybatch_cmd`] to completion.
pub fn paybatch(args: &[&str]) -> Output {
    paybatch_cmd(args).output().unwrap()
}

/// Runs `cmd` to completion off the async runtime, so an in-process gateway keeps serving.
pub async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// [`paybatch`] off the async runtime.
pub async fn paybatch_async(args: Vec<String>) -> Output {
    run(paybatch_cmd(args)).await
}

/// [`paybatch_async`], asserting exit status 0 (stderr in the message).
pub async fn paybatch_ok(args: Vec<String>) -> Output {
    let o = paybatch_async(args).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `paybatch -q submit --config CONFIG INPUT --wait --output OUT`, output captured.
pub fn submit_wait_cmd(config: &Path, input: &Path, out: &Path) -> Command {
    let mut cmd = paybatch_cmd(
        ["-q".to_owned()]
            .into_iter()
            .chain(submit_wait_args(config, input, out)),
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every record of `path` as field → value (`format` `None`: from the extension).
pub fn read_records(path: &Path, format: Option<Format>) -> Vec<HashMap<String, String>> {
    let mut reader = InputReader::open(path, format).unwrap();
    let mut rec = InputRecord::default();
    let mut out = Vec::new();
    while reader.read_record(&mut rec).unwrap() {
        out.push(rec.fields.iter().cloned().collect());
    }
    out
}

/// How many times the world's gateway-sim processed each `xInvoice`.
pub fn journal_invoices(world: &World) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for e in gateway_sim::Journal::read(world.gateway_state.join("journal.jsonl")).unwrap() {
        *seen.entry(e.invoice.unwrap_or_default()).or_insert(0) += 1;
    }
    seen
}

/// `submit --config CONFIG INPUT`.
pub fn submit_args(config: &Path, input: &Path) -> Vec<String> {
    vec!["submit".into(), "--config".into(), s(config), s(input)]
}

/// `submit --config CONFIG INPUT --wait --output OUT`.
pub fn submit_wait_args(config: &Path, input: &Path, out: &Path) -> Vec<String> {
    let mut args = submit_args(config, input);
    args.extend(["--wait".into(), "--output".into(), s(out)]);
    args
}

/// `paybatch status --config CONFIG --json`, asserting its exit status is `code`.
pub async fn status_json(config: &Path, code: i32) -> serde_json::Value {
    let status = paybatch_async(vec![
        "status".into(),
        "--config".into(),
        s(config),
        "--json".into(),
    ])
    .await;
    assert_eq!(status.status.code(), Some(code));
    serde_json::from_slice(&status.stdout).unwrap()
}

/// The output row `o` of the Sola input row `i` is final, and the gateway `journal` (from
/// [`journal_invoices`]) shows `i` processed exactly once.
pub fn assert_processed_once(
    i: &HashMap<String, String>,
    o: &HashMap<String, String>,
    journal: &HashMap<String, usize>,
) {
    assert!(
        matches!(o["outcome"].as_str(), "approved" | "declined" | "error"),
        "{o:?}"
    );
    assert_eq!(
        journal.get(&i["xInvoice"]),
        Some(&1),
        "{} processed exactly once",
        i["ref"]
    );
}

/// Stops `child` (a long-running `paybatch gateway-sim`) with SIGTERM, as an operator would,
/// and collects what it printed and how it exited.
pub fn sigterm_and_wait(child: std::process::Child) -> Output {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    child.wait_with_output().unwrap()
}

/// Runs [`submit_wait_cmd`] with the crash point `point` armed (it must die by SIGKILL), then
/// again without it: the resumed run must exit 0.
pub async fn crash_at_then_resume(config: &Path, input: &Path, out: &Path, point: &str) {
    let mut cmd = submit_wait_cmd(config, input, out);
    cmd.env("PAYBATCH_CRASH_AT", point);
    let crashed = run(cmd).await;
    assert!(
        crashed.status.code().is_none(),
        "{point}: expected a SIGKILL, got {:?}: {}",
        crashed.status,
        String::from_utf8_lossy(&crashed.stderr)
    );
    let resumed = run(submit_wait_cmd(config, input, out)).await;
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{point}: {}",
        String::from_utf8_lossy(&resumed.stderr)
    );
}
