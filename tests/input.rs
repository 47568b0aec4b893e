//! Bad input: every validation rule makes `submit` exit 1 with `FILE:LINE: message`, and
//! nothing is uploaded and nothing is reserved. `--skip-invalid` submits the rest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let config = root.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{r}/ledger\"\n\
             [accounts.acme]\nlocation = \"file://{r}/drops/acme\"\nbatch_key = \"bk-acme-secret\"\nmerchant_key = \"mk-acme-secret\"\nallowed_commands = [\"cc:sale\", \"cc:refund\"]\n\
             [accounts.beta]\nlocation = \"file://{r}/drops/beta\"\nbatch_key = \"bk-beta-secret\"\nmerchant_key = \"mk-beta-secret\"\n",
            r = root.display()
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        root,
        config,
    }
}

fn submit(setup: &Setup, input: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args([
            "submit",
            "--config",
            setup.config.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn nothing_uploaded_or_reserved(setup: &Setup) {
    for account in ["acme", "beta"] {
        let request = setup.root.join("drops").join(account).join("Request");
        let files = std::fs::read_dir(&request).map(|d| d.count()).unwrap_or(0);
        assert_eq!(files, 0, "{account}: something was uploaded");
    }
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args([
            "status",
            "--json",
            "--config",
            setup.config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for a in status["accounts"].as_array().unwrap() {
        assert!(a["last_sequence"].is_null(), "something was reserved: {a}");
    }
}

const GOOD: &str =
    "account=acme&ref=r1&xCommand=cc:sale&xCardNum=4111111111111111&xExp=1230&xAmount=1.00\n";

#[test]
fn every_rule_rejects_the_whole_input() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "kvp",
            "account=zeta&ref=r2&xCommand=cc:sale\n",
            "2: unknown account \"zeta\"",
        ),
        ("kvp", "ref=r2&xCommand=cc:sale\n", "2: missing account"),
        ("kvp", "account=beta&xCommand=cc:sale\n", "2: missing ref"),
        (
            "kvp",
            "account=beta&ref=r1&xCommand=cc:sale\n",
            "2: ref \"r1\" repeated (first on line 1)",
        ),
        (
            "kvp",
            "account=beta&ref=r2&xAmount=1\n",
            "2: missing xCommand",
        ),
        (
            "kvp",
            "account=acme&ref=r2&xCommand=cc:void&xRefNum=1\n",
            "2: command \"cc:void\" is not allowed for account acme",
        ),
        (
            "kvp",
            "account=beta&ref=r2&xCommand=cc:sale&xKey=stolen-key\n",
            "2: field \"xKey\" is not allowed",
        ),
        (
            "kvp",
            "account=beta&ref=r2&xCommand=cc:sale&x%20y=1\n",
            "2: field name \"x y\" cannot be sent",
        ),
        (
            "kvp",
            "account=beta&ref=r2&xCommand=cc:sale&xName=%FF\n",
            ":2:",
        ),
        (
            "jsonl",
            "{\"account\":\"beta\",\"ref\":\"r2\",\"xCommand\":[1]}\n",
            ":2:",
        ),
        ("csv", "beta,r2\n", ":3:"),
    ];
    for (ext, second, expected) in cases {
        let setup = setup();
        let input = setup.root.join(format!("in.{ext}"));
        let first = match *ext {
            "jsonl" => "{\"account\":\"acme\",\"ref\":\"r1\",\"xCommand\":\"cc:sale\",\"xCardNum\":\"4111111111111111\"}\n".to_owned(),
            "csv" => "account,ref,xCommand\nacme,r1,cc:sale\n".to_owned(),
            _ => GOOD.to_owned(),
        };
        std::fs::write(&input, format!("{first}{second}")).unwrap();
        let run = submit(
            &setup,
            &input,
            &[
                "--wait",
                "--output",
                setup.root.join("out.kvp").to_str().unwrap(),
            ],
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{second}: {stderr}");
        assert!(
            stderr.contains(&format!("{}:", input.display())),
            "{second}: FILE:LINE form: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{second}: expected {expected:?} in {stderr}"
        );
        assert!(
            !stderr.contains("4111111111111111")
                && !stderr.contains("stolen-key")
                && !stderr.contains("secret"),
            "{stderr}"
        );
        nothing_uploaded_or_reserved(&setup);
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let setup = setup();
    let input = setup.root.join("in.kvp");
    std::fs::write(
        &input,
        format!("{GOOD}account=zeta&ref=r2&xCommand=cc:sale\naccount=beta&ref=r3\n"),
    )
    .unwrap();
    let run = submit(&setup, &input, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr.contains(":2: unknown account") && stderr.contains(":3: missing xCommand"),
        "{stderr}"
    );
    nothing_uploaded_or_reserved(&setup);
}

#[test]
fn skip_invalid_writes_rejects_and_submits_the_rest() {
    let setup = setup();
    let input = setup.root.join("in.kvp");
    let rejects = setup.root.join("rejects.jsonl");
    std::fs::write(&input, format!("{GOOD}account=zeta&ref=r2&xCommand=cc:sale&xCardNum=5555555555554444\naccount=beta&ref=r3&xCommand=cc:sale&xToken=t\n")).unwrap();
    let run = submit(
        &setup,
        &input,
        &["--skip-invalid", "--rejects", rejects.to_str().unwrap()],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(text.lines().count(), 1);
    let rejected: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(rejected["line"], "2");
    assert_eq!(rejected["xCardNum"], "555555******4444");
    assert!(!text.contains("5555555555554444"));
    for (account, lines) in [("acme", 1), ("beta", 1)] {
        let request = std::fs::read_to_string(
            setup
                .root
                .join("drops")
                .join(account)
                .join("Request/REQUEST_1.KVP"),
        )
        .unwrap();
        assert_eq!(request.lines().count(), lines, "{account}");
        assert!(
            setup
                .root
                .join("drops")
                .join(account)
                .join("Request/PROCESS_1.KVP")
                .is_file()
        );
    }
}

/// `allowed_commands` holds for an APS account's `command` too (case-insensitive): an APS
/// line with another command rejects the whole input before any reservation.
#[test]
fn aps_lines_respect_allowed_commands() {
    let setup = setup();
    let mut config = std::fs::read_to_string(&setup.config).unwrap();
    // Nothing listens on port 9: validation must stop the run before any request.
    config.push_str(
        "[accounts.shop]\nprotocol = \"aps\"\nendpoint = \"http://127.0.0.1:9/\"\nmerchant_identifier = \"m\"\naccess_code = \"aps-access-secret\"\nsha_request_phrase = \"in-secret\"\nsha_response_phrase = \"out-secret\"\ncurrency = \"USD\"\nallowed_commands = [\"PURCHASE\"]\n",
    );
    std::fs::write(&setup.config, config).unwrap();
    let input = setup.root.join("in.kvp");
    std::fs::write(
        &input,
        format!(
            "{GOOD}account=shop&ref=r2&command=purchase&merchant_reference=o2&amount=1.00&token_name=t&customer_email=a@b.c\n\
             account=shop&ref=r3&command=refund&merchant_reference=o1&amount=1.00\n"
        ),
    )
    .unwrap();
    let run = submit(&setup, &input, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "{}:3: command \"refund\" is not allowed for account shop",
        input.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in {stderr}"
    );
    assert!(!stderr.contains(":2:"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    nothing_uploaded_or_reserved(&setup);
}

/// A CSV exported without its header row makes a transaction's cells the field names: every
/// record is then invalid, and each message quotes a card number as a field name. stderr and
/// the rejects file show it masked (first 6 / last 4), never whole, also where a shifted
/// column puts a card number under an ordinary name.
#[test]
fn a_csv_without_its_header_never_shows_a_card_number() {
    let setup = setup();
    let input = setup.root.join("in.csv");
    std::fs::write(
        &input,
        "acme,r1,cc:sale,4111111111111111,1230,1.00\n\
         acme,r2,cc:sale,5500000000000004,1230,2.00\n\
         6011000990139424,acme,r3,cc:sale,1230,3.00\n",
    )
    .unwrap();
    let pans = ["4111111111111111", "5500000000000004", "6011000990139424"];
    let run = submit(&setup, &input, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(":2: field name \"411111******1111\" cannot be sent"),
        "{stderr}"
    );
    let rejects = setup.root.join("rejects.jsonl");
    let skipped = submit(
        &setup,
        &input,
        &["--skip-invalid", "--rejects", rejects.to_str().unwrap()],
    );
    let skipped_err = String::from_utf8_lossy(&skipped.stderr);
    let text = std::fs::read_to_string(&rejects).unwrap();
    for pan in pans {
        assert!(!stderr.contains(pan), "{pan} in {stderr}");
        assert!(!skipped_err.contains(pan), "{pan} in {skipped_err}");
        assert!(!text.contains(pan), "{pan} in the rejects: {text}");
    }
    assert!(
        text.contains("field name \\\"411111******1111\\\" cannot be sent"),
        "{text}"
    );
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter().all(|r| r.get("411111******1111").is_some()),
        "the card number used as a column name is masked: {text}"
    );
    assert!(
        rows.iter().any(|r| r["acme"] == "601100******9424"),
        "a card number under an ordinary name is masked: {text}"
    );
    nothing_uploaded_or_reserved(&setup);
}

/// A `ref` that is a card number (13-19 digits passing the Luhn check; spaces or dashes
/// between digits allowed) is refused with a masked message: it would be stored in the ledger
/// and echoed in the output.
#[test]
fn a_ref_that_is_a_card_number_is_refused() {
    for reference in ["4111111111111111", "5500%200000%200000%200004"] {
        let setup = setup();
        let input = setup.root.join("in.kvp");
        std::fs::write(
            &input,
            format!("{GOOD}account=beta&ref={reference}&xCommand=cc:sale&xToken=t\n"),
        )
        .unwrap();
        let out = setup.root.join("out.kvp");
        let run = submit(
            &setup,
            &input,
            &["--wait", "--output", out.to_str().unwrap()],
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(":2: ref \"") && stderr.contains("\" holds a card number"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("4111111111111111") && !stderr.contains("0000 0000"),
            "{stderr}"
        );
        assert!(!out.exists());
        nothing_uploaded_or_reserved(&setup);
    }
}
