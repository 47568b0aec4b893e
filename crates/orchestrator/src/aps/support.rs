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
            super::config::FileSignature::Excluded => UploadSignature::Excluded,
            super::config::FileSignature::Content => UploadSignature::Content,
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
        cfg.file_signature = super::super::config::FileSignature::Content;
        cfg.header_names =
            super::super::batch_file::HeaderNames::new([("command", "Command")]).unwrap();
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

    #[test]
    fn check_input_names_the_field() {
        let bad = vec![("command".to_owned(), "SALE".to_owned())];
        let err = check_input(&bad, None).unwrap_err();
        assert!(err.to_string().contains("`command`"), "{err}");
    }
}
