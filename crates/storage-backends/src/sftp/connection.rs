//! One SSH connection per (host, port, user, credentials, host-key policy), shared by every
//! backend (every account) that uses it, and reconnected on the next operation after a drop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use kvp_format::EnvName;
use russh::client::{AuthResult, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use russh_sftp::client::{RawSftpSession, SftpSession};
use tokio::sync::Mutex as AsyncMutex;

use super::hostkey::{Rejection, Verifier};
use crate::error::{Error, ErrorKind, Result};
use crate::options::{HostKeyCheck, SftpAuth};

/// The OpenSSH extension that renames over an existing file atomically.
pub(crate) const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// What identifies a shareable connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) auth: SftpAuth,
    pub(crate) host_key: HostKeyCheck,
}

/// Timeouts of a connection (taken from the first backend that opened it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) operation: Duration,
}

/// An established, authenticated connection with its SFTP channels.
pub(crate) struct Live {
    handle: Handle<Verifier>,
    /// The channel for files and folders.
    pub(crate) sftp: SftpSession,
    /// A second channel for `posix-rename@openssh.com` (`None` if the server lacks it).
    pub(crate) rename: Option<RawSftpSession>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("closed", &self.handle.is_closed())
            .field("posix_rename", &self.rename.is_some())
            .finish()
    }
}

impl Live {
    /// Whether the SSH session is gone (server stopped, network dropped).
    pub(crate) fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }
}

/// A shared connection: connects lazily, reconnects after a drop.
#[derive(Debug)]
pub(crate) struct Connection {
    key: ConnKey,
    timeouts: Timeouts,
    live: AsyncMutex<Option<Arc<Live>>>,
}

type Pool = Mutex<HashMap<ConnKey, Weak<Connection>>>;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

/// The process's connection for `key`, created (not yet connected) if there is none alive.
pub(crate) fn shared(key: ConnKey, timeouts: Timeouts) -> Arc<Connection> {
    let Ok(mut map) = pool().lock() else {
        // A poisoned pool only loses sharing, never correctness.
        return Arc::new(Connection::new(key, timeouts));
    };
    map.retain(|_, weak| weak.strong_count() > 0);
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    let conn = Arc::new(Connection::new(key.clone(), timeouts));
    map.insert(key, Arc::downgrade(&conn));
    conn
}

impl Connection {
    fn new(key: ConnKey, timeouts: Timeouts) -> Connection {
        Connection {
            key,
            timeouts,
            live: AsyncMutex::new(None),
        }
    }

    /// The per-operation timeout.
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.timeouts.operation
    }

    fn shown(&self) -> String {
        format!(
            "sftp://{}@{}:{}",
            self.key.user, self.key.host, self.key.port
        )
    }

    /// The live session, connecting first if there is none or it dropped. Concurrent callers
    /// wait for one connection attempt instead of each opening their own.
    ///
    /// # Errors
    /// `Transient` when the server cannot be reached or the connect timeout passes; `Config`
    /// for an unknown or changed host key or unusable key file; `PermissionDenied` when the
    /// server refuses the credentials.
    pub(crate) async fn session(&self) -> Result<Arc<Live>> {
        let mut guard = self.live.lock().await;
        if let Some(live) = guard.as_ref() {
            if !live.is_closed() {
                return Ok(live.clone());
            }
            tracing::info!(server = %self.shown(), "SFTP connection dropped; reconnecting");
        }
        *guard = None;
        let live = match tokio::time::timeout(self.timeouts.connect, self.connect()).await {
            Ok(result) => Arc::new(result?),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Transient,
                    self.shown(),
                    format!(
                        "connecting and logging in took longer than {:?}",
                        self.timeouts.connect
                    ),
                    None,
                ));
            }
        };
        *guard = Some(live.clone());
        Ok(live)
    }

    /// Forgets `stale` so the next operation reconnects (if no one replaced it already).
    pub(crate) async fn invalidate(&self, stale: &Arc<Live>) {
        let mut guard = self.live.lock().await;
        if guard.as_ref().is_some_and(|l| Arc::ptr_eq(l, stale)) {
            *guard = None;
        }
    }

    async fn connect(&self) -> Result<Live> {
        let key = &self.key;
        let shown = self.shown();
        let rejection = Rejection::default();
        let verifier = Verifier {
            host: key.host.clone(),
            port: key.port,
            check: key.host_key.clone(),
            rejection: rejection.clone(),
        };
        let config = Arc::new(russh::client::Config {
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            ..russh::client::Config::default()
        });
        let mut handle =
            match russh::client::connect(config, (key.host.as_str(), key.port), verifier).await {
                Ok(handle) => handle,
                Err(e) => {
                    let refused = rejection.lock().ok().and_then(|mut r| r.take());
                    return Err(match refused {
                        Some(reason) => Error::with_source(ErrorKind::Config, shown, reason, e),
                        None => map_russh(shown, "connect", e),
                    });
                }
            };
        let (method, result) = match &key.auth {
            SftpAuth::KeyFile {
                path,
                passphrase_env,
            } => {
                let passphrase = match passphrase_env {
                    Some(var) => Some(env_secret(&shown, var, "key passphrase")?),
                    None => None,
                };
                let private =
                    russh::keys::load_secret_key(path, passphrase.as_deref()).map_err(|e| {
                        Error::with_source(
                            ErrorKind::Config,
                            shown.clone(),
                            format!("cannot load private key {}: {e}", path.display()),
                            e,
                        )
                    })?;
                let hash = if private.algorithm().is_rsa() {
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| map_russh(shown.clone(), "negotiate RSA hash", e))?
                        .flatten()
                } else {
                    None
                };
                let with_hash = PrivateKeyWithHashAlg::new(Arc::new(private), hash);
                let method = format!("the key {}", path.display());
                (
                    method,
                    handle.authenticate_publickey(&key.user, with_hash).await,
                )
            }
            SftpAuth::PasswordEnv { var } => {
                let password = env_secret(&shown, var, "password")?;
                let method = format!("the password from ${var}");
                (
                    method,
                    handle.authenticate_password(&key.user, password).await,
                )
            }
        };
        match result {
            Ok(AuthResult::Success) => {}
            Ok(AuthResult::Failure {
                remaining_methods, ..
            }) => {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    shown,
                    format!(
                        "the server refused to log in user {:?} with {method} (it accepts: \
                         {remaining_methods:?})",
                        key.user
                    ),
                    None,
                ));
            }
            Err(e) => return Err(map_russh(shown, "authenticate", e)),
        }
        let secs = self.timeouts.operation.as_secs().max(1);
        let sftp_config = russh_sftp::client::Config {
            request_timeout_secs: secs,
            ..russh_sftp::client::Config::default()
        };
        let channel = open_sftp_channel(&handle, &shown).await?;
        let sftp = SftpSession::new_with_config(channel.into_stream(), sftp_config)
            .await
            .map_err(|e| map_sftp(shown.clone(), "start SFTP", e))?;
        // russh-sftp's high-level session hides the extensions the server offered; a second,
        // raw channel tells us and carries posix-rename requests.
        let rename_channel = open_sftp_channel(&handle, &shown).await?;
        let raw = RawSftpSession::new(rename_channel.into_stream());
        raw.set_timeout(secs);
        let version = raw
            .init()
            .await
            .map_err(|e| map_sftp(shown.clone(), "start SFTP", e))?;
        let rename = version.extensions.contains_key(POSIX_RENAME).then_some(raw);
        tracing::debug!(server = %shown, posix_rename = rename.is_some(), "SFTP connected");
        Ok(Live {
            handle,
            sftp,
            rename,
        })
    }
}

async fn open_sftp_channel(
    handle: &Handle<Verifier>,
    shown: &str,
) -> Result<russh::Channel<russh::client::Msg>> {
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| map_russh(shown.to_owned(), "open channel", e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| map_russh(shown.to_owned(), "start the sftp subsystem", e))?;
    Ok(channel)
}

fn env_secret(shown: &str, var: &EnvName, what: &str) -> Result<String> {
    std::env::var(var.as_str()).map_err(|_| {
        Error::config(
            shown,
            format!("the environment variable {var} (SFTP {what}) is not set"),
        )
    })
}

/// Maps a russh (transport) error: network failures are `Transient`.
pub(crate) fn map_russh(shown: String, op: &str, e: russh::Error) -> Error {
    use russh::Error as R;
    let kind = match &e {
        // Refused, reset or cut connections while a server restarts are worth retrying.
        R::IO(io) => match ErrorKind::of_io(io.kind()) {
            ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Transient,
        },
        R::Disconnect
        | R::HUP
        | R::ConnectionTimeout
        | R::KeepaliveTimeout
        | R::InactivityTimeout
        | R::SendError
        | R::RecvError
        | R::Elapsed(_)
        | R::ChannelOpenFailure(_) => ErrorKind::Transient,
        R::UnknownKey | R::KeyChanged { .. } | R::NoCommonAlgo { .. } | R::Keys(_) => {
            ErrorKind::Config
        }
        R::NotAuthenticated | R::NoAuthMethod => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    };
    Error::with_source(kind, shown, format!("{op}: {e}"), e)
}

/// Maps an SFTP protocol error.
pub(crate) fn map_sftp(shown: String, op: &str, e: russh_sftp::client::error::Error) -> Error {
    use russh_sftp::client::error::Error as S;
    use russh_sftp::protocol::StatusCode as C;
    let kind = match &e {
        S::Status(status) => match status.status_code {
            C::NoSuchFile => ErrorKind::NotFound,
            C::PermissionDenied => ErrorKind::PermissionDenied,
            C::NoConnection | C::ConnectionLost => ErrorKind::Transient,
            C::OpUnsupported => ErrorKind::Config,
            _ => ErrorKind::Other,
        },
        S::IO(_) | S::Timeout | S::UnexpectedBehavior(_) => ErrorKind::Transient,
        _ => ErrorKind::Other,
    };
    Error::with_source(kind, shown, format!("{op}: {e}"), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> ConnKey {
        ConnKey {
            host: "127.0.0.1".into(),
            port,
            user: "u".into(),
            auth: SftpAuth::PasswordEnv { var: "X".into() },
            host_key: HostKeyCheck::Fingerprint("SHA256:x".into()),
        }
    }

    #[test]
    fn one_connection_per_key_while_in_use() {
        let t = Timeouts {
            connect: Duration::from_secs(1),
            operation: Duration::from_secs(1),
        };
        let a = shared(key(1), t);
        let b = shared(key(1), t);
        let c = shared(key(2), t);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        let again = shared(key(1), t);
        assert_eq!(
            Arc::strong_count(&again),
            1,
            "a dropped connection is not kept"
        );
    }

    #[test]
    fn sftp_status_kinds() {
        use russh_sftp::protocol::{Status, StatusCode as C};
        let status = |code| {
            russh_sftp::client::error::Error::Status(Status {
                id: 1,
                status_code: code,
                error_message: "m".into(),
                language_tag: "en".into(),
            })
        };
        let cases = [
            (C::NoSuchFile, ErrorKind::NotFound),
            (C::PermissionDenied, ErrorKind::PermissionDenied),
            (C::ConnectionLost, ErrorKind::Transient),
            (C::Failure, ErrorKind::Other),
        ];
        for (code, want) in cases {
            assert_eq!(map_sftp("l".into(), "op", status(code)).kind(), want);
        }
        let timeout = russh_sftp::client::error::Error::Timeout;
        assert_eq!(
            map_sftp("l".into(), "op", timeout).kind(),
            ErrorKind::Transient
        );
    }
}
