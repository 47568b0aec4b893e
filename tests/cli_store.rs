//! `paybatch store check` against a local directory and the test SFTP and S3 servers
//! (`tests/support/servers.sh`; without them the remote cases say how to start them and pass,
//! with `PAYBATCH_REQUIRE_SERVERS=1` they fail).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use storage_backends::test_env;

fn paybatch(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybatch"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

const STEPS: [&str; 6] = ["connect", "write", "read", "list", "exclusive", "delete"];

fn assert_all_ok(o: &Output) {
    let out = stdout(o);
    assert_eq!(o.status.code(), Some(0), "{}", all(o));
    for step in STEPS {
        let line = out
            .lines()
            .find(|l| l.starts_with(step))
            .unwrap_or_else(|| panic!("no {step} line: {out}"));
        assert!(line.contains(" ok "), "{line}");
    }
    assert!(out.contains("every check passed"), "{out}");
}

#[test]
fn local_drop_passes_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/acme", dir.path().display());
    let o = paybatch(&["store", "check", &url], &[]);
    assert_all_ok(&o);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("acme"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "the probe is deleted: {left:?}");
}

#[test]
fn json_report() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let o = paybatch(&["store", "check", "--json", &url], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], true);
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, STEPS);
}

#[test]
fn unwritable_local_drop_fails_at_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    // The "root" is a file, so nothing can be created below it.
    let url = format!("file://{}/drop", file.display());
    let o = paybatch(&["store", "check", &url], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(stdout(&o).contains("FAILED"), "{}", all(&o));
    assert!(stdout(&o).contains("NOT usable"), "{}", all(&o));
}

#[test]
fn bad_locations_are_usage_errors() {
    let cases = [
        ("http://example.com/x", "unsupported scheme"),
        ("/srv/drop", "not a URL"),
        ("sftp://host/drop", "need a user"),
    ];
    for (url, want) in cases {
        let o = paybatch(&["store", "check", url], &[]);
        assert_eq!(o.status.code(), Some(2), "{url}: {}", all(&o));
        assert!(all(&o).contains(want), "{url}: {}", all(&o));
    }
}

#[test]
fn account_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paybatch.toml");
    let drop = dir.path().join("drops/acme");
    std::fs::write(
        &config,
        format!(
            "[accounts.acme]\nlocation = \"file://{}\"\nbatch_key = \"bk\"\nmerchant_key = \"mk\"\n",
            drop.display()
        ),
    )
    .unwrap();
    let o = paybatch(
        &[
            "store",
            "check",
            "--config",
            config.to_str().unwrap(),
            "--account",
            "acme",
        ],
        &[],
    );
    assert_all_ok(&o);
    assert!(
        stdout(&o).contains(&drop.display().to_string()),
        "{}",
        all(&o)
    );
    let o = paybatch(
        &[
            "store",
            "check",
            "--config",
            config.to_str().unwrap(),
            "--account",
            "nope",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
}

#[test]
fn sftp_with_key_and_known_hosts() {
    let Some(target) = test_env::sftp().expect("SFTP test server required") else {
        return;
    };
    let key = std::env::var(test_env::SFTP_KEY).unwrap();
    let known = std::env::var(test_env::SFTP_KNOWN_HOSTS).unwrap();
    let url = target.location.to_string();
    let o = paybatch(
        &[
            "store",
            "check",
            &url,
            "--ssh-key",
            &key,
            "--known-hosts",
            &known,
        ],
        &[],
    );
    assert_all_ok(&o);
    assert!(
        stdout(&o).contains("atomic replace"),
        "posix-rename on OpenSSH: {}",
        stdout(&o)
    );
}

#[test]
fn sftp_wrong_pin_prints_the_offered_fingerprint() {
    let Some(target) = test_env::sftp().expect("SFTP test server required") else {
        return;
    };
    let key = std::env::var(test_env::SFTP_KEY).unwrap();
    let url = target.location.to_string();
    let pin = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let o = paybatch(
        &[
            "store",
            "check",
            &url,
            "--ssh-key",
            &key,
            "--host-key-sha256",
            pin,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let out = stdout(&o);
    let connect = out.lines().find(|l| l.starts_with("connect")).unwrap();
    assert!(
        connect.contains("FAILED (configuration error)")
            && connect.contains("offered ssh-ed25519 SHA256:"),
        "{connect}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("write")),
        "nothing is tried after a refused host key"
    );
}

#[test]
fn sftp_wrong_password_is_permission_denied_and_never_printed() {
    let Some(_) = test_env::sftp().expect("SFTP test server required") else {
        return;
    };
    let Ok(url) = std::env::var("PAYBATCH_TEST_SFTP_PASSWORD_URL") else {
        assert!(
            !test_env::servers_required(),
            "password test user missing from the test env"
        );
        return;
    };
    let known = std::env::var(test_env::SFTP_KNOWN_HOSTS).unwrap();
    let secret = "Wrong-Pa55word-that-must-not-leak";
    let o = paybatch(
        &[
            "store",
            "check",
            &url,
            "--ssh-password-env",
            "PB_CHECK_PW",
            "--known-hosts",
            &known,
        ],
        &[("PB_CHECK_PW", secret)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(
        stdout(&o).contains("FAILED (permission denied)"),
        "{}",
        all(&o)
    );
    assert!(!all(&o).contains(secret), "{}", all(&o));
    let args = |verbose: &'static str| {
        let mut a = vec![
            verbose,
            "store",
            "check",
            &url,
            "--ssh-password-env",
            "PB_CHECK_PW",
        ];
        a.extend(["--known-hosts", &known]);
        a
    };
    // Not in the most verbose logs either (ours, and russh's bridged from `log`).
    let o = paybatch(&args("-vvv"), &[("PB_CHECK_PW", secret)]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(
        o.stderr.len() > 1000,
        "trace logs were written: {}",
        all(&o)
    );
    assert!(
        !all(&o).contains(secret),
        "the password is in the trace logs"
    );
    // The right password (from the test env) passes, and is not printed either.
    let right = std::env::var("PAYBATCH_TEST_SFTP_PASSWORD").unwrap();
    let o = paybatch(&args("-vvv"), &[("PB_CHECK_PW", &right)]);
    assert_all_ok(&o);
    assert!(!all(&o).contains(&right));
}

#[test]
fn s3_bucket() {
    let Some(target) = test_env::s3().expect("S3 test server required") else {
        return;
    };
    let o = paybatch(&["store", "check", &target.location.to_string()], &[]);
    assert_all_ok(&o);
    assert!(stdout(&o).contains("multipart above"), "{}", stdout(&o));
}
