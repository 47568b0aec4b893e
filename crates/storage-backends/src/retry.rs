//! `RetryBackend`: retries `Transient` errors of any backend with exponential backoff and
//! jitter. Only this wrapper retries; backends report a failure once.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{Backend, ByteStream, Capabilities, ObjectMeta};
use crate::error::{Error, ErrorKind, Result};
use crate::location::Location;
use crate::options::RetryPolicy;

/// Wraps a backend and retries its `Transient` errors according to a [`RetryPolicy`].
///
/// Every operation of [`Backend`] is safe to repeat: puts are atomic (a retried put writes the
/// same bytes again), deletes are idempotent, reads have no effect. One ambiguity is resolved
/// here: when a `put_if_absent` attempt failed transiently and a later attempt finds the name
/// taken, the first attempt may have landed; if the file holds exactly our bytes the put is
/// reported as done, otherwise `AlreadyExists` stands. `put_stream` is not retried (a stream
/// is consumed by the first attempt); `put_file` is, by reopening the file. A write that
/// failed transiently may have left its temporary file behind (a dropped connection ends the
/// attempt before its own cleanup): once the write is over, those are removed
/// ([`Backend::remove_unpublished`], best effort), so a retried upload leaves no copy of its
/// data beside the file.
#[derive(Debug)]
pub struct RetryBackend {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
}

impl RetryBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, policy: RetryPolicy) -> RetryBackend {
        RetryBackend { inner, policy }
    }

    /// [`RetryBackend::run`] for a write, then, if an attempt failed transiently, removes
    /// what that attempt may have left beside `path`. Also says whether one did.
    async fn write<T, F, Fut>(&self, op: &str, path: &str, mut f: F) -> (Result<T>, bool)
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let failed_transiently = AtomicBool::new(false);
        let result = self
            .run(op, path, || {
                let attempt = f();
                let flag = &failed_transiently;
                async move {
                    let r = attempt.await;
                    if r.as_ref().is_err_and(|e| e.is_transient()) {
                        flag.store(true, Ordering::Relaxed);
                    }
                    r
                }
            })
            .await;
        let failed_transiently = failed_transiently.into_inner();
        if failed_transiently {
            match self.inner.remove_unpublished(path).await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(op, path, removed, "removed what failed attempts left");
                }
                Err(e) => {
                    tracing::warn!(op, path, error = %e, "cannot remove what failed attempts left");
                }
            }
        }
        (result, failed_transiently)
    }

    async fn run<T, F, Fut>(&self, op: &str, path: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let mut attempt = 1u32;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < self.policy.max_attempts => {
                    let sleep = self.policy.backoff(attempt);
                    tracing::warn!(
                        op,
                        path,
                        attempt,
                        max_attempts = self.policy.max_attempts,
                        ?sleep,
                        error = %e,
                        "transient storage error, retrying"
                    );
                    tokio::time::sleep(sleep).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Backend for RetryBackend {
    fn location(&self) -> &Location {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.write("put", path, || self.inner.put(path, data.clone()))
            .await
            .0
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()> {
        let (result, failed_transiently) = self
            .write("put_if_absent", path, || {
                self.inner.put_if_absent(path, data.clone())
            })
            .await;
        match result {
            Err(e) if e.kind() == ErrorKind::AlreadyExists && failed_transiently => {
                match self.run("get", path, || self.inner.get(path)).await {
                    Ok(existing) if existing == data => Ok(()),
                    Ok(_) => Err(e),
                    // "Taken" by nothing: the refusal came from the conflict of an attempt that
                    // did not land (S3 409). Not someone else's file: try again later.
                    Err(read) if read.kind() == ErrorKind::NotFound => Err(Error::new(
                        ErrorKind::Transient,
                        e.location().to_owned(),
                        "a create-only write was refused as existing after a failed attempt, but nothing is there; try again",
                        Some(Box::new(e)),
                    )),
                    // The check itself failed: that, not "taken", is what is known.
                    Err(read) => Err(read),
                }
            }
            other => other,
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        self.run("get", path, || self.inner.get(path)).await
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        self.run("head", path, || self.inner.head(path)).await
    }

    async fn list(&self, folder: &str) -> Result<Vec<ObjectMeta>> {
        self.run("list", folder, || self.inner.list(folder)).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.run("delete", path, || self.inner.delete(path)).await
    }

    async fn remove_unpublished(&self, path: &str) -> Result<usize> {
        self.run("remove_unpublished", path, || {
            self.inner.remove_unpublished(path)
        })
        .await
    }

    async fn get_stream(&self, path: &str) -> Result<ByteStream> {
        self.run("get_stream", path, || self.inner.get_stream(path))
            .await
    }

    async fn put_stream(&self, path: &str, data: ByteStream) -> Result<u64> {
        self.inner.put_stream(path, data).await
    }

    async fn put_file(&self, path: &str, local: &Path) -> Result<u64> {
        self.write("put_file", path, || self.inner.put_file(path, local))
            .await
            .0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    use super::*;
    use crate::error::Error;
    use crate::local::LocalBackend;

    /// A real local backend behind a switch that makes the next `n` calls fail transiently,
    /// optionally after the operation has happened (a lost response).
    #[derive(Debug)]
    struct Flaky {
        inner: LocalBackend,
        fail_next: AtomicU32,
        after_effect: bool,
        calls: Mutex<u32>,
        /// The next create-only put is refused as existing, writing nothing (S3's 409 for a
        /// conflicting attempt that did not land).
        phantom_conflict: std::sync::atomic::AtomicBool,
    }

    impl Flaky {
        fn trip(&self) -> Result<()> {
            *self.calls.lock().unwrap() += 1;
            if self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(Error::new(
                    ErrorKind::Transient,
                    "x",
                    "connection lost",
                    None,
                ));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Backend for Flaky {
        fn location(&self) -> &Location {
            self.inner.location()
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        async fn put(&self, p: &str, d: Bytes) -> Result<()> {
            self.trip()?;
            self.inner.put(p, d).await
        }
        async fn put_if_absent(&self, p: &str, d: Bytes) -> Result<()> {
            if *self.calls.lock().unwrap() > 0
                && self.phantom_conflict.swap(false, Ordering::SeqCst)
            {
                return Err(Error::new(ErrorKind::AlreadyExists, "x", "conflict", None));
            }
            if self.after_effect {
                let r = self.inner.put_if_absent(p, d).await;
                self.trip()?;
                r
            } else {
                self.trip()?;
                self.inner.put_if_absent(p, d).await
            }
        }
        async fn get(&self, p: &str) -> Result<Bytes> {
            self.inner.get(p).await
        }
        async fn head(&self, p: &str) -> Result<ObjectMeta> {
            self.inner.head(p).await
        }
        async fn list(&self, f: &str) -> Result<Vec<ObjectMeta>> {
            self.inner.list(f).await
        }
        async fn delete(&self, p: &str) -> Result<()> {
            self.trip()?;
            Err(Error::new(
                ErrorKind::PermissionDenied,
                self.inner.location().display_path(p),
                "no",
                None,
            ))
        }
        async fn remove_unpublished(&self, p: &str) -> Result<usize> {
            self.inner.remove_unpublished(p).await
        }
        async fn get_stream(&self, p: &str) -> Result<ByteStream> {
            self.inner.get_stream(p).await
        }
        async fn put_stream(&self, p: &str, d: ByteStream) -> Result<u64> {
            self.inner.put_stream(p, d).await
        }
    }

    async fn setup(fail: u32, after_effect: bool) -> (tempfile::TempDir, Arc<Flaky>, RetryBackend) {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(&format!("file://{}", dir.path().display())).unwrap();
        let flaky = Arc::new(Flaky {
            inner: LocalBackend::new(&loc).await.unwrap(),
            fail_next: AtomicU32::new(fail),
            after_effect,
            calls: Mutex::new(0),
            phantom_conflict: std::sync::atomic::AtomicBool::new(false),
        });
        let policy = RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
        };
        let retry = RetryBackend::new(flaky.clone(), policy);
        (dir, flaky, retry)
    }

    /// What a dropped attempt leaves (its temporary file) is removed once a write that failed
    /// transiently is over, and only then.
    #[tokio::test(start_paused = true)]
    async fn a_retried_write_removes_what_failed_attempts_left() {
        for (fail, kept) in [(0, true), (1, false)] {
            let (dir, _flaky, retry) = setup(fail, false).await;
            let left = dir.path().join(".a.paybatch-tmp.0123456789abcdef");
            std::fs::write(&left, b"xCardNum=4111111111111111").unwrap();
            retry.put("a", Bytes::from_static(b"1")).await.unwrap();
            assert_eq!(left.exists(), kept, "{fail} failure(s)");
            assert_eq!(retry.get("a").await.unwrap(), Bytes::from_static(b"1"));
        }
    }

    /// A create-only put refused as "existing" after a failed attempt, with nothing there: not
    /// someone else's file (the caller would stop for good), a transient failure.
    #[tokio::test(start_paused = true)]
    async fn a_conflict_with_nothing_there_is_transient_not_taken() {
        let (_d, flaky, retry) = setup(1, false).await;
        flaky.phantom_conflict.store(true, Ordering::SeqCst);
        let err = retry
            .put_if_absent("a", Bytes::from_static(b"1"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
        assert!(err.to_string().contains("nothing is there"), "{err}");
        // Taken for real (other bytes there): still "exists".
        flaky
            .inner
            .put("b", Bytes::from_static(b"theirs"))
            .await
            .unwrap();
        flaky.fail_next.store(1, Ordering::SeqCst);
        let err = retry
            .put_if_absent("b", Bytes::from_static(b"1"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_until_success() {
        let (_d, flaky, retry) = setup(3, false).await;
        retry.put("a", Bytes::from_static(b"1")).await.unwrap();
        assert_eq!(*flaky.calls.lock().unwrap(), 4);
        assert_eq!(retry.get("a").await.unwrap(), Bytes::from_static(b"1"));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let (_d, flaky, retry) = setup(10, false).await;
        let err = retry.put("a", Bytes::from_static(b"1")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert_eq!(*flaky.calls.lock().unwrap(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_other_kinds() {
        let (_d, flaky, retry) = setup(0, false).await;
        let err = retry.delete("a").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert_eq!(*flaky.calls.lock().unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn put_if_absent_whose_first_attempt_landed_is_done() {
        let (_d, _flaky, retry) = setup(1, true).await;
        retry
            .put_if_absent("a", Bytes::from_static(b"mine"))
            .await
            .unwrap();
        assert_eq!(retry.get("a").await.unwrap(), Bytes::from_static(b"mine"));
    }

    #[tokio::test(start_paused = true)]
    async fn put_if_absent_on_someone_elses_file_stays_already_exists() {
        let (_d, flaky, retry) = setup(0, true).await;
        flaky
            .inner
            .put("a", Bytes::from_static(b"theirs"))
            .await
            .unwrap();
        flaky.fail_next.store(1, Ordering::SeqCst);
        let err = retry
            .put_if_absent("a", Bytes::from_static(b"mine"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(retry.get("a").await.unwrap(), Bytes::from_static(b"theirs"));
    }
}
