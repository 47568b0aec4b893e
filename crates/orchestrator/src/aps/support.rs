//! Helpers for the parts of paybatch around the protocol: input validation before anything is
//! reserved, the simulator's view of an account (for `paybatch gateway-sim` and demos), and a
//! generated APS workload is in `demo.rs`.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_input_names_the_field() {
        let bad = vec![("command".to_owned(), "SALE".to_owned())];
        let err = check_input(&bad, None).unwrap_err();
        assert!(err.to_string().contains("`command`"), "{err}");
    }
}
