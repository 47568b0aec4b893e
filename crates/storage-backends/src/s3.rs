//! The S3 backend, on object_store's `AmazonS3`.
//!
//! Settings come from the standard AWS environment variables (`AmazonS3Builder::from_env`),
//! then [`S3Options`](crate::S3Options) overrides. object_store's own retries are switched off:
//! retrying is the job of [`RetryBackend`](crate::RetryBackend), so that every backend retries
//! the same way and a failure is reported once, as `Transient`.

use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::buffered::BufWriter;
use object_store::path::Path as StorePath;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use tokio::io::AsyncWriteExt;

use crate::backend::{
    Backend, ByteStream, Capabilities, LargeUpload, ObjectMeta, PutIfAbsent, Replace,
};
use crate::error::{Error, ErrorKind, Result};
use crate::location::{Location, Target, check_path};
use crate::options::BackendOptions;

/// A drop under an S3 bucket and prefix (`s3://bucket/prefix/acme`).
#[derive(Debug)]
pub struct S3Backend {
    location: Location,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    conditional_put: bool,
    multipart_threshold: u64,
}

impl S3Backend {
    /// A backend for `location`. Does not contact the server.
    ///
    /// # Errors
    /// `Config` if `location` is not `s3://` or the settings are incomplete (no region, a bad
    /// endpoint URL, ...).
    pub fn new(location: &Location, opts: &BackendOptions) -> Result<S3Backend> {
        let Target::S3 { bucket, prefix } = location.target() else {
            return Err(Error::config(
                location.to_string(),
                "the S3 backend needs an s3:// location",
            ));
        };
        let s3 = &opts.s3;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &s3.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        if let Some(allow) = s3.allow_http {
            builder = builder.with_allow_http(allow);
        }
        if let Some(vhost) = s3.virtual_hosted_style {
            builder = builder.with_virtual_hosted_style_request(vhost);
        }
        let conditional_put = s3.conditional_put.unwrap_or(true);
        builder = builder.with_conditional_put(if conditional_put {
            S3ConditionalPut::ETagMatch
        } else {
            S3ConditionalPut::Disabled
        });
        // Set through config keys: `with_client_options` would replace the client options
        // `from_env` read (AWS_ALLOW_HTTP among them).
        let millis = |d: std::time::Duration| format!("{}ms", d.as_millis().max(1));
        builder = builder
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                millis(opts.connect_timeout),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                millis(opts.operation_timeout),
            );
        let no_retries = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let store = builder.with_retry(no_retries).build().map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                location.to_string(),
                format!("S3 settings: {e}"),
                e,
            )
        })?;
        Ok(S3Backend {
            location: location.clone(),
            store: Arc::new(store),
            prefix: prefix.clone(),
            conditional_put,
            multipart_threshold: opts.multipart_threshold.max(5 * 1024 * 1024),
        })
    }

    fn key(&self, rel: &str) -> Result<(StorePath, String)> {
        check_path(&self.location, rel)?;
        let shown = self.location.display_path(rel);
        let full = match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.prefix),
        };
        let path = StorePath::parse(&full).map_err(|e| {
            Error::with_source(ErrorKind::Config, shown.clone(), "invalid S3 key", e)
        })?;
        Ok((path, shown))
    }

    fn rel_of(&self, key: &StorePath) -> String {
        let key = key.as_ref();
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            key.strip_prefix(&self.prefix)
                .map(|k| k.trim_start_matches('/'))
                .unwrap_or(key)
                .to_owned()
        }
    }

    async fn put_mode(&self, rel: &str, data: Bytes, mode: PutMode) -> Result<()> {
        let (key, shown) = self.key(rel)?;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&key, PutPayload::from(data), opts)
            .await
            .map_err(|e| map_err(shown, "put", e))?;
        Ok(())
    }
}

/// Maps an object_store error to our kinds. HTTP-level failures (connection refused or reset,
/// timeouts, 5xx, 429/SlowDown) are `Transient`.
pub(crate) fn map_err(shown: String, op: &str, e: object_store::Error) -> Error {
    use object_store::Error as OsError;
    let kind = match &e {
        OsError::NotFound { .. } => ErrorKind::NotFound,
        OsError::AlreadyExists { .. } | OsError::Precondition { .. } => ErrorKind::AlreadyExists,
        OsError::PermissionDenied { .. } | OsError::Unauthenticated { .. } => {
            ErrorKind::PermissionDenied
        }
        OsError::NotSupported { .. }
        | OsError::NotImplemented { .. }
        | OsError::UnknownConfigurationKey { .. }
        | OsError::InvalidPath { .. } => ErrorKind::Config,
        _ => classify_chain(&e),
    };
    Error::with_source(kind, shown, format!("{op}: {e}"), e)
}

fn classify_chain(e: &(dyn StdError + 'static)) -> ErrorKind {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => ErrorKind::Transient,
                _ => ErrorKind::Other,
            };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return ErrorKind::of_io(io.kind());
        }
        current = err.source();
    }
    // object_store's status errors are not public types; their text is stable enough.
    let text = e.to_string();
    let status_is = |prefix: &str| text.contains(&format!("status code: {prefix}"));
    if status_is("5") || status_is("429") || text.contains("SlowDown") {
        ErrorKind::Transient
    } else if status_is("403") || status_is("401") {
        ErrorKind::PermissionDenied
    } else {
        ErrorKind::Other
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn location(&self) -> &Location {
        &self.location
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            put_if_absent: if self.conditional_put {
                PutIfAbsent::Atomic
            } else {
                PutIfAbsent::Unsupported
            },
            replace: Replace::Atomic,
            large_upload: LargeUpload::Multipart {
                threshold: self.multipart_threshold,
            },
            modified_time: true,
            owner_only_files: false,
        }
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.put_mode(path, data, PutMode::Overwrite).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()> {
        if !self.conditional_put {
            return Err(Error::config(
                self.location.display_path(path),
                "put_if_absent needs conditional puts, disabled for this S3 server",
            ));
        }
        self.put_mode(path, data, PutMode::Create).await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let (key, shown) = self.key(path)?;
        let result = self
            .store
            .get(&key)
            .await
            .map_err(|e| map_err(shown.clone(), "get", e))?;
        result.bytes().await.map_err(|e| map_err(shown, "get", e))
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        let (key, shown) = self.key(path)?;
        let meta = self
            .store
            .head(&key)
            .await
            .map_err(|e| map_err(shown, "head", e))?;
        Ok(ObjectMeta {
            path: path.to_owned(),
            size: meta.size,
            modified: Some(meta.last_modified.into()),
        })
    }

    async fn list(&self, folder: &str) -> Result<Vec<ObjectMeta>> {
        let (key, shown) = self.key(folder)?;
        let prefix = (!key.as_ref().is_empty()).then_some(&key);
        let listed = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| map_err(shown, "list", e))?;
        let mut out: Vec<ObjectMeta> = listed
            .objects
            .into_iter()
            .map(|m| ObjectMeta {
                path: self.rel_of(&m.location),
                size: m.size,
                modified: Some(m.last_modified.into()),
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (key, shown) = self.key(path)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(shown, "delete", e)),
        }
    }

    /// A put is one request: interrupted, it leaves nothing. A large upload is a multipart
    /// upload, aborted when it fails; one cut short by a killed process (or a dropped future)
    /// leaves parts that no listing or read shows but that the bucket keeps — with the
    /// data — until a lifecycle rule (`AbortIncompleteMultipartUpload`) removes them: give
    /// the drop's bucket one (`crates/storage-backends/README.md`). Nothing to remove here.
    async fn remove_unpublished(&self, path: &str) -> Result<usize> {
        self.key(path)?;
        Ok(0)
    }

    async fn get_stream(&self, path: &str) -> Result<ByteStream> {
        let (key, shown) = self.key(path)?;
        let result = self
            .store
            .get(&key)
            .await
            .map_err(|e| map_err(shown.clone(), "get", e))?;
        Ok(result
            .into_stream()
            .map_err(move |e| map_err(shown.clone(), "get (stream)", e))
            .boxed())
    }

    async fn put_stream(&self, path: &str, mut data: ByteStream) -> Result<u64> {
        let (key, shown) = self.key(path)?;
        let capacity = usize::try_from(self.multipart_threshold).unwrap_or(usize::MAX);
        // Below `capacity` bytes BufWriter does one object put at shutdown; above, a multipart
        // upload with parts of `capacity` bytes, at most 2 in flight — constant memory either
        // way. S3 shows the object only when the upload completes, so readers never see a part.
        let mut writer =
            BufWriter::with_capacity(self.store.clone(), key, capacity).with_max_concurrency(2);
        let mut total = 0u64;
        let mut failure = None;
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(chunk) => {
                    total += chunk.len() as u64;
                    if let Err(e) = writer.put(chunk).await {
                        failure = Some(map_err(shown.clone(), "put (multipart)", e));
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(err) = failure {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(location = %shown, error = %abort, "aborting a multipart upload failed");
            }
            return Err(err);
        }
        writer
            .shutdown()
            .await
            .map_err(|e| Error::from_io(shown, "put (complete upload)", e))?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_prefix_and_strip_back() {
        let cases = [
            ("s3://b", "Request/R_1.KVP", "Request/R_1.KVP"),
            ("s3://b/p/acme", "Request/R_1.KVP", "p/acme/Request/R_1.KVP"),
            ("s3://b/p", "a b/ü.txt", "p/a b/ü.txt"),
        ];
        for (loc, rel, want) in cases {
            let b = S3Backend::new(&Location::parse(loc).unwrap(), &test_opts()).unwrap();
            let (key, _) = b.key(rel).unwrap();
            assert_eq!(key.as_ref(), want);
            assert_eq!(b.rel_of(&key), rel);
        }
    }

    #[test]
    fn status_texts_classify() {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct E(&'static str);
        let cases = [
            (
                "Server returned non-2xx status code: 503 Service Unavailable",
                ErrorKind::Transient,
            ),
            (
                "Server returned non-2xx status code: 500 Internal Server Error",
                ErrorKind::Transient,
            ),
            (
                "Server returned non-2xx status code: 403 Forbidden",
                ErrorKind::PermissionDenied,
            ),
            (
                "Server returned non-2xx status code: 400 Bad Request",
                ErrorKind::Other,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(classify_chain(&E(text)), want, "{text}");
        }
    }

    fn test_opts() -> BackendOptions {
        let mut o = BackendOptions::default();
        o.s3.region = Some("us-east-1".into());
        o
    }
}
