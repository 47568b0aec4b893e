//! One APS account's settings, checked.

use std::fmt;
use std::time::Duration;

use kvp_format::Secret;

use crate::batch_file::HeaderNames;
use crate::error::{Error, Result};
use crate::signature::ShaType;
use gateway_protocol::money::Currency;

/// Checks a service URL: `https` unless the host is a loopback address (test servers), no
/// query, fragment or user info. `key` names the setting in errors.
fn checked_url(account: &str, key: &str, url: &str) -> Result<url::Url> {
    let bad = |message: String| Error::Config {
        account: account.to_owned(),
        key: key.to_owned(),
        message,
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("{url:?}: {e}")))?;
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(bad(
            "must not have a query, fragment or user info".to_owned()
        ));
    }
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(bad(format!("{url:?} has no host"))),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(bad(
                "plain http is only allowed for loopback test servers".to_owned()
            ));
        }
        other => return Err(bad(format!("unsupported scheme {other:?}"))),
    }
    Ok(parsed)
}

/// Whether the upload's signature covers the file part. The published reference does not say
/// (PROTOCOL.md §3b); section 3a assumed it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileSignature {
    /// The signature covers every field but `signature` and the file part (3a; the default).
    #[default]
    Excluded,
    /// The file's content, as UTF-8 text, takes part as the value of a `file` parameter,
    /// sorted with the other fields.
    Content,
}

impl FileSignature {
    /// The setting's spelling: `excluded` or `content`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Excluded => "excluded",
            Self::Content => "content",
        }
    }
}

/// The service's base URL, checked: `https` unless the host is a loopback address (test
/// servers), no query or fragment.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
}

impl Endpoint {
    /// Checks `url` (`https://sbpaymentservices.payfort.com`, `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`Error::Config`] (key `endpoint`) for an unparsable URL, a scheme other than https
    /// (http only for 127.0.0.0/8, `::1` and `localhost`), a query, fragment or user info.
    pub fn parse(account: &str, url: &str) -> Result<Self> {
        let parsed = checked_url(account, "endpoint", url)?;
        Ok(Self {
            base: parsed.as_str().trim_end_matches('/').to_owned(),
        })
    }

    /// `{endpoint}{path}`; `path` starts with `/`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Whether requests may go over plain http (loopback only).
    pub fn is_plain_http(&self) -> bool {
        self.base.starts_with("http://")
    }
}

impl ApsAccountConfig {
    /// The URL of `GET_BATCH_RESULTS`: `{endpoint}{api_path}`.
    pub fn results_url(&self) -> String {
        self.endpoint.join(&self.api_path)
    }

    /// The URL of `PROCESS_BATCH`: [`ApsAccountConfig::process_url`] if set, else the
    /// batchApi URL.
    pub fn process_url(&self) -> String {
        self.process_url
            .clone()
            .unwrap_or_else(|| self.results_url())
    }

    /// Whether any request may go over plain http (a loopback test server).
    pub fn uses_plain_http(&self) -> bool {
        self.endpoint.is_plain_http()
            || self
                .process_url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://"))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// Everything the client needs for one APS merchant. Secrets print as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct ApsAccountConfig {
    /// The paybatch account name (ledger key, logs).
    pub account: String,
    /// The service's base URL.
    pub endpoint: Endpoint,
    /// Path of the multipart upload under the endpoint (default `/FortAPI/upload/`).
    pub upload_path: String,
    /// Path of the JSON commands under the endpoint (default `/FortAPI/batchApi/`).
    pub api_path: String,
    /// The merchant's `merchant_identifier`.
    pub merchant_identifier: String,
    /// The merchant's `access_code`.
    pub access_code: Secret<String>,
    /// SHA request phrase (signs requests).
    pub sha_request_phrase: Secret<String>,
    /// SHA response phrase (verifies answers).
    pub sha_response_phrase: Secret<String>,
    /// SHA-256 (default) or SHA-512.
    pub sha_type: ShaType,
    /// `en` (default) or `ar`.
    pub language: String,
    /// Currency of input lines that give none.
    pub currency: Option<Currency>,
    /// Per HTTP request.
    pub request_timeout: Duration,
    /// Per TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Retries of a transient HTTP failure (connection, timeout, 5xx, 429) per request.
    pub retries: u32,
    /// First pause between two `GET_BATCH_RESULTS`; doubles up to `max_poll_interval`.
    pub poll_interval: Duration,
    /// Longest pause between two polls.
    pub max_poll_interval: Duration,
    /// Largest batch file (the service's limit, "Max: 50MB", read as 50,000,000 bytes).
    pub max_file_bytes: usize,
    /// Full URL of `PROCESS_BATCH` when it is not `{endpoint}{api_path}` (the older reference
    /// gives the sandbox Process step its own host). `None`: the batchApi URL.
    pub process_url: Option<String>,
    /// Whether the upload's signature covers the file (default: not, as in 3a).
    pub file_signature: FileSignature,
    /// The batch file's header cells for the standard parameters (default: the parameter
    /// names themselves, [`crate::COLUMNS`]).
    pub header_names: HeaderNames,
    /// `Line_Number` of the file's first data row in the service's per-line results and
    /// validation reasons: 2 when the header row counts as line 1 (the published example, the
    /// default), 1 when data rows are numbered from 1 (3a).
    pub line_number_offset: u64,
    /// Start of every `batch_reference` (0-4 characters; change it after recreating a ledger).
    pub reference_prefix: String,
    /// How long `trigger` waits for validation to finish before giving up (the batch stays
    /// uploaded; a re-run continues).
    pub validation_timeout: Duration,
}

impl ApsAccountConfig {
    /// The service's file limit: "Max: 50MB", read as 50,000,000 bytes (the smaller reading).
    pub const MAX_FILE_BYTES: usize = 50_000_000;

    /// The default [`ApsAccountConfig::line_number_offset`]: the header row is line 1.
    pub const LINE_NUMBER_OFFSET: u64 = 2;

    /// A configuration with the defaults for everything but the credentials.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad endpoint, an empty merchant identifier, access code or
    /// phrase.
    pub fn new(
        account: &str,
        endpoint: &str,
        merchant_identifier: &str,
        access_code: Secret<String>,
        sha_request_phrase: Secret<String>,
        sha_response_phrase: Secret<String>,
    ) -> Result<Self> {
        let cfg = Self {
            account: account.to_owned(),
            endpoint: Endpoint::parse(account, endpoint)?,
            upload_path: "/FortAPI/upload/".to_owned(),
            api_path: "/FortAPI/batchApi/".to_owned(),
            merchant_identifier: merchant_identifier.to_owned(),
            access_code,
            sha_request_phrase,
            sha_response_phrase,
            sha_type: ShaType::Sha256,
            language: "en".to_owned(),
            currency: None,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retries: 3,
            poll_interval: Duration::from_secs(2),
            max_poll_interval: Duration::from_secs(30),
            max_file_bytes: Self::MAX_FILE_BYTES,
            process_url: None,
            file_signature: FileSignature::Excluded,
            header_names: HeaderNames::default(),
            line_number_offset: Self::LINE_NUMBER_OFFSET,
            reference_prefix: "PB".to_owned(),
            validation_timeout: Duration::from_secs(30 * 60),
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks the fields a caller may have changed after [`ApsAccountConfig::new`].
    ///
    /// # Errors
    /// [`Error::Config`] naming the key.
    pub fn check(&self) -> Result<()> {
        let bad = |key: &str, message: &str| {
            Err(Error::Config {
                account: self.account.clone(),
                key: key.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.merchant_identifier.trim().is_empty() {
            return bad("merchant_identifier", "must not be empty");
        }
        if self.access_code.expose().trim().is_empty() {
            return bad("access_code", "must not be empty");
        }
        if self.sha_request_phrase.expose().is_empty() {
            return bad("sha_request_phrase", "must not be empty");
        }
        if self.sha_response_phrase.expose().is_empty() {
            return bad("sha_response_phrase", "must not be empty");
        }
        if !matches!(self.language.as_str(), "en" | "ar") {
            return bad("language", "must be en or ar");
        }
        if self.max_file_bytes == 0 || self.max_file_bytes > Self::MAX_FILE_BYTES {
            return bad(
                "max_file_bytes",
                "must be 1..=50000000 (the service's 50 MB)",
            );
        }
        if !(1..=2).contains(&self.line_number_offset) {
            return bad(
                "line_number_offset",
                "must be 1 (data rows numbered from 1) or 2 (the header row is line 1)",
            );
        }
        if let Some(url) = &self.process_url {
            checked_url(&self.account, "process_url", url)?;
        }
        if crate::reference::BatchReference::for_batch(&self.reference_prefix, &self.account, 1)
            .is_err()
        {
            return bad(
                "reference_prefix",
                "must be 0-4 characters from [A-Za-z0-9_.]",
            );
        }
        if !self.upload_path.starts_with('/') || !self.api_path.starts_with('/') {
            return bad("upload_path", "paths start with /");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "https://sbpaymentservices.payfort.com",
                Some("https://sbpaymentservices.payfort.com"),
            ),
            (
                "https://example.com/base/",
                Some("https://example.com/base"),
            ),
            ("http://127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("http://[::1]:8080/", Some("http://[::1]:8080")),
            ("http://localhost:1", Some("http://localhost:1")),
            ("http://example.com", None),
            ("http://10.0.0.1", None),
            ("ftp://127.0.0.1", None),
            ("https://example.com/?a=1", None),
            ("https://u:p@example.com", None),
            ("not a url", None),
        ];
        for (url, expected) in cases {
            let got = Endpoint::parse("a", url).ok().map(|e| e.to_string());
            assert_eq!(got.as_deref(), *expected, "{url}");
        }
        let e = Endpoint::parse("a", "https://example.com/").unwrap();
        assert_eq!(
            e.join("/FortAPI/upload/"),
            "https://example.com/FortAPI/upload/"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let cfg = ApsAccountConfig::new(
            "acme",
            "http://127.0.0.1:1",
            "MID",
            Secret::new("ACCESS-123".to_owned()),
            Secret::new("REQ-PHRASE".to_owned()),
            Secret::new("RESP-PHRASE".to_owned()),
        )
        .unwrap();
        let debug = format!("{cfg:?}");
        for secret in ["ACCESS-123", "REQ-PHRASE", "RESP-PHRASE"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        let mut bad = cfg.clone();
        bad.language = "fr".to_owned();
        assert!(matches!(bad.check(), Err(Error::Config { key, .. }) if key == "language"));
    }

    fn sample() -> ApsAccountConfig {
        ApsAccountConfig::new(
            "acme",
            "https://sbpaymentservices.payfort.com/",
            "MID",
            Secret::new("A".to_owned()),
            Secret::new("I".to_owned()),
            Secret::new("O".to_owned()),
        )
        .unwrap()
    }

    #[test]
    fn defaults_of_the_published_reference() {
        let cfg = sample();
        assert_eq!(cfg.max_file_bytes, 50_000_000);
        assert_eq!(cfg.line_number_offset, 2);
        assert_eq!(cfg.file_signature, FileSignature::Excluded);
        assert_eq!(cfg.header_names, HeaderNames::default());
        assert_eq!(
            cfg.results_url(),
            "https://sbpaymentservices.payfort.com/FortAPI/batchApi/"
        );
        assert_eq!(cfg.process_url(), cfg.results_url());
    }

    #[test]
    fn process_url_offset_and_size_are_checked() {
        let mut cfg = sample();
        cfg.process_url = Some("https://sbbatch.payfort.com/integration-batch/batchApi/".into());
        assert!(cfg.check().is_ok());
        assert_eq!(
            cfg.process_url(),
            "https://sbbatch.payfort.com/integration-batch/batchApi/",
            "kept as given, trailing slash included"
        );
        assert!(!cfg.uses_plain_http());
        type Case = (fn(&mut ApsAccountConfig), &'static str);
        let cases: &[Case] = &[
            (
                |c| c.process_url = Some("http://example.com/p".into()),
                "process_url",
            ),
            (|c| c.process_url = Some("not a url".into()), "process_url"),
            (|c| c.line_number_offset = 0, "line_number_offset"),
            (|c| c.line_number_offset = 3, "line_number_offset"),
            (|c| c.max_file_bytes = 50_000_001, "max_file_bytes"),
            (|c| c.max_file_bytes = 0, "max_file_bytes"),
        ];
        for (change, key) in cases {
            let mut bad = sample();
            change(&mut bad);
            assert!(
                matches!(bad.check(), Err(Error::Config { key: k, .. }) if k == *key),
                "{key}"
            );
        }
        let mut local = sample();
        local.process_url = Some("http://127.0.0.1:9/integration-batch/batchApi/".into());
        assert!(local.check().is_ok() && local.uses_plain_http());
    }
}
