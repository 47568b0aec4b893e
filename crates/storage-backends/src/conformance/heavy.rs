//! The two heavy cases, [`large_streamed`] and [`many_files`], and the test pattern they
//! stream.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::{CaseResult, Context, Failure, check, fail};
use crate::backend::{Backend, ByteStream};

/// Streams `size` bytes up with `put_stream` and back down with `get_stream`, comparing every
/// byte, while the process's resident memory may grow at most `max_growth` bytes (checked on
/// Linux by sampling `/proc/self/status`; run it alone in its process for a clean reading).
/// Returns the peak growth seen.
pub async fn large_streamed(
    b: &dyn Backend,
    size: u64,
    max_growth: u64,
) -> std::result::Result<u64, Failure> {
    let path = "large/REQUEST_500.KVP";
    let sampler = RssSampler::start();
    let written = b
        .put_stream(path, pattern_stream(size))
        .await
        .ctx("put_stream")?;
    check(written == size, || {
        format!("put_stream wrote {written}, want {size}")
    })?;
    check(b.head(path).await.ctx("head")?.size == size, || {
        "head size".into()
    })?;
    let mut stream = b.get_stream(path).await.ctx("get_stream")?;
    let mut verifier = PatternVerifier::default();
    while let Some(chunk) = stream.try_next().await.ctx("reading the stream")? {
        verifier.feed(&chunk).map_err(fail)?;
    }
    let read = verifier.finish().map_err(fail)?;
    check(read == size, || format!("read {read} bytes, want {size}"))?;
    b.delete(path).await.ctx("delete")?;
    let growth = sampler.stop().await;
    check(growth <= max_growth, || {
        format!(
            "resident memory grew by {} MiB streaming {} MB (limit {} MiB)",
            growth >> 20,
            size / 1_000_000,
            max_growth >> 20
        )
    })?;
    Ok(growth)
}

/// Creates `count` small files in one folder (at most `concurrency` at once), lists the folder
/// and checks every name and size, then deletes a few and lists again. Leaves the rest (the
/// case's folder is unique per run).
pub async fn many_files(b: Arc<dyn Backend>, count: usize, concurrency: usize) -> CaseResult {
    let folder = "many/Response";
    let name = |i: usize| format!("{folder}/RESPONSE_{i}.KVP");
    futures::stream::iter(0..count)
        .map(|i| {
            let b = b.clone();
            let path = name(i);
            async move { b.put(&path, Bytes::from(format!("xIndex={i}\n"))).await }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await
        .ctx("creating the files")?;
    let listed = b.list(folder).await.ctx("list")?;
    check(listed.len() == count, || {
        format!("listed {} files, want {count}", listed.len())
    })?;
    let mut want: Vec<String> = (0..count).map(name).collect();
    want.sort();
    for (meta, want) in listed.iter().zip(&want) {
        check(&meta.path == want, || {
            format!("listed {:?}, want {want:?}", meta.path)
        })?;
    }
    for meta in &listed {
        let i: usize = meta
            .name()
            .trim_start_matches("RESPONSE_")
            .trim_end_matches(".KVP")
            .parse()
            .map_err(|_| fail(format!("odd name {}", meta.path)))?;
        check(meta.size == format!("xIndex={i}\n").len() as u64, || {
            format!("size of {}", meta.path)
        })?;
    }
    for i in 0..count.min(3) {
        b.delete(&name(i)).await.ctx("delete")?;
    }
    let after = b.list(folder).await.ctx("list after delete")?.len();
    check(after == count - count.min(3), || {
        format!("after deleting 3: {after}")
    })
}

const PATTERN_CHUNK: usize = 256 * 1024;

/// Chunk `i` of the test pattern: its index, then a fixed pseudo-random block.
fn pattern_chunk(i: u64, block: &[u8], len: usize) -> Bytes {
    let mut chunk = BytesMut::with_capacity(len);
    chunk.extend_from_slice(&i.to_le_bytes());
    chunk.extend_from_slice(&block[..len.saturating_sub(8).min(block.len())]);
    chunk.truncate(len);
    chunk.freeze()
}

fn pattern_block() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    (0..PATTERN_CHUNK).map(|_| rng.u8(..)).collect()
}

/// `size` bytes of the test pattern, generated lazily.
pub fn pattern_stream(size: u64) -> ByteStream {
    let block = Arc::new(pattern_block());
    let chunks = size.div_ceil(PATTERN_CHUNK as u64);
    futures::stream::iter(0..chunks)
        .map(move |i| {
            let start = i * PATTERN_CHUNK as u64;
            let len =
                usize::try_from((size - start).min(PATTERN_CHUNK as u64)).unwrap_or(PATTERN_CHUNK);
            Ok(pattern_chunk(i, &block, len))
        })
        .boxed()
}

/// Checks a byte stream against [`pattern_stream`] whatever its chunk boundaries.
#[derive(Debug)]
struct PatternVerifier {
    block: Vec<u8>,
    pending: BytesMut,
    index: u64,
    total: u64,
}

impl Default for PatternVerifier {
    fn default() -> Self {
        PatternVerifier {
            block: pattern_block(),
            pending: BytesMut::new(),
            index: 0,
            total: 0,
        }
    }
}

impl PatternVerifier {
    fn feed(&mut self, data: &[u8]) -> std::result::Result<(), String> {
        self.total += data.len() as u64;
        self.pending.extend_from_slice(data);
        while self.pending.len() >= PATTERN_CHUNK {
            let chunk = self.pending.split_to(PATTERN_CHUNK);
            self.compare(&chunk)?;
        }
        Ok(())
    }

    fn compare(&mut self, chunk: &[u8]) -> std::result::Result<(), String> {
        let want = pattern_chunk(self.index, &self.block, chunk.len());
        if chunk != want.as_ref() {
            return Err(format!(
                "content differs in chunk {} (offset {})",
                self.index,
                self.index * PATTERN_CHUNK as u64
            ));
        }
        self.index += 1;
        Ok(())
    }

    fn finish(mut self) -> std::result::Result<u64, String> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.compare(&rest)?;
        }
        Ok(self.total)
    }
}

/// Samples the resident set size every 20 ms and reports the peak growth over the start.
struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let base = rss_bytes();
            let mut peak = base;
            loop {
                peak = peak.max(rss_bytes());
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                }
            }
            peak.max(rss_bytes()).saturating_sub(base)
        });
        RssSampler { stop, task }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

/// Current resident set size from `/proc/self/status` (0 where there is none).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pattern_verifier_accepts_any_chunking_and_catches_changes() {
        let size = 3 * PATTERN_CHUNK as u64 + 1234;
        let all: Vec<u8> = pattern_stream(size)
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(all.len() as u64, size);
        for step in [1000usize, 4096, 300_000, all.len()] {
            let mut v = PatternVerifier::default();
            for piece in all.chunks(step) {
                v.feed(piece).unwrap();
            }
            assert_eq!(v.finish().unwrap(), size);
        }
        let mut bad = all.clone();
        bad[PATTERN_CHUNK + 77] ^= 1;
        let mut v = PatternVerifier::default();
        assert!(v.feed(&bad).is_err());
        let mut v = PatternVerifier::default();
        v.feed(&all[..all.len() - 1]).unwrap();
        assert_eq!(
            v.finish().unwrap(),
            size - 1,
            "a short stream is caught by its length"
        );
    }
}
