//! `BackendOptions`: everything `open()` needs besides the location.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kvp_format::EnvName;

/// Options for [`open`](crate::open). `Default` is usable for local and S3 (settings from the
/// AWS environment variables); SFTP needs [`SftpOptions::auth`] and [`SftpOptions::host_key`].
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Retry policy for `Transient` errors (the [`RetryBackend`](crate::RetryBackend) wrapper).
    pub retry: RetryPolicy,
    /// At most this many operations of one opened backend run at once
    /// (the [`LimitBackend`](crate::LimitBackend) wrapper). Must be at least 1.
    pub max_concurrency: usize,
    /// Time allowed to establish a connection (TCP + SSH handshake + auth; S3 TCP/TLS).
    pub connect_timeout: Duration,
    /// Time allowed for one request to the server (one SFTP request, one HTTP request). A
    /// timeout is a `Transient` error.
    pub operation_timeout: Duration,
    /// S3: streamed uploads larger than this use a multipart upload (parts of this size).
    pub multipart_threshold: u64,
    /// SFTP settings.
    pub sftp: SftpOptions,
    /// S3 settings that override the AWS environment variables.
    pub s3: S3Options,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            retry: RetryPolicy::default(),
            max_concurrency: 16,
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            multipart_threshold: 8 * 1024 * 1024,
            sftp: SftpOptions::default(),
            s3: S3Options::default(),
        }
    }
}

/// Exponential backoff with full jitter: before retry `n` (1-based) the wrapper sleeps a random
/// time in `[0, min(max_backoff, initial_backoff * multiplier^(n-1))]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 disables retrying.
    pub max_attempts: u32,
    /// Upper bound of the first sleep.
    pub initial_backoff: Duration,
    /// Upper bound of any sleep.
    pub max_backoff: Duration,
    /// Growth of the bound per retry.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The upper bound of the sleep before retry `retry` (1-based).
    pub fn backoff_bound(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exp);
        let bound = self.initial_backoff.as_secs_f64() * factor;
        if !bound.is_finite() || bound >= self.max_backoff.as_secs_f64() {
            self.max_backoff
        } else {
            Duration::from_secs_f64(bound)
        }
    }

    /// A jittered sleep for retry `retry`: uniform in `[0, backoff_bound(retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.backoff_bound(retry).mul_f64(fastrand::f64())
    }
}

/// SFTP connection settings.
#[derive(Debug, Clone, Default)]
pub struct SftpOptions {
    /// How to log in; required for `sftp://` locations.
    pub auth: Option<SftpAuth>,
    /// How to verify the server's host key; required (there is no "accept any key").
    pub host_key: Option<HostKeyCheck>,
    /// How `put` replaces an existing file.
    pub rename: SftpRename,
}

/// How an SFTP `put` moves its temporary file over an existing one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SftpRename {
    /// `posix-rename@openssh.com` (atomic replace) when the server offers it, else
    /// remove + rename.
    #[default]
    PosixWhereOffered,
    /// Always remove + rename: for servers that list posix-rename but refuse it. A reader may
    /// briefly see `NotFound`, never a partial file.
    RemoveThenRename,
}

/// How to log in to an SFTP server.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SftpAuth {
    /// A private key file (OpenSSH format; ed25519 or RSA).
    KeyFile {
        /// Path of the private key.
        path: PathBuf,
        /// Name of an environment variable holding the key's passphrase, if it has one.
        passphrase_env: Option<EnvName>,
    },
    /// A password read from the named environment variable when connecting (the password
    /// itself is never stored in options, config or logs).
    PasswordEnv {
        /// Name of the environment variable.
        var: EnvName,
    },
}

impl fmt::Debug for SftpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SftpAuth::KeyFile {
                path,
                passphrase_env,
            } => f
                .debug_struct("KeyFile")
                .field("path", path)
                .field("passphrase_env", passphrase_env)
                .finish(),
            SftpAuth::PasswordEnv { var } => {
                f.debug_struct("PasswordEnv").field("var", var).finish()
            }
        }
    }
}

/// How to verify an SFTP server's host key. An unknown or changed key is always refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostKeyCheck {
    /// An OpenSSH `known_hosts` file; a non-22 port is looked up as `[host]:port`.
    KnownHosts(PathBuf),
    /// A pinned SHA-256 fingerprint as `ssh-keygen -lf` prints it: `SHA256:base64...`
    /// (the `SHA256:` prefix is optional).
    Fingerprint(String),
}

/// S3 settings. Each `Some` overrides what `AmazonS3Builder::from_env` read from the standard
/// AWS variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, ...).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL (`http://127.0.0.1:9000` for an S3-compatible server).
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (Debug prints it masked).
    pub secret_access_key: Option<SecretString>,
    /// Allow plain `http://` endpoints.
    pub allow_http: Option<bool>,
    /// Virtual-hosted-style (`bucket.host`) instead of path-style requests.
    pub virtual_hosted_style: Option<bool>,
    /// Whether the server supports `If-None-Match: *` (conditional put). `Some(false)` makes
    /// `put_if_absent` a `Config` error instead of a silent overwrite.
    pub conditional_put: Option<bool>,
}

/// A string that Debug and Display never show.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretString(secret.into())
    }

    /// The secret itself; only for handing it to the client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_bounds_grow_and_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
        };
        let cases = [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ];
        for (retry, ms) in cases {
            assert_eq!(p.backoff_bound(retry), Duration::from_millis(ms), "{retry}");
        }
        for retry in 1..20 {
            assert!(p.backoff(retry) <= p.backoff_bound(retry));
        }
    }

    #[test]
    fn secrets_are_masked() {
        let opts = S3Options {
            secret_access_key: Some(SecretString::new("wJalrXUtnFEMI")),
            ..S3Options::default()
        };
        let shown = format!("{opts:?} {}", SecretString::new("wJalrXUtnFEMI"));
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }
}
