//! `open()`: a location and options in, a ready `Arc<dyn Backend>` out.

use std::sync::Arc;

use crate::backend::Backend;
use crate::error::Result;
use crate::limit::LimitBackend;
use crate::local::LocalBackend;
use crate::location::{Location, Scheme};
use crate::options::BackendOptions;
use crate::retry::RetryBackend;
use crate::s3::S3Backend;
use crate::sftp::SftpBackend;

/// Opens the backend for `location`, wrapped as `RetryBackend(LimitBackend(backend))`: at most
/// `opts.max_concurrency` operations at once, `Transient` errors retried per `opts.retry` (a
/// backoff sleep does not hold a concurrency slot).
///
/// Local: creates the root directory if missing. S3: does not contact the server. SFTP:
/// connects (or reuses the process's shared connection to the same host, port and user),
/// verifies the host key and logs in.
///
/// # Errors
/// `Config` for bad options (missing SFTP auth or host-key check, unknown or changed host key,
/// `max_concurrency` 0, incomplete S3 settings); `PermissionDenied` for refused credentials;
/// `Transient` when the server cannot be reached.
pub async fn open(location: &Location, opts: &BackendOptions) -> Result<Arc<dyn Backend>> {
    let raw = open_unwrapped(location, opts).await?;
    let limited: Arc<dyn Backend> = Arc::new(LimitBackend::new(raw, opts.max_concurrency)?);
    Ok(Arc::new(RetryBackend::new(limited, opts.retry.clone())))
}

/// Opens the backend for `location` without the retry and limit wrappers (the conformance
/// suite uses this to test each backend's own behaviour).
///
/// # Errors
/// As [`open`].
pub async fn open_unwrapped(
    location: &Location,
    opts: &BackendOptions,
) -> Result<Arc<dyn Backend>> {
    Ok(match location.scheme() {
        Scheme::Local => Arc::new(LocalBackend::new(location).await?),
        Scheme::S3 => Arc::new(S3Backend::new(location, opts)?),
        Scheme::Sftp => Arc::new(SftpBackend::connect(location, opts).await?),
    })
}
