//! The `Backend` trait every storage kind implements, and the values it trades in.

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{Error, Result};
use crate::location::Location;

/// A stream of chunks, for files too large to hold in memory. Errors end the stream.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// `data` as a [`ByteStream`] of one chunk: how a backend whose writes are streams (a temp
/// file then a rename) serves `put` of a buffer.
pub fn one_chunk(data: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(data) }).boxed()
}

/// Size of the chunks the backends read and write when streaming (256 KiB).
pub const STREAM_CHUNK: usize = 256 * 1024;

/// One file in a drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Path relative to the location's root, `/`-separated: `"Request/REQUEST_1.KVP"`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, when the backend reports one.
    pub modified: Option<SystemTime>,
}

impl ObjectMeta {
    /// The last segment of [`path`](Self::path): `"REQUEST_1.KVP"`.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// How `put_if_absent` is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutIfAbsent {
    /// Exclusive on the server: of concurrent writers exactly one succeeds
    /// (local: hard link; SFTP: plain rename, which OpenSSH refuses onto an existing name;
    /// S3: `If-None-Match: *`).
    Atomic,
    /// Not offered by this server; `put_if_absent` fails with `Config`.
    Unsupported,
}

/// How `put` replaces an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replace {
    /// A reader sees the old or the new content, never neither (rename over / object put).
    Atomic,
    /// The old file is removed, then the new one renamed in: a reader may briefly see
    /// `NotFound`, never a partial file (SFTP servers without `posix-rename@openssh.com`).
    RemoveThenRename,
}

/// How large uploads travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LargeUpload {
    /// Streamed to a temporary file, then renamed (local, SFTP).
    TempFileRename,
    /// Multipart upload above this many bytes, one object put below (S3).
    Multipart {
        /// Bytes above which a streamed put uses multipart.
        threshold: u64,
    },
}

/// What a backend can do; callers and the conformance suite branch on these, not on the
/// backend's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// How `put_if_absent` is enforced.
    pub put_if_absent: PutIfAbsent,
    /// How `put` replaces an existing file.
    pub replace: Replace,
    /// How streamed uploads travel.
    pub large_upload: LargeUpload,
    /// Whether `head`/`list` report modification times.
    pub modified_time: bool,
    /// Whether files are created readable by their owner only (mode 0600).
    pub owner_only_files: bool,
}

/// One storage location (an account's drop) on one kind of storage.
///
/// Paths are relative to [`location`](Self::location)'s root and `/`-separated
/// (`"Request/REQUEST_1.KVP"`); they are checked by [`check_path`](crate::check_path) and a bad
/// one is a `Config` error. Folders are created as needed by the puts; listing a folder that
/// does not exist gives an empty list. Temporary files of an atomic publish (names starting
/// with `.` and containing `.paybatch-tmp.`) never appear in listings.
///
/// Every error carries the URL of the file it was about ([`Error::location`]) and is one of
/// the [`ErrorKind`](crate::ErrorKind)s; `Transient` ones are safe to retry (see
/// [`RetryBackend`](crate::RetryBackend)).
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// The root this backend serves.
    fn location(&self) -> &Location;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Writes `data` to `path` atomically (a reader sees the whole old file, the whole new file
    /// or — only with [`Replace::RemoveThenRename`] — briefly none), replacing any file there.
    async fn put(&self, path: &str, data: Bytes) -> Result<()>;

    /// Writes `data` to `path` atomically unless the name is taken.
    ///
    /// # Errors
    /// `AlreadyExists` if a file is at `path` (its content is left alone).
    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()>;

    /// Reads a whole file.
    ///
    /// # Errors
    /// `NotFound` if there is no file at `path`.
    async fn get(&self, path: &str) -> Result<Bytes>;

    /// Size and modification time of a file.
    ///
    /// # Errors
    /// `NotFound` if there is no file at `path`.
    async fn head(&self, path: &str) -> Result<ObjectMeta>;

    /// The files directly in `folder` (`""` is the root), sorted by path; sub-folders are
    /// not listed. A missing folder is an empty list.
    async fn list(&self, folder: &str) -> Result<Vec<ObjectMeta>>;

    /// Removes a file; removing a file that is not there succeeds.
    async fn delete(&self, path: &str) -> Result<()>;

    /// Removes what interrupted publishes of `path` left beside it: the temporary files of
    /// an atomic publish that never finished (the process was killed, or the upload's future
    /// dropped, while it wrote). They are hidden from listings and never become `path`, but
    /// they hold the data — card numbers, for a REQUEST. Only names this crate's publishes make
    /// for `path` are touched, never `path` itself or another file. Returns how many were
    /// removed; backends whose publishes leave nothing visible behind (S3) remove nothing.
    async fn remove_unpublished(&self, path: &str) -> Result<usize>;

    /// Reads a file as a stream of chunks, in constant memory.
    ///
    /// # Errors
    /// `NotFound` if there is no file at `path` (reported here, not in the stream).
    async fn get_stream(&self, path: &str) -> Result<ByteStream>;

    /// Writes a stream to `path` with the atomicity of [`put`](Self::put), in constant memory,
    /// and returns the number of bytes written. An error from the stream aborts the upload and
    /// leaves any earlier file at `path` untouched.
    ///
    /// A stream can only be consumed once, so wrappers do not retry this; use
    /// [`put_file`](Self::put_file) when the source can be read again.
    async fn put_stream(&self, path: &str, data: ByteStream) -> Result<u64>;

    /// Uploads a local file with [`put_stream`](Self::put_stream). Unlike `put_stream` this is
    /// retried by [`RetryBackend`](crate::RetryBackend), which reopens the file.
    ///
    /// # Errors
    /// As `put_stream`; a local read failure is reported with the local path.
    async fn put_file(&self, path: &str, local: &Path) -> Result<u64> {
        let stream = file_stream(local).await?;
        self.put_stream(path, stream).await
    }
}

/// Opens a local file as a [`ByteStream`] of [`STREAM_CHUNK`]-sized chunks.
///
/// # Errors
/// The open failure, mapped by its `io::ErrorKind`, with the local path as location.
pub async fn file_stream(local: &Path) -> Result<ByteStream> {
    let shown = format!("file://{}", local.display());
    let file = tokio::fs::File::open(local)
        .await
        .map_err(|e| Error::from_io(shown.clone(), "open local file", e))?;
    Ok(reader_stream(file, shown))
}

/// Turns any `AsyncRead` into a [`ByteStream`]; read errors are reported against `shown`.
pub fn reader_stream<R>(reader: R, shown: String) -> ByteStream
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
{
    use tokio::io::AsyncReadExt;
    futures::stream::try_unfold(
        (reader, shown, false),
        |(mut reader, shown, done)| async move {
            if done {
                return Ok(None);
            }
            let mut buf = bytes::BytesMut::with_capacity(STREAM_CHUNK);
            while buf.len() < STREAM_CHUNK {
                let n = reader
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| Error::from_io(shown.clone(), "read", e))?;
                if n == 0 {
                    let last = buf.freeze();
                    return Ok(if last.is_empty() {
                        None
                    } else {
                        Some((last, (reader, shown, true)))
                    });
                }
            }
            Ok(Some((buf.freeze(), (reader, shown, false))))
        },
    )
    .boxed()
}

/// Convenience methods on any backend (also on `Arc<dyn Backend>`).
#[async_trait]
pub trait BackendExt: Backend {
    /// Whether a file exists at `path`.
    ///
    /// # Errors
    /// Any error of `head` except `NotFound`.
    async fn exists(&self, path: &str) -> Result<bool> {
        match self.head(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == crate::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Downloads `path` into the local file `local` (created or truncated) in constant memory,
    /// and returns the number of bytes written.
    ///
    /// # Errors
    /// As `get_stream`; local write failures carry the local path.
    async fn get_to_file(&self, path: &str, local: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let shown = format!("file://{}", local.display());
        let mut stream = self.get_stream(path).await?;
        let mut file = tokio::fs::File::create(local)
            .await
            .map_err(|e| Error::from_io(shown.clone(), "create local file", e))?;
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::from_io(shown.clone(), "write local file", e))?;
            total += chunk.len() as u64;
        }
        file.flush()
            .await
            .map_err(|e| Error::from_io(shown, "flush local file", e))?;
        Ok(total)
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}

/// Name of the temporary file an atomic publish of `name` writes first; listings hide it.
pub(crate) fn temp_name(name: &str) -> String {
    format!(".{name}.paybatch-tmp.{:016x}", fastrand::u64(..))
}

/// Whether `name` is exactly one of the temporary names [`temp_name`] makes for `target`
/// (`.TARGET.paybatch-tmp.` and 16 lowercase hex digits, nothing more).
pub(crate) fn is_temp_of(name: &str, target: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(target))
        .and_then(|rest| rest.strip_prefix(".paybatch-tmp."))
        .is_some_and(|hex| {
            hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// Whether a file name is one of [`temp_name`]'s.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".paybatch-tmp.")
}

/// Splits `"a/b/c.txt"` into `("a/b", "c.txt")` and `"c.txt"` into `("", "c.txt")`.
pub(crate) fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_name("REQUEST_1.KVP");
        assert!(is_temp_name(&t), "{t}");
        let cases = [
            ("REQUEST_1.KVP", false),
            (".hidden", false),
            (".x.paybatch-tmp.1", true),
        ];
        for (name, want) in cases {
            assert_eq!(is_temp_name(name), want, "{name}");
        }
        assert!(is_temp_of(&t, "REQUEST_1.KVP"));
        assert!(
            !is_temp_of(&t, "REQUEST_1"),
            "another file's name is a prefix of it"
        );
        assert!(!is_temp_of(&temp_name("REQUEST_11.KVP"), "REQUEST_1.KVP"));
        assert!(!is_temp_of("REQUEST_1.KVP", "REQUEST_1.KVP"));
        for other in [
            ".REQUEST_1.KVP.paybatch-tmp.bak",
            ".REQUEST_1.KVP.paybatch-tmp.0123456789abcdef.old",
            ".REQUEST_1.KVP.paybatch-tmp.0123456789ABCDEF",
        ] {
            assert!(!is_temp_of(other, "REQUEST_1.KVP"), "{other}");
        }
    }

    #[test]
    fn split_parent_cases() {
        let cases = [
            ("a/b/c", ("a/b", "c")),
            ("c", ("", "c")),
            ("Request/R", ("Request", "R")),
        ];
        for (path, want) in cases {
            assert_eq!(split_parent(path), want, "{path}");
        }
    }

    #[test]
    fn object_meta_name() {
        let m = ObjectMeta {
            path: "Request/REQUEST_1.KVP".into(),
            size: 1,
            modified: None,
        };
        assert_eq!(m.name(), "REQUEST_1.KVP");
    }

    #[tokio::test]
    async fn reader_stream_chunks_and_ends() {
        let data: Vec<u8> = (0..(STREAM_CHUNK * 2 + 17)).map(|i| i as u8).collect();
        let chunks: Vec<Bytes> = reader_stream(std::io::Cursor::new(data.clone()), "x".into())
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), data);
        let empty: Vec<_> = reader_stream(std::io::Cursor::new(Vec::new()), "x".into())
            .collect()
            .await;
        assert!(empty.is_empty());
    }
}
