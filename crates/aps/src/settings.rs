//! The `[accounts.NAME]` keys of an APS account, as read from the configuration, and their
//! resolution (secrets from the environment) into an [`ApsAccountConfig`].

use std::time::Duration;

use kvp_format::{EnvName, Secret};
use serde::{Deserialize, Serialize};

use crate::batch_file::HeaderNames;
use crate::config::{ApsAccountConfig, FileSignature};
use crate::error::{Error, Result};
use crate::signature::ShaType;
use gateway_protocol::money::Currency;

/// An APS account's settings (`protocol = "aps"`). Each secret is given either inline or as
/// the name of an environment variable (`*_env`), never both.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApsSettings {
    /// Base URL; the client calls `{endpoint}/FortAPI/upload/` and `{endpoint}/FortAPI/batchApi/`.
    pub endpoint: String,
    /// `merchant_identifier`.
    pub merchant_identifier: String,
    /// `access_code`, inline.
    #[serde(
        default,
        serialize_with = "gateway_protocol::settings::masked",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_code: Option<Secret<String>>,
    /// Name of the variable holding `access_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_code_env: Option<EnvName>,
    /// SHA request phrase, inline.
    #[serde(
        default,
        serialize_with = "gateway_protocol::settings::masked",
        skip_serializing_if = "Option::is_none"
    )]
    pub sha_request_phrase: Option<Secret<String>>,
    /// Name of the variable holding the request phrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha_request_phrase_env: Option<EnvName>,
    /// SHA response phrase, inline.
    #[serde(
        default,
        serialize_with = "gateway_protocol::settings::masked",
        skip_serializing_if = "Option::is_none"
    )]
    pub sha_response_phrase: Option<Secret<String>>,
    /// Name of the variable holding the response phrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha_response_phrase_env: Option<EnvName>,
    /// `sha256` (default) or `sha512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha_type: Option<ShaType>,
    /// `en` (default) or `ar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Default currency of input lines without one (ISO 4217).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Start of every `batch_reference` (default `PB`, at most 4 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_prefix: Option<String>,
    /// Path of the upload under the endpoint (default `/FortAPI/upload/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_path: Option<String>,
    /// Path of the JSON commands under the endpoint (default `/FortAPI/batchApi/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_path: Option<String>,
    /// Per HTTP request (default 60 s).
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout: Option<Duration>,
    /// Retries of a transient HTTP failure (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Longest wait for validation in `trigger` (default 30 min).
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub validation_timeout: Option<Duration>,
    /// Full URL of `PROCESS_BATCH` (default: `{endpoint}{api_path}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_url: Option<String>,
    /// Whether the upload's signature covers the file: `excluded` (default) or `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_signature: Option<FileSignature>,
    /// Largest batch file in bytes (default and maximum 50,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<usize>,
    /// Header cells of renamed standard columns, e.g. `{ merchant_reference = "Merchant_Reference" }`
    /// (default: the parameter names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_names: Option<std::collections::BTreeMap<String, String>>,
    /// `Line_Number` of the first data row in the service's answers: 2 (default, the header
    /// row is line 1) or 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_number_offset: Option<u64>,
}

impl ApsSettings {
    /// Resolves secrets (inline or from the environment) and defaults.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key: a secret given both ways or not at all, a variable
    /// that is unset, a bad endpoint, currency, language or prefix.
    pub fn resolve(&self, account: &str, env: &gateway_protocol::Env) -> Result<ApsAccountConfig> {
        let secret = |key: &str, inline: &Option<Secret<String>>, var: &Option<EnvName>| {
            let bad = |message: String| Error::Config {
                account: account.to_owned(),
                key: key.to_owned(),
                message,
            };
            match (inline, var) {
                (Some(s), None) => Ok(s.clone()),
                (None, Some(var)) => env
                    .get(var.as_str())
                    .filter(|v| !v.is_empty())
                    .map(|v| Secret::new(v.clone()))
                    .ok_or_else(|| bad(format!("environment variable {var} is not set"))),
                (Some(_), Some(_)) => Err(bad(format!("give {key} or {key}_env, not both"))),
                (None, None) => Err(bad(format!("{key} or {key}_env is required"))),
            }
        };
        let mut cfg = ApsAccountConfig::new(
            account,
            &self.endpoint,
            &self.merchant_identifier,
            secret("access_code", &self.access_code, &self.access_code_env)?,
            secret(
                "sha_request_phrase",
                &self.sha_request_phrase,
                &self.sha_request_phrase_env,
            )?,
            secret(
                "sha_response_phrase",
                &self.sha_response_phrase,
                &self.sha_response_phrase_env,
            )?,
        )?;
        if let Some(sha) = self.sha_type {
            cfg.sha_type = sha;
        }
        if let Some(language) = &self.language {
            cfg.language.clone_from(language);
        }
        if let Some(code) = &self.currency {
            cfg.currency = Some(Currency::new(code).map_err(|e| Error::Config {
                account: account.to_owned(),
                key: "currency".to_owned(),
                message: e.to_string(),
            })?);
        }
        if let Some(prefix) = &self.reference_prefix {
            cfg.reference_prefix.clone_from(prefix);
        }
        if let Some(path) = &self.upload_path {
            cfg.upload_path.clone_from(path);
        }
        if let Some(path) = &self.api_path {
            cfg.api_path.clone_from(path);
        }
        if let Some(t) = self.request_timeout {
            cfg.request_timeout = t;
        }
        if let Some(r) = self.retries {
            cfg.retries = r;
        }
        if let Some(t) = self.validation_timeout {
            cfg.validation_timeout = t;
        }
        if let Some(url) = &self.process_url {
            cfg.process_url = Some(url.clone());
        }
        if let Some(f) = self.file_signature {
            cfg.file_signature = f;
        }
        if let Some(n) = self.max_file_bytes {
            cfg.max_file_bytes = n;
        }
        if let Some(names) = &self.header_names {
            cfg.header_names = HeaderNames::new(names).map_err(|e| Error::Config {
                account: account.to_owned(),
                key: "header_names".to_owned(),
                message: e.to_string(),
            })?;
        }
        if let Some(n) = self.line_number_offset {
            cfg.line_number_offset = n;
        }
        cfg.check()?;
        Ok(cfg)
    }
}

/// `Option<Duration>` from a human string (`30s`, `2m`).
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }

    pub fn serialize<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        gateway_protocol::settings::opt_duration_text(v, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ApsSettings {
        ApsSettings {
            endpoint: "http://127.0.0.1:9".into(),
            merchant_identifier: "MID".into(),
            access_code: Some(Secret::new("AC".into())),
            sha_request_phrase: Some(Secret::new("IN".into())),
            sha_response_phrase_env: Some("PAYBATCH_TEST_APS_RESP_UNSET_1".into()),
            ..ApsSettings::default()
        }
    }

    #[test]
    fn secrets_inline_or_env() {
        let err = base()
            .resolve("a", &gateway_protocol::Env::new())
            .unwrap_err();
        assert!(
            err.to_string().contains("PAYBATCH_TEST_APS_RESP_UNSET_1"),
            "{err}"
        );
        let mut s = base();
        s.sha_response_phrase_env = None;
        assert!(
            s.resolve("a", &gateway_protocol::Env::new())
                .unwrap_err()
                .to_string()
                .contains("sha_response_phrase")
        );
        s.sha_response_phrase = Some(Secret::new("OUT".into()));
        s.currency = Some("kwd".into());
        s.sha_type = Some(ShaType::Sha512);
        let cfg = s.resolve("a", &gateway_protocol::Env::new()).unwrap();
        assert_eq!(cfg.currency.map(Currency::code), Some("KWD"));
        assert_eq!(cfg.sha_type, ShaType::Sha512);
        s.access_code_env = Some("X".into());
        assert!(
            s.resolve("a", &gateway_protocol::Env::new())
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        // A phrase pasted where its variable's name belongs: not in Debug, not in the error.
        let mut s = base();
        s.sha_response_phrase_env = Some("2b7e$pass-phrase".into());
        let err = s.resolve("a", &gateway_protocol::Env::new()).unwrap_err();
        for shown in [format!("{s:?}"), err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("pass-phrase"), "{shown}");
        }
    }

    #[test]
    fn parses_from_toml_like_input() {
        let s: ApsSettings = serde_json::from_str(
            r#"{"endpoint":"https://sbpaymentservices.payfort.com","merchant_identifier":"M",
                "access_code":"A","sha_request_phrase":"I","sha_response_phrase":"O",
                "sha_type":"sha512","request_timeout":"30s","reference_prefix":"PB2"}"#,
        )
        .unwrap();
        let cfg = s.resolve("acme", &gateway_protocol::Env::new()).unwrap();
        assert_eq!(cfg.request_timeout, Duration::from_secs(30));
        assert_eq!(cfg.reference_prefix, "PB2");
        assert!(
            serde_json::from_str::<ApsSettings>(
                r#"{"endpoint":"x","merchant_identifier":"m","typo":1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn published_reference_settings_and_their_defaults() {
        let cfg = base_resolved(r#"{}"#);
        assert_eq!(cfg.max_file_bytes, 50_000_000);
        assert_eq!(cfg.line_number_offset, 2);
        assert_eq!(cfg.file_signature, FileSignature::Excluded);
        assert_eq!(cfg.process_url(), "http://127.0.0.1:9/FortAPI/batchApi/");
        assert_eq!(
            cfg.header_names.cell("merchant_reference"),
            "merchant_reference"
        );
        let cfg = base_resolved(
            r#"{"process_url":"http://127.0.0.1:9/integration-batch/batchApi/",
                "file_signature":"content","max_file_bytes":1000000,"line_number_offset":1,
                "header_names":{"merchant_reference":"Merchant_Reference"}}"#,
        );
        assert_eq!(
            cfg.process_url(),
            "http://127.0.0.1:9/integration-batch/batchApi/"
        );
        assert_eq!(cfg.file_signature, FileSignature::Content);
        assert_eq!(cfg.max_file_bytes, 1_000_000);
        assert_eq!(cfg.line_number_offset, 1);
        assert_eq!(
            cfg.header_names.cell("merchant_reference"),
            "Merchant_Reference"
        );
        for (bad, key) in [
            (r#"{"max_file_bytes":52428800}"#, "max_file_bytes"),
            (r#"{"line_number_offset":0}"#, "line_number_offset"),
            (r#"{"process_url":"http://example.com/x"}"#, "process_url"),
            (r#"{"header_names":{"merchant_ref":"X"}}"#, "header_names"),
        ] {
            let err = base_with(bad)
                .resolve("a", &gateway_protocol::Env::new())
                .unwrap_err();
            assert!(
                matches!(&err, Error::Config { key: k, .. } if k == key),
                "{bad}: {err}"
            );
        }
        assert!(
            serde_json::from_str::<ApsSettings>(
                r#"{"endpoint":"x","merchant_identifier":"m","file_signature":"maybe"}"#
            )
            .is_err()
        );
    }

    fn base_with(extra: &str) -> ApsSettings {
        let mut v: serde_json::Value = serde_json::from_str(extra).unwrap();
        let obj = v.as_object_mut().unwrap();
        for (k, val) in [
            ("endpoint", "http://127.0.0.1:9"),
            ("merchant_identifier", "MID"),
            ("access_code", "AC"),
            ("sha_request_phrase", "IN"),
            ("sha_response_phrase", "OUT"),
        ] {
            obj.insert(k.into(), val.into());
        }
        serde_json::from_value(v).unwrap()
    }

    fn base_resolved(extra: &str) -> ApsAccountConfig {
        base_with(extra)
            .resolve("a", &gateway_protocol::Env::new())
            .unwrap()
    }
}
