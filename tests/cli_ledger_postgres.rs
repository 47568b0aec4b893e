//! `paybatch ledger migrate|copy|export` on a PostgreSQL ledger, through the binary (test
//! server: `PAYBATCH_TEST_PG_URL`; skipped with a message without it, a failure with
//! `PAYBATCH_REQUIRE_SERVERS=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use kvp_format::SequenceNumber;
use ledger_postgres::test_support::{fresh_database_url, server_url};
use sequence_ledger::{
    AccountId, BatchOutcome, Ledger, NewBatch, NewBinding, Reserve, StoredResult, Transition,
    Verdict,
};

mod common;
use common::paybatch_cmd;

const URL_VAR: &str = "PAYBATCH_TEST_LEDGER_URL";

fn run(args: &[&str], url: &str) -> (Output, String, String) {
    let o = paybatch_cmd(args).env(URL_VAR, url).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o, out, err)
}

fn seq(n: u32) -> SequenceNumber {
    SequenceNumber::new(n).unwrap()
}

/// acme: batch 1 cleaned with results, batch 2 triggered; globex: floor 40.
fn sample_ledger(dir: &Path) -> PathBuf {
    let path = dir.join("ledger");
    let l = Ledger::open(&path).unwrap();
    let acme = AccountId::new("acme").unwrap();
    let new = |n: u32, refs: &[&str]| NewBatch {
        sequence: seq(n),
        request_len: 100,
        external_reference: None,
        lines: (0u64..)
            .zip(refs)
            .map(|(index, r)| NewBinding {
                client_ref: (*r).into(),
                index,
                content_digest: sequence_ledger::content_digest([("xRef", *r)]),
            })
            .collect(),
    };
    let Reserve::Reserved(_) = l.reserve(&acme, new(1, &["o-1", "o-2"])).unwrap() else {
        panic!()
    };
    for t in [Transition::RequestUploaded, Transition::Triggered] {
        l.transition(&acme, seq(1), t).unwrap();
    }
    let ok = Verdict::new(BatchOutcome::Success, "Success");
    let results = vec![StoredResult {
        index: 1,
        fields: kvp_format::Record::from(vec![
            ("xResult".into(), "A".into()),
            ("xRefNum".into(), "77".into()),
        ]),
    }];
    l.complete_and_store(
        &acme,
        seq(1),
        Transition::Completed(ok),
        results,
        sequence_ledger::PerLineAnswer::Read,
    )
    .unwrap();
    l.transition(&acme, seq(1), Transition::Cleaned).unwrap();
    let Reserve::Reserved(_) = l.reserve(&acme, new(2, &["o-3"])).unwrap() else {
        panic!()
    };
    for t in [Transition::RequestUploaded, Transition::Triggered] {
        l.transition(&acme, seq(2), t).unwrap();
    }
    l.set_floor(&AccountId::new("globex").unwrap(), seq(40))
        .unwrap();
    path
}

fn fresh_url(label: &str) -> Option<String> {
    let server = server_url(label)?;
    let rt = tokio::runtime::Runtime::new().unwrap();
    Some(rt.block_on(fresh_database_url(&server, label)))
}

#[test]
fn migrate_shows_then_applies_the_schema() {
    let Some(url) = fresh_url("migrate_shows_then_applies_the_schema") else {
        return;
    };
    let (o, out, err) = run(
        &["ledger", "migrate", "--url-env", URL_VAR, "--dry-run"],
        &url,
    );
    assert!(o.status.success(), "{err}");
    assert!(out.contains("schema version 0"), "{out}");
    assert!(out.contains("CREATE TABLE paybatch_batches"), "{out}");
    assert!(out.contains("dry run: 1 step(s) not applied"), "{out}");
    // The dry run changed nothing: the step is still pending.
    let (o, out, err) = run(&["ledger", "migrate", "--url-env", URL_VAR], &url);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("applied 1 step(s); schema version 1"), "{out}");
    let (o, out, _) = run(&["ledger", "migrate", "--url-env", URL_VAR], &url);
    assert!(o.status.success());
    assert!(out.contains("up to date"), "{out}");
    // No URL: a usage error naming the variable.
    let o = paybatch_cmd([
        "ledger",
        "migrate",
        "--url-env",
        "PAYBATCH_TEST_NO_SUCH_VAR",
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("PAYBATCH_TEST_NO_SUCH_VAR"));
}

#[test]
fn copy_moves_a_sled_ledger_into_an_empty_database_only() {
    let Some(url) = fresh_url("copy_moves_a_sled_ledger") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sled = sample_ledger(dir.path());
    let from = sled.to_str().unwrap();
    let (o, out, err) = run(
        &["ledger", "copy", "--from", from, "--to-env", URL_VAR],
        &url,
    );
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("copied 2 account(s) and 2 batch(es) (1 with stored results)"),
        "{out}"
    );
    assert!(out.contains("both exports match"), "{out}");
    // Both backends export the same lines.
    let (o, pg, err) = run(&["ledger", "export", "--url-env", URL_VAR], &url);
    assert!(o.status.success(), "{err}");
    let (o, local, err) = run(&["ledger", "export", "--ledger", from], &url);
    assert!(o.status.success(), "{err}");
    assert_eq!(pg, local);
    assert!(
        pg.contains(r#""type":"result","account":"acme","sequence":1,"index":1"#),
        "{pg}"
    );
    // A second copy is refused: the target is not empty.
    let (o, _, err) = run(
        &["ledger", "copy", "--from", from, "--to-env", URL_VAR],
        &url,
    );
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("is not empty"), "{err}");
    // A password on the command line is refused and never echoed.
    let with_password = url.replace("postgres@", "postgres:hunter2-secret@");
    let (o, _, err) = run(
        &["ledger", "copy", "--from", from, "--to", &with_password],
        &url,
    );
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--to-env") && !err.contains("hunter2-secret"),
        "{err}"
    );
}

/// `ledger set-floor --config` on a configuration whose ledger is the shared one sets the floor
/// there (the way out of decision 4b on PostgreSQL), not in a stray sled directory; `ledger
/// prune --config` runs there too.
#[test]
fn set_floor_and_prune_act_on_the_shared_ledger() {
    let Some(url) = fresh_url("set_floor_and_prune_act_on_the_shared_ledger") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sled_path = dir.path().join("ledger");
    let config = dir.path().join("paybatch.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{}\"\nurl_env = \"{URL_VAR}\"\n\n[accounts.acme]\n\
             location = \"file://{}\"\nbatch_key = \"k\"\nmerchant_key = \"m\"\n",
            sled_path.display(),
            dir.path().join("drop").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (o, _, err) = run(&["ledger", "migrate", "--url-env", URL_VAR], &url);
    assert!(o.status.success(), "{err}");
    let (o, out, err) = run(
        &[
            "ledger",
            "set-floor",
            "--config",
            cfg,
            "--account",
            "acme",
            "7",
        ],
        &url,
    );
    assert!(o.status.success(), "{err}");
    assert!(out.contains("floor 7"), "{out}");
    assert!(
        !sled_path.exists(),
        "no sled ledger was created beside the shared one"
    );
    let (o, export, err) = run(&["ledger", "export", "--url-env", URL_VAR], &url);
    assert!(o.status.success(), "{err}");
    assert!(export.contains("acme") && export.contains('7'), "{export}");
    let (o, out, err) = run(
        &[
            "ledger",
            "prune",
            "--config",
            cfg,
            "--collected-before",
            "2030-01-01T00:00:00Z",
        ],
        &url,
    );
    assert!(o.status.success(), "{err}");
    assert!(out.contains("0 batch(es)"), "{out}");
}

/// `ledger show --config` and `ledger export --config` read the ledger the configuration
/// names, on either backend: the same sample ledger in sled and, copied, in PostgreSQL shows
/// the same accounts and batches and exports the same lines.
#[test]
fn show_and_export_read_the_configured_ledger_on_both_backends() {
    let Some(url) = fresh_url("show_and_export_read_the_configured_ledger") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sled = sample_ledger(dir.path());
    let (o, _, err) = run(
        &[
            "ledger",
            "copy",
            "--from",
            sled.to_str().unwrap(),
            "--to-env",
            URL_VAR,
        ],
        &url,
    );
    assert!(o.status.success(), "{err}");
    let config = |name: &str, ledger: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("[ledger]\n{ledger}\n")).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let on_sled = config("sled.toml", &format!("path = \"{}\"", sled.display()));
    let on_pg = config(
        "pg.toml",
        &format!(
            "path = \"{}/unused\"\nurl_env = \"{URL_VAR}\"",
            dir.path().display()
        ),
    );
    let mut shown = Vec::new();
    let mut exported = Vec::new();
    for cfg in [&on_sled, &on_pg] {
        let (o, out, err) = run(
            &["ledger", "show", "--config", cfg, "--account", "acme"],
            &url,
        );
        assert!(o.status.success(), "{cfg}: {err}");
        let (head, body) = out.split_once('\n').unwrap();
        assert!(head.starts_with("ledger "), "{out}");
        shown.push(body.to_owned());
        let (o, out, err) = run(&["ledger", "export", "--config", cfg], &url);
        assert!(o.status.success(), "{cfg}: {err}");
        exported.push(out);
    }
    assert!(
        shown[0].contains("acme") && shown[0].contains("Triggered"),
        "{}",
        shown[0]
    );
    assert_eq!(shown[0], shown[1]);
    assert_eq!(exported[0], exported[1]);
    assert!(
        !dir.path().join("unused").exists(),
        "the shared ledger was read, not a sled one"
    );
    let (_, out, _) = run(&["ledger", "show", "--config", &on_pg, "--json"], &url);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        json["ledger"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL ledger"),
        "{json}"
    );
    assert_eq!(json["accounts"].as_array().unwrap().len(), 2, "{json}");
}
