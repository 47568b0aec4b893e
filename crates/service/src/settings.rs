//! `[serve]`: where the service listens, who may call it, where accepted jobs live.
//!
//! The section is in `config/default.toml` like every other; the engine lets it through
//! unread and [`ServeConfig::from_settings`] checks it (`orchestrator::Settings::section`), so
//! the same layers apply: the compiled-in defaults, `--config FILE`, `PAYBATCH__SERVE__KEY`.

use std::net::SocketAddr;
use std::path::PathBuf;

use kvp_format::{EnvName, Secret};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// `[serve]` as written (see `config/default.toml` for each key).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServeSection {
    /// The API's address (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// The admin address: metrics, health, status page; no token.
    pub admin_listen: String,
    /// The name of the variable holding the comma-separated bearer tokens.
    pub tokens_env: EnvName,
    /// Accepted inputs, job records and results; empty: `serve` beside the ledger folder.
    #[serde(default)]
    pub data_dir: PathBuf,
    /// The largest accepted body in bytes (413 above it).
    pub max_body: u64,
    /// A PEM certificate chain: with `tls_key`, both listeners speak HTTPS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Jobs run at once; the others wait (state `accepted`).
    pub max_concurrent_jobs: usize,
}

/// The bearer tokens, compared in constant time. `Debug` shows how many, never one.
#[derive(Clone)]
pub struct Tokens(Vec<Secret<[u8; 32]>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens([REDACTED; {}])", self.0.len())
    }
}

impl Tokens {
    /// The tokens of a comma-separated list (blanks around and between them ignored); `None`
    /// when there is none.
    pub fn parse(list: &str) -> Option<Self> {
        let tokens: Vec<Secret<[u8; 32]>> = list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(Sha256::digest(t.as_bytes()).into()))
            .collect();
        (!tokens.is_empty()).then_some(Self(tokens))
    }

    /// Whether `presented` is one of the tokens. Both sides are hashed first, so the time
    /// taken depends neither on where the first differing byte is nor on the tokens' lengths,
    /// and every token is compared (no early exit).
    pub fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, t| {
                found | t.expose().ct_eq(&digest)
            })
            .into()
    }
}

/// Where the TLS certificate and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[serve]`, checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The API's address.
    pub listen: SocketAddr,
    /// The admin address.
    pub admin_listen: SocketAddr,
    /// The accepted bearer tokens.
    pub tokens: Tokens,
    /// The variable they came from (for messages).
    pub tokens_env: EnvName,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The largest accepted body in bytes.
    pub max_body: u64,
    /// HTTPS, when configured.
    pub tls: Option<TlsFiles>,
    /// Jobs run at once.
    pub max_concurrent_jobs: usize,
}

impl ServeConfig {
    /// Checks `[serve]` of `settings`; the tokens are read from the variable `tokens_env`
    /// names, through `env` (the process environment in the binary).
    ///
    /// # Errors
    /// [`Error::Engine`] when the section has an unknown key or a bad type; [`Error::Setting`]
    /// for a bad address, a zero limit or half a TLS pair; [`Error::NoTokens`] when the
    /// variable is unset or holds no token.
    pub fn from_settings(
        settings: &orchestrator::Settings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let section: ServeSection = settings.section("serve")?.ok_or_else(|| Error::Setting {
            key: "listen",
            message: "missing section [serve]".into(),
        })?;
        Self::check(section, &settings.ledger.path, env)
    }

    /// Checks a section; `ledger` places the default data directory.
    ///
    /// # Errors
    /// As [`ServeConfig::from_settings`].
    pub fn check(
        section: ServeSection,
        ledger: &std::path::Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let addr = |key: &'static str, text: &str| -> Result<SocketAddr> {
            text.parse().map_err(|e| Error::Setting {
                key,
                message: format!("{text:?} is not an address (host:port): {e}"),
            })
        };
        let listen = addr("listen", &section.listen)?;
        let admin_listen = addr("admin_listen", &section.admin_listen)?;
        if section.tokens_env.as_str().trim().is_empty() {
            return Err(Error::Setting {
                key: "tokens_env",
                message: "must name an environment variable".into(),
            });
        }
        let tokens = env(section.tokens_env.as_str())
            .and_then(|v| Tokens::parse(&v))
            .ok_or_else(|| Error::NoTokens {
                variable: section.tokens_env.to_string(),
            })?;
        if section.max_body == 0 {
            return Err(Error::Setting {
                key: "max_body",
                message: "must be at least 1".into(),
            });
        }
        if section.max_concurrent_jobs == 0 {
            return Err(Error::Setting {
                key: "max_concurrent_jobs",
                message: "must be at least 1".into(),
            });
        }
        let tls = match (section.tls_cert, section.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (Some(_), None) => {
                return Err(Error::Setting {
                    key: "tls_key",
                    message: "tls_cert is set: set tls_key too".into(),
                });
            }
            (None, Some(_)) => {
                return Err(Error::Setting {
                    key: "tls_cert",
                    message: "tls_key is set: set tls_cert too".into(),
                });
            }
        };
        let data_dir = if section.data_dir.as_os_str().is_empty() {
            ledger
                .parent()
                .map_or_else(|| PathBuf::from("serve"), |p| p.join("serve"))
        } else {
            section.data_dir
        };
        Ok(Self {
            listen,
            admin_listen,
            tokens,
            tokens_env: section.tokens_env,
            data_dir,
            max_body: section.max_body,
            tls,
            max_concurrent_jobs: section.max_concurrent_jobs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> ServeSection {
        ServeSection {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            tokens_env: "PB_TOKENS".into(),
            data_dir: PathBuf::new(),
            max_body: 1 << 30,
            tls_cert: None,
            tls_key: None,
            max_concurrent_jobs: 4,
        }
    }

    fn env(value: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
        move |name| {
            (name == "PB_TOKENS")
                .then(|| value.map(str::to_owned))
                .flatten()
        }
    }

    #[test]
    fn tokens_are_a_comma_separated_list_and_none_refuses_to_start() {
        let ledger = std::path::Path::new("/var/lib/paybatch/ledger");
        for unset in [None, Some(""), Some(" , ,")] {
            let e = ServeConfig::check(section(), ledger, env(unset)).unwrap_err();
            assert!(matches!(e, Error::NoTokens { .. }), "{unset:?}: {e}");
            assert!(e.to_string().contains("PB_TOKENS"));
        }
        let c = ServeConfig::check(section(), ledger, env(Some(" alpha ,beta"))).unwrap();
        assert!(c.tokens.accepts("alpha") && c.tokens.accepts("beta"));
        for wrong in ["", "alph", "alpha ", "alphabeta", "gamma"] {
            assert!(!c.tokens.accepts(wrong), "{wrong:?}");
        }
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("alpha") && shown.contains("REDACTED; 2"),
            "{shown}"
        );
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/paybatch/serve"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let ledger = std::path::Path::new("/l/ledger");
        type Change = Box<dyn Fn(&mut ServeSection)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.listen = "nowhere".into()), "serve.listen"),
            (
                Box::new(|s| s.admin_listen = "1.2.3.4".into()),
                "serve.admin_listen",
            ),
            (Box::new(|s| s.max_body = 0), "serve.max_body"),
            (
                Box::new(|s| s.max_concurrent_jobs = 0),
                "serve.max_concurrent_jobs",
            ),
            (
                Box::new(|s| s.tls_cert = Some("c.pem".into())),
                "serve.tls_key",
            ),
            (
                Box::new(|s| s.tls_key = Some("k.pem".into())),
                "serve.tls_cert",
            ),
            (Box::new(|s| s.tokens_env = " ".into()), "serve.tokens_env"),
        ];
        for (change, key) in cases {
            let mut s = section();
            change(&mut s);
            let e = ServeConfig::check(s, ledger, env(Some("t"))).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }
}
