//! The SFTP backend, on russh + russh-sftp (pure Rust, tokio).
//!
//! Publishing is "upload to a temporary name in the target folder, then rename":
//! - `put` renames with `posix-rename@openssh.com`, which replaces the target atomically.
//!   Servers without that extension get remove + rename: a reader may then briefly see
//!   `NotFound` (declared as [`Replace::RemoveThenRename`]), never a partial file;
//! - `put_if_absent` renames with the plain `SSH_FXP_RENAME`, which OpenSSH implements with
//!   `link(2)` + `unlink(2)` and therefore refuses when the target exists: exclusive on the
//!   server, so of concurrent writers exactly one wins.
//!
//! Files are created with mode 0600. Every request has the operation timeout (russh-sftp's
//! per-request timeout); connecting has the connect timeout. When the connection drops, the
//! failing operation is `Transient` and the next one reconnects (see `connection.rs`).

mod connection;
mod hostkey;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::AsyncWriteExt;

use self::connection::{ConnKey, Connection, Live, POSIX_RENAME, Timeouts, map_sftp, shared};
use crate::backend::{
    Backend, ByteStream, Capabilities, LargeUpload, ObjectMeta, PutIfAbsent, Replace, is_temp_name,
    is_temp_of, one_chunk, reader_stream, split_parent, temp_name,
};
use crate::error::{Error, ErrorKind, Result};
use crate::location::{Location, Target, check_path};
use crate::options::{BackendOptions, SftpRename};

/// A drop in a folder on an SFTP server (`sftp://user@host:2222/drop/acme`).
#[derive(Debug)]
pub struct SftpBackend {
    location: Location,
    root: String,
    conn: Arc<Connection>,
    posix_rename: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    Replace,
    CreateOnly,
}

/// The folder of a remote path (always absolute: the drop's root starts with `/`) and its
/// name; a file at the server's root (`/x`) is in `/`.
fn remote_folder(remote: &str) -> (&str, &str) {
    match split_parent(remote) {
        ("", name) => ("/", name),
        (folder, name) => (folder, name),
    }
}

impl SftpBackend {
    /// Connects (or reuses the process's connection to the same server, user and
    /// credentials), verifies the host key and logs in.
    ///
    /// # Errors
    /// `Config` without `opts.sftp.auth` or `opts.sftp.host_key`, for an unknown or changed
    /// host key (the message shows the offered fingerprint) or an unusable key file;
    /// `PermissionDenied` when the login is refused; `Transient` when the server cannot be
    /// reached in `opts.connect_timeout`.
    pub async fn connect(location: &Location, opts: &BackendOptions) -> Result<SftpBackend> {
        let Target::Sftp {
            user,
            host,
            port,
            root,
        } = location.target()
        else {
            return Err(Error::config(
                location.to_string(),
                "the SFTP backend needs an sftp:// location",
            ));
        };
        let auth = opts.sftp.auth.clone().ok_or_else(|| {
            Error::config(
                location.to_string(),
                "SFTP needs credentials: a private key file or the name of an environment \
                 variable holding the password",
            )
        })?;
        let host_key = opts.sftp.host_key.clone().ok_or_else(|| {
            Error::config(
                location.to_string(),
                "SFTP needs host-key verification: a known_hosts file or a pinned SHA-256 \
                 fingerprint (there is no option to accept any key)",
            )
        })?;
        let key = ConnKey {
            host: host.clone(),
            port: *port,
            user: user.clone(),
            auth,
            host_key,
        };
        let timeouts = Timeouts {
            connect: opts.connect_timeout,
            operation: opts.operation_timeout,
        };
        let conn = shared(key, timeouts);
        let live = conn
            .session()
            .await
            .map_err(|e| relocate(e, &location.to_string()))?;
        Ok(SftpBackend {
            location: location.clone(),
            root: root.clone(),
            posix_rename: live.rename.is_some()
                && opts.sftp.rename == SftpRename::PosixWhereOffered,
            conn,
        })
    }

    fn remote(&self, rel: &str) -> Result<(String, String)> {
        check_path(&self.location, rel)?;
        let shown = self.location.display_path(rel);
        let path = match (self.root.as_str(), rel) {
            (root, "") => root.to_owned(),
            ("/", rel) => format!("/{rel}"),
            (root, rel) => format!("{root}/{rel}"),
        };
        Ok((path, shown))
    }

    /// Runs `op` on the live session; on a connection-level failure forgets the session so
    /// the next call reconnects, and reports `Transient`.
    async fn with_session<T, F, Fut>(&self, shown: &str, op: F) -> Result<T>
    where
        F: FnOnce(Arc<Live>, String) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let live = self.conn.session().await.map_err(|e| relocate(e, shown))?;
        // A request in flight when the connection drops would only fail at its timeout;
        // watching the session ends it as soon as russh notices the drop.
        let result = tokio::select! {
            r = op(live.clone(), shown.to_owned()) => r,
            () = closed(&live) => Err(Error::new(
                ErrorKind::Transient,
                shown,
                "the SFTP connection dropped during the operation",
                None,
            )),
        };
        if let Err(e) = &result
            && (e.is_transient() || live.is_closed())
        {
            self.conn.invalidate(&live).await;
            if !e.is_transient() {
                return result.map_err(|e| {
                    Error::with_source(
                        ErrorKind::Transient,
                        shown,
                        "the SFTP connection dropped",
                        e,
                    )
                });
            }
        }
        result
    }

    /// Bounds a whole metadata operation by the operation timeout.
    async fn timed<T>(
        &self,
        shown: &str,
        what: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let limit = self.conn.operation_timeout();
        tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Transient,
                shown,
                format!("{what} took longer than {limit:?}"),
                None,
            ))
        })
    }

    async fn write_publish(&self, rel: &str, data: ByteStream, how: Publish) -> Result<u64> {
        let (target, shown) = self.remote(rel)?;
        if rel.is_empty() {
            return Err(Error::config(shown, "cannot write to the root itself"));
        }
        let (_, name) = split_parent(rel);
        let parent = remote_folder(&target).0.to_owned();
        let temp = if parent == "/" {
            format!("/{}", temp_name(name))
        } else {
            format!("{parent}/{}", temp_name(name))
        };
        let posix_rename = self.posix_rename;
        self.with_session(&shown, |live, shown| async move {
            let written = upload(&live, &parent, &temp, data, &shown).await;
            let published = match written {
                Ok(n) => publish(&live, &temp, &target, how, posix_rename, &shown)
                    .await
                    .map(|()| n),
                Err(e) => Err(e),
            };
            if published.is_err() {
                // Best effort: a leftover temporary file is hidden from listings anyway.
                let _ = live.sftp.remove_file(temp.as_str()).await;
            }
            published
        })
        .await
    }
}

/// Resolves when the SSH session of `live` has closed.
async fn closed(live: &Live) {
    while !live.is_closed() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Points an error from the shared connection at the file the caller asked about.
fn relocate(e: Error, shown: &str) -> Error {
    let kind = e.kind();
    let message = e.message().to_owned();
    Error::with_source(kind, shown, message, e)
}

/// Writes `data` to the new file `temp` (mode 0600), creating missing folders.
async fn upload(
    live: &Live,
    parent: &str,
    temp: &str,
    mut data: ByteStream,
    shown: &str,
) -> Result<u64> {
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE | OpenFlags::EXCLUDE;
    let attrs = || FileAttributes {
        permissions: Some(0o600),
        ..FileAttributes::empty()
    };
    let mut file = match live
        .sftp
        .open_with_flags_and_attributes(temp, flags, attrs())
        .await
    {
        Ok(file) => file,
        Err(e) if is_status(&e, StatusCode::NoSuchFile) => {
            mkdir_all(live, parent, shown).await?;
            live.sftp
                .open_with_flags_and_attributes(temp, flags, attrs())
                .await
                .map_err(|e| map_sftp(shown.to_owned(), "create temporary file", e))?
        }
        Err(e) => return Err(map_sftp(shown.to_owned(), "create temporary file", e)),
    };
    let mut total = 0u64;
    while let Some(chunk) = data.next().await {
        let chunk = chunk?;
        total += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| io_err(shown, "write temporary file", e))?;
    }
    // fsync@openssh.com when offered, so the rename publishes data that is on disk.
    file.sync_all()
        .await
        .map_err(|e| map_sftp(shown.to_owned(), "fsync temporary file", e))?;
    file.shutdown()
        .await
        .map_err(|e| io_err(shown, "close temporary file", e))?;
    Ok(total)
}

async fn publish(
    live: &Live,
    temp: &str,
    target: &str,
    how: Publish,
    posix_rename: bool,
    shown: &str,
) -> Result<()> {
    match how {
        Publish::CreateOnly => match live.sftp.rename(temp, target).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, StatusCode::Failure) => {
                // OpenSSH says only "Failure"; tell a taken name from other failures.
                if live.sftp.metadata(target).await.is_ok() {
                    Err(Error::with_source(
                        ErrorKind::AlreadyExists,
                        shown,
                        "the name is taken",
                        e,
                    ))
                } else {
                    Err(map_sftp(shown.to_owned(), "rename into place", e))
                }
            }
            Err(e) => Err(map_sftp(shown.to_owned(), "rename into place", e)),
        },
        Publish::Replace => match (&live.rename, posix_rename) {
            (Some(raw), true) => {
                let mut payload = Vec::with_capacity(8 + temp.len() + target.len());
                for s in [temp, target] {
                    let len = u32::try_from(s.len())
                        .map_err(|_| Error::config(shown, "path too long for an SFTP request"))?;
                    payload.extend_from_slice(&len.to_be_bytes());
                    payload.extend_from_slice(s.as_bytes());
                }
                match raw.extended(POSIX_RENAME, payload).await {
                    Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
                    Ok(Packet::Status(s)) => Err(map_sftp(
                        shown.to_owned(),
                        "posix-rename into place",
                        russh_sftp::client::error::Error::Status(s),
                    )),
                    Ok(_) => Err(Error::new(
                        ErrorKind::Other,
                        shown,
                        "posix-rename: unexpected reply",
                        None,
                    )),
                    Err(e) => Err(map_sftp(shown.to_owned(), "posix-rename into place", e)),
                }
            }
            _ => {
                // Without posix-rename: remove, then rename (readers may briefly see nothing).
                match live.sftp.remove_file(target).await {
                    Ok(()) => {}
                    Err(e) if is_status(&e, StatusCode::NoSuchFile) => {}
                    Err(e) => return Err(map_sftp(shown.to_owned(), "remove old file", e)),
                }
                live.sftp
                    .rename(temp, target)
                    .await
                    .map_err(|e| map_sftp(shown.to_owned(), "rename into place", e))
            }
        },
    }
}

/// `mkdir -p`: creates every missing folder of the absolute path `dir`.
async fn mkdir_all(live: &Live, dir: &str, shown: &str) -> Result<()> {
    let mut path = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        path.push_str(part);
        match live.sftp.metadata(path.as_str()).await {
            Ok(md) if md.is_dir() => continue,
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::Other,
                    shown,
                    format!("{path} exists and is not a folder"),
                    None,
                ));
            }
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => {}
            Err(e) => return Err(map_sftp(shown.to_owned(), "stat folder", e)),
        }
        if let Err(e) = live.sftp.create_dir(path.as_str()).await {
            // Another writer may have created it meanwhile; only a missing folder is an error.
            match live.sftp.metadata(path.as_str()).await {
                Ok(md) if md.is_dir() => {}
                _ => return Err(map_sftp(shown.to_owned(), "create folder", e)),
            }
        }
    }
    Ok(())
}

fn is_status(e: &russh_sftp::client::error::Error, code: StatusCode) -> bool {
    matches!(e, russh_sftp::client::error::Error::Status(s) if s.status_code == code)
}

/// Maps an I/O error from an open remote file. russh-sftp reports both server refusals and
/// a dead channel this way; timeouts and connection errors are `Transient`. A channel whose
/// reader stopped answers every request still pending with "sender dropped"
/// (`UnexpectedBehavior`): `Transient` too, so the session is replaced and the call retried.
fn io_err(shown: &str, what: &str, e: std::io::Error) -> Error {
    use russh_sftp::client::error::Error as S;
    let channel_gone = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<S>())
        .is_some_and(|inner| matches!(inner, S::UnexpectedBehavior(_) | S::Timeout | S::IO(_)));
    let mut err = Error::from_io(shown, what, e);
    if err.kind() == ErrorKind::Other && (channel_gone || err.message().contains("session closed"))
    {
        err = Error::with_source(
            ErrorKind::Transient,
            shown,
            format!("{what}: session closed"),
            err,
        );
    }
    err
}

fn meta_of(rel: String, md: &FileAttributes) -> ObjectMeta {
    ObjectMeta {
        path: rel,
        size: md.size.unwrap_or(0),
        modified: md.modified().ok(),
    }
}

#[async_trait]
impl Backend for SftpBackend {
    fn location(&self) -> &Location {
        &self.location
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            put_if_absent: PutIfAbsent::Atomic,
            replace: if self.posix_rename {
                Replace::Atomic
            } else {
                Replace::RemoveThenRename
            },
            large_upload: LargeUpload::TempFileRename,
            modified_time: true,
            owner_only_files: true,
        }
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.write_publish(path, one_chunk(data), Publish::Replace)
            .await?;
        Ok(())
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()> {
        self.write_publish(path, one_chunk(data), Publish::CreateOnly)
            .await?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let (remote, shown) = self.remote(path)?;
        self.with_session(&shown, |live, shown| async move {
            let data = live
                .sftp
                .read(remote.as_str())
                .await
                .map_err(|e| map_sftp(shown.clone(), "read", e))?;
            Ok(Bytes::from(data))
        })
        .await
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        let (remote, shown) = self.remote(path)?;
        let work = self.with_session(&shown, |live, shown| async move {
            let md = live
                .sftp
                .metadata(remote.as_str())
                .await
                .map_err(|e| map_sftp(shown.clone(), "stat", e))?;
            if md.is_dir() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    shown.clone(),
                    "is a folder",
                    None,
                ));
            }
            Ok(meta_of(path.to_owned(), &md))
        });
        self.timed(&self.location.display_path(path), "stat", work)
            .await
    }

    async fn list(&self, folder: &str) -> Result<Vec<ObjectMeta>> {
        let (remote, shown) = self.remote(folder)?;
        let work = self.with_session(&shown, |live, shown| async move {
            let entries = match live.sftp.read_dir(remote.as_str()).await {
                Ok(entries) => entries,
                Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(Vec::new()),
                Err(e) => return Err(map_sftp(shown.clone(), "list", e)),
            };
            let mut out: Vec<ObjectMeta> = entries
                .filter(|entry| entry.file_type().is_file())
                .filter_map(|entry| {
                    let name = entry.file_name();
                    if is_temp_name(&name) || name == "." || name == ".." {
                        return None;
                    }
                    let rel = if folder.is_empty() {
                        name
                    } else {
                        format!("{folder}/{name}")
                    };
                    Some(meta_of(rel, &entry.metadata()))
                })
                .collect();
            out.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(out)
        });
        self.timed(&self.location.display_path(folder), "list", work)
            .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (remote, shown) = self.remote(path)?;
        let work = self.with_session(&shown, |live, shown| async move {
            match live.sftp.remove_file(remote.as_str()).await {
                Ok(()) => Ok(()),
                Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(()),
                Err(e) => Err(map_sftp(shown.clone(), "delete", e)),
            }
        });
        self.timed(&self.location.display_path(path), "delete", work)
            .await
    }

    async fn remove_unpublished(&self, path: &str) -> Result<usize> {
        let (remote, shown) = self.remote(path)?;
        let (folder, target) = remote_folder(&remote);
        let (folder, target) = (folder.to_owned(), target.to_owned());
        let work = self.with_session(&shown, |live, shown| async move {
            let entries = match live.sftp.read_dir(folder.as_str()).await {
                Ok(entries) => entries,
                Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(0),
                Err(e) => return Err(map_sftp(shown.clone(), "list", e)),
            };
            let mut removed = 0;
            for entry in entries {
                let name = entry.file_name();
                if !entry.file_type().is_file() || !is_temp_of(&name, &target) {
                    continue;
                }
                let file = format!("{}/{name}", folder.trim_end_matches('/'));
                match live.sftp.remove_file(file).await {
                    Ok(()) => removed += 1,
                    Err(e) if is_status(&e, StatusCode::NoSuchFile) => {}
                    Err(e) => return Err(map_sftp(shown.clone(), "delete temporary file", e)),
                }
            }
            Ok(removed)
        });
        self.timed(&shown, "remove_unpublished", work).await
    }

    async fn get_stream(&self, path: &str) -> Result<ByteStream> {
        let (remote, shown) = self.remote(path)?;
        self.with_session(&shown, |live, shown| async move {
            let file = live
                .sftp
                .open(remote.as_str())
                .await
                .map_err(|e| map_sftp(shown.clone(), "open", e))?;
            Ok(reader_stream(file, shown))
        })
        .await
    }

    async fn put_stream(&self, path: &str, data: ByteStream) -> Result<u64> {
        self.write_publish(path, data, Publish::Replace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_channel_on_a_file_is_transient_a_refusal_is_not() {
        use russh_sftp::client::error::Error as S;
        let gone = std::io::Error::other(S::UnexpectedBehavior("sender dropped".into()));
        let err = io_err("sftp://u@h/x", "close temporary file", gone);
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
        let closed = std::io::Error::other("session closed");
        assert_eq!(io_err("s", "write", closed).kind(), ErrorKind::Transient);
        let refused = std::io::Error::other("Failure: disk full");
        assert_eq!(io_err("s", "write", refused).kind(), ErrorKind::Other);
    }
}
