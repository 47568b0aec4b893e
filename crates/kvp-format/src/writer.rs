//! `Writer`: canonical KVP lines over `Write`.

use std::io::{self, Write};

use crate::Record;
use crate::codec::encode_pairs;
use crate::fields::KvpLine;

/// Writes canonical KVP lines: every byte outside `A-Z a-z 0-9 - . _ ~` percent-encoded with
/// upper-case hex, space as `%20`, never `+`; LF line ends; every line (so the file) ends with
/// a newline. Buffers one line at a time and reuses that buffer; wrap files in a `BufWriter`.
///
/// ```
/// use kvp_format::{Record, Writer};
/// let mut w = Writer::new(Vec::new());
/// let rec: Record = [("xIndex", "0"), ("xName", "Jo Smith")].into_iter().collect();
/// w.write_record(&rec)?;
/// assert_eq!(w.into_inner(), b"xIndex=0&xName=Jo%20Smith\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Writer<W> {
    inner: W,
    buf: Vec<u8>,
    lines: u64,
}

/// Counts only: the buffer holds the last encoded line, the inner writer maybe all of them.
impl<W> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("lines", &self.lines)
            .field("buf_len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> Writer<W> {
    /// A writer over `inner`.
    pub fn new(inner: W) -> Self {
        Writer {
            inner,
            buf: Vec::with_capacity(512),
            lines: 0,
        }
    }

    /// Writes one record and its LF.
    ///
    /// # Errors
    /// As [`Writer::write_pairs`].
    pub fn write_record(&mut self, record: &Record) -> io::Result<()> {
        self.write_pairs(record.iter())
    }

    /// Writes one line from any ordered pairs and its LF.
    ///
    /// # Errors
    /// `InvalidInput` for zero pairs (that would be a blank line, which readers reject in
    /// the middle of a file); otherwise the underlying writer's error.
    pub fn write_pairs<K, V, I>(&mut self, pairs: I) -> io::Result<()>
    where
        K: AsRef<str>,
        V: AsRef<str>,
        I: IntoIterator<Item = (K, V)>,
    {
        self.buf.clear();
        encode_pairs(pairs, &mut self.buf);
        if self.buf.is_empty() {
            return Err(empty_record());
        }
        self.buf.push(b'\n');
        self.inner.write_all(&self.buf)?;
        self.lines += 1;
        Ok(())
    }

    /// Writes a typed line (`RequestLine`, `ResponseLine`, ...).
    ///
    /// # Errors
    /// The underlying writer's error.
    pub fn write_typed<T: KvpLine>(&mut self, line: &T) -> io::Result<()> {
        self.write_record(&line.to_record())
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes the underlying writer.
    ///
    /// # Errors
    /// The underlying writer's error.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// The underlying writer (not flushed: call [`Writer::flush`] first if it buffers).
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// The error for a record without pairs.
pub(crate) fn empty_record() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a KVP line needs at least one pair (an empty record would be a blank line)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reader, RequestLine, SequenceNumber};

    #[test]
    fn writes_canonical_lines_that_read_back() {
        let mut w = Writer::new(Vec::new());
        let mut fields = Record::new();
        fields.push("xName", "Zoë O'Brien & Co+");
        fields.push("xCommand", "cc:sale");
        let line = RequestLine::new(0, SequenceNumber::new(3).unwrap(), fields);
        w.write_typed(&line).unwrap();
        w.write_pairs([("xIndex", "1"), ("xSequenceNumber", "3")])
            .unwrap();
        assert_eq!(w.lines(), 2);
        let bytes = w.into_inner();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "xIndex=0&xSequenceNumber=3&xName=Zo%C3%AB%20O%27Brien%20%26%20Co%2B&xCommand=cc%3Asale\n\
             xIndex=1&xSequenceNumber=3\n"
        );
        let mut r = Reader::new(&bytes[..]);
        let back: RequestLine = r.typed().next().unwrap().unwrap();
        assert_eq!(back, line);
        let mut w = Writer::new(Vec::new());
        let e = w.write_record(&Record::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(w.into_inner().is_empty());
    }
}
