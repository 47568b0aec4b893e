//! Every example runs and prints what it promises, so the docs cannot rot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

/// `target/debug/examples/NAME` (cargo builds examples before integration tests).
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples");
    let built = dir.join(name);
    if built.is_file() {
        Command::new(built)
    } else {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["run", "--quiet", "--example", name]);
        cmd
    }
}

#[test]
fn submit_from_program() {
    let out = example("submit_from_program").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("transactions: 500"), "{stdout}");
    assert!(
        stdout.contains("acct-001:") && stdout.contains("approved amount"),
        "{stdout}"
    );
    assert!(stdout.contains("complete: true"), "{stdout}");
}

#[test]
fn custom_source() {
    let out = example("custom_source").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("approved 40 of 40"), "{stdout}");
}
