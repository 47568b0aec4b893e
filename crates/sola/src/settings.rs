//! What a Sola account is configured with: its `[accounts.NAME]` table, and the two top-level
//! sections every Sola account shares — `[gateway]` (the fields put on every REQUEST line) and
//! `[storage]` (how drops are talked to) — checked into types, with the masked form
//! `paybatch config show` prints derived from them.

use std::path::PathBuf;
use std::time::Duration;

use gateway_protocol::settings::{
    check_secret, duration, duration_text, from_table, masked, resolve_secret,
};
use gateway_protocol::{Env, Error, Result};
use kvp_format::{EnvName, Secret};
use serde::{Deserialize, Serialize};
use storage_backends::{
    BackendOptions, HostKeyCheck, Location, RetryPolicy, Scheme, SecretString, SftpAuth,
};

/// `[gateway]`: fields put on every REQUEST line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            x_version: "5.0.0".to_owned(),
            software_name: "paybatch".to_owned(),
            software_version: String::new(),
        }
    }
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

/// `[storage]`: how every Sola account's drop retries, how many operations it runs at once
/// and how long it waits. `config/default.toml` holds the library's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StorageSettings {
    /// Attempts of an operation that failed transiently, the first included (1: no retry).
    pub max_attempts: u32,
    /// Upper bound of the first (jittered) sleep before a retry.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub initial_backoff: Duration,
    /// Upper bound of any sleep before a retry.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub max_backoff: Duration,
    /// Growth of the bound per retry (at least 1).
    pub backoff_multiplier: f64,
    /// Operations one account's backend runs at once.
    pub max_concurrent_ops: usize,
    /// Time to establish a connection (TCP, TLS, SSH handshake and login).
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub connect_timeout: Duration,
    /// Time for one request to the server; running out is a transient (retried) error.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub operation_timeout: Duration,
    /// S3: uploads larger than this many bytes go in parts of this size.
    pub multipart_threshold: u64,
}

impl Default for StorageSettings {
    /// The storage library's defaults.
    fn default() -> Self {
        let o = BackendOptions::default();
        Self {
            max_attempts: o.retry.max_attempts,
            initial_backoff: o.retry.initial_backoff,
            max_backoff: o.retry.max_backoff,
            backoff_multiplier: o.retry.multiplier,
            max_concurrent_ops: o.max_concurrency,
            connect_timeout: o.connect_timeout,
            operation_timeout: o.operation_timeout,
            multipart_threshold: o.multipart_threshold,
        }
    }
}

impl StorageSettings {
    /// Puts these values into `options`.
    pub fn apply(&self, options: &mut BackendOptions) {
        options.retry = RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            multiplier: self.backoff_multiplier,
        };
        options.max_concurrency = self.max_concurrent_ops;
        options.connect_timeout = self.connect_timeout;
        options.operation_timeout = self.operation_timeout;
        options.multipart_threshold = self.multipart_threshold;
    }

    /// Reads `[storage]` (absent: the defaults) and checks it.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the key.
    pub fn from_section(section: Option<&config::Value>) -> Result<Self> {
        let settings = match section {
            Some(v) => v
                .clone()
                .try_deserialize::<Self>()
                .map_err(|e| section_error("storage", &e))?,
            None => Self::default(),
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<()> {
        let bad = |k: &str, m: &str| {
            Err(Error::Setting {
                account: "*".to_owned(),
                key: format!("storage.{k}"),
                message: m.to_owned(),
            })
        };
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1 (1 disables retrying)");
        }
        if self.initial_backoff > self.max_backoff {
            return bad("initial_backoff", "must be at most storage.max_backoff");
        }
        if !self.backoff_multiplier.is_finite() || self.backoff_multiplier < 1.0 {
            return bad("backoff_multiplier", "must be a number of at least 1");
        }
        if self.max_concurrent_ops == 0 {
            return bad("max_concurrent_ops", "must be at least 1");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be non-zero");
        }
        if self.operation_timeout.is_zero() {
            return bad("operation_timeout", "must be non-zero");
        }
        if self.multipart_threshold == 0 {
            return bad("multipart_threshold", "must be at least 1 byte");
        }
        Ok(())
    }
}

impl GatewaySettings {
    /// Reads `[gateway]` (absent: the defaults).
    ///
    /// # Errors
    /// [`Error::Setting`] naming the key.
    pub fn from_section(section: Option<&config::Value>) -> Result<Self> {
        match section {
            Some(v) => v
                .clone()
                .try_deserialize()
                .map_err(|e| section_error("gateway", &e)),
            None => Ok(Self::default()),
        }
    }
}

fn section_error(section: &str, e: &config::ConfigError) -> Error {
    Error::Setting {
        account: "*".to_owned(),
        key: section.to_owned(),
        message: format!("[{section}]: {e}"),
    }
}

/// The keys of a Sola account's `[accounts.NAME]` table (besides `protocol`,
/// `max_batch_lines` and `allowed_commands`, which every account has). Each secret is given
/// inline or as the name of an environment variable (`*_env`), never both. Serializes to the
/// table `paybatch config show` prints: secret values as `[REDACTED]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SolaSettings {
    /// `file:///…`, `s3://bucket/prefix` or `sftp://user@host:port/path`.
    pub location: String,
    /// The batch upload credential (PROCESS `xKey`).
    #[serde(
        default,
        serialize_with = "masked",
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_key: Option<Secret<String>>,
    /// Or the environment variable holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_key_env: Option<EnvName>,
    /// The merchant `xKey` put on each REQUEST line.
    #[serde(
        default,
        serialize_with = "masked",
        skip_serializing_if = "Option::is_none"
    )]
    pub merchant_key: Option<Secret<String>>,
    /// Or the environment variable holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_key_env: Option<EnvName>,
    /// SFTP: private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<PathBuf>,
    /// SFTP: the variable holding the passphrase of `ssh_key`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_passphrase_env: Option<EnvName>,
    /// SFTP: the variable holding a password, instead of a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_password_env: Option<EnvName>,
    /// SFTP: a known_hosts file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// SFTP: a pinned host key fingerprint (`SHA256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_sha256: Option<String>,
    /// S3: endpoint URL, overriding `AWS_ENDPOINT_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3: region, overriding `AWS_REGION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3: allow a plain `http://` endpoint, overriding `AWS_ALLOW_HTTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_allow_http: Option<bool>,
    /// S3: virtual-hosted-style requests, overriding `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_virtual_hosted_style: Option<bool>,
    /// S3: whether the server honours `If-None-Match: *`; `false` makes create-only writes
    /// an error instead of a silent overwrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_conditional_put: Option<bool>,
    /// S3: the variable holding the access key id (credentials never appear in config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_access_key_id_env: Option<EnvName>,
    /// S3: the variable holding the secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_secret_access_key_env: Option<EnvName>,
}

impl SolaSettings {
    /// Reads and checks an account's table.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the key: unknown keys, a bad location, a secret given both
    /// ways or not at all, `s3_*` keys on a non-S3 location, S3 credential variables not
    /// given together, a passphrase without a key.
    pub fn from_table(account: &str, table: config::Value) -> Result<(Self, Location)> {
        let settings: Self = from_table(account, table)?;
        let location = settings.location(account)?;
        settings.check(account, location.scheme())?;
        Ok((settings, location))
    }

    /// The parsed location.
    ///
    /// # Errors
    /// [`Error::Setting`] for `location`.
    pub fn location(&self, account: &str) -> Result<Location> {
        Location::parse(&self.location).map_err(|e| setting(account, "location", e.to_string()))
    }

    fn check(&self, account: &str, scheme: Scheme) -> Result<()> {
        check_secret(
            account,
            "batch_key",
            self.batch_key.is_some(),
            self.batch_key_env.is_some(),
        )?;
        check_secret(
            account,
            "merchant_key",
            self.merchant_key.is_some(),
            self.merchant_key_env.is_some(),
        )?;
        let s3_keys = [
            ("s3_endpoint", self.s3_endpoint.is_some()),
            ("s3_region", self.s3_region.is_some()),
            ("s3_allow_http", self.s3_allow_http.is_some()),
            (
                "s3_virtual_hosted_style",
                self.s3_virtual_hosted_style.is_some(),
            ),
            ("s3_conditional_put", self.s3_conditional_put.is_some()),
            ("s3_access_key_id_env", self.s3_access_key_id_env.is_some()),
            (
                "s3_secret_access_key_env",
                self.s3_secret_access_key_env.is_some(),
            ),
        ];
        if scheme != Scheme::S3
            && let Some((k, _)) = s3_keys.iter().find(|(_, set)| *set)
        {
            return Err(setting(
                account,
                k,
                format!(
                    "account {account} has a {} location; s3_* keys apply to s3:// locations only",
                    scheme.as_str()
                ),
            ));
        }
        if self.ssh_key_passphrase_env.is_some() && self.ssh_key.is_none() {
            return Err(setting(
                account,
                "ssh_key_passphrase_env",
                format!("account {account}: ssh_key_passphrase_env needs ssh_key"),
            ));
        }
        if self.s3_access_key_id_env.is_some() != self.s3_secret_access_key_env.is_some() {
            return Err(setting(
                account,
                "s3_access_key_id_env",
                format!(
                    "account {account}: set s3_access_key_id_env and s3_secret_access_key_env together"
                ),
            ));
        }
        Ok(())
    }

    /// The batch upload credential, read from `env` when `batch_key_env` is set.
    ///
    /// # Errors
    /// [`Error::Setting`] when the variable is missing or empty.
    pub fn batch_key(&self, account: &str, env: &Env) -> Result<Secret<String>> {
        resolve_secret(
            account,
            "batch_key",
            self.batch_key.as_ref(),
            self.batch_key_env.as_ref().map(EnvName::as_str),
            env,
        )
    }

    /// The merchant `xKey`, read from `env` when `merchant_key_env` is set.
    ///
    /// # Errors
    /// [`Error::Setting`] when the variable is missing or empty.
    pub fn merchant_key(&self, account: &str, env: &Env) -> Result<Secret<String>> {
        resolve_secret(
            account,
            "merchant_key",
            self.merchant_key.as_ref(),
            self.merchant_key_env.as_ref().map(EnvName::as_str),
            env,
        )
    }

    /// The backend options of this account's drop: `storage` (retry, concurrency,
    /// timeouts), the SFTP key/password and host key check, the S3 overrides of the AWS
    /// environment (credentials read from `env` through the variables the `s3_*_env` keys
    /// name).
    ///
    /// # Errors
    /// [`Error::Setting`] for an unset credential variable.
    pub fn backend_options(
        &self,
        account: &str,
        storage: &StorageSettings,
        env: &Env,
    ) -> Result<BackendOptions> {
        let mut options = BackendOptions::default();
        storage.apply(&mut options);
        if let Some(path) = &self.ssh_key {
            options.sftp.auth = Some(SftpAuth::KeyFile {
                path: path.clone(),
                passphrase_env: self.ssh_key_passphrase_env.clone(),
            });
        } else if let Some(var) = &self.ssh_password_env {
            options.sftp.auth = Some(SftpAuth::PasswordEnv { var: var.clone() });
        }
        if let Some(path) = &self.known_hosts {
            options.sftp.host_key = Some(HostKeyCheck::KnownHosts(path.clone()));
        } else if let Some(fp) = &self.host_key_sha256 {
            options.sftp.host_key = Some(HostKeyCheck::Fingerprint(fp.clone()));
        }
        let s3 = &mut options.s3;
        if self.s3_endpoint.is_some() {
            s3.endpoint.clone_from(&self.s3_endpoint);
        }
        if self.s3_region.is_some() {
            s3.region.clone_from(&self.s3_region);
        }
        s3.allow_http = self.s3_allow_http.or(s3.allow_http);
        s3.virtual_hosted_style = self.s3_virtual_hosted_style.or(s3.virtual_hosted_style);
        s3.conditional_put = self.s3_conditional_put.or(s3.conditional_put);
        let read = |what: &str, var: &str| {
            env.get(var)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| {
                    setting(
                        account,
                        what,
                        format!(
                            "environment variable {} is not set (account {account})",
                            kvp_format::shown_env_name(var)
                        ),
                    )
                })
        };
        if let Some(var) = &self.s3_access_key_id_env {
            s3.access_key_id = Some(read("s3_access_key_id_env", var.as_str())?);
        }
        if let Some(var) = &self.s3_secret_access_key_env {
            s3.secret_access_key = Some(SecretString::new(read(
                "s3_secret_access_key_env",
                var.as_str(),
            )?));
        }
        Ok(options)
    }
}

fn setting(account: &str, key: &str, message: String) -> Error {
    Error::Setting {
        account: account.to_owned(),
        key: key.to_owned(),
        message,
    }
}
