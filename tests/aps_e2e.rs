//! End to end with both gateways: one input mixing Sola accounts (local drops, or one local
//! and one SFTP drop; the file-drop simulator) and APS accounts (the APS batch simulator on 127.0.0.1), one merged output in
//! input order; a failed APS validation; a tampered APS answer refused; SIGKILL of the real
//! binary at every named point, then a re-run: every transaction processed exactly once; a
//! purchase and its capture of one order in one input (different batches, in order).
//!
//! Every test runs against the APS simulator in both of its modes: as the vendor's published
//! reference shows (70000 after validation, `Line_Number` counting the header row; the
//! paybatch defaults) and as PROTOCOL.md §3a assumed (76000, data rows from 1; the accounts
//! get `line_number_offset = 1`). Further: unsettled APS lines (`unknown`, counted apart),
//! results as a CSV body, the upload's `batch_id` kept in the ledger and required by the
//! simulator, and a recreated ledger refused by `merchant_reference` (issue 10.8).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway_sim::aps::{
    ApsKnobs, ApsSim, ApsSimHandle, ApsSimOptions, ReferenceMode, ResultsForm, TamperMode,
    ValidationMode,
};
use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, OutputSpec, Settings, Shutdown,
    SubmitOptions, WaitMode,
};
use paybatch_demo::aps::{self, ApsDemoAccount};
use paybatch_demo::{DemoSpec, World, spawn_gateway};
use storage_backends::test_env;

mod common;
use common::{
    assert_processed_once, crash_at_then_resume, journal_invoices, read_records, run,
    submit_wait_cmd,
};

/// Runs `$test(mode)` as one test per APS simulator mode.
macro_rules! both_modes {
    ($test:ident) => {
        mod $test {
            use gateway_sim::aps::ReferenceMode;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn assumed_3a() {
                super::$test(ReferenceMode::Assumed3a).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn published() {
                super::$test(ReferenceMode::Published).await;
            }
        }
    };
}

const APS_ACCOUNTS: usize = 2;
const APS_LINES_PER_ACCOUNT: usize = 20;

struct Mixed {
    world: World,
    sim: ApsSimHandle,
    accounts: Vec<ApsDemoAccount>,
    input: PathBuf,
    journal: PathBuf,
}

const SOLA_SPEC: DemoSpec = DemoSpec {
    accounts: 2,
    transactions: 80,
    max_batch_lines: 15,
    failing_accounts: 0,
    seed: 11,
};

/// A Sola world of 2 accounts (local drops), 2 APS accounts (SHA-256 and SHA-512) served by
/// an APS simulator in `mode`, and an input interleaving their lines; APS batches of at most
/// 6 lines.
async fn mixed(dir: &Path, mode: ReferenceMode, knobs: ApsKnobs) -> Mixed {
    mixed_over(
        World::create(dir, SOLA_SPEC, Format::Kvp).unwrap(),
        mode,
        knobs,
    )
    .await
}

/// [`mixed`] over the Sola world `world`.
async fn mixed_over(world: World, mode: ReferenceMode, knobs: ApsKnobs) -> Mixed {
    let accounts = aps::demo_accounts(APS_ACCOUNTS);
    let journal = world.root.join("aps-journal.jsonl");
    let sim = ApsSim::start(ApsSimOptions {
        merchants: accounts.iter().map(|a| a.merchant.clone()).collect(),
        journal: Some(journal.clone()),
        validation_polls: 1,
        processing_polls: 2,
        knobs,
        reference: mode,
        ..ApsSimOptions::default()
    })
    .await
    .unwrap();
    let mut config = std::fs::read_to_string(&world.config).unwrap();
    let mut aps_tables = aps::demo_config_toml(&accounts, &sim.endpoint(), 6);
    if mode == ReferenceMode::Assumed3a {
        // The default (2) is the published numbering; 3a numbers data rows from 1.
        aps_tables = aps_tables.replace(
            "protocol = \"aps\"\n",
            "protocol = \"aps\"\nline_number_offset = 1\n",
        );
    }
    config.push_str(&aps_tables);
    std::fs::write(&world.config, config).unwrap();
    let input = world.root.join("mixed.kvp");
    aps::write_mixed_input(&world.input, &input, &accounts, APS_LINES_PER_ACCOUNT, 3).unwrap();
    Mixed {
        world,
        sim,
        accounts,
        input,
        journal,
    }
}

async fn submit_in_process(m: &Mixed, out: &Path) -> orchestrator::RunReport {
    submit_in_process_with(m, out, WaitMode::UntilCollected).await
}

async fn submit_in_process_with(m: &Mixed, out: &Path, wait: WaitMode) -> orchestrator::RunReport {
    submit_in_process_full(m, out, wait, Shutdown::never())
        .await
        .unwrap()
}

async fn submit_in_process_until(
    m: &Mixed,
    out: &Path,
    shutdown: Shutdown,
) -> orchestrator::Result<orchestrator::RunReport> {
    submit_in_process_full(m, out, WaitMode::UntilCollected, shutdown).await
}

async fn submit_in_process_full(
    m: &Mixed,
    out: &Path,
    wait: WaitMode,
    shutdown: Shutdown,
) -> orchestrator::Result<orchestrator::RunReport> {
    let settings = Arc::new(
        Settings::load_with_env(Some(&m.world.config), [], &paybatch_demo::protocols()).unwrap(),
    );
    let mut reader = InputReader::open(&m.input, None).unwrap();
    let job = Arc::new(
        Job::load(
            &mut reader,
            &settings,
            InvalidPolicy::RejectInput,
            &mut |p, _| panic!("{p}"),
        )
        .unwrap(),
    );
    let options = SubmitOptions {
        output: Some(OutputSpec {
            path: out.to_owned(),
            format: Format::Kvp,
        }),
        wait,
        ..SubmitOptions::default()
    };
    let orch = Orchestrator::builder(settings).build().unwrap();
    orch.submit(job, &options, shutdown).await
}

fn merchant_of<'a>(m: &'a Mixed, account: &str) -> Option<&'a str> {
    m.accounts
        .iter()
        .find(|a| a.account == account)
        .map(|a| a.merchant.merchant_identifier.as_str())
}

/// Output complete and in input order; Sola and APS transactions each processed exactly once
/// (by `xInvoice` in the Sola journal, by merchant and `merchant_reference` in the APS one).
fn check_exactly_once(m: &Mixed, out: &Path, aps_outcome: &dyn Fn(&HashMap<String, String>)) {
    let inputs = read_records(&m.input, Some(Format::Kvp));
    let outputs = read_records(out, Some(Format::Kvp));
    assert_eq!(outputs.len(), inputs.len(), "output complete");
    let sola_journal = journal_invoices(&m.world);
    let mut aps_journal: HashMap<(String, String), usize> = HashMap::new();
    let replayed = std::fs::read_to_string(&m.journal).unwrap_or_default();
    for line in replayed.lines() {
        let e: gateway_sim::aps::ApsJournalEntry = serde_json::from_str(line).unwrap();
        *aps_journal
            .entry((e.merchant_identifier, e.merchant_reference))
            .or_insert(0) += 1;
    }
    for (i, o) in inputs.iter().zip(&outputs) {
        assert_eq!(i["ref"], o["ref"], "input order");
        if let Some(mid) = merchant_of(m, &i["account"]) {
            aps_outcome(o);
            if o["outcome"] != "not_processed" {
                let key = (mid.to_owned(), i["merchant_reference"].clone());
                assert_eq!(
                    aps_journal.get(&key),
                    Some(&1),
                    "{} processed exactly once",
                    i["ref"]
                );
            }
        } else {
            assert_processed_once(i, o, &sola_journal);
        }
    }
    let aps_rows = outputs
        .iter()
        .filter(|o| merchant_of(m, &o["account"]).is_some() && o["outcome"] != "not_processed")
        .count();
    assert_eq!(
        aps_journal.values().sum::<usize>(),
        aps_rows,
        "nothing else processed at APS"
    );
}

fn processed_aps(o: &HashMap<String, String>) {
    assert!(
        matches!(o["outcome"].as_str(), "approved" | "declined"),
        "{o:?}"
    );
    assert_eq!(o["xRefNum"], o["fort_id"]);
    let declined = o["amount"].ends_with("51") && o["command"] != "VOID_AUTHORIZATION";
    assert_eq!(o["outcome"] == "declined", declined, "{o:?}");
    assert_eq!(o["response_code"].len(), 5);
}

async fn mixed_sola_and_aps_accounts_one_output_in_order(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let m = mixed(dir.path(), mode, ApsKnobs::default()).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    check_exactly_once(&m, &out, &processed_aps);
    let rows = read_records(&out, Some(Format::Kvp));
    let aps_batches: std::collections::HashSet<(String, String)> = rows
        .iter()
        .filter(|o| merchant_of(&m, &o["account"]).is_some())
        .map(|o| (o["account"].clone(), o["xSequenceNumber"].clone()))
        .collect();
    assert!(
        aps_batches.len() >= APS_ACCOUNTS * APS_LINES_PER_ACCOUNT / 6,
        "several APS batches: {aps_batches:?}"
    );

    // A re-run sends nothing new and writes the same output.
    let before = m.sim.journal().len();
    let out2 = m.world.root.join("out2.kvp");
    submit_in_process(&m, &out2).await;
    assert_eq!(m.sim.journal().len(), before);
    assert_eq!(
        read_records(&out, Some(Format::Kvp)),
        read_records(&out2, Some(Format::Kvp))
    );
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(mixed_sola_and_aps_accounts_one_output_in_order);

/// Ctrl-C while APS is slow to validate: `submit` stops at once with `Shutdown` (not after the
/// account's `validation_timeout`, 30 minutes by default), and the next run finishes every
/// batch: every transaction processed exactly once. The timeout around the first run is a
/// hang guard, not a speed assertion: without the fix the run would wait 30 minutes.
async fn shutdown_while_aps_validation_stalls_returns_and_resumes(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let stall = ApsKnobs {
        validation: ValidationMode::Stall,
        ..ApsKnobs::default()
    };
    let m = mixed(dir.path(), mode, stall).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    let (trigger, shutdown) = Shutdown::new();
    let run = submit_in_process_until(&m, &out, shutdown);
    let fire = async {
        // Both APS accounts have uploaded a batch and are waiting for its validation.
        while m.sim.batch_count() < APS_ACCOUNTS {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        trigger.trigger();
    };
    let (result, ()) = tokio::time::timeout(std::time::Duration::from_secs(300), async {
        tokio::join!(run, fire)
    })
    .await
    .expect("submit kept waiting for APS validation after the shutdown");
    assert!(
        matches!(result, Err(orchestrator::Error::Shutdown)),
        "{result:?}"
    );
    assert!(m.sim.journal().is_empty(), "nothing processed yet");

    m.sim.set_knobs(ApsKnobs::default());
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    check_exactly_once(&m, &out, &processed_aps);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(shutdown_while_aps_validation_stalls_returns_and_resumes);

/// The "Sola accounts (local and SFTP)": one Sola drop on the test SFTP server.
async fn mixed_with_local_and_sftp_sola_accounts(mode: ReferenceMode) {
    let Some(sftp) = test_env::sftp().unwrap() else {
        assert!(
            !test_env::servers_required(),
            "SFTP server required but not configured"
        );
        eprintln!(
            "skipping: no SFTP test server; start one with: {}",
            test_env::HOW_TO_START
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let local = test_env::local().unwrap();
    let world = World::with_targets(
        &dir.path().join("world"),
        SOLA_SPEC,
        Format::Kvp,
        vec![local.parts(), sftp.parts()],
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&world.config)
            .unwrap()
            .contains("sftp://")
    );
    let m = mixed_over(world, mode, ApsKnobs::default()).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    check_exactly_once(&m, &out, &processed_aps);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(mixed_with_local_and_sftp_sola_accounts);

async fn failed_aps_validation_leaves_its_lines_not_processed(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let knobs = ApsKnobs {
        validation: ValidationMode::FailAll,
        ..ApsKnobs::default()
    };
    let m = mixed(dir.path(), mode, knobs).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    submit_in_process(&m, &out).await;
    check_exactly_once(&m, &out, &|o| {
        assert_eq!(o["outcome"], "not_processed", "{o:?}");
        // APS names the first data row by its own numbering (published: 2, 3a: 1).
        let first = format!("line {}: 77006", mode.line_number_offset());
        assert!(
            o["xError"].contains("validation failed") && o["xError"].contains(&first),
            "{o:?}"
        );
        // The line APS flagged (the first data row = xIndex 0) also carries its own reason.
        if o["xIndex"] == "0" {
            assert_eq!(
                o.get("xLineStatus").map(String::as_str),
                Some("77006"),
                "{o:?}"
            );
            assert!(
                o["xLineError"].contains("simulated validation failure"),
                "{o:?}"
            );
        } else {
            assert!(!o.contains_key("xLineError"), "{o:?}");
        }
    });
    assert!(m.sim.journal().is_empty(), "nothing processed at APS");
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(failed_aps_validation_leaves_its_lines_not_processed);

async fn tampered_aps_answer_is_refused_then_collected_on_rerun(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let knobs = ApsKnobs {
        tamper: TamperMode::ProcessedResults,
        ..ApsKnobs::default()
    };
    let m = mixed(dir.path(), mode, knobs).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    let report = submit_in_process(&m, &out).await;
    for a in &m.accounts {
        let account = &a.account;
        let failure = report.accounts[account]
            .summary
            .failure
            .clone()
            .unwrap_or_default();
        assert!(
            failure.contains("signature does not verify"),
            "{account}: {failure:?}"
        );
    }
    for o in read_records(&out, Some(Format::Kvp))
        .iter()
        .filter(|o| merchant_of(&m, &o["account"]).is_some())
    {
        assert!(
            matches!(o["outcome"].as_str(), "unknown" | "not_processed"),
            "never trusted: {o:?}"
        );
    }
    // Genuine answers again: the same batches are collected, nothing is processed twice.
    m.sim.set_knobs(ApsKnobs::default());
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    check_exactly_once(&m, &out, &processed_aps);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(tampered_aps_answer_is_refused_then_collected_on_rerun);

async fn changed_reference_prefix_stops_an_unfinished_aps_batch_until_restored(
    mode: ReferenceMode,
) {
    let dir = tempfile::tempdir().unwrap();
    let m = mixed(dir.path(), mode, ApsKnobs::default()).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    // Without --wait: each account's last batch is left Triggered under its reference.
    let report = submit_in_process_with(&m, &out, WaitMode::UntilTriggered).await;
    for a in &m.accounts {
        assert_eq!(report.accounts[&a.account].pending.len(), 1, "{report:?}");
    }
    let pending = report.accounts[&m.accounts[0].account].pending[0];
    let original = std::fs::read_to_string(&m.world.config).unwrap();
    let changed = original.replace(
        "protocol = \"aps\"\n",
        "protocol = \"aps\"\nreference_prefix = \"PX\"\n",
    );
    assert_ne!(changed, original);
    std::fs::write(&m.world.config, &changed).unwrap();
    let processed = m.sim.journal().len();
    let report = submit_in_process(&m, &out).await;
    for a in &m.accounts {
        let failure = report.accounts[&a.account]
            .summary
            .failure
            .clone()
            .unwrap_or_default();
        assert!(
            failure.contains("was reserved as gateway reference PB")
                && failure.contains("the configuration now gives PX")
                && failure.contains("reference_prefix changed?"),
            "{}: {failure:?}",
            a.account
        );
    }
    assert_eq!(m.sim.journal().len(), processed, "nothing processed");
    // Nor can an operator abandon such a batch: the service would be asked about another.
    let o = common::paybatch(&[
        "resolve",
        "--config",
        m.world.config.to_str().unwrap(),
        "--account",
        &m.accounts[0].account,
        "--seq",
        &pending.to_string(),
        "--abandon",
        "--reason",
        "x",
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", common::text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("restore them first"),
        "{}",
        common::text(&o)
    );
    // The setting restored: the same batches finish, every line processed exactly once.
    std::fs::write(&m.world.config, &original).unwrap();
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    check_exactly_once(&m, &out, &processed_aps);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(changed_reference_prefix_stops_an_unfinished_aps_batch_until_restored);

async fn purchase_and_capture_of_one_order_go_in_consecutive_batches(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let m = mixed(dir.path(), mode, ApsKnobs::default()).await;
    let account = m.accounts[0].account.clone();
    // First in the input, so without the planner's rule both would share the first batch.
    let same = |r: &str, rest: &str| {
        format!("account={account}&ref={account}-{r}&merchant_reference=same-order-1&{rest}\n")
    };
    let mut text = same(
        "purchase",
        "command=PURCHASE&amount=10.00&currency=USD&token_name=tok1&customer_email=a%40b.c",
    );
    text.push_str(&same(
        "capture",
        "command=CAPTURE&amount=10.00&currency=USD",
    ));
    text.push_str(&std::fs::read_to_string(&m.input).unwrap());
    std::fs::write(&m.input, text).unwrap();
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    let rows = read_records(&out, Some(Format::Kvp));
    assert_eq!(
        rows.len(),
        read_records(&m.input, Some(Format::Kvp)).len(),
        "output complete"
    );
    let (purchase, capture) = (&rows[0], &rows[1]);
    for o in [purchase, capture] {
        assert_eq!(o["outcome"], "approved", "{o:?}");
        assert_eq!(o["xIndex"], "0", "each first in its batch: {o:?}");
    }
    let seq = |o: &HashMap<String, String>| o["xSequenceNumber"].parse::<u32>().unwrap();
    assert_eq!(
        seq(capture),
        seq(purchase) + 1,
        "consecutive batches, input order"
    );
    let journal: Vec<String> = m
        .sim
        .journal()
        .into_iter()
        .filter(|e| e.merchant_reference == "same-order-1")
        .map(|e| e.command)
        .collect();
    assert_eq!(journal, ["PURCHASE", "CAPTURE"]);
    for o in rows.iter().filter(|o| o["account"] == account) {
        assert!(
            matches!(o["outcome"].as_str(), "approved" | "declined"),
            "{o:?}"
        );
    }
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(purchase_and_capture_of_one_order_go_in_consecutive_batches);

async fn sigkill_at_every_named_point_with_aps_accounts_then_resume(mode: ReferenceMode) {
    let points: Vec<String> = orchestrator::CRASH_POINTS
        .iter()
        .flat_map(|p| [format!("{p}#1"), format!("{p}#5")])
        .collect();
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        // The simulator refuses results and PROCESS_BATCH without the upload's batch_id: a
        // resumed batch must have kept it in the ledger (or got it back with a 51146).
        let knobs = ApsKnobs {
            require_batch_id: true,
            ..ApsKnobs::default()
        };
        let m = mixed(dir.path(), mode, knobs).await;
        let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
        let out = m.world.root.join("out.kvp");
        crash_at_then_resume(&m.world.config, &m.input, &out, &point).await;
        check_exactly_once(&m, &out, &processed_aps);
        let _ = stop.send(());
        gateway.await.unwrap().unwrap();
        m.sim.shutdown().await;
    }
}
both_modes!(sigkill_at_every_named_point_with_aps_accounts_then_resume);

/// Lines the gateway leaves unsettled (15 uncertain, 19 pending, 20 on hold, 40 in review) are
/// `unknown` with its status and message — never `error`, never `not_processed` — and the
/// summary counts them apart; everything else is processed exactly once as usual.
async fn unsettled_aps_lines_are_unknown_and_counted_apart(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let m = mixed(dir.path(), mode, ApsKnobs::default()).await;
    // The cents of the first APS amount that is not a decline: those lines stay unsettled.
    let inputs = read_records(&m.input, Some(Format::Kvp));
    let cents: u64 = inputs
        .iter()
        .filter(|i| merchant_of(&m, &i["account"]).is_some())
        .filter_map(|i| i.get("amount"))
        .find(|a| !a.ends_with("51"))
        .and_then(|a| a.rsplit('.').next())
        .unwrap()
        .parse()
        .unwrap();
    m.sim.set_knobs(ApsKnobs {
        unsettled_cents: Some(cents),
        ..ApsKnobs::default()
    });
    // Output rows carry the service's amount, in minor units.
    let unsettled = |o: &HashMap<String, String>| {
        o.get("amount")
            .and_then(|a| a.parse::<u64>().ok())
            .is_some_and(|a| a % 100 == cents)
    };
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    let report = submit_in_process(&m, &out).await;
    check_exactly_once(&m, &out, &|o| {
        if unsettled(o) {
            assert_eq!(o["outcome"], "unknown", "{o:?}");
            assert!(
                matches!(o["status"].as_str(), "15" | "19" | "20" | "40"),
                "{o:?}"
            );
            assert!(
                o["xError"].contains(&format!("APS status {}", o["status"]))
                    && o["xError"].contains("do not resubmit"),
                "{o:?}"
            );
            assert!(!o["xSequenceNumber"].is_empty(), "{o:?}");
        } else {
            processed_aps(o);
        }
    });
    let outputs = read_records(&out, Some(Format::Kvp));
    let mut expected = 0;
    for a in &m.accounts {
        let n = outputs
            .iter()
            .filter(|o| o["account"] == a.account && unsettled(o))
            .count() as u64;
        expected += n;
        let summary = &report.accounts[&a.account].summary;
        assert_eq!(
            summary.count(orchestrator::LineOutcome::Unknown),
            n,
            "{summary:?}"
        );
        assert_eq!(
            summary.count(orchestrator::LineOutcome::Error),
            0,
            "{summary:?}"
        );
    }
    assert!(expected > 0, "some lines were left unsettled");
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(unsettled_aps_lines_are_unknown_and_counted_apart);

/// Per-line results as a plain CSV body (the published example) are read like the JSON ones;
/// the upload's batch_id is kept in the ledger and sent (the simulator requires it).
async fn csv_results_and_batch_id_through_the_ledger(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let knobs = ApsKnobs {
        results_form: ResultsForm::CsvBody,
        require_batch_id: true,
        ..ApsKnobs::default()
    };
    let m = mixed(dir.path(), mode, knobs).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    check_exactly_once(&m, &out, &processed_aps);
    let ledger = sequence_ledger::Ledger::open_read_only(&m.world.ledger).unwrap();
    for a in &m.accounts {
        let account = sequence_ledger::AccountId::new(&a.account).unwrap();
        let batches = ledger.batches(&account).unwrap();
        assert!(!batches.is_empty());
        for b in batches {
            let id = b.gateway_batch_id.clone().unwrap_or_default();
            assert!(
                !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit()),
                "{b:?}"
            );
        }
    }
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}
both_modes!(csv_results_and_batch_id_through_the_ledger);

/// Issue 10.8, through the real binary: after the ledger is recreated, the same account hands
/// out the same numbers, so the same batch_references, for other orders. The service answers
/// 51146 with the line count of the old batch; its per-line rows name the old orders. The
/// account fails with a message saying to set a new reference_prefix, nothing is processed,
/// and the run exits non-zero. A new prefix then processes the new orders once.
async fn a_recreated_ledger_never_takes_another_batch_for_its_own(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let m = mixed(dir.path(), mode, ApsKnobs::default()).await;
    // APS lines only: the Sola drops keep their own numbering rules (issue 10.4).
    let aps_only = m.world.root.join("aps-only.kvp");
    let text = std::fs::read_to_string(&m.input).unwrap();
    let lines: String = text
        .lines()
        .filter(|l| l.starts_with("account=aps-"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&aps_only, &lines).unwrap();
    let out = m.world.root.join("out.kvp");
    let first = run(submit_wait_cmd(&m.world.config, &aps_only, &out)).await;
    assert_eq!(first.status.code(), Some(0), "{}", common::text(&first));
    let processed = m.sim.journal().len();
    assert_eq!(processed, APS_ACCOUNTS * APS_LINES_PER_ACCOUNT);

    // The ledger is lost; the next input has other orders (same counts per batch).
    std::fs::remove_dir_all(&m.world.ledger).unwrap();
    let other = m.world.root.join("other.kvp");
    std::fs::write(
        &other,
        lines
            .replace("merchant_reference=aps-", "merchant_reference=new-aps-")
            .replace("&ref=aps-", "&ref=new-aps-"),
    )
    .unwrap();
    let out2 = m.world.root.join("out2.kvp");
    let second = run(submit_wait_cmd(&m.world.config, &other, &out2)).await;
    assert_eq!(second.status.code(), Some(1), "{}", common::text(&second));
    assert_eq!(m.sim.journal().len(), processed, "nothing processed");
    let rows = read_records(&out2, Some(Format::Kvp));
    assert_eq!(rows.len(), APS_ACCOUNTS * APS_LINES_PER_ACCOUNT);
    for o in &rows {
        assert!(
            !matches!(o["outcome"].as_str(), "approved" | "declined"),
            "{o:?}"
        );
    }
    // Each account says why, on its first batch's lines: the service holds the reference for
    // other orders; set a new reference_prefix.
    for a in &m.accounts {
        let why = rows
            .iter()
            .find(|o| o["account"] == a.account)
            .map(|o| o["xError"].clone())
            .unwrap_or_default();
        assert!(
            why.contains("other transactions") && why.contains("set a new reference_prefix"),
            "{}: {why}",
            a.account
        );
    }

    // The way out: a new reference_prefix (and a fresh ledger for the refused batches).
    std::fs::remove_dir_all(&m.world.ledger).unwrap();
    let config = std::fs::read_to_string(&m.world.config).unwrap().replace(
        "protocol = \"aps\"\n",
        "protocol = \"aps\"\nreference_prefix = \"PN\"\n",
    );
    std::fs::write(&m.world.config, config).unwrap();
    let third = run(submit_wait_cmd(&m.world.config, &other, &out2)).await;
    assert_eq!(third.status.code(), Some(0), "{}", common::text(&third));
    assert_eq!(m.sim.journal().len(), 2 * processed);
    m.sim.shutdown().await;
}
both_modes!(a_recreated_ledger_never_takes_another_batch_for_its_own);
