//! `LimitBackend`: at most N operations of a backend in flight at once.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{Backend, ByteStream, Capabilities, ObjectMeta};
use crate::error::{Error, ErrorKind, Result};
use crate::location::Location;

/// Wraps a backend so that at most `max` of its operations run at once; the others wait their
/// turn. A stream returned by `get_stream` holds its slot until it is dropped, so many open
/// downloads cannot exhaust a server's sessions either.
#[derive(Debug)]
pub struct LimitBackend {
    inner: Arc<dyn Backend>,
    slots: Arc<Semaphore>,
    max: usize,
}

impl LimitBackend {
    /// Wraps `inner` with `max` slots.
    ///
    /// # Errors
    /// `Config` if `max` is 0.
    pub fn new(inner: Arc<dyn Backend>, max: usize) -> Result<LimitBackend> {
        if max == 0 {
            return Err(Error::config(
                inner.location().to_string(),
                "max_concurrency must be at least 1",
            ));
        }
        Ok(LimitBackend {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            max,
        })
    }

    /// The number of slots.
    pub fn max(&self) -> usize {
        self.max
    }

    async fn slot(&self, path: &str) -> Result<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.map_err(|e| {
            Error::with_source(
                ErrorKind::Other,
                self.inner.location().display_path(path),
                "concurrency limiter closed",
                e,
            )
        })
    }
}

#[async_trait]
impl Backend for LimitBackend {
    fn location(&self) -> &Location {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let _slot = self.slot(path).await?;
        self.inner.put(path, data).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()> {
        let _slot = self.slot(path).await?;
        self.inner.put_if_absent(path, data).await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let _slot = self.slot(path).await?;
        self.inner.get(path).await
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        let _slot = self.slot(path).await?;
        self.inner.head(path).await
    }

    async fn list(&self, folder: &str) -> Result<Vec<ObjectMeta>> {
        let _slot = self.slot(folder).await?;
        self.inner.list(folder).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let _slot = self.slot(path).await?;
        self.inner.delete(path).await
    }

    async fn remove_unpublished(&self, path: &str) -> Result<usize> {
        let _slot = self.slot(path).await?;
        self.inner.remove_unpublished(path).await
    }

    async fn get_stream(&self, path: &str) -> Result<ByteStream> {
        let slot = self.slot(path).await?;
        let stream = self.inner.get_stream(path).await?;
        // The permit travels with the stream and is released when the caller drops it.
        Ok(stream
            .map(move |chunk| {
                let _held = &slot;
                chunk
            })
            .boxed())
    }

    async fn put_stream(&self, path: &str, data: ByteStream) -> Result<u64> {
        let _slot = self.slot(path).await?;
        self.inner.put_stream(path, data).await
    }

    async fn put_file(&self, path: &str, local: &Path) -> Result<u64> {
        let _slot = self.slot(path).await?;
        self.inner.put_file(path, local).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::local::LocalBackend;

    /// A real local backend that tracks how many `put`s are inside it at once.
    #[derive(Debug)]
    struct Gauge {
        inner: LocalBackend,
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    #[async_trait]
    impl Backend for Gauge {
        fn location(&self) -> &Location {
            self.inner.location()
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        async fn put(&self, p: &str, d: Bytes) -> Result<()> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            // Yield a few times so that, without the limit, the puts would overlap.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let r = self.inner.put(p, d).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            r
        }
        async fn put_if_absent(&self, p: &str, d: Bytes) -> Result<()> {
            self.inner.put_if_absent(p, d).await
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
            self.inner.delete(p).await
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn never_more_than_max_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(&format!("file://{}", dir.path().display())).unwrap();
        for (max, writers) in [(1usize, 8usize), (3, 12)] {
            let gauge = Arc::new(Gauge {
                inner: LocalBackend::new(&loc).await.unwrap(),
                now: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            });
            let limited = Arc::new(LimitBackend::new(gauge.clone(), max).unwrap());
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..writers {
                let b = limited.clone();
                tasks.spawn(async move { b.put(&format!("f{i}"), Bytes::from_static(b"x")).await });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap().unwrap();
            }
            let peak = gauge.peak.load(Ordering::SeqCst);
            assert!(peak <= max && peak >= 1, "max {max}: peak {peak}");
        }
    }

    #[tokio::test]
    async fn a_stream_holds_its_slot_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(&format!("file://{}", dir.path().display())).unwrap();
        let limited =
            LimitBackend::new(Arc::new(LocalBackend::new(&loc).await.unwrap()), 1).unwrap();
        limited.put("a", Bytes::from_static(b"x")).await.unwrap();
        let stream = limited.get_stream("a").await.unwrap();
        assert_eq!(limited.slots.available_permits(), 0);
        drop(stream);
        assert_eq!(limited.slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn zero_is_config() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(&format!("file://{}", dir.path().display())).unwrap();
        let err =
            LimitBackend::new(Arc::new(LocalBackend::new(&loc).await.unwrap()), 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}
