//! `submit --dry-run`: each account's files in its own protocol (Sola REQUEST/PROCESS, APS
//! CSV), card data and keys masked unless `--unmasked`, nothing reserved, no network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{paybatch, s, text};

const SECRETS: &[&str] = &[
    "4111111111111111",
    "987",
    "bk-acme-secret",
    "mk-acme-secret",
    "aps-access-secret",
    "in-secret",
    "out-secret",
];

/// A Sola account and an APS account whose endpoint nothing listens on (port 9): a dry run
/// must not need it. Returns (root, config, input).
fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let root = dir.canonicalize().unwrap();
    let config = root.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{r}/ledger\"\n\
             [accounts.acme]\nlocation = \"file://{r}/drops/acme\"\nbatch_key = \"bk-acme-secret\"\nmerchant_key = \"mk-acme-secret\"\n\
             [accounts.shop]\nprotocol = \"aps\"\nendpoint = \"http://127.0.0.1:9/\"\nmerchant_identifier = \"m\"\naccess_code = \"aps-access-secret\"\nsha_request_phrase = \"in-secret\"\nsha_response_phrase = \"out-secret\"\ncurrency = \"USD\"\n",
            r = root.display()
        ),
    )
    .unwrap();
    let input = root.join("in.kvp");
    std::fs::write(
        &input,
        "account=acme&ref=r1&xCommand=cc:sale&xCardNum=4111111111111111&xExp=1230&xCVV=987&xAmount=1.00\n\
         account=shop&ref=r2&command=PURCHASE&merchant_reference=o2&amount=2.50&token_name=tok-2&customer_email=a@b.c\n\
         account=acme&ref=r3&xCommand=cc:sale&xToken=t3&xAmount=3.00\n",
    )
    .unwrap();
    (root, config, input)
}

fn dry_run(config: &Path, input: &Path, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["submit", "--config"];
    let (config, input, dir) = (s(config), s(input), s(dir));
    args.extend([config.as_str(), input.as_str(), "--dry-run", dir.as_str()]);
    args.extend(extra);
    let run = paybatch(&args);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// Every file under `dir`, as (path relative to `dir`, content).
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The decoded pairs of a one-record KVP text's line `n`.
fn line(text: &str, n: usize) -> Vec<(String, String)> {
    let l = text.lines().nth(n).unwrap();
    kvp_format::decode_line(l.as_bytes())
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
}

#[test]
fn a_dry_run_writes_each_protocol_s_files_masked_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (root, config, input) = setup(dir.path());

    let masked_dir = root.join("dry");
    let listed = dry_run(&config, &input, &masked_dir, &[]);
    let masked = files(&masked_dir);
    let names: Vec<&str> = masked.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names.contains(&"acme/Request/REQUEST_1.KVP")
            && names.contains(&"acme/Request/PROCESS_1.KVP")
    );
    let csv = names
        .iter()
        .find(|n| n.starts_with("shop/PB1-") && n.ends_with(".csv"))
        .unwrap_or_else(|| {
            panic!("the APS batch file, named after its batch_reference: {names:?}")
        });
    assert!(listed.contains("shop\t1\t1 lines"), "{listed}");
    for (path, content) in &masked {
        for secret in SECRETS {
            assert!(
                !kvp_format::contains_secret(content, secret),
                "{secret} in {path}: {content}"
            );
        }
    }
    let request = &masked
        .iter()
        .find(|(p, _)| p.ends_with("REQUEST_1.KVP"))
        .unwrap()
        .1;
    let first = line(request, 0);
    assert_eq!(get(&first, "xCardNum"), "411111******1111");
    assert_eq!(get(&first, "xCVV"), "[REDACTED]");
    assert_eq!(get(&first, "xKey"), "[REDACTED]");
    assert_eq!(get(&line(request, 1), "xToken"), "t3");
    let process = &masked
        .iter()
        .find(|(p, _)| p.ends_with("PROCESS_1.KVP"))
        .unwrap()
        .1;
    assert_eq!(get(&line(process, 0), "xKey"), "[REDACTED]");
    assert_eq!(get(&line(process, 0), "xSubmittedCount"), "2");
    let batch = &masked.iter().find(|(p, _)| p == csv).unwrap().1;
    assert!(
        batch.starts_with("command,merchant_reference,amount,currency,token_name")
            && batch.contains("PURCHASE,o2,250,USD,tok-2"),
        "{batch}"
    );

    let plain_dir = root.join("dry-plain");
    dry_run(&config, &input, &plain_dir, &["--unmasked"]);
    let plain = files(&plain_dir);
    let request = &plain
        .iter()
        .find(|(p, _)| p.ends_with("REQUEST_1.KVP"))
        .unwrap()
        .1;
    let first = line(request, 0);
    assert_eq!(
        [
            get(&first, "xCardNum"),
            get(&first, "xCVV"),
            get(&first, "xKey")
        ],
        ["4111111111111111", "987", "mk-acme-secret"]
    );
    let process = &plain
        .iter()
        .find(|(p, _)| p.ends_with("PROCESS_1.KVP"))
        .unwrap()
        .1;
    assert_eq!(get(&line(process, 0), "xKey"), "bk-acme-secret");

    // Nothing reserved, nothing in the drop.
    assert!(!root.join("drops/acme/Request").exists());
    let status = paybatch(&["status", "--config", &s(&config), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["last_sequence"].is_null()),
        "{status}"
    );
}

#[test]
fn unmasked_needs_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config, input) = setup(dir.path());
    let run = paybatch(&["submit", "--config", &s(&config), &s(&input), "--unmasked"]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
}
