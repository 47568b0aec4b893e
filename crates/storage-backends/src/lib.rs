//! One storage trait for an account's drop — a folder holding `Request/` and `Response/` — on
//! a local directory, an S3 bucket or an SFTP server, so the orchestrator never cares which.
//!
//! Main types:
//! - [`Backend`]: the async, object-safe trait (`Arc<dyn Backend>`): atomic `put`,
//!   `put_if_absent`, `get`, `head`, `list`, idempotent `delete`, streaming `get_stream` /
//!   `put_stream` / `put_file`, and declared [`Capabilities`];
//! - [`Location`]: `file:///srv/drop/acme`, `s3://bucket/prefix/acme`,
//!   `sftp://user@host:2222/drop/acme` (the SFTP path is absolute on the server);
//! - [`BackendOptions`]: SFTP auth and host-key check, S3 overrides, [`RetryPolicy`],
//!   concurrency limit, timeouts;
//! - [`Error`] / [`ErrorKind`]: `NotFound`, `AlreadyExists`, `PermissionDenied`, `Transient`,
//!   `Config`, `Other`, each with the location and the backend's own error as source;
//! - [`open`]: builds the backend, wrapped in [`RetryBackend`] and [`LimitBackend`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> storage_backends::Result<()> {
//! use bytes::Bytes;
//! use storage_backends::{open, BackendOptions, ErrorKind, Location};
//!
//! let dir = tempfile::tempdir().expect("tempdir");
//! let location = Location::parse(&format!("file://{}/acme", dir.path().display()))?;
//! let drop = open(&location, &BackendOptions::default()).await?;
//! drop.put("Request/REQUEST_1.KVP", Bytes::from_static(b"xIndex=0\n")).await?;
//! let err = drop.put_if_absent("Request/REQUEST_1.KVP", Bytes::new()).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::AlreadyExists);
//! assert_eq!(drop.list("Request").await?[0].path, "Request/REQUEST_1.KVP");
//! drop.delete("Request/REQUEST_1.KVP").await?;
//! drop.delete("Request/REQUEST_1.KVP").await?; // deleting what is gone is fine
//! # Ok(()) }
//! ```
//!
//! Guarantees:
//! - **atomic publish**: a reader never sees a partial file (temporary name + rename on local
//!   and SFTP; one object put, or a multipart upload that appears only when complete, on S3);
//! - `put_if_absent` is exclusive where [`Capabilities::put_if_absent`] says `Atomic`;
//! - `delete` is idempotent; `list` of a missing folder is empty and never shows temporaries;
//! - only [`RetryBackend`] retries, and only `Transient` errors; each operation is safe to
//!   repeat.
//!
//! With the `test-support` feature (off by default), the `conformance` suite is public so any
//! backend (or test double) can be checked against the same behaviour, and `test_env` gives
//! test targets on the servers `tests/support/` starts.
#![warn(missing_docs)]

mod backend;
#[cfg(feature = "test-support")]
pub mod conformance;
mod error;
mod limit;
mod local;
mod location;
mod open;
mod options;
mod retry;
mod s3;
mod sftp;
#[cfg(feature = "test-support")]
pub mod test_env;

pub use backend::{
    Backend, BackendExt, ByteStream, Capabilities, LargeUpload, ObjectMeta, PutIfAbsent, Replace,
    STREAM_CHUNK, file_stream, one_chunk, reader_stream,
};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use limit::LimitBackend;
pub use local::LocalBackend;
pub use location::{DEFAULT_SFTP_PORT, Location, Scheme, Target, check_path};
pub use open::{open, open_unwrapped};
pub use options::{
    BackendOptions, HostKeyCheck, RetryPolicy, S3Options, SecretString, SftpAuth, SftpOptions,
    SftpRename,
};
pub use retry::RetryBackend;
pub use s3::S3Backend;
pub use sftp::SftpBackend;
