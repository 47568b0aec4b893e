//! `AsyncReader` / `AsyncWriter`: the tokio equivalents of [`crate::Reader`] and
//! [`crate::Writer`], with the same rules and the same buffer reuse.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::Record;
use crate::codec::encode_pairs;
use crate::error::{Error, Result};
use crate::fields::KvpLine;
use crate::reader::{LineRules, Step};
use crate::writer::empty_record;

/// Reads records from an async KVP source; the rules of [`crate::Reader`] apply.
pub struct AsyncReader<R> {
    inner: R,
    rules: LineRules,
    buf: Vec<u8>,
}

/// Sizes and position only: the buffer holds the last raw line, the inner reader maybe the file.
impl<R> std::fmt::Debug for AsyncReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.rules
            .debug_fields(&mut f.debug_struct("AsyncReader"), self.buf.len())
    }
}

impl<R: AsyncBufRead + Unpin> AsyncReader<R> {
    /// A reader over `inner` (wrap files in a `tokio::io::BufReader`).
    pub fn new(inner: R) -> Self {
        AsyncReader {
            inner,
            rules: LineRules::default(),
            buf: Vec::with_capacity(512),
        }
    }

    /// Names the file in errors.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.rules.name = Some(name.into());
        self
    }

    /// The 1-based number of the last line read (0 before the first).
    pub fn line(&self) -> u64 {
        self.rules.line
    }

    /// Reads the next record into `rec`, reusing its buffers. `Ok(false)` at the end.
    ///
    /// # Errors
    /// As [`crate::Reader::read_record`].
    pub async fn read_record(&mut self, rec: &mut Record) -> Result<bool> {
        loop {
            self.buf.clear();
            let n = self
                .inner
                .read_until(b'\n', &mut self.buf)
                .await
                .map_err(|source| Error::Io {
                    file: self.rules.name.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(false);
            }
            match self.rules.accept(&self.buf, rec)? {
                Step::Record => return Ok(true),
                Step::Blank => continue,
            }
        }
    }

    /// Reads the next line as a typed value.
    ///
    /// # Errors
    /// As [`crate::Reader::read_typed`].
    pub async fn read_typed<T: KvpLine>(&mut self, rec: &mut Record) -> Result<Option<T>> {
        if !self.read_record(rec).await? {
            return Ok(None);
        }
        let line = self.rules.line;
        T::from_record(std::mem::take(rec), line)
            .map(Some)
            .map_err(|e| e.at(self.rules.name.as_deref(), line))
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes canonical KVP lines to an async sink; the rules of [`crate::Writer`] apply.
pub struct AsyncWriter<W> {
    inner: W,
    buf: Vec<u8>,
    lines: u64,
}

/// Counts only: the buffer holds the last encoded line, the inner writer maybe all of them.
impl<W> std::fmt::Debug for AsyncWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWriter")
            .field("lines", &self.lines)
            .field("buf_len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin> AsyncWriter<W> {
    /// A writer over `inner`.
    pub fn new(inner: W) -> Self {
        AsyncWriter {
            inner,
            buf: Vec::with_capacity(512),
            lines: 0,
        }
    }

    /// Writes one record and its LF.
    ///
    /// # Errors
    /// As [`crate::Writer::write_pairs`].
    pub async fn write_record(&mut self, record: &Record) -> std::io::Result<()> {
        self.buf.clear();
        encode_pairs(record.iter(), &mut self.buf);
        if self.buf.is_empty() {
            return Err(empty_record());
        }
        self.buf.push(b'\n');
        self.inner.write_all(&self.buf).await?;
        self.lines += 1;
        Ok(())
    }

    /// Writes a typed line.
    ///
    /// # Errors
    /// The underlying writer's error.
    pub async fn write_typed<T: KvpLine>(&mut self, line: &T) -> std::io::Result<()> {
        self.write_record(&line.to_record()).await
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes the underlying writer.
    ///
    /// # Errors
    /// The underlying writer's error.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().await
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ResponseLine, XResult};

    #[tokio::test]
    async fn async_round_trip_matches_sync_rules() {
        let mut w = AsyncWriter::new(Vec::new());
        let rec: Record = [("xIndex", "0"), ("xSequenceNumber", "2"), ("xResult", "A")]
            .into_iter()
            .collect();
        w.write_record(&rec).await.unwrap();
        w.flush().await.unwrap();
        let bytes = w.into_inner();
        let mut r = AsyncReader::new(&bytes[..]).with_name("RESPONSE_2.KVP");
        let mut buf = Record::new();
        let line: ResponseLine = r.read_typed(&mut buf).await.unwrap().unwrap();
        assert_eq!(line.result(), XResult::Approved);
        assert!(
            r.read_typed::<ResponseLine>(&mut buf)
                .await
                .unwrap()
                .is_none()
        );

        let mut r = AsyncReader::new(&b"a=1\n\nb=2\n"[..]).with_name("RESPONSE_2.KVP");
        assert!(r.read_record(&mut buf).await.unwrap());
        let e = r.read_record(&mut buf).await.unwrap_err().to_string();
        assert!(e.starts_with("RESPONSE_2.KVP:2: blank line"), "{e}");
    }
}
