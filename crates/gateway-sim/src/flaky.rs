//! Slow or failing storage: a wrapper backend that delays every operation and fails a seeded
//! random share of them with a transient error. It is a real backend (everything else passes through), so
//! it can sit under the simulator or under a client in tests.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use storage_backends::{Backend, ByteStream, Capabilities, ErrorKind, Location, ObjectMeta};

use crate::knobs::StorageFaults;

/// A backend that adds [`StorageFaults`] to another.
#[derive(Debug)]
pub struct FlakyBackend {
    inner: Arc<dyn Backend>,
    faults: StorageFaults,
    ops: AtomicU64,
    rng: Mutex<fastrand::Rng>,
}

impl FlakyBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, faults: StorageFaults) -> Self {
        FlakyBackend {
            inner,
            faults,
            ops: AtomicU64::new(0),
            rng: Mutex::new(fastrand::Rng::with_seed(faults.seed)),
        }
    }

    /// `inner` itself when `faults` is the default, else `inner` wrapped.
    pub fn wrap(inner: Arc<dyn Backend>, faults: StorageFaults) -> Arc<dyn Backend> {
        if faults == StorageFaults::default() {
            inner
        } else {
            Arc::new(FlakyBackend::new(inner, faults))
        }
    }

    /// Operations attempted so far (failed ones included).
    pub fn operations(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    async fn gate(&self, op: &str, path: &str) -> storage_backends::Result<()> {
        if !self.faults.latency.is_zero() {
            tokio::time::sleep(self.faults.latency).await;
        }
        let n = self.ops.fetch_add(1, Ordering::Relaxed) + 1;
        let fail = self.faults.fail_one_in.is_some_and(|one_in| {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            rng.u32(..one_in.get()) == 0
        });
        if !fail {
            return Ok(());
        }
        Err(storage_backends::Error::new(
            ErrorKind::Transient,
            self.inner.location().display_path(path),
            format!("{op}: injected storage failure (operation {n})"),
            None,
        ))
    }
}

#[async_trait]
impl Backend for FlakyBackend {
    fn location(&self) -> &Location {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, path: &str, data: Bytes) -> storage_backends::Result<()> {
        self.gate("put", path).await?;
        self.inner.put(path, data).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> storage_backends::Result<()> {
        self.gate("put_if_absent", path).await?;
        self.inner.put_if_absent(path, data).await
    }

    async fn get(&self, path: &str) -> storage_backends::Result<Bytes> {
        self.gate("get", path).await?;
        self.inner.get(path).await
    }

    async fn head(&self, path: &str) -> storage_backends::Result<ObjectMeta> {
        self.gate("head", path).await?;
        self.inner.head(path).await
    }

    async fn list(&self, folder: &str) -> storage_backends::Result<Vec<ObjectMeta>> {
        self.gate("list", folder).await?;
        self.inner.list(folder).await
    }

    async fn delete(&self, path: &str) -> storage_backends::Result<()> {
        self.gate("delete", path).await?;
        self.inner.delete(path).await
    }

    async fn remove_unpublished(&self, path: &str) -> storage_backends::Result<usize> {
        self.gate("remove_unpublished", path).await?;
        self.inner.remove_unpublished(path).await
    }

    async fn get_stream(&self, path: &str) -> storage_backends::Result<ByteStream> {
        self.gate("get_stream", path).await?;
        self.inner.get_stream(path).await
    }

    async fn put_stream(&self, path: &str, data: ByteStream) -> storage_backends::Result<u64> {
        self.gate("put_stream", path).await?;
        self.inner.put_stream(path, data).await
    }

    async fn put_file(&self, path: &str, local: &Path) -> storage_backends::Result<u64> {
        self.gate("put_file", path).await?;
        self.inner.put_file(path, local).await
    }
}
