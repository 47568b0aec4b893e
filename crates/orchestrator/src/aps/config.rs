//! One APS account's settings, checked.

use std::fmt;
use std::time::Duration;

use kvp_format::Secret;

use super::currency::Currency;
use super::error::{Error, Result};
use super::signature::ShaType;

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
        let bad = |message: String| Error::Config {
            account: account.to_owned(),
            key: "endpoint".to_owned(),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("{url:?}: {e}")))?;
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty()
        {
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
    /// Largest batch file (the service's limit is 50 MB).
    pub max_file_bytes: usize,
    /// Start of every `batch_reference` (0-4 characters; change it after recreating a ledger).
    pub reference_prefix: String,
    /// How long `trigger` waits for validation to finish before giving up (the batch stays
    /// uploaded; a re-run continues).
    pub validation_timeout: Duration,
}

impl ApsAccountConfig {
    /// The service's file limit.
    pub const MAX_FILE_BYTES: usize = 50 * 1024 * 1024;

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
            return bad("max_file_bytes", "must be 1..=50 MB");
        }
        if super::reference::BatchReference::for_batch(&self.reference_prefix, &self.account, 1)
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
}
