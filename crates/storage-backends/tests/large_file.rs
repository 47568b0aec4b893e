//! The required 200 MB streamed round trip on every backend, in constant memory. Alone in its
//! test binary (and the three backends one after another in one test) so that the resident
//! memory the case samples is its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use storage_backends::conformance::{self, LARGE_FILE_BYTES, MAX_STREAM_MEMORY_GROWTH};
use storage_backends::{Scheme, open, test_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_200_mb_in_constant_memory_on_every_backend() {
    for scheme in [Scheme::Local, Scheme::Sftp, Scheme::S3] {
        let Some(target) = test_env::target(scheme).expect("test server required") else {
            continue;
        };
        let b = open(&target.location, &target.options).await.unwrap();
        // Informational only (printed, never asserted).
        let started = std::time::Instant::now();
        let growth = conformance::large_streamed(&*b, LARGE_FILE_BYTES, MAX_STREAM_MEMORY_GROWTH)
            .await
            .unwrap_or_else(|f| panic!("{}: {f}", scheme.as_str()));
        eprintln!(
            "{}: streamed {} MB up and down in {:.1?}, resident memory grew {} MiB",
            scheme.as_str(),
            LARGE_FILE_BYTES / 1_000_000,
            started.elapsed(),
            growth >> 20
        );
    }
}
