//! What paybatch writes is its owner's alone: under the usual umask (022) every folder it
//! creates is 0700 and every file 0600 — the ledger and its files, outputs, summaries, rejects,
//! dry-run files, ledger exports, the demo's workspace and config. A config file holding a
//! secret value that others can read gets a warning naming the file and the keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{s, text};

/// `paybatch ARGS` run by a shell that first sets the umask to 022.
fn paybatch_umask_022(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_paybatch"))
        .args(args)
        .env_remove("PAYBATCH_CRASH_AT")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> Output {
    let run = paybatch_umask_022(args);
    assert_eq!(run.status.code(), Some(0), "{args:?}: {}", text(&run));
    run
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every folder and file under `dir` (not `dir` itself), sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// `dir` is 0700 and so is every folder under it; every file under it is 0600.
fn assert_owner_only_tree(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for p in tree(dir) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&p), want, "{}", p.display());
    }
}

const CONFIG: &str = "[accounts.acme]\nlocation = \"file://{r}/drops/acme\"\nbatch_key = \"bk-secret-value\"\nmerchant_key = \"mk-secret-value\"\n";

/// A config (mode `config_mode`) with the ledger at `{r}/state/ledger`, whose parent does not
/// exist yet, and a valid input with one invalid record.
fn setup(dir: &Path, config_mode: u32) -> (PathBuf, PathBuf, PathBuf) {
    let root = dir.canonicalize().unwrap();
    let r = root.display().to_string();
    let config = root.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{r}/state/ledger\"\n{}",
            CONFIG.replace("{r}", &r)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(config_mode)).unwrap();
    let input = root.join("in.kvp");
    std::fs::write(
        &input,
        "account=acme&ref=r1&xCommand=cc:sale&xCardNum=4111111111111111&xExp=1230&xAmount=1.00\n\
         account=zeta&ref=r2&xCommand=cc:sale&xCardNum=5500000000000004&xExp=1230\n\
         account=acme&ref=r3&xCommand=cc:sale&xToken=t3&xAmount=3.00\n",
    )
    .unwrap();
    (root, config, input)
}

#[test]
fn ledger_rejects_dry_run_files_and_exports_are_owner_only_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let (root, config, input) = setup(dir.path(), 0o600);
    let (config, input) = (s(&config), s(&input));

    // A dry run with rejects: folders 0700, files 0600.
    let dry = root.join("dry");
    let rejects = root.join("rejects.jsonl");
    ok(&[
        "submit",
        "--config",
        &config,
        &input,
        "--skip-invalid",
        "--rejects",
        &s(&rejects),
        "--dry-run",
        &s(&dry),
    ]);
    assert_eq!(mode(&rejects), 0o600);
    assert_owner_only_tree(&dry);
    assert_eq!(tree(&dry).len(), 4, "acme/, Request/, REQUEST_1, PROCESS_1");

    // A submit (no gateway needed: it returns once the batch is triggered) creates the
    // ledger, and the folder above it, owner-only; the drop's REQUEST is 0600 too.
    ok(&[
        "submit",
        "--config",
        &config,
        &input,
        "--skip-invalid",
        "--rejects",
        &s(&rejects),
    ]);
    assert_owner_only_tree(&root.join("state"));
    assert!(root.join("state/ledger/db").is_file());
    for f in ["REQUEST_1.KVP", "PROCESS_1.KVP"] {
        assert_eq!(mode(&root.join("drops/acme/Request").join(f)), 0o600, "{f}");
    }
    // A ledger that was made readable by others is narrowed again when opened.
    let db = root.join("state/ledger/db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        root.join("state/ledger"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // (A dry run opens the ledger for writing, without waiting for the batch in flight.)
    ok(&[
        "submit",
        "--config",
        &config,
        &input,
        "--skip-invalid",
        "--dry-run",
        &s(&root.join("dry2")),
    ]);
    assert_owner_only_tree(&root.join("state/ledger"));

    let export = root.join("ledger.jsonl");
    ok(&[
        "ledger",
        "export",
        "--ledger",
        &s(&root.join("state/ledger")),
        "--output",
        &s(&export),
    ]);
    assert_eq!(mode(&export), 0o600);
}

#[test]
fn the_demo_s_workspace_outputs_and_config_are_owner_only_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws").join("demo");
    let run = ok(&[
        "-q",
        "demo",
        "--dir",
        &s(&ws),
        "--accounts",
        "2",
        "--txns",
        "40",
        "--batch-lines",
        "15",
    ]);
    let results = ws.join("results.csv");
    assert!(results.is_file(), "{}", text(&run));
    for f in ["paybatch.toml", "input.csv", "results.csv", "summary.json"] {
        assert_eq!(mode(&ws.join(f)), 0o600, "{f}");
    }
    assert_eq!(
        mode(&dir.path().join("ws")),
        0o700,
        "a parent the demo created"
    );
    assert_owner_only_tree(&ws.join("ledger"));
    assert_owner_only_tree(&ws.join("drops"));
    // The in-process gateway simulator's state: its folders are 0700.
    for p in tree(&ws).into_iter().filter(|p| p.is_dir()) {
        assert_eq!(mode(&p), 0o700, "{}", p.display());
    }
}

#[test]
fn a_config_with_secret_values_that_others_can_read_is_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    for (config_mode, inline, warned) in [
        (0o644, true, true),
        (0o640, true, true),
        (0o600, true, false),
        (0o644, false, false),
    ] {
        let (root, config, _) = setup(dir.path(), config_mode);
        if !inline {
            let text = std::fs::read_to_string(&config)
                .unwrap()
                .replace("batch_key = \"bk-secret-value\"", "batch_key_env = \"BK\"")
                .replace(
                    "merchant_key = \"mk-secret-value\"",
                    "merchant_key_env = \"MK\"",
                );
            std::fs::write(&config, text).unwrap();
        }
        let run = Command::new(env!("CARGO_BIN_EXE_paybatch"))
            .args(["config", "show", "--config", &s(&config)])
            .env("BK", "bk-from-env")
            .env("MK", "mk-from-env")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(0), "{}", text(&run));
        let stderr = String::from_utf8_lossy(&run.stderr);
        let case = format!("mode {config_mode:o}, inline {inline}: {stderr}");
        let warning = format!(
            "config file {} is readable by group or others",
            config.display()
        );
        assert_eq!(
            stderr.matches(&warning).count(),
            usize::from(warned),
            "{case}"
        );
        if warned {
            assert!(
                stderr.contains(&format!("(mode 0{config_mode:o})"))
                    && stderr.contains("accounts.acme.batch_key, accounts.acme.merchant_key"),
                "{case}"
            );
        }
        assert!(
            !stderr.contains("secret-value") && !stderr.contains("from-env"),
            "{case}"
        );
        std::fs::remove_dir_all(root.join("state")).ok();
    }
}
