//! Validation: every rule of PROTOCOL.md section 2 items 1–2 that the format layer can check,
//! collecting all problems (up to a limit) instead of stopping at the first.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::BufRead;

use crate::codec::decode_line_lossy;
use crate::error::{Error, Result, show_key, shown_key, shown_text};
use crate::fields::{FORMAT_KVP, keys, parse_u64};
use crate::reader::{BOM, strip_line_end};
use crate::report::{Policy, Problem, Report, ValidateOptions};
use crate::view::{LineView, ViewBuf};
use crate::{CompleteFile, FileKind, FileName, ProcessFile, Record, SequenceNumber};

/// Validates a whole file held in memory; returns every problem (up to the limit).
pub fn validate(name: &FileName, bytes: &[u8], opts: &ValidateOptions) -> Vec<Problem> {
    validate_bytes(name, &name.to_string(), bytes, opts).problems
}

/// Validates a whole file held in memory, naming it `file` in problems.
pub fn validate_bytes(name: &FileName, file: &str, bytes: &[u8], opts: &ValidateOptions) -> Report {
    let mut v = Validator::new(*name, opts).with_file(file);
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        v.feed(&rest[..end]);
        rest = &rest[end..];
    }
    v.finish()
}

/// Validates a file as it streams by, in constant memory (except the set of `xIndex` values
/// of a RESPONSE file, which must be unique).
///
/// # Errors
/// [`Error::Io`] when reading fails; problems with the content are in the [`Report`].
pub fn validate_reader<R: BufRead>(
    name: &FileName,
    file: &str,
    mut reader: R,
    opts: &ValidateOptions,
) -> Result<Report> {
    let mut v = Validator::new(*name, opts).with_file(file);
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::Io {
                    file: Some(file.to_owned()),
                    source,
                });
            }
        };
        if available.is_empty() {
            if !partial.is_empty() {
                v.feed(&partial);
            }
            return Ok(v.finish());
        }
        // Lines that lie whole in the reader's buffer are checked in place; only a line
        // split across two fills is copied.
        let mut used = 0;
        while let Some(i) = memchr::memchr(b'\n', &available[used..]) {
            let end = used + i + 1;
            if partial.is_empty() {
                v.feed(&available[used..end]);
            } else {
                partial.extend_from_slice(&available[used..end]);
                v.feed(&partial);
                partial.clear();
            }
            used = end;
        }
        partial.extend_from_slice(&available[used..]);
        let n = available.len();
        reader.consume(n);
    }
}

/// Checks a PROCESS file against its REQUEST: same sequence number, `xSubmittedCount` equal
/// to the REQUEST's number of lines. (`xFormat` is checked by [`validate`] on the PROCESS
/// file itself.)
pub fn check_process(
    request: &FileName,
    request_lines: u64,
    process: &ProcessFile,
    process_file: &str,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let problem = |key: &str, message: String| Problem {
        file: process_file.to_owned(),
        line: Some(1),
        key: Some(key.to_owned()),
        message: shown_text(message),
    };
    if process.sequence != request.sequence {
        out.push(problem(
            keys::SEQUENCE,
            format!(
                "xSequenceNumber is {} but its REQUEST {request} is batch {}",
                process.sequence, request.sequence
            ),
        ));
    }
    if process.submitted_count != request_lines {
        out.push(problem(
            keys::SUBMITTED_COUNT,
            format!(
                "xSubmittedCount is {} but {request} has {request_lines} line{}",
                process.submitted_count,
                if request_lines == 1 { "" } else { "s" }
            ),
        ));
    }
    out
}

/// Checks a RESPONSE file against its REQUEST (PROTOCOL.md 2.3): the set of `xIndex` values
/// answered must equal the set submitted, `0..request_lines`. Missing and extra indexes are
/// each reported once, listing up to ten of them.
pub fn check_response(request: &FileName, request_lines: u64, response: &Report) -> Vec<Problem> {
    let answered: HashSet<u64> = response.response_indexes.iter().copied().collect();
    let missing: Vec<u64> = (0..request_lines)
        .filter(|i| !answered.contains(i))
        .collect();
    let mut extra: Vec<u64> = response
        .response_indexes
        .iter()
        .copied()
        .filter(|&i| i >= request_lines)
        .collect();
    extra.sort_unstable();
    let list = |v: &[u64]| {
        let shown: Vec<String> = v.iter().take(10).map(u64::to_string).collect();
        let more = v.len().saturating_sub(10);
        if more > 0 {
            format!("{} (and {more} more)", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    let mut out = Vec::new();
    let problem = |message: String| Problem {
        file: response.file.clone(),
        line: None,
        key: Some(keys::INDEX.to_owned()),
        message: shown_text(message),
    };
    if !missing.is_empty() {
        out.push(problem(format!(
            "{} line{} of {request} {} no answer: xIndex {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() == 1 { "has" } else { "have" },
            list(&missing)
        )));
    }
    if !extra.is_empty() {
        out.push(problem(format!(
            "answers for lines {request} does not have ({request_lines} lines): xIndex {}",
            list(&extra)
        )));
    }
    out
}

/// Streaming validator: feed it physical lines, then [`Validator::finish`].
#[derive(Debug)]
pub struct Validator {
    name: FileName,
    file: String,
    opts: ValidateOptions,
    line: u64,
    records: u64,
    pending_blank: Option<u64>,
    last_line_unterminated: bool,
    rec: Record,
    views: ViewBuf,
    problems: Vec<Problem>,
    total: u64,
    seen_indexes: HashSet<u64>,
    response_indexes: Vec<u64>,
    process: Option<ProcessFile>,
    complete: Option<CompleteFile>,
}

impl Validator {
    /// A validator for the file `name` (which fixes its kind and `X`).
    pub fn new(name: FileName, opts: &ValidateOptions) -> Self {
        Validator {
            name,
            file: name.to_string(),
            opts: opts.clone(),
            line: 0,
            records: 0,
            pending_blank: None,
            last_line_unterminated: false,
            rec: Record::with_capacity(32, 512),
            views: ViewBuf::new(),
            problems: Vec::new(),
            total: 0,
            seen_indexes: HashSet::new(),
            response_indexes: Vec::new(),
            process: None,
            complete: None,
        }
    }

    /// Names the file in problems (for example the path the user gave).
    #[must_use]
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = file.into();
        self
    }

    fn report(&mut self, line: Option<u64>, key: Option<&str>, message: impl Into<String>) {
        self.total += 1;
        if self.problems.len() < self.opts.max_problems {
            self.problems.push(Problem {
                file: self.file.clone(),
                line,
                key: key.map(|k| shown_key(k.to_owned())),
                // Values quoted in messages (a card number typed into xIndex, ...).
                message: shown_text(message.into()),
            });
        }
    }

    fn report_error(&mut self, e: &Error) {
        let pos = e.position();
        let line = pos.and_then(|p| p.line).or(Some(self.line));
        let key = pos.and_then(|p| p.key.clone());
        self.report(line, key.as_deref(), e.message());
    }

    /// Checks one physical line, with its `\n` (or `\r\n`) if it has one.
    pub fn feed(&mut self, raw: &[u8]) {
        self.line += 1;
        let line_no = self.line;
        let terminated = raw.ends_with(b"\n");
        self.last_line_unterminated = !terminated;
        if self.opts.crlf == Policy::Reject && raw.ends_with(b"\r\n") {
            self.report(
                Some(line_no),
                None,
                "CRLF line end; only LF is allowed here",
            );
        }
        let mut line = strip_line_end(raw);
        if line_no == 1 && line.starts_with(BOM) {
            if self.opts.bom == Policy::Reject {
                self.report(
                    Some(1),
                    None,
                    "the file starts with a UTF-8 byte order mark (BOM); KVP files must not have one",
                );
            }
            line = &line[BOM.len()..];
        }
        if line.is_empty() {
            self.pending_blank.get_or_insert(line_no);
            return;
        }
        if let Some(blank) = self.pending_blank.take()
            && self.opts.blank_lines == Policy::Reject
        {
            self.report(
                Some(blank),
                None,
                format!("blank line in the middle of the file (line {line_no} has content again)"),
            );
        }
        let position = self.records;
        self.records += 1;
        let single = self.name.kind.is_single_line();
        let mut views = std::mem::take(&mut self.views);
        let mut rec = std::mem::take(&mut self.rec);
        match views.view(line) {
            // The hot path: REQUEST and RESPONSE lines are checked on the borrowed view,
            // decoding only the few values the checks read.
            Ok(view) if !single => self.check_fields(&view, line_no, position),
            Ok(view) => {
                view.to_record(&mut rec);
                self.check_fields(&rec, line_no, position);
                self.check_single(&rec, line_no);
            }
            Err(e) => {
                self.report_error(&e.at(None, line_no));
                // Keep checking the rest of the line on a best-effort decoding.
                rec.clear();
                rec.extend(decode_line_lossy(line));
                self.check_fields(&rec, line_no, position);
                if single {
                    self.check_single(&rec, line_no);
                }
            }
        }
        self.views = views;
        self.rec = rec;
    }

    /// Checks every kind's lines share: repeated keys, and for REQUEST/RESPONSE the index,
    /// the sequence number and the required keys.
    fn check_fields<F: Fields>(&mut self, line: &F, line_no: u64, position: u64) {
        if self.opts.repeated_keys == Policy::Reject
            && let Some(key) = line.repeated()
        {
            self.report(
                Some(line_no),
                Some(&key),
                format!("key {} appears more than once on this line", show_key(&key)),
            );
        }
        let kind = self.name.kind;
        if kind.is_single_line() && self.records == 2 {
            self.report(
                Some(line_no),
                None,
                format!("a {kind} file must have exactly one line, found a second one"),
            );
        }
        match kind {
            FileKind::Request => {
                self.check_index(line, line_no, Some(position));
                self.check_sequence(line, line_no);
                for i in 0..self.opts.request_keys.len() {
                    if !line.has(&self.opts.request_keys[i]) {
                        let key = self.opts.request_keys[i].clone();
                        let message = format!(
                            "required key {} is missing from this REQUEST line",
                            show_key(&key)
                        );
                        self.report(Some(line_no), Some(&key), message);
                    }
                }
            }
            FileKind::Response => {
                self.check_index(line, line_no, None);
                self.check_sequence(line, line_no);
            }
            FileKind::Process | FileKind::Complete => {}
        }
    }

    /// PROCESS and COMPLETE: the typed line and its own rules.
    fn check_single(&mut self, rec: &Record, line_no: u64) {
        match self.name.kind {
            FileKind::Process => match ProcessFile::from_record(rec.clone(), line_no) {
                Ok(p) => {
                    self.check_sequence(rec, line_no);
                    if p.format != FORMAT_KVP {
                        let message = format!(
                            "xFormat is {:?}; this tool only handles xFormat=KVP",
                            p.format
                        );
                        self.report(Some(line_no), Some(keys::FORMAT), message);
                    }
                    if self.process.is_none() {
                        self.process = Some(p);
                    }
                }
                Err(e) => self.report_error(&e),
            },
            FileKind::Complete => match CompleteFile::from_record(rec.clone(), line_no) {
                Ok(c) => {
                    self.check_sequence(rec, line_no);
                    if self.complete.is_none() {
                        self.complete = Some(c);
                    }
                }
                Err(e) => self.report_error(&e),
            },
            FileKind::Request | FileKind::Response => {}
        }
    }

    /// `expected`: the 0-based position for REQUEST files; `None` for RESPONSE files, whose
    /// lines may come in any order but must not repeat an index.
    fn check_index<F: Fields>(&mut self, line: &F, line_no: u64, expected: Option<u64>) {
        let Some(value) = line.field(keys::INDEX) else {
            let kind = self.name.kind;
            self.report(
                Some(line_no),
                Some(keys::INDEX),
                format!("required key xIndex is missing from this {kind} line"),
            );
            return;
        };
        let Some(index) = parse_u64(&value) else {
            self.report(
                Some(line_no),
                Some(keys::INDEX),
                format!("xIndex must be a whole number without leading zeros, found {value:?}"),
            );
            return;
        };
        if self.opts.index == Policy::Allow {
            return;
        }
        match expected {
            Some(position) if index != position => self.report(
                Some(line_no),
                Some(keys::INDEX),
                format!(
                    "xIndex is {index} but this is row {position} of the file (rows count from 0); \
                     expected xIndex={position}"
                ),
            ),
            Some(_) => {}
            None => {
                if self.seen_indexes.insert(index) {
                    self.response_indexes.push(index);
                } else {
                    self.report(
                        Some(line_no),
                        Some(keys::INDEX),
                        format!("xIndex {index} was already answered on an earlier line"),
                    );
                }
            }
        }
    }

    fn check_sequence<F: Fields>(&mut self, line: &F, line_no: u64) {
        let Some(value) = line.field(keys::SEQUENCE) else {
            let kind = self.name.kind;
            self.report(
                Some(line_no),
                Some(keys::SEQUENCE),
                format!("required key xSequenceNumber is missing from this {kind} line"),
            );
            return;
        };
        let expected = self.name.sequence;
        match value.parse::<SequenceNumber>() {
            Ok(seq) if seq == expected || self.opts.sequence == Policy::Allow => {}
            Ok(seq) => self.report(
                Some(line_no),
                Some(keys::SEQUENCE),
                format!("xSequenceNumber is {seq} but the file name says {expected}"),
            ),
            Err(e) => {
                let reason = match e {
                    Error::InvalidSequence { reason, .. } => reason,
                    _ => "invalid",
                };
                self.report(
                    Some(line_no),
                    Some(keys::SEQUENCE),
                    format!("xSequenceNumber {value:?} is not a valid sequence number: {reason}"),
                );
            }
        }
    }

    /// Ends the file and returns the report.
    pub fn finish(mut self) -> Report {
        if self.last_line_unterminated
            && self.line > 0
            && self.opts.missing_final_newline == Policy::Reject
        {
            let line = self.line;
            self.report(Some(line), None, "the last line has no final newline");
        }
        if self.records == 0 {
            let kind = self.name.kind;
            let message = if kind.is_single_line() {
                format!("the {kind} file is empty; it must have exactly one line")
            } else {
                format!("the {kind} file has no lines")
            };
            self.report(None, None, message);
        }
        Report {
            file: self.file,
            name: self.name,
            records: self.records,
            problems: self.problems,
            total_problems: self.total,
            process: self.process,
            complete: self.complete,
            response_indexes: self.response_indexes,
        }
    }
}

/// What the checks read from a line: implemented by the owned [`Record`] and the borrowed
/// [`LineView`], so one set of checks serves the fast and the fallback path.
trait Fields {
    fn field(&self, key: &str) -> Option<Cow<'_, str>>;
    fn has(&self, key: &str) -> bool;
    fn repeated(&self) -> Option<Cow<'_, str>>;
}

impl Fields for Record {
    fn field(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).map(Cow::Borrowed)
    }
    fn has(&self, key: &str) -> bool {
        self.contains_key(key)
    }
    fn repeated(&self) -> Option<Cow<'_, str>> {
        self.repeated_key().map(Cow::Borrowed)
    }
}

impl Fields for LineView<'_> {
    fn field(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key)
    }
    fn has(&self, key: &str) -> bool {
        self.contains_key(key)
    }
    fn repeated(&self) -> Option<Cow<'_, str>> {
        self.repeated_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(name: &str, data: &str) -> Vec<String> {
        let name = FileName::parse(name).unwrap();
        validate(&name, data.as_bytes(), &ValidateOptions::default())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const R0: &str = "xIndex=0&xSequenceNumber=7&xKey=k&xCommand=cc%3Asale";
    const R1: &str = "xIndex=1&xSequenceNumber=7&xKey=k&xCommand=cc%3Asale";

    #[test]
    fn valid_files() {
        let cases: &[(&str, String)] = &[
            ("REQUEST_7.KVP", format!("{R0}\n{R1}\n")),
            ("REQUEST_7.KVP", format!("{R0}\r\n{R1}")),
            ("REQUEST_7.KVP", format!("{R0}\n{R1}\n\n")),
            (
                "RESPONSE_7.KVP",
                "xIndex=1&xSequenceNumber=7&xResult=A\nxIndex=0&xSequenceNumber=7\n".into(),
            ),
            (
                "PROCESS_7.KVP",
                "xKey=b&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=7\n".into(),
            ),
            (
                "COMPLETE_7.KVP",
                "xResult=A&xStatus=Success&xSequenceNumber=7".into(),
            ),
        ];
        for (name, data) in cases {
            assert_eq!(
                problems(name, data),
                Vec::<String>::new(),
                "{name}: {data:?}"
            );
        }
    }

    #[test]
    fn invalid_files() {
        #[rustfmt::skip]
        let cases: &[(&str, String, &[&str])] = &[
            ("REQUEST_7.KVP", format!("\u{FEFF}{R0}\n"), &["REQUEST_7.KVP:1: the file starts with a UTF-8 byte order mark (BOM); KVP files must not have one"]),
            ("REQUEST_7.KVP", format!("{R0}\n\n{R1}\n"), &["REQUEST_7.KVP:2: blank line in the middle of the file (line 3 has content again)"]),
            ("REQUEST_7.KVP", format!("{R0}&xKey=j\n"), &["REQUEST_7.KVP:1: key xKey appears more than once on this line"]),
            ("REQUEST_7.KVP", format!("{R0}\n{R0}\n"), &["REQUEST_7.KVP:2: xIndex is 0 but this is row 1 of the file (rows count from 0); expected xIndex=1"]),
            ("REQUEST_7.KVP", format!("{R0}&xName=%FF\n"), &["REQUEST_7.KVP:1: the value of key xName is not valid UTF-8 after percent-decoding"]),
            ("REQUEST_7.KVP", "xIndex=0&x%FF=1&xSequenceNumber=6&xKey=k&xCommand=c\n".into(), &[
                "REQUEST_7.KVP:1: the key \"x\u{FFFD}\" is not valid UTF-8 after percent-decoding",
                "REQUEST_7.KVP:1: xSequenceNumber is 6 but the file name says 7"]),
            ("REQUEST_7.KVP", "xIndex=0&xSequenceNumber=8&xKey=k&xCommand=c\n".into(), &["REQUEST_7.KVP:1: xSequenceNumber is 8 but the file name says 7"]),
            ("REQUEST_7.KVP", "xSequenceNumber=07&xKey=k&xCommand=c\n".into(), &[
                "REQUEST_7.KVP:1: required key xIndex is missing from this REQUEST line",
                "REQUEST_7.KVP:1: xSequenceNumber \"07\" is not a valid sequence number: leading zeros are not allowed"]),
            ("REQUEST_7.KVP", "xIndex=00&xSequenceNumber=7\n".into(), &[
                "REQUEST_7.KVP:1: xIndex must be a whole number without leading zeros, found \"00\"",
                "REQUEST_7.KVP:1: required key xKey is missing from this REQUEST line",
                "REQUEST_7.KVP:1: required key xCommand is missing from this REQUEST line"]),
            ("REQUEST_7.KVP", String::new(), &["REQUEST_7.KVP: the REQUEST file has no lines"]),
            ("RESPONSE_7.KVP", "xIndex=0&xSequenceNumber=7\nxIndex=0&xSequenceNumber=7\n".into(), &["RESPONSE_7.KVP:2: xIndex 0 was already answered on an earlier line"]),
            ("PROCESS_7.KVP", "xKey=b&xSubmittedCount=2&xFormat=CSV&xSequenceNumber=7\n".into(), &["PROCESS_7.KVP:1: xFormat is \"CSV\"; this tool only handles xFormat=KVP"]),
            ("PROCESS_7.KVP", "xKey=b&xFormat=KVP&xSequenceNumber=7\n".into(), &["PROCESS_7.KVP:1: required key xSubmittedCount is missing from this PROCESS line"]),
            ("PROCESS_7.KVP", "xKey=b&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=7\nxKey=b\n".into(), &["PROCESS_7.KVP:2: a PROCESS file must have exactly one line, found a second one", "PROCESS_7.KVP:2: required key xSubmittedCount is missing from this PROCESS line"]),
            ("PROCESS_7.KVP", "\n".into(), &["PROCESS_7.KVP: the PROCESS file is empty; it must have exactly one line"]),
            ("COMPLETE_7.KVP", "xResult=A&xStatus=Success&xSequenceNumber=6\n".into(), &["COMPLETE_7.KVP:1: xSequenceNumber is 6 but the file name says 7"]),
        ];
        for (name, data, want) in cases {
            assert_eq!(problems(name, data), *want, "{name}: {data:?}");
        }
    }

    #[test]
    fn options_relax_and_tighten() {
        let name = FileName::parse("REQUEST_7.KVP").unwrap();
        let data = format!("\u{FEFF}{R0}\r\n\r\n{R0}");
        let strict = ValidateOptions {
            crlf: Policy::Reject,
            missing_final_newline: Policy::Reject,
            ..ValidateOptions::default()
        };
        let msgs: Vec<String> = validate(&name, data.as_bytes(), &strict)
            .iter()
            .map(|p| p.message.clone())
            .collect();
        assert_eq!(msgs.len(), 6, "{msgs:#?}");
        let lax = ValidateOptions {
            bom: Policy::Allow,
            blank_lines: Policy::Allow,
            index: Policy::Allow,
            ..ValidateOptions::default()
        };
        assert_eq!(validate(&name, data.as_bytes(), &lax), vec![]);
    }

    #[test]
    fn reader_and_bytes_agree_across_buffer_boundaries() {
        let name = FileName::parse("REQUEST_7.KVP").unwrap();
        let data = format!("{R0}\n{R0}\n\n{R1}&xName=%FF\r\n{R1}");
        let opts = ValidateOptions::default();
        let want = validate_bytes(&name, "f", data.as_bytes(), &opts).problems;
        assert_eq!(want.len(), 5, "{want:#?}");
        for cap in [1, 2, 7, 64, 4096] {
            let r = std::io::BufReader::with_capacity(cap, data.as_bytes());
            let got = validate_reader(&name, "f", r, &opts).unwrap();
            assert_eq!(got.problems, want, "capacity {cap}");
            assert_eq!(got.records, 4);
        }
    }

    #[test]
    fn response_against_request() {
        let req = FileName::parse("REQUEST_7.KVP").unwrap();
        let resp = FileName::parse("RESPONSE_7.KVP").unwrap();
        let line = |i: u64| format!("xIndex={i}&xSequenceNumber=7&xResult=A\n");
        let file = |idx: &[u64]| idx.iter().map(|&i| line(i)).collect::<String>();
        #[rustfmt::skip]
        let cases: &[(&[u64], u64, &[&str])] = &[
            (&[2, 0, 1], 3, &[]),
            (&[0, 2], 3, &["RESPONSE_7.KVP: 1 line of REQUEST_7.KVP has no answer: xIndex 1"]),
            (&[], 2, &["RESPONSE_7.KVP: the RESPONSE file has no lines", "RESPONSE_7.KVP: 2 lines of REQUEST_7.KVP have no answer: xIndex 0, 1"]),
            (&[0, 1, 7, 3], 2, &["RESPONSE_7.KVP: answers for lines REQUEST_7.KVP does not have (2 lines): xIndex 3, 7"]),
            (&[12], 12, &["RESPONSE_7.KVP: 12 lines of REQUEST_7.KVP have no answer: xIndex 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 (and 2 more)", "RESPONSE_7.KVP: answers for lines REQUEST_7.KVP does not have (12 lines): xIndex 12"]),
        ];
        for (indexes, lines, want) in cases {
            let report = validate_bytes(
                &resp,
                "RESPONSE_7.KVP",
                file(indexes).as_bytes(),
                &ValidateOptions::default(),
            );
            let mut got: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
            got.extend(
                check_response(&req, *lines, &report)
                    .iter()
                    .map(ToString::to_string),
            );
            assert_eq!(got, *want, "{indexes:?} of {lines}");
        }
    }

    #[test]
    fn limit_counts_everything() {
        let name = FileName::parse("REQUEST_7.KVP").unwrap();
        let data = "xIndex=999\n".repeat(50);
        let opts = ValidateOptions {
            max_problems: 3,
            ..ValidateOptions::default()
        };
        let report = validate_bytes(&name, "r.kvp", data.as_bytes(), &opts);
        assert_eq!(report.problems.len(), 3);
        assert_eq!(report.total_problems, 200);
        assert_eq!(report.records, 50);
        assert!(!report.is_valid());
    }

    #[test]
    fn process_against_request() {
        let req = FileName::parse("REQUEST_7.KVP").unwrap();
        let seq = |n| SequenceNumber::new(n).unwrap();
        let cases: &[(ProcessFile, u64, &[&str])] = &[
            (ProcessFile::new("k", 2, seq(7)), 2, &[]),
            (
                ProcessFile::new("k", 3, seq(7)),
                2,
                &["P:1: xSubmittedCount is 3 but REQUEST_7.KVP has 2 lines"],
            ),
            (
                ProcessFile::new("k", 1, seq(8)),
                1,
                &["P:1: xSequenceNumber is 8 but its REQUEST REQUEST_7.KVP is batch 7"],
            ),
        ];
        for (process, lines, want) in cases {
            let got: Vec<String> = check_process(&req, *lines, process, "P")
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, *want);
        }
    }

    #[test]
    fn problems_never_show_secrets() {
        let cases: &[(&str, &str)] = &[
            (
                "PROCESS_7.KVP",
                "xKey=topsecret&xKey=topsecret&xSubmittedCount=x&xFormat=CSV\n\nxKey=topsecret\n",
            ),
            (
                "REQUEST_7.KVP",
                "xCardNum=4111111111111111&xCVV=987&xCardNum=4111111111111111&xName=%FF\n",
            ),
            (
                "COMPLETE_7.KVP",
                "xKey=topsecret&xKey=topsecret&xResult=A\n",
            ),
        ];
        for (name, data) in cases {
            let name = FileName::parse(name).unwrap();
            let found = validate(&name, data.as_bytes(), &ValidateOptions::default());
            assert!(!found.is_empty());
            let shown = format!(
                "{found:?} {}",
                found.iter().map(ToString::to_string).collect::<String>()
            );
            for secret in ["topsecret", "4111111111111111", "987"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }
}
