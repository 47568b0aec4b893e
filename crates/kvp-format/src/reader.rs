//! `Reader`: streaming, fail-fast reading of KVP files over `BufRead`.

use std::io::BufRead;
use std::marker::PhantomData;

use crate::codec::decode_into;
use crate::error::{Error, Position, Result, show_key, shown_key};
use crate::fields::KvpLine;
use crate::{FileKind, Record};

/// The UTF-8 byte order mark, rejected at the start of a file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The per-line rules shared by [`Reader`] and the async reader: line endings, BOM, blank
/// lines, decoding, repeated keys.
#[derive(Debug, Default)]
pub(crate) struct LineRules {
    pub(crate) name: Option<String>,
    /// 1-based number of the last line seen.
    pub(crate) line: u64,
    /// First line of a run of blank lines not yet followed by content.
    pending_blank: Option<u64>,
}

/// What one physical line turned out to be.
pub(crate) enum Step {
    Record,
    Blank,
}

impl LineRules {
    /// The fields a reader's `Debug` shows: where it is, and how much it buffers.
    pub(crate) fn debug_fields(
        &self,
        d: &mut std::fmt::DebugStruct<'_, '_>,
        buf_len: usize,
    ) -> std::fmt::Result {
        d.field("name", &self.name)
            .field("line", &self.line)
            .field("buf_len", &buf_len)
            .finish_non_exhaustive()
    }

    fn pos(&self, line: u64, key: Option<&str>) -> Position {
        Position {
            file: self.name.clone(),
            kind: None,
            line: Some(line),
            key: key.map(|k| shown_key(k.to_owned())),
        }
    }

    /// Checks and decodes one physical line (with its `\n` or `\r\n`, if any) into `rec`.
    pub(crate) fn accept(&mut self, raw: &[u8], rec: &mut Record) -> Result<Step> {
        self.line += 1;
        let line = strip_line_end(raw);
        if self.line == 1 && line.starts_with(BOM) {
            return Err(Error::format(
                self.pos(1, None),
                "the file starts with a UTF-8 byte order mark (BOM); KVP files must not have one",
            ));
        }
        if line.is_empty() {
            self.pending_blank.get_or_insert(self.line);
            return Ok(Step::Blank);
        }
        if let Some(blank) = self.pending_blank.take() {
            return Err(Error::format(
                self.pos(blank, None),
                format!(
                    "blank line in the middle of the file (line {} has content again)",
                    self.line
                ),
            ));
        }
        decode_into(line, rec).map_err(|e| e.at(self.name.as_deref(), self.line))?;
        if let Some(key) = rec.repeated_key() {
            return Err(Error::format(
                self.pos(self.line, Some(key)),
                format!("key {} appears more than once on this line", show_key(key)),
            ));
        }
        Ok(Step::Record)
    }
}

/// The line without its `\n` or `\r\n`.
pub(crate) fn strip_line_end(raw: &[u8]) -> &[u8] {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads records from a KVP file, one line at a time, in constant memory.
///
/// Accepts LF and CRLF line ends and a missing final newline; trailing blank lines are
/// ignored. Fails fast (the first problem ends reading) on: a UTF-8 BOM, a blank line
/// followed by more content, decoded bytes that are not UTF-8, a key repeated in one line.
/// Errors name the file (see [`Reader::with_name`]), the 1-based line and the key.
/// Semantic checks (`xIndex` = position, `xSequenceNumber` = `X`) are [`crate::validate`]'s.
///
/// ```
/// use kvp_format::{Reader, Record};
/// let data = b"xIndex=0&xName=Jo+Smith\r\nxIndex=1&xName=Al\n";
/// let mut reader = Reader::new(&data[..]).with_name("REQUEST_1.KVP");
/// let mut rec = Record::new();
/// let mut names = Vec::new();
/// while reader.read_record(&mut rec)? {
///     names.push(rec.get("xName").unwrap_or_default().to_owned());
/// }
/// assert_eq!(names, ["Jo Smith", "Al"]);
/// # Ok::<(), kvp_format::Error>(())
/// ```
///
/// `Debug` shows the file name, the line reached and the buffer's length; never the
/// underlying reader (it may be the file's bytes) nor the buffer's content (the last raw line).
pub struct Reader<R> {
    inner: R,
    rules: LineRules,
    buf: Vec<u8>,
}

impl<R> std::fmt::Debug for Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.rules
            .debug_fields(&mut f.debug_struct("Reader"), self.buf.len())
    }
}

impl<R: BufRead> Reader<R> {
    /// A reader over `inner` (wrap files in a `BufReader`).
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            rules: LineRules::default(),
            buf: Vec::with_capacity(512),
        }
    }

    /// Names the file in errors (e.g. `REQUEST_7.KVP` or a path).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.rules.name = Some(name.into());
        self
    }

    /// The name given with [`Reader::with_name`].
    pub fn name(&self) -> Option<&str> {
        self.rules.name.as_deref()
    }

    /// The 1-based number of the last line read (0 before the first).
    pub fn line(&self) -> u64 {
        self.rules.line
    }

    /// Reads the next record into `rec`, reusing its buffers. `Ok(false)` at the end.
    ///
    /// # Errors
    /// [`Error::Io`] when reading fails; [`Error::Format`] / [`Error::InvalidUtf8`] for the
    /// problems listed on [`Reader`]. After an error the reader should not be used further.
    pub fn read_record(&mut self, rec: &mut Record) -> Result<bool> {
        loop {
            let step = match self.next_line(rec)? {
                Some(step) => step,
                None => return Ok(false),
            };
            match step {
                Step::Record => return Ok(true),
                Step::Blank => continue,
            }
        }
    }

    /// Reads one physical line and applies the rules to it; `None` at the end. A line that
    /// lies whole in the reader's buffer is checked in place, without a copy.
    fn next_line(&mut self, rec: &mut Record) -> Result<Option<Step>> {
        self.buf.clear();
        loop {
            let io_err = |source| Error::Io {
                file: self.rules.name.clone(),
                source,
            };
            let available = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            if available.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return self.rules.accept(&self.buf, rec).map(Some);
            }
            match memchr::memchr(b'\n', available) {
                Some(i) if self.buf.is_empty() => {
                    let step = self.rules.accept(&available[..=i], rec);
                    self.inner.consume(i + 1);
                    return step.map(Some);
                }
                Some(i) => {
                    self.buf.extend_from_slice(&available[..=i]);
                    self.inner.consume(i + 1);
                    return self.rules.accept(&self.buf, rec).map(Some);
                }
                None => {
                    let n = available.len();
                    self.buf.extend_from_slice(available);
                    self.inner.consume(n);
                }
            }
        }
    }

    /// Reads the next line as a typed value (`RequestLine`, `ResponseLine`, ...).
    ///
    /// # Errors
    /// As [`Reader::read_record`], plus the conversion errors of `T::from_record` (with the
    /// file name added).
    pub fn read_typed<T: KvpLine>(&mut self, rec: &mut Record) -> Result<Option<T>> {
        if !self.read_record(rec)? {
            return Ok(None);
        }
        let line = self.rules.line;
        T::from_record(std::mem::take(rec), line)
            .map(Some)
            .map_err(|e| e.at(self.rules.name.as_deref(), line))
    }

    /// An iterator of owned records (the easy path; allocates per record).
    pub fn records(&mut self) -> Records<'_, R> {
        Records { reader: self }
    }

    /// An iterator of typed lines, e.g. `reader.typed::<ResponseLine>()`.
    pub fn typed<T: KvpLine>(&mut self) -> Typed<'_, R, T> {
        Typed {
            reader: self,
            _t: PhantomData,
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Iterator returned by [`Reader::records`]; stops after the first error.
#[derive(Debug)]
pub struct Records<'r, R> {
    reader: &'r mut Reader<R>,
}

impl<R: BufRead> Iterator for Records<'_, R> {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Result<Record>> {
        let mut rec = Record::new();
        match self.reader.read_record(&mut rec) {
            Ok(true) => Some(Ok(rec)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Iterator returned by [`Reader::typed`].
#[derive(Debug)]
pub struct Typed<'r, R, T> {
    reader: &'r mut Reader<R>,
    _t: PhantomData<fn() -> T>,
}

impl<R: BufRead, T: KvpLine> Iterator for Typed<'_, R, T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        let mut rec = Record::new();
        self.reader.read_typed(&mut rec).transpose()
    }
}

/// Reads a file that must have exactly one line; returns the record and its line number.
pub(crate) fn read_single(bytes: &[u8], kind: FileKind) -> Result<(Record, u64)> {
    let mut reader = Reader::new(bytes);
    let mut rec = Record::new();
    if !reader.read_record(&mut rec)? {
        return Err(Error::format(
            Position {
                kind: Some(kind),
                ..Position::default()
            },
            format!("the {kind} file is empty; it must have exactly one line"),
        ));
    }
    let line = reader.line();
    let mut more = Record::new();
    if reader.read_record(&mut more)? {
        return Err(Error::format(
            Position {
                kind: Some(kind),
                line: Some(reader.line()),
                ..Position::default()
            },
            format!("a {kind} file must have exactly one line, found a second one"),
        ));
    }
    Ok((rec, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RequestLine, SequenceNumber};

    fn read_all(data: &[u8]) -> Result<Vec<Vec<(String, String)>>> {
        let mut reader = Reader::new(data).with_name("REQUEST_1.KVP");
        reader
            .records()
            .map(|r| r.map(|r| r.iter().map(|(k, v)| (k.into(), v.into())).collect()))
            .collect()
    }

    #[test]
    fn accepted_table() {
        #[rustfmt::skip]
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"a=1\n", 1),
            (b"a=1", 1),
            (b"a=1\r\nb=2\r\n", 2),
            (b"a=1\nb=2", 2),
            (b"a=1\r\nb=2\n", 2),
            (b"a=1\n\n", 1),
            (b"a=1\n\r\n\n", 1),
            (b"\n", 0),
        ];
        for (data, n) in cases {
            let got = read_all(data).unwrap_or_else(|e| panic!("{data:?}: {e}"));
            assert_eq!(got.len(), *n, "{data:?}");
        }
    }

    #[test]
    fn rejected_table() {
        #[rustfmt::skip]
        let cases: &[(&[u8], &str)] = &[
            (b"\xEF\xBB\xBFa=1\n", "REQUEST_1.KVP:1: the file starts with a UTF-8 byte order mark"),
            (b"a=1\n\nb=2\n", "REQUEST_1.KVP:2: blank line in the middle of the file (line 3 has content again)"),
            (b"a=1\r\n\r\nb=2\r\n", "REQUEST_1.KVP:2: blank line"),
            (b"a=1\nx=1&y=2&x=3\n", "REQUEST_1.KVP:2: key x appears more than once on this line"),
            (b"a=1\nb=2\nxName=%FF\n", "REQUEST_1.KVP:3: the value of key xName is not valid UTF-8"),
            (b"a=1\nb\xff=2\n", "REQUEST_1.KVP:2: the key \"b\u{FFFD}\" is not valid UTF-8"),
        ];
        for (data, want) in cases {
            let e = read_all(data).unwrap_err().to_string();
            assert!(e.starts_with(want), "{data:?}: {e}");
        }
    }

    #[test]
    fn reuses_record_and_counts_lines() {
        let mut reader = Reader::new(&b"a=1\nb=2&c=3\n"[..]);
        let mut rec = Record::new();
        assert!(reader.read_record(&mut rec).unwrap());
        assert_eq!(reader.line(), 1);
        assert!(reader.read_record(&mut rec).unwrap());
        assert_eq!(rec.iter().collect::<Vec<_>>(), [("b", "2"), ("c", "3")]);
        assert!(!reader.read_record(&mut rec).unwrap());
        assert_eq!(reader.line(), 2);
    }

    #[test]
    fn typed_lines() {
        let data = b"xIndex=0&xSequenceNumber=5&xCommand=cc%3Asale\nxIndex=1&xSequenceNumber=5\n";
        let mut reader = Reader::new(&data[..]).with_name("REQUEST_5.KVP");
        let lines: Vec<RequestLine> = reader.typed().collect::<Result<_>>().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].command(), Some("cc:sale"));
        assert_eq!(lines[1].sequence, SequenceNumber::new(5).unwrap());
        let mut reader = Reader::new(&b"xIndex=0\n"[..]).with_name("REQUEST_5.KVP");
        let e = reader
            .typed::<RequestLine>()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("REQUEST_5.KVP:1: required key xSequenceNumber"),
            "{e}"
        );
    }
}
