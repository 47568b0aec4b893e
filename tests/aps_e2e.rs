//! End to end with both gateways: one input mixing Sola accounts (local drops, or one local
//! and one SFTP drop; the file-drop simulator) and APS accounts (the APS batch simulator on 127.0.0.1), one merged output in
//! input order; a failed APS validation; a tampered APS answer refused; SIGKILL of the real
//! binary at every named point, then a re-run: every transaction processed exactly once; a
//! purchase and its capture of one order in one input (different batches, in order).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway_sim::aps::{ApsKnobs, ApsSim, ApsSimHandle, ApsSimOptions, TamperMode, ValidationMode};
use orchestrator::aps::{self, ApsDemoAccount};
use orchestrator::demo::{DemoSpec, World, spawn_gateway};
use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, OutputSpec, Settings, Shutdown,
    SubmitOptions, WaitMode,
};
use storage_backends::test_env;

mod common;
use common::{assert_processed_once, crash_at_then_resume, journal_invoices, read_records};

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
/// an APS simulator, and an input interleaving their lines; APS batches of at most 6 lines.
async fn mixed(dir: &Path, knobs: ApsKnobs) -> Mixed {
    mixed_over(World::create(dir, SOLA_SPEC, Format::Kvp).unwrap(), knobs).await
}

/// [`mixed`] over the Sola world `world`.
async fn mixed_over(world: World, knobs: ApsKnobs) -> Mixed {
    let accounts = aps::demo_accounts(APS_ACCOUNTS);
    let journal = world.root.join("aps-journal.jsonl");
    let sim = ApsSim::start(ApsSimOptions {
        merchants: accounts.iter().map(|a| a.merchant.clone()).collect(),
        journal: Some(journal.clone()),
        validation_polls: 1,
        processing_polls: 2,
        knobs,
        ..ApsSimOptions::default()
    })
    .await
    .unwrap();
    let mut config = std::fs::read_to_string(&world.config).unwrap();
    config.push_str(&aps::demo_config_toml(&accounts, &sim.endpoint(), 6));
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

async fn submit_in_process(m: &Mixed, out: &Path) -> orchestrator::Report {
    submit_in_process_with(m, out, WaitMode::UntilCollected).await
}

async fn submit_in_process_with(m: &Mixed, out: &Path, wait: WaitMode) -> orchestrator::Report {
    submit_in_process_full(m, out, wait, Shutdown::never())
        .await
        .unwrap()
}

async fn submit_in_process_until(
    m: &Mixed,
    out: &Path,
    shutdown: Shutdown,
) -> orchestrator::Result<orchestrator::Report> {
    submit_in_process_full(m, out, WaitMode::UntilCollected, shutdown).await
}

async fn submit_in_process_full(
    m: &Mixed,
    out: &Path,
    wait: WaitMode,
    shutdown: Shutdown,
) -> orchestrator::Result<orchestrator::Report> {
    let settings = Arc::new(Settings::load_with_env(Some(&m.world.config), []).unwrap());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_sola_and_aps_accounts_one_output_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let m = mixed(dir.path(), ApsKnobs::default()).await;
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

/// Ctrl-C while APS is slow to validate: `submit` stops at once with `Shutdown` (not after the
/// account's `validation_timeout`, 30 minutes by default), and the next run finishes every
/// batch: every transaction processed exactly once. The timeout around the first run is a
/// hang guard, not a speed assertion: without the fix the run would wait 30 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_aps_validation_stalls_returns_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let stall = ApsKnobs {
        validation: ValidationMode::Stall,
        ..ApsKnobs::default()
    };
    let m = mixed(dir.path(), stall).await;
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

/// The "Sola accounts (local and SFTP)": one Sola drop on the test SFTP server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_with_local_and_sftp_sola_accounts() {
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
    let m = mixed_over(world, ApsKnobs::default()).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    check_exactly_once(&m, &out, &processed_aps);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_aps_validation_leaves_its_lines_not_processed() {
    let dir = tempfile::tempdir().unwrap();
    let knobs = ApsKnobs {
        validation: ValidationMode::FailAll,
        ..ApsKnobs::default()
    };
    let m = mixed(dir.path(), knobs).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    submit_in_process(&m, &out).await;
    check_exactly_once(&m, &out, &|o| {
        assert_eq!(o["outcome"], "not_processed", "{o:?}");
        assert!(
            o["xError"].contains("validation failed") && o["xError"].contains("line 1"),
            "{o:?}"
        );
        // The line APS flagged (line 1 = xIndex 0) also carries its own reason.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_aps_answer_is_refused_then_collected_on_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let knobs = ApsKnobs {
        tamper: TamperMode::ProcessedResults,
        ..ApsKnobs::default()
    };
    let m = mixed(dir.path(), knobs).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_reference_prefix_stops_an_unfinished_aps_batch_until_restored() {
    let dir = tempfile::tempdir().unwrap();
    let m = mixed(dir.path(), ApsKnobs::default()).await;
    let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
    let out = m.world.root.join("out.kvp");
    // Without --wait: each account's last batch is left Triggered under its reference.
    let report = submit_in_process_with(&m, &out, WaitMode::UntilTriggered).await;
    for a in &m.accounts {
        assert_eq!(report.accounts[&a.account].pending.len(), 1, "{report:?}");
    }
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
            failure.contains("was reserved as APS reference PB")
                && failure.contains("the configuration now gives PX")
                && failure.contains("reference_prefix changed?"),
            "{}: {failure:?}",
            a.account
        );
    }
    assert_eq!(m.sim.journal().len(), processed, "nothing processed");
    // The setting restored: the same batches finish, every line processed exactly once.
    std::fs::write(&m.world.config, &original).unwrap();
    let report = submit_in_process(&m, &out).await;
    assert!(report.is_complete(), "{report:?}");
    check_exactly_once(&m, &out, &processed_aps);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
    m.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_and_capture_of_one_order_go_in_consecutive_batches() {
    let dir = tempfile::tempdir().unwrap();
    let m = mixed(dir.path(), ApsKnobs::default()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_named_point_with_aps_accounts_then_resume() {
    let points: Vec<String> = orchestrator::CRASH_POINTS
        .iter()
        .flat_map(|p| [format!("{p}#1"), format!("{p}#5")])
        .collect();
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let m = mixed(dir.path(), ApsKnobs::default()).await;
        let (stop, gateway) = spawn_gateway(m.world.gateway(true).await.unwrap());
        let out = m.world.root.join("out.kvp");
        crash_at_then_resume(&m.world.config, &m.input, &out, &point).await;
        check_exactly_once(&m, &out, &processed_aps);
        let _ = stop.send(());
        gateway.await.unwrap().unwrap();
        m.sim.shutdown().await;
    }
}
