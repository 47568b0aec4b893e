//! `config/example.toml` stays a valid overlay: it loads over the compiled-in defaults, every
//! account in it is shown, and `config show` never prints the secrets its variables hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const VARIABLES: &[&str] = &[
    "ACME_BATCH_KEY",
    "ACME_MERCHANT_KEY",
    "GLOBEX_BATCH_KEY",
    "GLOBEX_MERCHANT_KEY",
    "GLOBEX_S3_KEY_ID",
    "GLOBEX_S3_SECRET",
    "INITECH_APS_ACCESS_CODE",
    "INITECH_APS_SHA_IN",
    "INITECH_APS_SHA_OUT",
];

#[test]
fn the_example_overlay_loads_and_config_show_masks_its_secrets() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybatch"));
    cmd.args(["config", "show", "--config", example]);
    for var in VARIABLES {
        cmd.env(var, format!("value-of-{var}-must-not-print"));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for account in ["[accounts.acme]", "[accounts.globex]", "[accounts.initech]"] {
        assert!(stdout.contains(account), "{account} missing:\n{stdout}");
    }
    assert!(stdout.contains("max_concurrent_accounts = 64"), "{stdout}");
    assert!(
        !stdout.contains("must-not-print"),
        "a secret was printed:\n{stdout}"
    );
    assert!(
        !stderr.contains("must-not-print"),
        "a secret was printed:\n{stderr}"
    );
}
