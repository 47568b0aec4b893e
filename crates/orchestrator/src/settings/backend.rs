//! What an account's storage backend is opened with: `[storage]` (retry, concurrency limit,
//! timeouts; the same for every account) and the per-account S3 and SFTP keys of
//! `[accounts.NAME]`, mapped onto [`storage_backends::BackendOptions`].

use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use storage_backends::{BackendOptions, HostKeyCheck, RetryPolicy, Scheme, SecretString, SftpAuth};

use super::AccountSettings;
use crate::error::{Error, Result};

/// `[storage]`: how every account's storage backend retries, how many operations it runs at
/// once and how long it waits. `config/default.toml` holds the library's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StorageSettings {
    /// Attempts of an operation that failed transiently, the first included (1: no retry).
    pub max_attempts: u32,
    /// Upper bound of the first (jittered) sleep before a retry.
    #[serde(deserialize_with = "super::duration")]
    pub initial_backoff: Duration,
    /// Upper bound of any sleep before a retry.
    #[serde(deserialize_with = "super::duration")]
    pub max_backoff: Duration,
    /// Growth of the bound per retry (at least 1).
    pub backoff_multiplier: f64,
    /// Operations one account's backend runs at once.
    pub max_concurrent_ops: usize,
    /// Time to establish a connection (TCP, TLS, SSH handshake and login).
    #[serde(deserialize_with = "super::duration")]
    pub connect_timeout: Duration,
    /// Time for one request to the server; running out is a transient (retried) error.
    #[serde(deserialize_with = "super::duration")]
    pub operation_timeout: Duration,
    /// S3: uploads larger than this many bytes go in parts of this size.
    pub multipart_threshold: u64,
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

    pub(super) fn check(&self) -> Result<()> {
        let bad = |k: &str, m: &str| Err(Error::setting(format!("storage.{k}"), m));
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

    /// The section as TOML for `config show`.
    pub(super) fn masked_toml(&self, s: &mut String) {
        let d = |v: Duration| humantime::format_duration(v).to_string();
        let _ = writeln!(
            s,
            "[storage]\nmax_attempts = {}\ninitial_backoff = \"{}\"\nmax_backoff = \"{}\"\n\
             backoff_multiplier = {:?}\nmax_concurrent_ops = {}\nconnect_timeout = \"{}\"\n\
             operation_timeout = \"{}\"\nmultipart_threshold = {}\n",
            self.max_attempts,
            d(self.initial_backoff),
            d(self.max_backoff),
            self.backoff_multiplier,
            self.max_concurrent_ops,
            d(self.connect_timeout),
            d(self.operation_timeout),
            self.multipart_threshold
        );
    }
}

/// Checks the S3 keys of account `name` (its location has scheme `scheme`): they belong to
/// `s3://` locations only, and the two credential variables come together.
pub(super) fn check_account(a: &AccountSettings, name: &str, scheme: Scheme) -> Result<()> {
    let key = |k: &str| format!("accounts.{name}.{k}");
    let s3_keys = [
        ("s3_endpoint", a.s3_endpoint.is_some()),
        ("s3_region", a.s3_region.is_some()),
        ("s3_allow_http", a.s3_allow_http.is_some()),
        (
            "s3_virtual_hosted_style",
            a.s3_virtual_hosted_style.is_some(),
        ),
        ("s3_conditional_put", a.s3_conditional_put.is_some()),
        ("s3_access_key_id_env", a.s3_access_key_id_env.is_some()),
        (
            "s3_secret_access_key_env",
            a.s3_secret_access_key_env.is_some(),
        ),
    ];
    if scheme != Scheme::S3
        && let Some((k, _)) = s3_keys.iter().find(|(_, set)| *set)
    {
        return Err(Error::setting(
            key(k),
            format!(
                "account {name} has a {} location; s3_* keys apply to s3:// locations only",
                scheme.as_str()
            ),
        ));
    }
    if a.ssh_key_passphrase_env.is_some() && a.ssh_key.is_none() {
        return Err(Error::setting(
            key("ssh_key_passphrase_env"),
            format!("account {name}: ssh_key_passphrase_env needs ssh_key"),
        ));
    }
    if a.s3_access_key_id_env.is_some() != a.s3_secret_access_key_env.is_some() {
        return Err(Error::setting(
            key("s3_access_key_id_env"),
            format!(
                "account {name}: set s3_access_key_id_env and s3_secret_access_key_env together"
            ),
        ));
    }
    Ok(())
}

/// Fills `options` from the account's keys; `env` reads an environment variable (the S3
/// credentials are read now, so a missing variable is reported naming the key and account).
pub(super) fn apply_account(
    a: &AccountSettings,
    account: &str,
    options: &mut BackendOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    if let Some(storage) = &a.storage {
        storage.apply(options);
    }
    if let Some(path) = &a.ssh_key {
        options.sftp.auth = Some(SftpAuth::KeyFile {
            path: path.clone(),
            passphrase_env: a.ssh_key_passphrase_env.clone(),
        });
    } else if let Some(var) = &a.ssh_password_env {
        options.sftp.auth = Some(SftpAuth::PasswordEnv { var: var.clone() });
    }
    if let Some(path) = &a.known_hosts {
        options.sftp.host_key = Some(HostKeyCheck::KnownHosts(path.clone()));
    } else if let Some(fp) = &a.host_key_sha256 {
        options.sftp.host_key = Some(HostKeyCheck::Fingerprint(fp.clone()));
    }
    let s3 = &mut options.s3;
    if a.s3_endpoint.is_some() {
        s3.endpoint.clone_from(&a.s3_endpoint);
    }
    if a.s3_region.is_some() {
        s3.region.clone_from(&a.s3_region);
    }
    s3.allow_http = a.s3_allow_http.or(s3.allow_http);
    s3.virtual_hosted_style = a.s3_virtual_hosted_style.or(s3.virtual_hosted_style);
    s3.conditional_put = a.s3_conditional_put.or(s3.conditional_put);
    let read = |what: &str, var: &str| {
        env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
            Error::setting(
                format!("accounts.{account}.{what}"),
                format!("environment variable {var} is not set (account {account})"),
            )
        })
    };
    if let Some(var) = &a.s3_access_key_id_env {
        s3.access_key_id = Some(read("s3_access_key_id_env", var)?);
    }
    if let Some(var) = &a.s3_secret_access_key_env {
        s3.secret_access_key = Some(SecretString::new(read("s3_secret_access_key_env", var)?));
    }
    Ok(())
}

/// The account's S3 keys as TOML lines for `config show` (credentials appear only as the
/// names of their variables).
pub(super) fn masked_account(a: &AccountSettings, s: &mut String) {
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    for (key, v) in [
        ("s3_endpoint", &a.s3_endpoint),
        ("s3_region", &a.s3_region),
        ("s3_access_key_id_env", &a.s3_access_key_id_env),
        ("s3_secret_access_key_env", &a.s3_secret_access_key_env),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "{key} = {}", q(v));
        }
    }
    for (key, v) in [
        ("s3_allow_http", a.s3_allow_http),
        ("s3_virtual_hosted_style", a.s3_virtual_hosted_style),
        ("s3_conditional_put", a.s3_conditional_put),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "{key} = {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::*;
    use std::time::Duration;

    const S3: &str = "[accounts.bucket]\nlocation = \"s3://pay-drop/acme\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n";

    fn env(var: &str) -> Option<String> {
        match var {
            "ACME_S3_ID" => Some("AKIDEXAMPLE".to_owned()),
            "ACME_S3_SECRET" => Some("s3-secret-value-42".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn options(extra: &str) -> Result<BackendOptions> {
        let s = Settings::from_toml(&format!("{S3}{extra}"))?;
        let a = s.account("bucket")?;
        let mut o = BackendOptions::default();
        apply_account(a, "bucket", &mut o, &env)?;
        Ok(o)
    }

    #[test]
    fn s3_keys_map_onto_s3_options() {
        let o = options(
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
        let o = options("").unwrap();
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
            let err = options(extra).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let local = "[accounts.disk]\nlocation = \"file:///srv/d\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\ns3_region = \"x\"\n";
        let err = Settings::from_toml(local).unwrap_err().to_string();
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
        let s = Settings::from_toml(&text).unwrap();
        let shown = s.to_masked_toml();
        for line in [
            "s3_endpoint = \"http://127.0.0.1:9000\"",
            "s3_allow_http = true",
            "s3_secret_access_key_env = \"ACME_S3_SECRET\"",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} in {shown}");
        }
        let again = Settings::from_toml(&shown).unwrap();
        let mut o = BackendOptions::default();
        apply_account(again.account("bucket").unwrap(), "bucket", &mut o, &env).unwrap();
        assert_eq!(o.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(o.s3.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
    }

    #[test]
    fn storage_defaults_are_the_library_defaults() {
        let s = Settings::from_toml(S3).unwrap();
        let (_, o) = s
            .account("bucket")
            .unwrap()
            .backend_options("bucket")
            .unwrap();
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
        let s = Settings::load_with_env(Some(&path), env).unwrap();
        for name in ["bucket", "remote"] {
            let (_, o) = s.account(name).unwrap().backend_options(name).unwrap();
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
        let (_, o) = s
            .account("remote")
            .unwrap()
            .backend_options("remote")
            .unwrap();
        let want = SftpAuth::KeyFile {
            path: "/etc/pb/id".into(),
            passphrase_env: Some("REMOTE_KEY_PASS".to_owned()),
        };
        assert_eq!(o.sftp.auth, Some(want));
        let shown = s.to_masked_toml();
        assert!(
            shown
                .lines()
                .any(|l| l == "ssh_key_passphrase_env = \"REMOTE_KEY_PASS\""),
            "{shown}"
        );
        let again = Settings::from_toml(&shown).unwrap();
        assert_eq!(again.storage, s.storage);
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
            let err = Settings::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
