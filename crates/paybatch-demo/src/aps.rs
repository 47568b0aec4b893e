//! The Amazon Payment Services side of a demo: APS accounts for a config file, the
//! simulator's merchants for them, an input that mixes APS lines into a Sola input (used by
//! `paybatch demo --mixed` and `tests/aps_e2e.rs`), and the simulator's view of a configured
//! account (used by `paybatch gateway-sim`).

use std::io::Write;
use std::path::Path;

use aps_batch::{ApsAccountConfig, FileSignature, ShaType};
use kvp_format::Secret;

use crate::error::{Error, Result};

/// One demo APS account: its paybatch name, credentials and hash.
#[derive(Debug, Clone)]
pub struct ApsDemoAccount {
    /// The paybatch account name (`aps-1`, ...).
    pub account: String,
    /// The simulator's merchant entry with the same credentials (demo values, not anyone's).
    pub merchant: gateway_sim::aps::ApsMerchant,
}

/// `n` demo accounts `aps-1..=aps-n`; odd ones use SHA-256, even ones SHA-512.
pub fn demo_accounts(n: usize) -> Vec<ApsDemoAccount> {
    (1..=n)
        .map(|i| ApsDemoAccount {
            account: format!("aps-{i}"),
            merchant: gateway_sim::aps::ApsMerchant {
                merchant_identifier: format!("DEMO-MID-{i}"),
                access_code: Secret::new(format!("demo-access-{i}")),
                sha_request_phrase: Secret::new(format!("demo-in-{i}")),
                sha_response_phrase: Secret::new(format!("demo-out-{i}")),
                sha_type: if i % 2 == 0 {
                    gateway_sim::aps::ShaType::Sha512
                } else {
                    gateway_sim::aps::ShaType::Sha256
                },
            },
        })
        .collect()
}

/// The `[accounts.NAME]` tables of `accounts`, served at `endpoint`, with `max_batch_lines`.
pub fn demo_config_toml(
    accounts: &[ApsDemoAccount],
    endpoint: &str,
    max_batch_lines: usize,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut toml = String::new();
    for a in accounts {
        let m = &a.merchant;
        let sha = match m.sha_type {
            gateway_sim::aps::ShaType::Sha512 => "sha512",
            _ => "sha256",
        };
        toml.push_str(&format!(
            "[accounts.{}]\nprotocol = \"aps\"\nendpoint = {}\nmerchant_identifier = {}\naccess_code = {}\nsha_request_phrase = {}\nsha_response_phrase = {}\nsha_type = \"{sha}\"\ncurrency = \"USD\"\nmax_batch_lines = {max_batch_lines}\n\n",
            a.account,
            q(endpoint),
            q(&m.merchant_identifier),
            q(m.access_code.expose()),
            q(m.sha_request_phrase.expose()),
            q(m.sha_response_phrase.expose()),
        ));
    }
    toml
}

/// Writes `out`: the KVP lines of `sola_input` with `per_account` APS lines of each account
/// interleaved (one after every second Sola line, the rest at the end). APS lines carry
/// `account`, `ref` (`<account>-r0000`, ...) and the fields of [`demo_records`].
///
/// # Errors
/// [`Error::Io`] reading or writing.
pub fn write_mixed_input(
    sola_input: &Path,
    out: &Path,
    accounts: &[ApsDemoAccount],
    per_account: usize,
    seed: u64,
) -> Result<()> {
    let sola = std::fs::read_to_string(sola_input).map_err(|e| Error::io(sola_input, e))?;
    let records: Vec<Vec<Vec<(String, String)>>> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| demo_records(&a.account, per_account, seed + i as u64))
        .collect();
    let mut aps_lines = Vec::with_capacity(per_account * accounts.len());
    for n in 0..per_account {
        for (a, account) in accounts.iter().enumerate() {
            let Some(fields) = records.get(a).and_then(|r| r.get(n)) else {
                continue;
            };
            let mut line = Vec::with_capacity(200);
            kvp_format::encode_pair("account", &account.account, &mut line);
            line.push(b'&');
            kvp_format::encode_pair("ref", &format!("{}-r{n:04}", account.account), &mut line);
            for (k, v) in fields {
                line.push(b'&');
                kvp_format::encode_pair(k, v, &mut line);
            }
            line.push(b'\n');
            aps_lines.push(line);
        }
    }
    let file = kvp_format::owner_only::create(out).map_err(|e| Error::io(out, e))?;
    let mut w = std::io::BufWriter::new(file);
    let mut aps = aps_lines.iter();
    let io = |e| Error::io(out, e);
    for (i, line) in sola.lines().enumerate() {
        w.write_all(line.as_bytes()).map_err(io)?;
        w.write_all(b"\n").map_err(io)?;
        if i % 2 == 1
            && let Some(a) = aps.next()
        {
            w.write_all(a).map_err(io)?;
        }
    }
    for a in aps {
        w.write_all(a).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Generated APS input fields (without `account` and `ref`) for demos: mostly recurring
/// purchases, some captures, refunds and voids; amounts ending in `.51` are declined by the
/// simulator. `tag` keeps `merchant_reference`s of different runs or accounts apart; the same
/// `(tag, n, seed)` gives the same records.
pub fn demo_records(tag: &str, n: usize, seed: u64) -> Vec<Vec<(String, String)>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let cents = if rng.u8(..20) == 0 {
                51
            } else {
                rng.u64(..100)
            };
            let amount = format!("{}.{cents:02}", rng.u64(1..500));
            let reference = format!("{tag}-{i:06}");
            let pick = rng.u8(..10);
            let mut f: Vec<(String, String)> = Vec::with_capacity(6);
            let mut push = |k: &str, v: String| f.push((k.to_owned(), v));
            match pick {
                0..=6 => {
                    push("command", "PURCHASE".into());
                    push("merchant_reference", reference);
                    push("amount", amount);
                    push("token_name", format!("tok{:08x}", rng.u32(..)));
                    push("customer_email", format!("customer{i}@example.com"));
                }
                7 => {
                    push("command", "CAPTURE".into());
                    push("merchant_reference", reference);
                    push("amount", amount);
                }
                8 => {
                    push("command", "REFUND".into());
                    push("merchant_reference", reference);
                    push("amount", amount);
                }
                _ => {
                    push("command", "VOID_AUTHORIZATION".into());
                    push("merchant_reference", reference);
                }
            }
            f
        })
        .collect()
}

/// The simulator's merchant entry for an account, so `paybatch gateway-sim` and the demo can
/// serve the accounts of a configuration with the same credentials.
pub fn sim_merchant(cfg: &ApsAccountConfig) -> gateway_sim::aps::ApsMerchant {
    gateway_sim::aps::ApsMerchant {
        merchant_identifier: cfg.merchant_identifier.clone(),
        access_code: Secret::new(cfg.access_code.expose().clone()),
        sha_request_phrase: Secret::new(cfg.sha_request_phrase.expose().clone()),
        sha_response_phrase: Secret::new(cfg.sha_response_phrase.expose().clone()),
        sha_type: match cfg.sha_type {
            ShaType::Sha256 => gateway_sim::aps::ShaType::Sha256,
            ShaType::Sha512 => gateway_sim::aps::ShaType::Sha512,
        },
    }
}

/// The simulator's reading of the service that matches an account's settings: the reference
/// mode from `line_number_offset` (1: §3a, 2: published), the upload signature, the renamed
/// header cells, and the Process path when `process_url` is on the account's endpoint. Every
/// other option is the default.
pub fn sim_options(cfg: &ApsAccountConfig) -> gateway_sim::aps::ApsSimOptions {
    use gateway_sim::aps::{ApsSimOptions, ReferenceMode, UploadSignature};
    let base = cfg.endpoint.join("");
    ApsSimOptions {
        reference: if cfg.line_number_offset == 1 {
            ReferenceMode::Assumed3a
        } else {
            ReferenceMode::Published
        },
        upload_signature: match cfg.file_signature {
            FileSignature::Excluded => UploadSignature::Excluded,
            FileSignature::Content => UploadSignature::Content,
        },
        header_names: cfg.header_names.renamed().to_vec(),
        process_path: cfg
            .process_url
            .as_deref()
            .and_then(|url| url.strip_prefix(base.as_str()))
            .filter(|path| path.starts_with('/') && !path.starts_with("/FortAPI/"))
            .map(str::to_owned),
        ..ApsSimOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aps_batch::{ApsTransaction, Currency};

    #[test]
    fn demo_records_are_valid_unique_and_repeatable() {
        let records = demo_records("aps1", 300, 9);
        assert_eq!(records, demo_records("aps1", 300, 9));
        let usd = Currency::new("USD").ok();
        let mut refs = std::collections::HashSet::new();
        for r in &records {
            assert!(refs.insert(r[1].1.clone()));
        }
        let txs: Vec<ApsTransaction> = records
            .iter()
            .map(|r| {
                ApsTransaction::from_fields(r.iter().map(|(k, v)| (k.as_str(), v.as_str())), usd)
                    .unwrap()
            })
            .collect();
        assert!(aps_batch::write_batch_file(&txs).is_ok());
        let commands: std::collections::HashSet<&str> =
            records.iter().map(|r| r[0].1.as_str()).collect();
        assert_eq!(commands.len(), 4, "all four commands appear");
    }

    #[test]
    fn mixed_input_keeps_sola_lines_and_adds_aps_ones() {
        let dir = tempfile::tempdir().unwrap();
        let sola = dir.path().join("sola.kvp");
        std::fs::write(
            &sola,
            "account=s&ref=1&xCommand=cc:sale\naccount=s&ref=2&xCommand=cc:sale\n",
        )
        .unwrap();
        let out = dir.path().join("mixed.kvp");
        let accounts = demo_accounts(2);
        write_mixed_input(&sola, &out, &accounts, 3, 1).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[0], "account=s&ref=1&xCommand=cc:sale");
        assert!(
            lines[2].starts_with("account=aps-1&ref=aps-1-r0000&command="),
            "{}",
            lines[2]
        );
        let toml = demo_config_toml(&accounts, "http://127.0.0.1:1", 5);
        assert!(
            toml.contains("[accounts.aps-2]\nprotocol = \"aps\"")
                && toml.contains("sha_type = \"sha512\""),
            "{toml}"
        );
    }

    #[test]
    fn sim_options_follow_the_account() {
        use gateway_sim::aps::{ReferenceMode, UploadSignature};
        let mut cfg = ApsAccountConfig::new(
            "a",
            "http://127.0.0.1:9",
            "M",
            Secret::new("a".into()),
            Secret::new("i".into()),
            Secret::new("o".into()),
        )
        .unwrap();
        let plain = sim_options(&cfg);
        assert_eq!(plain.reference, ReferenceMode::Published);
        assert_eq!(plain.upload_signature, UploadSignature::Excluded);
        assert!(plain.header_names.is_empty() && plain.process_path.is_none());
        cfg.line_number_offset = 1;
        cfg.file_signature = FileSignature::Content;
        cfg.header_names = aps_batch::HeaderNames::new([("command", "Command")]).unwrap();
        cfg.process_url = Some("http://127.0.0.1:9/integration-batch/batchApi/".into());
        let set = sim_options(&cfg);
        assert_eq!(set.reference, ReferenceMode::Assumed3a);
        assert_eq!(set.upload_signature, UploadSignature::Content);
        assert_eq!(
            set.header_names,
            [("command".to_owned(), "Command".to_owned())]
        );
        assert_eq!(
            set.process_path.as_deref(),
            Some("/integration-batch/batchApi/")
        );
        cfg.process_url = Some("http://127.0.0.1:10/x/".into());
        assert_eq!(sim_options(&cfg).process_path, None, "another server");
    }
}
