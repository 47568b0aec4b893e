//! Settings: the compiled-in `config/default.toml`, an optional file, and `PAYBATCH__…`
//! environment overrides, checked into types. The engine reads its own sections (`[ledger]`,
//! `[poll]`, `[limits]`, `[input]`); each `[accounts.NAME]` table (and the top-level sections a
//! protocol owns, like Sola's `[storage]` and `[gateway]`) is handed to the factory of the
//! account's `protocol`, which checks it into an [`Account`]. Unknown keys are errors naming
//! the key; secrets named by `*_env` keys are read from the environment given to the loader,
//! when the account connects.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gateway_protocol::settings::{duration, duration_text};
use gateway_protocol::{Account, AccountCommon, AccountContext, AccountFactory, Env};
use kvp_format::{mask_url_password, url_has_password};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod file_mode;

/// The text of `config/default.toml`, compiled in so the binary works from any directory.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");

/// The prefix of environment overrides: `PAYBATCH__POLL__TIMEOUT=30m`.
pub const ENV_PREFIX: &str = "PAYBATCH";

/// The `protocol` of an account table that names none.
pub const DEFAULT_PROTOCOL: &str = "sola";

/// The engine's sections, and `serve`: the engine does not read `[serve]` itself but lets it
/// through (it is in `config/default.toml`), for the program that serves jobs over HTTP
/// (`paybatch-service`), which checks it with [`Settings::section`].
const ENGINE_SECTIONS: [&str; 6] = ["ledger", "poll", "limits", "input", "accounts", "serve"];

/// Every setting paybatch reads, checked: the engine's sections and the accounts. Debug shows
/// the protocols' sections as `config show` does (a `*_env` value that is not a variable's
/// name is not shown).
#[non_exhaustive]
pub struct Settings {
    /// Where the sequence ledger lives.
    pub ledger: LedgerSettings,
    /// How COMPLETE files are awaited.
    pub poll: PollSettings,
    /// Concurrency and batch size.
    pub limits: LimitSettings,
    /// Names of the routing fields of input records.
    pub input: InputSettings,
    /// The batch accounts, by name.
    accounts: BTreeMap<String, Arc<dyn Account>>,
    /// The top-level sections protocols own, as loaded (for display).
    sections: config::Map<String, config::Value>,
    /// The shared ledger's URL: `ledger.url`, else the variable `ledger.url_env` names.
    ledger_url: Option<kvp_format::Secret<String>>,
}

/// `[ledger]`: the embedded sled ledger at `path` (the default), or the shared PostgreSQL
/// ledger at a URL (`url`, or the variable `url_env` names; `PAYBATCH__LEDGER__URL` overrides
/// `url`). The engine opens only the sled ledger itself; a program that wants the shared one
/// opens it from [`Settings::ledger_url`] and gives it to
/// [`crate::OrchestratorBuilder::ledger`].
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LedgerSettings {
    /// The sled directory.
    pub path: PathBuf,
    /// The shared ledger's URL (`postgres://user@host:port/database`). A password in it is
    /// refused in a configuration file (give it through `url_env` or `PAYBATCH__LEDGER__URL`);
    /// shown masked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "masked_url"
    )]
    pub url: Option<String>,
    /// The name of an environment variable holding the shared ledger's URL (password
    /// included), used when `url` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<kvp_format::EnvName>,
    /// How long an account's lease lasts unless renewed (renewed every third of it): a
    /// process that stops renewing loses its accounts this long after its last renewal.
    #[serde(
        default = "default_lease_ttl",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub lease_ttl: Duration,
    /// A PEM file of certificate authorities to trust for the database's TLS certificate,
    /// beside the system's (TLS as the URL's `sslmode` asks: `prefer`, `require`, `disable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// The URL's password (from `PAYBATCH__LEDGER__URL`, say) never shows in debug output.
impl fmt::Debug for LedgerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerSettings")
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(mask_url_password))
            .field("url_env", &self.url_env)
            .field("lease_ttl", &self.lease_ttl)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn default_lease_ttl() -> Duration {
    sequence_ledger::DEFAULT_LEASE_TTL
}

/// A URL as `config show` prints it: the password (if any) as `***`.
fn masked_url<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&mask_url_password(u)),
        None => s.serialize_none(),
    }
}

/// A configuration file's `[ledger] url` must not hold a password (files get committed and
/// copied; the variable `url_env` names, or `PAYBATCH__LEDGER__URL`, is the place for it).
/// A file that does not parse is left to the loader to report.
fn refuse_url_password(text: &str, path: &Path) -> Result<()> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let url = doc
        .get("ledger")
        .and_then(|l| l.get("url"))
        .and_then(|u| u.as_str());
    match url {
        Some(url) if url_has_password(url) => Err(Error::Config {
            message: format!(
                "{}: [ledger] url holds a password ({}): keep it out of files — put the whole URL in an environment variable and name it with `url_env`, or set PAYBATCH__LEDGER__URL",
                path.display(),
                mask_url_password(url)
            ),
            source: None,
        }),
        _ => Ok(()),
    }
}

/// `[poll]`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PollSettings {
    /// First delay before looking for COMPLETE.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub interval: Duration,
    /// Upper bound of the backoff.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub max_interval: Duration,
    /// No COMPLETE by then: Stuck.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub timeout: Duration,
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitSettings {
    /// Accounts worked on at once.
    pub max_concurrent_accounts: usize,
    /// Lines per REQUEST file unless an account overrides it.
    pub max_batch_lines: usize,
    /// Threads for blocking work (ledger writes with their fsyncs, local-drop file I/O) in the
    /// `paybatch` runtime. Each such thread can get its own malloc arena, so fewer threads
    /// mean less memory (measured in `crates/orchestrator/README.md`). A program embedding
    /// the orchestrator applies it to its own runtime
    /// (`tokio::runtime::Builder::max_blocking_threads`) if it wants it.
    pub blocking_threads: usize,
}

/// `[input]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct InputSettings {
    /// The field naming the account.
    pub account_field: String,
    /// The field carrying the caller's unique reference.
    pub ref_field: String,
}

impl Settings {
    /// Loads the compiled-in defaults, then `file` (if any), then `PAYBATCH__…` variables of
    /// the process environment, and checks the result; `protocols` build the accounts (one
    /// factory per `protocol` value). When `file` holds a secret value inline (a key a
    /// protocol names in [`AccountFactory::secret_keys`], not its `*_env` variable name) and
    /// its group or others have any permission on it, a warning names the file and the keys
    /// (never a value), once per file and process, as ssh does for a private key.
    ///
    /// # Errors
    /// [`Error::Config`] for unreadable files and unknown keys or sections (the message names
    /// the key), [`Error::Setting`] for missing or inconsistent values (naming the account).
    pub fn load(file: Option<&Path>, protocols: &[Arc<dyn AccountFactory>]) -> Result<Self> {
        Self::load_with_env(file, std::env::vars(), protocols)
    }

    /// [`Settings::load`] with an explicit environment: its `PAYBATCH__…` variables override
    /// the settings, and the accounts read their `*_env` secrets from it (for tests and
    /// embedding programs).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        protocols: &[Arc<dyn AccountFactory>],
    ) -> Result<Self> {
        let env: Env = env.into_iter().collect();
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_CONFIG,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::Config {
                    message: format!("{}: no such file", path.display()),
                    source: None,
                });
            }
            let secret_keys: Vec<&str> = protocols
                .iter()
                .flat_map(|p| p.secret_keys())
                .copied()
                .collect();
            file_mode::warn_if_shared(path, &secret_keys);
            refuse_url_password(&std::fs::read_to_string(path).unwrap_or_default(), path)?;
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let overrides: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("PAYBATCH__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("allowed_commands")
                .source(Some(overrides)),
        );
        let built = builder.build().map_err(config_error)?;
        Self::from_config(built, Arc::new(env), protocols)
    }

    /// Parses settings from TOML text layered over the defaults (no environment).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_toml(text: &str, protocols: &[Arc<dyn AccountFactory>]) -> Result<Self> {
        refuse_url_password(text, Path::new("(settings text)"))?;
        let built = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_CONFIG,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(config_error)?;
        Self::from_config(built, Arc::default(), protocols)
    }

    fn from_config(
        built: config::Config,
        env: Arc<Env>,
        protocols: &[Arc<dyn AccountFactory>],
    ) -> Result<Self> {
        let mut root: config::Map<String, config::Value> =
            built.try_deserialize().map_err(config_error)?;
        let section = |root: &mut config::Map<String, config::Value>, name: &str| {
            root.remove(name)
                .ok_or_else(|| Error::setting(name, "missing section"))
        };
        let ledger: LedgerSettings = deserialize(section(&mut root, "ledger")?, "ledger")?;
        let ledger_url = match (&ledger.url, &ledger.url_env) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(name)) => Some(
                env.get(name.as_str())
                    .filter(|v| !v.trim().is_empty())
                    .cloned()
                    .ok_or_else(|| {
                        Error::setting(
                            "ledger.url_env",
                            format!("names {name}, which is not set in the environment"),
                        )
                    })?,
            ),
            (None, None) => None,
        }
        .map(kvp_format::Secret::new);
        let poll: PollSettings = deserialize(section(&mut root, "poll")?, "poll")?;
        let limits: LimitSettings = deserialize(section(&mut root, "limits")?, "limits")?;
        let input: InputSettings = deserialize(section(&mut root, "input")?, "input")?;
        let raw_accounts = match root.remove("accounts") {
            Some(v) => v.into_table().map_err(config_error)?,
            None => config::Map::new(),
        };
        // What is left are the protocols' sections; anything else is a typo.
        for name in root.keys() {
            let owned = protocols
                .iter()
                .any(|p| p.sections().contains(&name.as_str()));
            if !owned && !ENGINE_SECTIONS.contains(&name.as_str()) {
                return Err(Error::Config {
                    message: format!("unknown section `{name}`"),
                    source: None,
                });
            }
        }
        let sections = root;
        for protocol in protocols {
            protocol.check_sections(&sections).map_err(Error::Gateway)?;
        }
        let mut accounts: BTreeMap<String, Arc<dyn Account>> = BTreeMap::new();
        // Exclusive key -> the account holding it.
        let mut exclusive_holders: HashMap<String, String> = HashMap::new();
        for (name, table) in raw_accounts {
            sequence_ledger::AccountId::new(&name).map_err(|e| {
                Error::setting(format!("accounts.{name}"), format!("bad account name: {e}"))
            })?;
            let mut table = table
                .into_table()
                .map_err(|e| Error::setting(format!("accounts.{name}"), e.to_string()))?;
            let protocol = match table.remove("protocol") {
                Some(p) => p.into_string().map_err(|e| {
                    Error::setting(format!("accounts.{name}.protocol"), e.to_string())
                })?,
                None => DEFAULT_PROTOCOL.to_owned(),
            };
            let mut common = config::Map::new();
            for key in ["max_batch_lines", "allowed_commands"] {
                if let Some(v) = table.remove(key) {
                    common.insert(key.to_owned(), v);
                }
            }
            let common: AccountCommon =
                deserialize(config::Value::from(common), &format!("accounts.{name}"))?;
            let factory = protocols
                .iter()
                .find(|p| p.protocol().eq_ignore_ascii_case(&protocol))
                .ok_or_else(|| {
                    let known: Vec<&str> = protocols.iter().map(|p| p.protocol()).collect();
                    Error::setting(
                        format!("accounts.{name}.protocol"),
                        format!(
                            "unknown protocol {protocol:?} (known: {})",
                            known.join(", ")
                        ),
                    )
                })?;
            let context = AccountContext {
                common: &common,
                sections: &sections,
                env: &env,
            };
            let account = factory
                .account(&name, config::Value::from(table), context)
                .map_err(Error::Gateway)?;
            // One drop, one account (PROTOCOL.md decision 4c), and whatever else two accounts
            // of a protocol may not share.
            if let Some(exclusive) = account.exclusive()
                && let Some(other) = exclusive_holders.insert(exclusive.key, name.clone())
            {
                return Err(Error::setting(
                    format!("accounts.{name}.location"),
                    format!("accounts {other} and {name} {}", exclusive.reason),
                ));
            }
            accounts.insert(name, account);
        }
        let settings = Self {
            ledger,
            poll,
            limits,
            input,
            accounts,
            sections,
            ledger_url,
        };
        settings.check()?;
        Ok(settings)
    }

    /// The shared ledger's URL (`[ledger] url`, else the variable `[ledger] url_env` names),
    /// password included; `None` for the embedded sled ledger at `[ledger] path`.
    pub fn ledger_url(&self) -> Option<&str> {
        self.ledger_url.as_ref().map(|u| u.expose().as_str())
    }

    fn check(&self) -> Result<()> {
        if self.limits.max_batch_lines == 0 {
            return Err(Error::setting(
                "limits.max_batch_lines",
                "must be at least 1",
            ));
        }
        if self.limits.max_concurrent_accounts == 0 {
            return Err(Error::setting(
                "limits.max_concurrent_accounts",
                "must be at least 1",
            ));
        }
        if self.limits.blocking_threads == 0 {
            return Err(Error::setting(
                "limits.blocking_threads",
                "must be at least 1",
            ));
        }
        if self.poll.interval.is_zero() || self.poll.max_interval < self.poll.interval {
            return Err(Error::setting(
                "poll.interval",
                "must be non-zero and at most poll.max_interval",
            ));
        }
        if self.input.account_field == self.input.ref_field {
            return Err(Error::setting(
                "input",
                "account_field and ref_field must differ",
            ));
        }
        Ok(())
    }

    /// The account called `name`.
    ///
    /// # Errors
    /// [`Error::Setting`] when no such account is configured.
    pub fn account(&self, name: &str) -> Result<&Arc<dyn Account>> {
        self.accounts
            .get(name)
            .ok_or_else(|| Error::setting(format!("accounts.{name}"), "no such account"))
    }

    /// Every account, by name.
    pub fn accounts(&self) -> &BTreeMap<String, Arc<dyn Account>> {
        &self.accounts
    }

    /// A top-level section that neither the engine nor a protocol reads (`[serve]`), as loaded
    /// from the same layers (defaults, file, `PAYBATCH__SECTION__KEY` variables), checked into
    /// `T` (its `deny_unknown_fields` names an unknown key); `None` when no layer has it.
    ///
    /// # Errors
    /// [`Error::Config`] naming the section when it does not check into `T`.
    pub fn section<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.sections
            .get(name)
            .map(|v| deserialize(v.clone(), name))
            .transpose()
    }

    /// Lines per batch for `account`.
    pub fn max_batch_lines(&self, account: &str) -> usize {
        self.accounts
            .get(account)
            .and_then(|a| a.common().max_batch_lines)
            .unwrap_or(self.limits.max_batch_lines)
    }

    /// [`Settings::masked`] as TOML: what `paybatch config show` prints. Loading it again
    /// gives the same settings (secrets aside).
    pub fn to_masked_toml(&self) -> String {
        toml::to_string(&self.masked()).unwrap_or_default()
    }

    /// The effective settings with every secret masked, as the configuration would spell them:
    /// the engine's sections, the protocols' sections, then each account's table with its
    /// `protocol` and common keys.
    pub fn masked(&self) -> serde_json::Value {
        fn value(v: &impl Serialize) -> serde_json::Value {
            serde_json::to_value(v).unwrap_or_default()
        }
        let mut root = serde_json::Map::new();
        root.insert("ledger".into(), value(&self.ledger));
        root.insert("poll".into(), value(&self.poll));
        root.insert("limits".into(), value(&self.limits));
        root.insert("input".into(), value(&self.input));
        root.extend(self.shown_sections());
        let mut accounts = serde_json::Map::new();
        for (name, account) in &self.accounts {
            let mut table = serde_json::Map::new();
            table.insert("protocol".into(), account.protocol().into());
            if let serde_json::Value::Object(common) = value(account.common()) {
                table.extend(common);
            }
            if let serde_json::Value::Object(own) = account.settings() {
                table.extend(own);
            }
            accounts.insert(name.clone(), table.into());
        }
        root.insert("accounts".into(), accounts.into());
        let mut root = serde_json::Value::Object(root);
        show_env_names(&mut root);
        root
    }

    /// The protocols' sections, as loaded, with their `*_env` values shown as
    /// [`kvp_format::shown_env_name`] shows them.
    fn shown_sections(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut shown: serde_json::Map<String, serde_json::Value> = self
            .sections
            .iter()
            .map(|(name, section)| {
                let value = section
                    .clone()
                    .try_deserialize::<serde_json::Value>()
                    .unwrap_or_default();
                (name.clone(), value)
            })
            .collect();
        shown.values_mut().for_each(show_env_names);
        shown
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("ledger", &self.ledger)
            .field("poll", &self.poll)
            .field("limits", &self.limits)
            .field("input", &self.input)
            .field("accounts", &self.accounts)
            .field("sections", &self.shown_sections())
            .field("ledger_url", &self.ledger_url)
            .finish()
    }
}

/// Every `*_env` setting as [`kvp_format::shown_env_name`] shows it: a secret pasted where its
/// variable's name belongs is not printed back.
fn show_env_names(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(name) if key.ends_with("_env") => {
                        let shown = kvp_format::shown_env_name(name);
                        if let Some(placeholder) =
                            (shown != name.as_str()).then(|| shown.into_owned())
                        {
                            *name = placeholder;
                        }
                    }
                    other => show_env_names(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(show_env_names),
        _ => {}
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(value: config::Value, section: &str) -> Result<T> {
    value.try_deserialize().map_err(|e| Error::Config {
        message: format!("{section}: {e}"),
        source: Some(e),
    })
}

fn config_error(e: config::ConfigError) -> Error {
    Error::Config {
        message: e.to_string(),
        source: Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aps_batch::ApsAccount;
    use sola_file_drop::SolaAccount;
    use storage_backends::{BackendOptions, RetryPolicy, SftpAuth};

    const ACME: &str = "[accounts.acme]\nlocation = \"file:///tmp/acme\"\nbatch_key = \"bk-secret\"\nmerchant_key = \"mk-secret\"\n";
    const S3: &str = "[accounts.bucket]\nlocation = \"s3://pay-drop/acme\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n";

    fn from_toml(text: &str) -> Result<Settings> {
        Settings::from_toml(text, &crate::test_protocols())
    }

    fn sola<'a>(s: &'a Settings, name: &str) -> &'a SolaAccount {
        s.account(name)
            .unwrap()
            .as_any()
            .downcast_ref::<SolaAccount>()
            .unwrap()
    }

    fn aps<'a>(s: &'a Settings, name: &str) -> &'a ApsAccount {
        s.account(name)
            .unwrap()
            .as_any()
            .downcast_ref::<ApsAccount>()
            .unwrap()
    }

    /// `S3` with `extra` keys, loaded with S3 credential variables in its environment.
    fn s3_options(extra: &str) -> Result<BackendOptions> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{S3}{extra}")).map_err(|e| Error::io(&path, e))?;
        let env = [
            ("ACME_S3_ID", "AKIDEXAMPLE"),
            ("ACME_S3_SECRET", "s3-secret-value-42"),
            ("EMPTY", ""),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = Settings::load_with_env(Some(&path), env, &crate::test_protocols())?;
        Ok(sola(&s, "bucket").backend_options()?)
    }

    #[test]
    fn defaults_parse_without_accounts() {
        let s = from_toml("").unwrap();
        assert_eq!(s.limits.max_batch_lines, 5000);
        assert_eq!(s.limits.blocking_threads, 8);
        assert_eq!(s.poll.interval, Duration::from_secs(2));
        assert_eq!(s.poll.timeout, Duration::from_secs(7200));
        assert!(s.accounts().is_empty());
        let shown = s.to_masked_toml();
        assert!(
            shown.contains("[gateway]") && shown.contains("[storage]"),
            "{shown}"
        );
    }

    #[test]
    fn account_parses_and_masks_secrets() {
        let s = from_toml(ACME).unwrap();
        assert_eq!(sola(&s, "acme").batch_key().unwrap().expose(), "bk-secret");
        assert_eq!(s.account("acme").unwrap().protocol(), "sola");
        let shown = s.to_masked_toml();
        assert!(
            !shown.contains("bk-secret") && !shown.contains("mk-secret"),
            "{shown}"
        );
        assert!(shown.contains("[REDACTED]"));
        assert!(!format!("{s:?}").contains("bk-secret"));
    }

    #[test]
    fn aps_account_masks_its_secrets_and_shows_the_rest() {
        let text = "[accounts.gulf]\nprotocol = \"aps\"\nendpoint = \"https://sbpaymentservices.payfort.com\"\nmerchant_identifier = \"MID-7\"\naccess_code = \"ac-secret-77\"\nsha_request_phrase = \"in-secret-77\"\nsha_response_phrase_env = \"GULF_OUT\"\nsha_type = \"sha512\"\ncurrency = \"AED\"\nrequest_timeout = \"15s\"\nretries = 5\n";
        let s = from_toml(text).unwrap();
        let shown = s.to_masked_toml();
        assert!(
            !shown.contains("ac-secret-77") && !shown.contains("in-secret-77"),
            "{shown}"
        );
        for line in [
            "protocol = \"aps\"",
            "endpoint = \"https://sbpaymentservices.payfort.com\"",
            "merchant_identifier = \"MID-7\"",
            "access_code = \"[REDACTED]\"",
            "sha_request_phrase = \"[REDACTED]\"",
            "sha_response_phrase_env = \"GULF_OUT\"",
            "sha_type = \"sha512\"",
            "currency = \"AED\"",
            "request_timeout = \"15s\"",
            "retries = 5",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} in {shown}");
        }
        assert!(!shown.contains("location"), "{shown}");
        let reparsed = from_toml(&shown).unwrap();
        let again = aps(&reparsed, "gulf").settings();
        assert_eq!(again.request_timeout, Some(Duration::from_secs(15)));
        assert_eq!(again.retries, Some(5));
        assert!(!format!("{s:?}").contains("ac-secret-77"));
    }

    #[test]
    fn aps_published_reference_keys_parse_show_and_reach_the_client_config() {
        let text = "[accounts.gulf]\nprotocol = \"aps\"\nendpoint = \"https://sbpaymentservices.payfort.com\"\nmerchant_identifier = \"MID-7\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\nprocess_url = \"https://sbbatch.payfort.com/integration-batch/batchApi/\"\nfile_signature = \"content\"\nmax_file_bytes = 20000000\nline_number_offset = 1\nheader_names = { merchant_reference = \"Merchant_Reference\", command = \"Command\" }\n";
        let s = from_toml(text).unwrap();
        let shown = s.to_masked_toml();
        for line in [
            "process_url = \"https://sbbatch.payfort.com/integration-batch/batchApi/\"",
            "file_signature = \"content\"",
            "max_file_bytes = 20000000",
            "line_number_offset = 1",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} in {shown}");
        }
        assert!(
            shown.contains("Merchant_Reference") && shown.contains("Command"),
            "{shown}"
        );
        let reparsed = from_toml(&shown.replace("[REDACTED]", "x")).unwrap();
        let cfg = aps(&reparsed, "gulf").config().unwrap();
        assert_eq!(
            cfg.process_url(),
            "https://sbbatch.payfort.com/integration-batch/batchApi/"
        );
        assert_eq!(cfg.file_signature, aps_batch::FileSignature::Content);
        assert_eq!(cfg.line_number_offset, 1);
        assert_eq!(cfg.max_file_bytes, 20_000_000);
        assert_eq!(cfg.header_names.cell("command"), "Command");
        // Without the keys: the defaults of the published reference.
        let plain = from_toml("[accounts.gulf]\nprotocol = \"aps\"\nendpoint = \"https://x.example\"\nmerchant_identifier = \"M\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\n").unwrap();
        let cfg = aps(&plain, "gulf").config().unwrap();
        assert_eq!(
            (cfg.line_number_offset, cfg.max_file_bytes),
            (2, 50_000_000)
        );
    }

    #[test]
    fn the_shared_ledger_url_comes_from_the_environment_not_a_file() {
        // A password in a file's url: refused, and the message never shows it.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pb.toml");
        std::fs::write(
            &file,
            "[ledger]\nurl = \"postgres://pb:hunter2@db.example:5432/ledger\"\n",
        )
        .unwrap();
        let e = Settings::load_with_env(Some(&file), [], &crate::test_protocols()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("url_env") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(from_toml("[ledger]\nurl = \"postgres://pb:hunter2@db/l\"\n").is_err());
        // Without a password the file may name it.
        std::fs::write(
            &file,
            "[ledger]\nurl = \"postgres://pb@db.example/ledger\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&file), [], &crate::test_protocols()).unwrap();
        assert_eq!(s.ledger_url(), Some("postgres://pb@db.example/ledger"));
        // PAYBATCH__LEDGER__URL may carry one; config show masks it.
        let env = [(
            "PAYBATCH__LEDGER__URL".to_string(),
            "postgres://pb:hunter2@db.example/ledger".to_string(),
        )];
        let s = Settings::load_with_env(None, env, &crate::test_protocols()).unwrap();
        assert_eq!(
            s.ledger_url(),
            Some("postgres://pb:hunter2@db.example/ledger")
        );
        let shown = s.to_masked_toml();
        assert!(
            shown.contains("postgres://pb:***@db.example/ledger") && !shown.contains("hunter2"),
            "{shown}"
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        // url_env names the variable; a missing one is an error naming it.
        std::fs::write(
            &file,
            "[ledger]\nurl_env = \"PB_LEDGER\"\nlease_ttl = \"5s\"\n",
        )
        .unwrap();
        let env = [("PB_LEDGER".to_string(), "postgres://pb:pw@db/l".to_string())];
        let s = Settings::load_with_env(Some(&file), env, &crate::test_protocols()).unwrap();
        assert_eq!(s.ledger_url(), Some("postgres://pb:pw@db/l"));
        assert_eq!(s.ledger.lease_ttl, Duration::from_secs(5));
        let e = Settings::load_with_env(Some(&file), [], &crate::test_protocols()).unwrap_err();
        assert!(e.to_string().contains("PB_LEDGER"), "{e}");
        // The URL itself pasted where its variable's name belongs: never printed back, by the
        // error, config show or Debug; an account's `*_env` neither.
        let env = [(
            "PAYBATCH__LEDGER__URL_ENV".to_string(),
            "postgres://pb:hunter2@db/l".to_string(),
        )];
        let e = Settings::load_with_env(None, env.clone(), &crate::test_protocols()).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let text = "[accounts.acme]\nlocation = \"file:///tmp/acme\"\nbatch_key_env = \"bk-8f3a.secret\"\nmerchant_key = \"mk-secret\"\n";
        let loaded = from_toml(text).unwrap();
        let shown = loaded.to_masked_toml();
        assert!(
            !shown.contains("bk-8f3a") && shown.contains("not a variable name"),
            "{shown}"
        );
        // Debug too (the settings are `EnvName`s, shown as `config show` shows them), the
        // sections the engine lets through (`[serve]`) included.
        let debug = format!("{loaded:?}");
        assert!(
            !debug.contains("bk-8f3a") && debug.contains("not a variable name"),
            "{debug}"
        );
        let serve = from_toml("[serve]\ntokens_env = \"tok-77c1,tok-9d2e\"\n").unwrap();
        for shown in [format!("{serve:?}"), serve.to_masked_toml()] {
            assert!(
                !shown.contains("tok-77c1") && shown.contains("not a variable name"),
                "{shown}"
            );
        }
        let ledger = LedgerSettings {
            url_env: Some("postgres://pb:hunter2@db/l".into()),
            ..from_toml("").unwrap().ledger
        };
        let debug = format!("{ledger:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        // The default: sled, leases of 30 s.
        let s = from_toml("").unwrap();
        assert_eq!(s.ledger_url(), None);
        assert_eq!(s.ledger.lease_ttl, Duration::from_secs(30));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        for (text, key) in [
            ("[poll]\nintervall = \"1s\"\n", "intervall"),
            ("[limits]\nmax_lines = 3\n", "max_lines"),
            (&format!("{ACME}colour = \"red\"\n"), "colour"),
            ("[nonsense]\na = 1\n", "nonsense"),
            (
                &ACME.replace("location", "protocol = \"fax\"\nlocation"),
                "fax",
            ),
        ] {
            let err = from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn bad_values_are_errors_naming_the_account() {
        for (text, needle) in [
            (
                "[accounts.acme]\nlocation = \"file:///x\"\nmerchant_key = \"m\"\n",
                "acme",
            ),
            (
                "[accounts.acme]\nlocation = \"file:///x\"\nbatch_key = \"b\"\nbatch_key_env = \"B\"\nmerchant_key = \"m\"\n",
                "batch_key",
            ),
            (
                "[accounts.acme]\nbatch_key = \"b\"\nmerchant_key = \"m\"\n",
                "location",
            ),
            ("[poll]\ninterval = \"soon\"\n", "soon"),
            ("[limits]\nmax_batch_lines = 0\n", "max_batch_lines"),
            ("[limits]\nblocking_threads = 0\n", "blocking_threads"),
        ] {
            let err = from_toml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn environment_overrides_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("[poll]\ntimeout = \"5m\"\n{ACME}")).unwrap();
        let env = [
            ("PAYBATCH__POLL__TIMEOUT", "30s"),
            ("PAYBATCH__LIMITS__MAX_BATCH_LINES", "7"),
            ("PAYBATCH_TEST_SFTP_URL", "ignored"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = Settings::load_with_env(Some(&path), env, &crate::test_protocols()).unwrap();
        assert_eq!(s.poll.timeout, Duration::from_secs(30));
        assert_eq!(s.limits.max_batch_lines, 7);
        assert_eq!(s.max_batch_lines("acme"), 7);
    }

    #[test]
    fn secrets_come_from_the_environment_given_to_the_loader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = ACME.replace(
            "batch_key = \"bk-secret\"",
            "batch_key_env = \"ACME_BK_GIVEN\"",
        );
        std::fs::write(&path, text).unwrap();
        let env = [("ACME_BK_GIVEN".to_owned(), "from-given-env".to_owned())];
        let s = Settings::load_with_env(Some(&path), env, &crate::test_protocols()).unwrap();
        assert_eq!(
            sola(&s, "acme").batch_key().unwrap().expose(),
            "from-given-env"
        );
        // The process environment is not read: without the variable the key is missing.
        let s = Settings::load_with_env(Some(&path), [], &crate::test_protocols()).unwrap();
        let err = sola(&s, "acme").batch_key().unwrap_err().to_string();
        assert!(err.contains("ACME_BK_GIVEN"), "{err}");
    }

    #[test]
    fn allow_list_is_case_insensitive() {
        let s = from_toml(&format!("{ACME}allowed_commands = [\"cc:sale\"]\n")).unwrap();
        let acme = s.account("acme").unwrap().common();
        assert!(acme.allows("cc:Sale"));
        assert!(!acme.allows("cc:refund"));
    }

    #[test]
    fn s3_keys_map_onto_s3_options() {
        let o = s3_options(
            "s3_endpoint = \"http://127.0.0.1:9000\"\ns3_region = \"eu-west-1\"\ns3_allow_http = true\n\
             s3_virtual_hosted_style = false\ns3_conditional_put = false\n\
             s3_access_key_id_env = \"ACME_S3_ID\"\ns3_secret_access_key_env = \"ACME_S3_SECRET\"\n",
        )
        .unwrap();
        assert_eq!(o.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(o.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(o.s3.allow_http, Some(true));
        assert_eq!(o.s3.virtual_hosted_style, Some(false));
        assert_eq!(o.s3.conditional_put, Some(false));
        assert_eq!(o.s3.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        let secret = o.s3.secret_access_key.as_ref().unwrap();
        assert_eq!(secret.expose(), "s3-secret-value-42");
        assert!(!format!("{o:?}").contains("s3-secret-value-42"));
    }

    #[test]
    fn no_s3_keys_leave_the_aws_environment_in_charge() {
        let o = s3_options("").unwrap();
        assert!(o.s3.endpoint.is_none() && o.s3.region.is_none() && o.s3.allow_http.is_none());
        assert!(o.s3.access_key_id.is_none() && o.s3.secret_access_key.is_none());
        assert!(o.s3.conditional_put.is_none());
    }

    #[test]
    fn bad_s3_keys_are_errors_naming_the_key() {
        let both = "s3_access_key_id_env = \"ACME_S3_ID\"\ns3_secret_access_key_env";
        for (extra, needle) in [
            ("s3_access_key_id_env = \"ACME_S3_ID\"\n", "together"),
            (&format!("{both} = \"UNSET\"\n"), "UNSET is not set"),
            (&format!("{both} = \"EMPTY\"\n"), "s3_secret_access_key_env"),
            (
                "s3_secret_access_key = \"inline\"\n",
                "s3_secret_access_key",
            ),
            ("s3_regoin = \"x\"\n", "s3_regoin"),
            ("s3_allow_http = \"perhaps\"\n", "s3_allow_http"),
        ] {
            let err = s3_options(extra).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let local = "[accounts.disk]\nlocation = \"file:///srv/d\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\ns3_region = \"x\"\n";
        let err = from_toml(local).unwrap_err().to_string();
        assert!(
            err.contains("accounts.disk.s3_region") && err.contains("file"),
            "{err}"
        );
    }

    #[test]
    fn config_show_names_s3_variables_and_round_trips() {
        let text = format!(
            "{S3}s3_endpoint = \"http://127.0.0.1:9000\"\ns3_allow_http = true\n\
             s3_access_key_id_env = \"ACME_S3_ID\"\ns3_secret_access_key_env = \"ACME_S3_SECRET\"\n"
        );
        let s = from_toml(&text).unwrap();
        let shown = s.to_masked_toml();
        for line in [
            "s3_endpoint = \"http://127.0.0.1:9000\"",
            "s3_allow_http = true",
            "s3_secret_access_key_env = \"ACME_S3_SECRET\"",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} in {shown}");
        }
        let again = from_toml(&shown.replace("[REDACTED]", "x")).unwrap();
        assert_eq!(
            sola(&again, "bucket").settings().s3_endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
    }

    #[test]
    fn storage_defaults_are_the_library_defaults() {
        let s = from_toml(S3).unwrap();
        let o = sola(&s, "bucket").backend_options().unwrap();
        let lib = BackendOptions::default();
        assert_eq!(o.retry, lib.retry);
        assert_eq!(o.max_concurrency, lib.max_concurrency);
        assert_eq!(o.connect_timeout, lib.connect_timeout);
        assert_eq!(o.operation_timeout, lib.operation_timeout);
        assert_eq!(o.multipart_threshold, lib.multipart_threshold);
    }

    #[test]
    fn storage_section_reaches_every_account_and_env_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let sftp = "[accounts.remote]\nlocation = \"sftp://pay@127.0.0.1:2222/drop\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n\
                    ssh_key = \"/etc/pb/id\"\nssh_key_passphrase_env = \"REMOTE_KEY_PASS\"\nknown_hosts = \"/etc/pb/kh\"\n";
        let storage = "[storage]\nmax_attempts = 3\ninitial_backoff = \"50ms\"\nmax_backoff = \"2s\"\nbackoff_multiplier = 3.0\n\
                       max_concurrent_ops = 4\nconnect_timeout = \"3s\"\n";
        std::fs::write(&path, format!("{storage}{S3}{sftp}")).unwrap();
        let env = [
            ("PAYBATCH__STORAGE__OPERATION_TIMEOUT", "7s"),
            ("PAYBATCH__STORAGE__MAX_ATTEMPTS", "2"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = Settings::load_with_env(Some(&path), env, &crate::test_protocols()).unwrap();
        for name in ["bucket", "remote"] {
            let o = sola(&s, name).backend_options().unwrap();
            let want = RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                multiplier: 3.0,
            };
            assert_eq!(o.retry, want, "{name}");
            assert_eq!(o.max_concurrency, 4, "{name}");
            assert_eq!(o.connect_timeout, Duration::from_secs(3), "{name}");
            assert_eq!(o.operation_timeout, Duration::from_secs(7), "{name}");
        }
        let o = sola(&s, "remote").backend_options().unwrap();
        let want = SftpAuth::KeyFile {
            path: "/etc/pb/id".into(),
            passphrase_env: Some("REMOTE_KEY_PASS".into()),
        };
        assert_eq!(o.sftp.auth, Some(want));
        let shown = s.to_masked_toml();
        assert!(
            shown
                .lines()
                .any(|l| l == "ssh_key_passphrase_env = \"REMOTE_KEY_PASS\""),
            "{shown}"
        );
        let again = from_toml(&shown.replace("[REDACTED]", "x")).unwrap();
        assert_eq!(
            sola(&again, "remote").backend_options().unwrap().retry,
            sola(&s, "remote").backend_options().unwrap().retry
        );
    }

    #[test]
    fn bad_storage_values_are_errors_naming_the_key() {
        for (text, needle) in [
            ("[storage]\nmax_attempts = 0\n", "storage.max_attempts"),
            (
                "[storage]\nmax_concurrent_ops = 0\n",
                "storage.max_concurrent_ops",
            ),
            (
                "[storage]\ninitial_backoff = \"10s\"\n",
                "storage.initial_backoff",
            ),
            (
                "[storage]\nbackoff_multiplier = 0.5\n",
                "storage.backoff_multiplier",
            ),
            (
                "[storage]\nconnect_timeout = \"0s\"\n",
                "storage.connect_timeout",
            ),
            ("[storage]\noperation_timeout = \"soon\"\n", "soon"),
            (
                "[storage]\nmultipart_threshold = 0\n",
                "storage.multipart_threshold",
            ),
            ("[storage]\nretries = 3\n", "retries"),
            (
                &format!("{S3}ssh_key_passphrase_env = \"P\"\n"),
                "ssh_key_passphrase_env",
            ),
        ] {
            // Sections are checked when an account of their protocol is built.
            let err = from_toml(&format!("{text}{ACME}")).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
