//! Per-account S3 keys and the `[storage]` section through the real binary: `config show`
//! prints them (credentials only as variable names), and `store check --config --account`
//! reaches the S3 test server using only what the config says (every `AWS_*` variable removed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::text;

/// `paybatch ARGS` with no `AWS_*` variable, plus `extra`.
fn paybatch(args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybatch"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(extra.iter().copied());
    cmd.output().unwrap()
}

fn write(dir: &Path, body: &str) -> String {
    let path = dir.join("paybatch.toml");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn config_show_prints_storage_and_s3_keys_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "[storage]\nmax_attempts = 2\nmax_concurrent_ops = 3\noperation_timeout = \"9s\"\n\n\
         [accounts.bucket]\nlocation = \"s3://drop/acme\"\nbatch_key = \"batch-secret-9\"\nmerchant_key_env = \"MK\"\n\
         s3_endpoint = \"http://127.0.0.1:9\"\ns3_region = \"eu-west-1\"\ns3_allow_http = true\n\
         s3_access_key_id_env = \"BUCKET_ID\"\ns3_secret_access_key_env = \"BUCKET_SECRET\"\n",
    );
    let secret = [
        ("BUCKET_SECRET", "s3-secret-value-9"),
        ("BUCKET_ID", "AKID9"),
    ];
    let o = paybatch(&["config", "show", "--config", &config], &secret);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    for line in [
        "[storage]",
        "max_attempts = 2",
        "max_concurrent_ops = 3",
        "operation_timeout = \"9s\"",
        "connect_timeout = \"10s\"",
        "s3_endpoint = \"http://127.0.0.1:9\"",
        "s3_region = \"eu-west-1\"",
        "s3_allow_http = true",
        "s3_access_key_id_env = \"BUCKET_ID\"",
        "s3_secret_access_key_env = \"BUCKET_SECRET\"",
        "batch_key = \"[REDACTED]\"",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line}:\n{shown}");
    }
    for leaked in ["s3-secret-value-9", "batch-secret-9", "AKID9"] {
        assert!(!shown.contains(leaked), "{leaked}:\n{shown}");
    }

    // An inline secret key and an unknown [storage] key are refused, naming the key.
    for (body, key) in [
        (
            "[accounts.b]\nlocation = \"s3://d/p\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\ns3_secret_access_key = \"x\"\n",
            "s3_secret_access_key",
        ),
        ("[storage]\nretry_count = 3\n", "retry_count"),
    ] {
        let config = write(dir.path(), body);
        let o = paybatch(&["config", "show", "--config", &config], &[]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(key),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn store_check_reaches_s3_with_settings_from_the_config_only() {
    let Some(target) = storage_backends::test_env::s3().unwrap() else {
        eprintln!(
            "skipped: no S3 test server; run `bash tests/support/servers.sh start && source target/test-servers/env`"
        );
        return;
    };
    // test_env::s3() returned a target, so these are set.
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let id = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".to_owned());
    let key = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        &format!(
            "[accounts.bucket]\nlocation = \"{}\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n\
             s3_endpoint = \"{endpoint}\"\ns3_region = \"{region}\"\ns3_allow_http = true\n\
             s3_virtual_hosted_style = false\n\
             s3_access_key_id_env = \"BUCKET_ID\"\ns3_secret_access_key_env = \"BUCKET_SECRET\"\n",
            target.location
        ),
    );
    let creds = [("BUCKET_ID", id.as_str()), ("BUCKET_SECRET", key.as_str())];
    let args = [
        "store",
        "check",
        "--config",
        &config,
        "--account",
        "bucket",
        "--json",
    ];
    let o = paybatch(&args, &creds);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report}");

    // The credential variables named by the config are required.
    let o = paybatch(&args, &creds[..1]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("BUCKET_SECRET") && err.contains("s3_secret_access_key_env"),
        "{}",
        text(&o)
    );
}
