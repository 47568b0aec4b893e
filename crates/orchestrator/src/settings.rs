//! Settings: the compiled-in `config/default.toml`, an optional file, and `PAYBATCH__…`
//! environment overrides, deserialized strictly (unknown keys are errors naming the key).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kvp_format::Secret;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

mod backend;
mod file_mode;

pub use backend::StorageSettings;

/// The text of `config/default.toml`, compiled in so the binary works from any directory.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");

/// The prefix of environment overrides: `PAYBATCH__POLL__TIMEOUT=30m`.
pub const ENV_PREFIX: &str = "PAYBATCH";

/// Every setting paybatch reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Settings {
    /// Where the sequence ledger lives.
    pub ledger: LedgerSettings,
    /// Fields put on every REQUEST line.
    pub gateway: GatewaySettings,
    /// How COMPLETE files are awaited.
    pub poll: PollSettings,
    /// Concurrency and batch size.
    pub limits: LimitSettings,
    /// Names of the routing fields of input records.
    pub input: InputSettings,
    /// Retry, concurrency limit and timeouts of every account's storage backend.
    pub storage: StorageSettings,
    /// The batch accounts, by name.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountSettings>,
}

/// `[ledger]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LedgerSettings {
    /// The sled directory.
    pub path: PathBuf,
}

/// `[gateway]`: defaults for every account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewaySettings {
    /// `xVersion`.
    pub x_version: String,
    /// `xSoftwareName`.
    pub software_name: String,
    /// `xSoftwareVersion`; empty means this crate's version.
    pub software_version: String,
}

impl GatewaySettings {
    /// The `xSoftwareVersion` to send.
    pub fn software_version(&self) -> &str {
        if self.software_version.is_empty() {
            env!("CARGO_PKG_VERSION")
        } else {
            &self.software_version
        }
    }
}

/// `[poll]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PollSettings {
    /// First delay before looking for COMPLETE.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Upper bound of the backoff.
    #[serde(deserialize_with = "duration")]
    pub max_interval: Duration,
    /// No COMPLETE by then: Stuck.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct InputSettings {
    /// The field naming the account.
    pub account_field: String,
    /// The field carrying the caller's unique reference.
    pub ref_field: String,
}

/// `[accounts.NAME]`: one batch account (one drop, one credential, one number sequence).
///
/// Public so other binaries (the `gateway-sim` command) can reuse the parsing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AccountSettings {
    /// `sola` (file drop, the default) or `aps` (Amazon Payment Services batch API).
    #[serde(default)]
    pub protocol: ProtocolKind,
    /// `file:///…`, `s3://bucket/prefix` or `sftp://user@host:port/path` (Sola accounts).
    #[serde(default)]
    pub location: String,
    /// APS: base URL of the service.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// APS: `merchant_identifier`.
    #[serde(default)]
    pub merchant_identifier: Option<String>,
    /// APS: `access_code`.
    #[serde(default)]
    pub access_code: Option<Secret<String>>,
    /// APS: or the variable holding it.
    #[serde(default)]
    pub access_code_env: Option<String>,
    /// APS: SHA request phrase.
    #[serde(default)]
    pub sha_request_phrase: Option<Secret<String>>,
    /// APS: or the variable holding it.
    #[serde(default)]
    pub sha_request_phrase_env: Option<String>,
    /// APS: SHA response phrase.
    #[serde(default)]
    pub sha_response_phrase: Option<Secret<String>>,
    /// APS: or the variable holding it.
    #[serde(default)]
    pub sha_response_phrase_env: Option<String>,
    /// APS: `sha256` (default) or `sha512`.
    #[serde(default)]
    pub sha_type: Option<crate::aps::ShaType>,
    /// APS: `en` (default) or `ar`.
    #[serde(default)]
    pub language: Option<String>,
    /// APS: default currency of input lines (ISO 4217).
    #[serde(default)]
    pub currency: Option<String>,
    /// APS: start of every `batch_reference` (default `PB`).
    #[serde(default)]
    pub reference_prefix: Option<String>,
    /// APS: path of the upload under the endpoint (default `/FortAPI/upload/`, inferred).
    #[serde(default)]
    pub upload_path: Option<String>,
    /// APS: path of the JSON commands under the endpoint (default `/FortAPI/batchApi/`).
    #[serde(default)]
    pub api_path: Option<String>,
    /// APS: per HTTP request (default 60 s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub request_timeout: Option<Duration>,
    /// APS: retries of a transient HTTP failure (default 3).
    #[serde(default)]
    pub retries: Option<u32>,
    /// APS: longest wait for validation (default 30 min).
    #[serde(default, deserialize_with = "opt_duration")]
    pub validation_timeout: Option<Duration>,
    /// APS: full URL of `PROCESS_BATCH` (default: `{endpoint}{api_path}`).
    #[serde(default)]
    pub process_url: Option<String>,
    /// APS: whether the upload signature covers the file (`excluded`, the default, or `content`).
    #[serde(default)]
    pub file_signature: Option<crate::aps::FileSignature>,
    /// APS: largest batch file in bytes (default and maximum 50,000,000).
    #[serde(default)]
    pub max_file_bytes: Option<usize>,
    /// APS: header cells of renamed standard batch file columns.
    #[serde(default)]
    pub header_names: Option<std::collections::BTreeMap<String, String>>,
    /// APS: `Line_Number` of the first data row in answers (2, the default, or 1).
    #[serde(default)]
    pub line_number_offset: Option<u64>,
    /// The batch upload credential (PROCESS `xKey`).
    #[serde(default)]
    pub batch_key: Option<Secret<String>>,
    /// Or the environment variable holding it.
    #[serde(default)]
    pub batch_key_env: Option<String>,
    /// The merchant `xKey` put on each REQUEST line.
    #[serde(default)]
    pub merchant_key: Option<Secret<String>>,
    /// Or the environment variable holding it.
    #[serde(default)]
    pub merchant_key_env: Option<String>,
    /// Per-account override of `limits.max_batch_lines`.
    #[serde(default)]
    pub max_batch_lines: Option<usize>,
    /// Commands this account may send (case-insensitive); absent means any.
    #[serde(default)]
    pub allowed_commands: Option<Vec<String>>,
    /// SFTP: private key file.
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    /// SFTP: the variable holding the passphrase of `ssh_key`, if it has one.
    #[serde(default)]
    pub ssh_key_passphrase_env: Option<String>,
    /// SFTP: the variable holding a password, instead of a key.
    #[serde(default)]
    pub ssh_password_env: Option<String>,
    /// SFTP: a known_hosts file.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// SFTP: a pinned host key fingerprint (`SHA256:…`).
    #[serde(default)]
    pub host_key_sha256: Option<String>,
    /// S3: endpoint URL, overriding `AWS_ENDPOINT_URL`.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// S3: region, overriding `AWS_REGION`.
    #[serde(default)]
    pub s3_region: Option<String>,
    /// S3: allow a plain `http://` endpoint, overriding `AWS_ALLOW_HTTP`.
    #[serde(default)]
    pub s3_allow_http: Option<bool>,
    /// S3: virtual-hosted-style requests, overriding `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`.
    #[serde(default)]
    pub s3_virtual_hosted_style: Option<bool>,
    /// S3: whether the server honours `If-None-Match: *`; `false` makes create-only writes
    /// an error instead of a silent overwrite.
    #[serde(default)]
    pub s3_conditional_put: Option<bool>,
    /// S3: the variable holding the access key id (credentials never appear in config).
    #[serde(default)]
    pub s3_access_key_id_env: Option<String>,
    /// S3: the variable holding the secret access key.
    #[serde(default)]
    pub s3_secret_access_key_env: Option<String>,
    /// A copy of `[storage]`, put here at load so `backend_options` needs only the account.
    #[serde(skip)]
    storage: Option<StorageSettings>,
}

impl Settings {
    /// Loads the compiled-in defaults, then `file` (if any), then `PAYBATCH__…` variables, and
    /// checks the result. When `file` holds a secret value (`batch_key`, `merchant_key`,
    /// `access_code`, `sha_*_phrase`; not their `*_env` variable names) and its group or others
    /// have any permission on it, a warning names the file and the keys (never a value), once
    /// per file and process, as ssh does for a private key.
    ///
    /// # Errors
    /// [`Error::Config`] for unreadable files and unknown keys (the message names the key),
    /// [`Error::Setting`] for missing or inconsistent values (naming the account).
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_with_env(file, std::env::vars())
    }

    /// [`Settings::load`] with an explicit environment (for tests and embedding).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
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
            file_mode::warn_if_shared(path);
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("PAYBATCH__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("allowed_commands")
                .source(Some(env)),
        );
        let built = builder.build().map_err(|e| Error::Config {
            message: e.to_string(),
            source: Some(e),
        })?;
        let mut settings: Settings = built.try_deserialize().map_err(|e| Error::Config {
            message: e.to_string(),
            source: Some(e),
        })?;
        settings.check()?;
        settings.share_storage();
        Ok(settings)
    }

    /// Parses settings from TOML text layered over the defaults (no environment).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_toml(text: &str) -> Result<Self> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_CONFIG,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| Error::Config {
                message: e.to_string(),
                source: Some(e),
            })?;
        let mut settings: Settings = built.try_deserialize().map_err(|e| Error::Config {
            message: e.to_string(),
            source: Some(e),
        })?;
        settings.check()?;
        settings.share_storage();
        Ok(settings)
    }

    fn share_storage(&mut self) {
        for account in self.accounts.values_mut() {
            account.storage = Some(self.storage);
        }
    }

    fn check(&self) -> Result<()> {
        self.storage.check()?;
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
        let mut drops: Vec<(&str, storage_backends::Location)> = Vec::new();
        for (name, account) in &self.accounts {
            sequence_ledger::AccountId::new(name).map_err(|e| {
                Error::setting(format!("accounts.{name}"), format!("bad account name: {e}"))
            })?;
            account.check(name)?;
            if account.protocol == ProtocolKind::Aps {
                continue;
            }
            // One drop, one account (PROTOCOL.md decision 4c): two accounts' batches in one
            // drop would collide on their numbers, and the gateway would ignore one of them.
            let location = storage_backends::Location::parse(&account.location)
                .map_err(|e| Error::setting(format!("accounts.{name}.location"), e.to_string()))?;
            if let Some((other, _)) = drops.iter().find(|(_, l)| l.same_drop(&location)) {
                return Err(Error::setting(
                    format!("accounts.{name}.location"),
                    format!(
                        "accounts {other} and {name} use the same drop ({location}); each account needs a drop of its own — sequence numbers are per drop, and the gateway would silently ignore one account's batches"
                    ),
                ));
            }
            drops.push((name, location));
        }
        Ok(())
    }

    /// The account's settings.
    ///
    /// # Errors
    /// [`Error::Setting`] when no such account is configured.
    pub fn account(&self, name: &str) -> Result<&AccountSettings> {
        self.accounts
            .get(name)
            .ok_or_else(|| Error::setting(format!("accounts.{name}"), "no such account"))
    }

    /// Lines per batch for `account`.
    pub fn max_batch_lines(&self, account: &str) -> usize {
        self.accounts
            .get(account)
            .and_then(|a| a.max_batch_lines)
            .unwrap_or(self.limits.max_batch_lines)
    }

    /// The effective settings as TOML with every secret masked (`paybatch config show`).
    pub fn to_masked_toml(&self) -> String {
        let mut s = String::new();
        let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
        let _ = writeln!(
            s,
            "[ledger]\npath = {}\n",
            q(&self.ledger.path.to_string_lossy())
        );
        let _ = writeln!(
            s,
            "[gateway]\nx_version = {}\nsoftware_name = {}\nsoftware_version = {}\n",
            q(&self.gateway.x_version),
            q(&self.gateway.software_name),
            q(self.gateway.software_version())
        );
        let d = |v: Duration| q(&humantime::format_duration(v).to_string());
        let _ = writeln!(
            s,
            "[poll]\ninterval = {}\nmax_interval = {}\ntimeout = {}\n",
            d(self.poll.interval),
            d(self.poll.max_interval),
            d(self.poll.timeout)
        );
        let _ = writeln!(
            s,
            "[limits]\nmax_concurrent_accounts = {}\nmax_batch_lines = {}\nblocking_threads = {}\n",
            self.limits.max_concurrent_accounts,
            self.limits.max_batch_lines,
            self.limits.blocking_threads
        );
        let _ = writeln!(
            s,
            "[input]\naccount_field = {}\nref_field = {}\n",
            q(&self.input.account_field),
            q(&self.input.ref_field)
        );
        self.storage.masked_toml(&mut s);
        for (name, a) in &self.accounts {
            let _ = writeln!(s, "[accounts.{name}]");
            let secret = |s: &mut String, key: &str, v: &Option<Secret<String>>| {
                if v.is_some() {
                    let _ = writeln!(s, "{key} = \"[REDACTED]\"");
                }
            };
            let opt = |s: &mut String, key: &str, v: Option<String>| {
                if let Some(v) = v {
                    let _ = writeln!(s, "{key} = {}", q(&v));
                }
            };
            match a.protocol {
                ProtocolKind::Sola => {
                    let _ = writeln!(s, "location = {}", q(&a.location));
                    secret(&mut s, "batch_key", &a.batch_key);
                    secret(&mut s, "merchant_key", &a.merchant_key);
                    opt(&mut s, "batch_key_env", a.batch_key_env.clone());
                    opt(&mut s, "merchant_key_env", a.merchant_key_env.clone());
                }
                ProtocolKind::Aps => Self::masked_aps(&mut s, a),
            }
            if let Some(n) = a.max_batch_lines {
                let _ = writeln!(s, "max_batch_lines = {n}");
            }
            if let Some(c) = &a.allowed_commands {
                let list: Vec<String> = c.iter().map(|c| q(c)).collect();
                let _ = writeln!(s, "allowed_commands = [{}]", list.join(", "));
            }
            let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
            opt(&mut s, "ssh_key", path(&a.ssh_key));
            opt(
                &mut s,
                "ssh_key_passphrase_env",
                a.ssh_key_passphrase_env.clone(),
            );
            opt(&mut s, "ssh_password_env", a.ssh_password_env.clone());
            opt(&mut s, "known_hosts", path(&a.known_hosts));
            opt(&mut s, "host_key_sha256", a.host_key_sha256.clone());
            backend::masked_account(a, &mut s);
            s.push('\n');
        }
        s
    }
}

impl Settings {
    /// The APS keys of one account for [`Settings::to_masked_toml`]: the access code and both
    /// SHA phrases masked like batch keys, the names of their variables shown.
    fn masked_aps(s: &mut String, a: &AccountSettings) {
        let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
        let _ = writeln!(s, "protocol = \"aps\"");
        let sha = a.sha_type.map(|t| match t {
            crate::aps::ShaType::Sha256 => "sha256".to_owned(),
            crate::aps::ShaType::Sha512 => "sha512".to_owned(),
        });
        let plain = [
            ("endpoint", a.endpoint.clone()),
            ("merchant_identifier", a.merchant_identifier.clone()),
        ];
        for (key, v) in plain {
            if let Some(v) = v {
                let _ = writeln!(s, "{key} = {}", q(&v));
            }
        }
        for (key, v) in [
            ("access_code", &a.access_code),
            ("sha_request_phrase", &a.sha_request_phrase),
            ("sha_response_phrase", &a.sha_response_phrase),
        ] {
            if v.is_some() {
                let _ = writeln!(s, "{key} = \"[REDACTED]\"");
            }
        }
        let d = |v: Option<Duration>| v.map(|v| humantime::format_duration(v).to_string());
        for (key, v) in [
            ("access_code_env", a.access_code_env.clone()),
            ("sha_request_phrase_env", a.sha_request_phrase_env.clone()),
            ("sha_response_phrase_env", a.sha_response_phrase_env.clone()),
            ("sha_type", sha),
            ("language", a.language.clone()),
            ("currency", a.currency.clone()),
            ("reference_prefix", a.reference_prefix.clone()),
            ("upload_path", a.upload_path.clone()),
            ("api_path", a.api_path.clone()),
            ("request_timeout", d(a.request_timeout)),
            ("validation_timeout", d(a.validation_timeout)),
            ("process_url", a.process_url.clone()),
            (
                "file_signature",
                a.file_signature.map(|f| f.as_str().to_owned()),
            ),
        ] {
            if let Some(v) = v {
                let _ = writeln!(s, "{key} = {}", q(&v));
            }
        }
        if let Some(n) = a.retries {
            let _ = writeln!(s, "retries = {n}");
        }
        if let Some(n) = a.max_file_bytes {
            let _ = writeln!(s, "max_file_bytes = {n}");
        }
        if let Some(n) = a.line_number_offset {
            let _ = writeln!(s, "line_number_offset = {n}");
        }
        if let Some(names) = &a.header_names {
            let cells: Vec<String> = names
                .iter()
                .map(|(k, v)| format!("{k} = {}", q(v)))
                .collect();
            let _ = writeln!(s, "header_names = {{ {} }}", cells.join(", "));
        }
    }
}

/// Which gateway protocol an account speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolKind {
    /// Sola (Cardknox) file drop.
    #[default]
    Sola,
    /// Amazon Payment Services batch API.
    Aps,
}

impl AccountSettings {
    /// The APS keys of this account (meaningful when `protocol = "aps"`).
    pub fn aps_settings(&self) -> crate::aps::ApsSettings {
        crate::aps::ApsSettings {
            endpoint: self.endpoint.clone().unwrap_or_default(),
            merchant_identifier: self.merchant_identifier.clone().unwrap_or_default(),
            access_code: self.access_code.clone(),
            access_code_env: self.access_code_env.clone(),
            sha_request_phrase: self.sha_request_phrase.clone(),
            sha_request_phrase_env: self.sha_request_phrase_env.clone(),
            sha_response_phrase: self.sha_response_phrase.clone(),
            sha_response_phrase_env: self.sha_response_phrase_env.clone(),
            sha_type: self.sha_type,
            language: self.language.clone(),
            currency: self.currency.clone(),
            reference_prefix: self.reference_prefix.clone(),
            upload_path: self.upload_path.clone(),
            api_path: self.api_path.clone(),
            request_timeout: self.request_timeout,
            retries: self.retries,
            validation_timeout: self.validation_timeout,
            process_url: self.process_url.clone(),
            file_signature: self.file_signature,
            max_file_bytes: self.max_file_bytes,
            header_names: self.header_names.clone(),
            line_number_offset: self.line_number_offset,
        }
    }

    /// The largest batch file of an APS account (its `max_file_bytes`, else the service's
    /// 50,000,000): the planner closes batches before it.
    pub fn aps_max_file_bytes(&self) -> u64 {
        self.max_file_bytes
            .unwrap_or(crate::aps::ApsAccountConfig::MAX_FILE_BYTES) as u64
    }

    /// The default currency of an APS account's lines.
    pub fn aps_currency(&self) -> Option<crate::aps::Currency> {
        self.currency
            .as_deref()
            .and_then(|c| crate::aps::Currency::new(c).ok())
    }

    fn check(&self, name: &str) -> Result<()> {
        let key = |k: &str| format!("accounts.{name}.{k}");
        if self.protocol == ProtocolKind::Aps {
            if self.endpoint.is_none() || self.merchant_identifier.is_none() {
                return Err(Error::setting(
                    key("endpoint"),
                    format!("APS account {name} needs endpoint and merchant_identifier"),
                ));
            }
            if let Some(c) = &self.currency {
                crate::aps::Currency::new(c)
                    .map_err(|e| Error::setting(key("currency"), e.to_string()))?;
            }
            if self.max_batch_lines == Some(0) {
                return Err(Error::setting(key("max_batch_lines"), "must be at least 1"));
            }
            return Ok(());
        }
        let location = storage_backends::Location::parse(&self.location)
            .map_err(|e| Error::setting(key("location"), e.to_string()))?;
        backend::check_account(self, name, location.scheme())?;
        for (what, direct, env) in [
            (
                "batch_key",
                self.batch_key.is_some(),
                self.batch_key_env.is_some(),
            ),
            (
                "merchant_key",
                self.merchant_key.is_some(),
                self.merchant_key_env.is_some(),
            ),
        ] {
            match (direct, env) {
                (true, true) => {
                    return Err(Error::setting(
                        key(what),
                        format!("set either {what} or {what}_env, not both"),
                    ));
                }
                (false, false) => {
                    return Err(Error::setting(
                        key(what),
                        format!("account {name} needs {what} or {what}_env"),
                    ));
                }
                _ => {}
            }
        }
        if self.max_batch_lines == Some(0) {
            return Err(Error::setting(key("max_batch_lines"), "must be at least 1"));
        }
        Ok(())
    }

    /// The batch upload credential, read from the environment when `batch_key_env` is set.
    ///
    /// # Errors
    /// [`Error::Setting`] when the variable is missing or empty.
    pub fn batch_key(&self, account: &str) -> Result<Secret<String>> {
        resolve_secret(account, "batch_key", &self.batch_key, &self.batch_key_env)
    }

    /// The merchant `xKey`, read from the environment when `merchant_key_env` is set.
    ///
    /// # Errors
    /// [`Error::Setting`] when the variable is missing or empty.
    pub fn merchant_key(&self, account: &str) -> Result<Secret<String>> {
        resolve_secret(
            account,
            "merchant_key",
            &self.merchant_key,
            &self.merchant_key_env,
        )
    }

    /// The storage location and backend options of this account: `[storage]` (retry,
    /// concurrency, timeouts) when these settings came from [`Settings`], else the library
    /// defaults; SFTP key/password and host
    /// key check from `ssh_key`/`ssh_key_passphrase_env`/`ssh_password_env`/`known_hosts`/
    /// `host_key_sha256`; S3
    /// overrides of the AWS environment from the `s3_*` keys (credentials read now from the
    /// variables `s3_access_key_id_env`/`s3_secret_access_key_env` name).
    ///
    /// # Errors
    /// [`Error::Setting`] for an unparsable location or an unset credential variable.
    pub fn backend_options(
        &self,
        account: &str,
    ) -> Result<(storage_backends::Location, storage_backends::BackendOptions)> {
        let location = storage_backends::Location::parse(&self.location)
            .map_err(|e| Error::setting(format!("accounts.{account}.location"), e.to_string()))?;
        let mut options = storage_backends::BackendOptions::default();
        backend::apply_account(self, account, &mut options, &|var| std::env::var(var).ok())?;
        Ok((location, options))
    }

    /// Whether `command` is allowed (case-insensitive); no allow-list allows everything.
    pub fn allows(&self, command: &str) -> bool {
        self.allowed_commands
            .as_ref()
            .is_none_or(|list| list.iter().any(|c| c.eq_ignore_ascii_case(command)))
    }
}

fn resolve_secret(
    account: &str,
    what: &str,
    direct: &Option<Secret<String>>,
    env: &Option<String>,
) -> Result<Secret<String>> {
    if let Some(secret) = direct {
        return Ok(Secret::new(secret.expose().clone()));
    }
    let key = format!("accounts.{account}.{what}_env");
    let var = env
        .as_ref()
        .ok_or_else(|| Error::setting(&key, format!("account {account} has no {what}")))?;
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(Error::setting(
            key,
            format!("environment variable {var} is not set (account {account})"),
        )),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e}")))
}

fn opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str = "[accounts.acme]\nlocation = \"file:///tmp/acme\"\nbatch_key = \"bk-secret\"\nmerchant_key = \"mk-secret\"\n";

    #[test]
    fn defaults_parse_without_accounts() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.limits.max_batch_lines, 5000);
        assert_eq!(s.limits.blocking_threads, 8);
        assert_eq!(s.poll.interval, Duration::from_secs(2));
        assert_eq!(s.poll.timeout, Duration::from_secs(7200));
        assert!(s.accounts.is_empty());
        assert_eq!(s.gateway.software_version(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn account_parses_and_masks_secrets() {
        let s = Settings::from_toml(ACME).unwrap();
        let acme = s.account("acme").unwrap();
        assert_eq!(acme.batch_key("acme").unwrap().expose(), "bk-secret");
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
        let s = Settings::from_toml(text).unwrap();
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
        let reparsed = Settings::from_toml(&shown).unwrap();
        let aps = reparsed.account("gulf").unwrap().aps_settings();
        assert_eq!(aps.request_timeout, Some(Duration::from_secs(15)));
        assert_eq!(aps.retries, Some(5));
        assert!(!format!("{s:?}").contains("ac-secret-77"));
    }

    #[test]
    fn aps_published_reference_keys_parse_show_and_reach_the_client_config() {
        let text = "[accounts.gulf]\nprotocol = \"aps\"\nendpoint = \"https://sbpaymentservices.payfort.com\"\nmerchant_identifier = \"MID-7\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\nprocess_url = \"https://sbbatch.payfort.com/integration-batch/batchApi/\"\nfile_signature = \"content\"\nmax_file_bytes = 20000000\nline_number_offset = 1\nheader_names = { merchant_reference = \"Merchant_Reference\", command = \"Command\" }\n";
        let s = Settings::from_toml(text).unwrap();
        let shown = s.to_masked_toml();
        for line in [
            "process_url = \"https://sbbatch.payfort.com/integration-batch/batchApi/\"",
            "file_signature = \"content\"",
            "max_file_bytes = 20000000",
            "line_number_offset = 1",
            "header_names = { command = \"Command\", merchant_reference = \"Merchant_Reference\" }",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} in {shown}");
        }
        let reparsed = Settings::from_toml(&shown).unwrap();
        let account = reparsed.account("gulf").unwrap();
        assert_eq!(account.aps_max_file_bytes(), 20_000_000);
        let mut aps = account.aps_settings();
        aps.access_code = Some(Secret::new("a".into()));
        aps.sha_request_phrase = Some(Secret::new("i".into()));
        aps.sha_response_phrase = Some(Secret::new("o".into()));
        let cfg = aps.resolve("gulf").unwrap();
        assert_eq!(
            cfg.process_url(),
            "https://sbbatch.payfort.com/integration-batch/batchApi/"
        );
        assert_eq!(cfg.file_signature, crate::aps::FileSignature::Content);
        assert_eq!(cfg.line_number_offset, 1);
        assert_eq!(cfg.header_names.cell("command"), "Command");
        // Without the keys: the defaults of the published reference.
        let plain = Settings::from_toml("[accounts.gulf]\nprotocol = \"aps\"\nendpoint = \"https://x.example\"\nmerchant_identifier = \"M\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\n").unwrap();
        let account = plain.account("gulf").unwrap();
        assert_eq!(account.aps_max_file_bytes(), 50_000_000);
        let cfg = account.aps_settings().resolve("gulf").unwrap();
        assert_eq!(
            (cfg.line_number_offset, cfg.max_file_bytes),
            (2, 50_000_000)
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        for (text, key) in [
            ("[poll]\nintervall = \"1s\"\n", "intervall"),
            ("[limits]\nmax_lines = 3\n", "max_lines"),
            (&format!("{ACME}colour = \"red\"\n"), "colour"),
            ("[nonsense]\na = 1\n", "nonsense"),
        ] {
            let err = Settings::from_toml(text).unwrap_err().to_string();
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
            let err = Settings::from_toml(text).unwrap_err().to_string();
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
        let s = Settings::load_with_env(Some(&path), env).unwrap();
        assert_eq!(s.poll.timeout, Duration::from_secs(30));
        assert_eq!(s.limits.max_batch_lines, 7);
        assert_eq!(s.max_batch_lines("acme"), 7);
    }

    #[test]
    fn allow_list_is_case_insensitive() {
        let s = Settings::from_toml(&format!("{ACME}allowed_commands = [\"cc:sale\"]\n")).unwrap();
        let acme = s.account("acme").unwrap();
        assert!(acme.allows("cc:Sale"));
        assert!(!acme.allows("cc:refund"));
    }
}
