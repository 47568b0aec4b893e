//! Helpers for the parts of paybatch around the protocol: input validation before anything is
//! reserved, the simulator's view of an account (for `paybatch gateway-sim` and demos), and a
//! generated APS workload (for `paybatch demo --mixed`).

use kvp_format::Secret;

use super::batch_file::ApsTransaction;
use super::config::ApsAccountConfig;
use super::currency::Currency;
use super::error::Result;
use super::signature::ShaType;

/// Checks one input record of an APS account (its fields without `account` and `ref`)
/// exactly as the batch file writer will; use it where Sola records are checked for
/// `xCommand`, so a bad line is reported with its input line before anything is reserved.
///
/// # Errors
/// [`super::Error::Input`] naming the field (`command`, `merchant_reference`, `amount`, ...).
pub fn check_input(fields: &[(String, String)], default_currency: Option<Currency>) -> Result<()> {
    ApsTransaction::from_fields(
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        default_currency,
    )
    .map(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_records_are_valid_unique_and_repeatable() {
        let records = demo_records("aps1", 300, 9);
        assert_eq!(records, demo_records("aps1", 300, 9));
        let usd = Currency::new("USD").ok();
        let mut refs = std::collections::HashSet::new();
        for r in &records {
            check_input(r, usd).unwrap();
            assert!(refs.insert(r[1].1.clone()));
        }
        let txs: Vec<ApsTransaction> = records
            .iter()
            .map(|r| {
                ApsTransaction::from_fields(r.iter().map(|(k, v)| (k.as_str(), v.as_str())), usd)
                    .unwrap()
            })
            .collect();
        assert!(super::super::write_batch_file(&txs).is_ok());
        let commands: std::collections::HashSet<&str> =
            records.iter().map(|r| r[0].1.as_str()).collect();
        assert_eq!(commands.len(), 4, "all four commands appear");
    }

    #[test]
    fn check_input_names_the_field() {
        let bad = vec![("command".to_owned(), "SALE".to_owned())];
        let err = check_input(&bad, None).unwrap_err();
        assert!(err.to_string().contains("`command`"), "{err}");
    }
}
