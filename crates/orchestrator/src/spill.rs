//! Record streams in one temporary file: one stream per account, each read back in the order
//! it was written, with one read per segment instead of one per record.
//!
//! A job's transactions arrive interleaved across accounts but are read per account (planning,
//! building a batch, merging). Each stream buffers its records and writes them out as one
//! *segment* when the buffer reaches the writer's segment size; a [`Cursor`] then reads a
//! stream segment by segment. The segment size is the memory budget divided among the streams
//! (within 1 KiB..64 KiB), so the buffers of all streams together stay near the budget
//! whatever the number of accounts, and so do the cursors of all streams open at once (the
//! merge's second pass).
//!
//! Full segments are not written one by one: they are appended to a write-behind buffer of at
//! most [`WRITE_BEHIND`] bytes (on top of the budget), written with one call when the next
//! segment would not fit (and by [`StreamWriter::finish`]); a segment that large by itself is
//! written directly. So a thousand streams of 2 KiB segments cost a few hundred writes
//! instead of one per segment.
//!
//! Each record is stored as its length (`u32`, little endian) and its bytes; what the bytes
//! mean is the caller's business. The file is owner-only (0600) in an owner-only directory
//! and is deleted with it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MIN_SEGMENT: usize = 1 << 10;
const MAX_SEGMENT: usize = 64 << 10;
/// The write-behind buffer: segments are written to the file in pieces of about this size.
const WRITE_BEHIND: usize = 256 << 10;

#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    len: u32,
}

#[derive(Debug, Default)]
struct Stream {
    pending: Vec<u8>,
    segments: Vec<Segment>,
}

/// Appends records to streams; [`StreamWriter::finish`] makes them readable.
#[derive(Debug)]
pub(crate) struct StreamWriter {
    file: File,
    path: PathBuf,
    /// Bytes written to the file so far; `behind` goes there next.
    written: u64,
    segment: usize,
    streams: Vec<Stream>,
    /// Full segments not written yet (at most [`WRITE_BEHIND`] bytes), which belong at
    /// `written`.
    behind: Vec<u8>,
}

/// Writes the write-behind buffer where its segments belong.
fn write_behind(file: &File, path: &Path, behind: &mut Vec<u8>, written: &mut u64) -> Result<()> {
    file.write_all_at(behind, *written)
        .map_err(|e| Error::io(path, e))?;
    *written += behind.len() as u64;
    behind.clear();
    Ok(())
}

impl StreamWriter {
    /// A new, empty file at `path` (which must not exist) with `streams` streams, which may
    /// buffer about `budget` bytes together (and as much again when all are read at once).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be created.
    pub(crate) fn create(path: &Path, streams: usize, budget: usize) -> Result<Self> {
        let file = kvp_format::owner_only::create_new(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            written: 0,
            segment: (budget / streams.max(1)).clamp(MIN_SEGMENT, MAX_SEGMENT),
            streams: (0..streams).map(|_| Stream::default()).collect(),
            behind: Vec::new(),
        })
    }

    /// Appends one record to stream `stream`, built by `write` into the stream's buffer.
    ///
    /// # Errors
    /// [`Error::Io`] when a full segment cannot be written; [`Error::Setting`] for a record
    /// of 4 GiB or more, or an unknown stream.
    pub(crate) fn push_with(
        &mut self,
        stream: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let Some(s) = self.streams.get_mut(stream) else {
            return Err(Error::setting("spill", format!("no stream {stream}")));
        };
        let start = s.pending.len();
        s.pending.extend_from_slice(&[0; 4]);
        write(&mut s.pending);
        let len = u32::try_from(s.pending.len() - start - 4)
            .map_err(|_| Error::setting("spill", "a record of 4 GiB or more"))?;
        s.pending[start..start + 4].copy_from_slice(&len.to_le_bytes());
        if s.pending.len() >= self.segment {
            self.flush(stream)?;
        }
        Ok(())
    }

    fn flush(&mut self, stream: usize) -> Result<()> {
        let Some(s) = self.streams.get_mut(stream) else {
            return Ok(());
        };
        if s.pending.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(s.pending.len())
            .map_err(|_| Error::setting("spill", "a segment of 4 GiB or more"))?;
        // The segment goes right after what is written and what waits to be.
        let offset = self.written + self.behind.len() as u64;
        if self.behind.len() + s.pending.len() > WRITE_BEHIND {
            write_behind(&self.file, &self.path, &mut self.behind, &mut self.written)?;
        }
        if s.pending.len() >= WRITE_BEHIND {
            // A segment as large as the buffer goes out as it is, without a copy.
            self.file
                .write_all_at(&s.pending, self.written)
                .map_err(|e| Error::io(&self.path, e))?;
            self.written += u64::from(len);
        } else {
            if self.behind.capacity() == 0 {
                self.behind.reserve_exact(WRITE_BEHIND);
            }
            self.behind.extend_from_slice(&s.pending);
        }
        // Recorded once its bytes are written or buffered: a failed write leaves no segment.
        s.segments.push(Segment { offset, len });
        s.pending.clear();
        if s.pending.capacity() > self.segment * 2 {
            s.pending.shrink_to(self.segment);
        }
        Ok(())
    }

    /// Writes what the streams still buffer and hands the file over for reading.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub(crate) fn finish(mut self) -> Result<Streams> {
        for stream in 0..self.streams.len() {
            self.flush(stream)?;
        }
        write_behind(&self.file, &self.path, &mut self.behind, &mut self.written)?;
        Ok(Streams {
            file: self.file,
            path: self.path,
            segments: self
                .streams
                .into_iter()
                .map(|s| s.segments.into_boxed_slice())
                .collect(),
        })
    }
}

/// Streams written by a [`StreamWriter`], read with [`Streams::cursor`].
#[derive(Debug)]
pub(crate) struct Streams {
    file: File,
    path: PathBuf,
    segments: Vec<Box<[Segment]>>,
}

impl Streams {
    /// Reads stream `stream` from its first record (an unknown stream is empty).
    pub(crate) fn cursor(&self, stream: usize) -> Cursor<'_> {
        Cursor {
            streams: self,
            segments: self.segments.get(stream).map_or(&[], |s| &s[..]),
            next_segment: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

/// Reads one stream's records in order, one segment at a time.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    streams: &'a Streams,
    segments: &'a [Segment],
    next_segment: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl Cursor<'_> {
    /// The next record, or `None` at the end of the stream.
    ///
    /// # Errors
    /// [`Error::Io`] when a segment cannot be read or is cut short.
    pub(crate) fn next_record(&mut self) -> Result<Option<&[u8]>> {
        if self.pos >= self.buf.len() {
            let Some(segment) = self.segments.get(self.next_segment) else {
                return Ok(None);
            };
            self.next_segment += 1;
            self.buf.clear();
            self.buf.resize(segment.len as usize, 0);
            self.streams
                .file
                .read_exact_at(&mut self.buf, segment.offset)
                .map_err(|e| Error::io(&self.streams.path, e))?;
            self.pos = 0;
        }
        let start = self.pos + 4;
        let len = self
            .buf
            .get(self.pos..start)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| self.cut_short())?;
        let end = start + len as usize;
        if end > self.buf.len() {
            return Err(self.cut_short());
        }
        self.pos = end;
        Ok(self.buf.get(start..end))
    }

    fn cut_short(&self) -> Error {
        Error::io(
            &self.streams.path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "spilled record cut short"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_read_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = StreamWriter::create(&dir.path().join("s"), 3, 16 << 20).unwrap();
        let record = |s: usize, i: usize| format!("{s}:{i}:{}", "x".repeat(i % 700)).into_bytes();
        // Larger than the write-behind buffer while it is empty: written without a copy.
        let huge = vec![b'z'; WRITE_BEHIND + 1];
        w.push_with(1, |b| b.extend_from_slice(&huge)).unwrap();
        for i in 0..2000 {
            for s in [0, 2] {
                w.push_with(s, |b| b.extend_from_slice(&record(s, i)))
                    .unwrap();
            }
        }
        w.push_with(1, |b| b.extend_from_slice(&vec![b'y'; 200_000]))
            .unwrap();
        // Large again, now behind other buffered segments: those are written first.
        w.push_with(1, |b| b.extend_from_slice(&huge)).unwrap();
        assert!(
            w.behind.capacity() <= WRITE_BEHIND,
            "the buffer stays bounded"
        );
        assert!(w.push_with(3, |_| {}).is_err(), "unknown stream");
        let streams = w.finish().unwrap();
        assert!(
            streams.segments[0].len() > 10,
            "written in several segments"
        );
        for s in [0, 2] {
            let mut c = streams.cursor(s);
            for i in 0..2000 {
                assert_eq!(c.next_record().unwrap().unwrap(), &record(s, i)[..]);
            }
            assert!(c.next_record().unwrap().is_none());
        }
        let mut big = streams.cursor(1);
        assert_eq!(big.next_record().unwrap().unwrap(), &huge[..]);
        assert_eq!(big.next_record().unwrap().unwrap().len(), 200_000);
        assert_eq!(big.next_record().unwrap().unwrap(), &huge[..]);
        assert!(big.next_record().unwrap().is_none());
        assert!(streams.cursor(7).next_record().unwrap().is_none());
    }

    #[test]
    fn many_streams_share_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let w = StreamWriter::create(&dir.path().join("s"), 100_000, 16 << 20).unwrap();
        assert_eq!(w.segment, MIN_SEGMENT);
        let w = StreamWriter::create(&dir.path().join("t"), 1, 16 << 20).unwrap();
        assert_eq!(w.segment, MAX_SEGMENT);
        let w = StreamWriter::create(&dir.path().join("u"), 1000, 4 << 20).unwrap();
        assert_eq!(w.segment, 4194);
    }
}
