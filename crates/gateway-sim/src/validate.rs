//! Whole-batch checks before any line is processed: the PROCESS trigger and the REQUEST file.
//! Any failure is answered with a COMPLETE `xStatus=Error` whose `xError` is the returned
//! text (which never contains a key or card data: kvp-format's errors mask them).

use kvp_format::{
    BOM, FORMAT_KVP, FileKind, FileName, ProcessFile, Reader, Record, RequestLine, SequenceNumber,
    ViewBuf, parse_u64,
};

use crate::fields::RequestFields;

/// A batch that passed the checks.
#[derive(Debug)]
pub(crate) struct CheckedBatch {
    pub process: ProcessFile,
    pub lines: Lines,
}

/// The lines of a REQUEST that passed the checks.
#[derive(Debug)]
pub(crate) enum Lines {
    /// The values the rules read, collected while the lines were checked (borrowed from the
    /// REQUEST bytes where they needed no decoding).
    Fields(RequestFields),
    /// The lines as the full reader decoded them (only when the quick check and the reader
    /// disagree, which they should not).
    Decoded(Vec<RequestLine>),
}

impl Lines {
    pub(crate) fn len(&self) -> usize {
        match self {
            Lines::Fields(f) => f.len(),
            Lines::Decoded(l) => l.len(),
        }
    }
}

/// Why a batch is refused as a whole: the PROCESS file as far as it could be read (to echo
/// its counts), and the `xError` text.
#[derive(Debug)]
pub(crate) struct BatchRefusal {
    pub process: Option<Box<ProcessFile>>,
    pub reason: String,
}

/// Checks PROCESS_X (batch key, `xFormat=KVP`, `xSequenceNumber` = X) and REQUEST_X (every
/// line decodes as UTF-8 with no repeated key, `xIndex` = position, `xSequenceNumber` = X,
/// and `xSubmittedCount` = the number of lines).
///
/// REQUEST_X is checked first through borrowed line views ([`quick_check`], no copy of any
/// line); only when that finds a problem is the file read again with `kvp_format::Reader`,
/// whose error (file, line, key) becomes the refusal's text.
pub(crate) fn check_batch(
    name: FileName,
    process_bytes: &[u8],
    request_bytes: Option<&[u8]>,
    batch_key: &str,
    views: &mut ViewBuf,
) -> Result<CheckedBatch, BatchRefusal> {
    let x = name.sequence;
    let refuse = |process: Option<&ProcessFile>, reason: String| BatchRefusal {
        process: process.cloned().map(Box::new),
        reason,
    };
    let process =
        ProcessFile::parse(process_bytes).map_err(|e| refuse(None, format!("{name}: {e}")))?;
    if process.key.expose() != batch_key {
        return Err(refuse(
            Some(&process),
            format!("{name}: Invalid xKey (not this account's batch key)"),
        ));
    }
    if !process.format.eq_ignore_ascii_case(FORMAT_KVP) {
        let reason = format!(
            "{name}: Unsupported xFormat {:?} (expected KVP)",
            kvp_format::mask_digit_runs(&process.format)
        );
        return Err(refuse(Some(&process), reason));
    }
    if process.sequence != x {
        let reason = format!(
            "{name}: xSequenceNumber {} does not match the file name",
            process.sequence
        );
        return Err(refuse(Some(&process), reason));
    }
    let request_name = name.with_kind(FileKind::Request);
    let Some(bytes) = request_bytes else {
        return Err(refuse(Some(&process), format!("{request_name} not found")));
    };
    if let Some(fields) = quick_check(bytes, x, views)
        && fields.len() > 0
        && process.submitted_count == fields.len() as u64
    {
        return Ok(CheckedBatch {
            process,
            lines: Lines::Fields(fields),
        });
    }
    let mut reader = Reader::new(bytes).with_name(request_name.to_string());
    let mut rec = Record::new();
    let mut lines = Vec::new();
    loop {
        match reader.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(refuse(Some(&process), e.to_string())),
        }
        let at = reader.line();
        let line = RequestLine::from_record(std::mem::take(&mut rec), at)
            .map_err(|e| refuse(Some(&process), format!("{request_name}: {e}")))?;
        let position = lines.len() as u64;
        if line.index != position {
            let reason = format!(
                "{request_name} line {at}: xIndex is {}, expected {position}",
                line.index
            );
            return Err(refuse(Some(&process), reason));
        }
        if line.sequence != x {
            let reason = format!(
                "{request_name} line {at}: xSequenceNumber is {}, expected {x}",
                line.sequence
            );
            return Err(refuse(Some(&process), reason));
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(refuse(
            Some(&process),
            format!("{request_name} has no transactions"),
        ));
    }
    if process.submitted_count != lines.len() as u64 {
        let reason = format!(
            "{name}: xSubmittedCount is {} but {request_name} has {} lines",
            process.submitted_count,
            lines.len()
        );
        return Err(refuse(Some(&process), reason));
    }
    Ok(CheckedBatch {
        process,
        lines: Lines::Decoded(lines),
    })
}

/// The reader's rules (LF or CRLF, a missing final newline, trailing blank lines ignored; no
/// BOM, no blank line followed by content, UTF-8 after decoding, no repeated key) and the
/// batch's (`xIndex` = position, `xSequenceNumber` = `x`), checked on borrowed views, each
/// line viewed once: the values the rules read, line by line, when all hold; `None` at the
/// first problem (the caller then runs the full reader for the error text).
pub(crate) fn quick_check(
    bytes: &[u8],
    x: SequenceNumber,
    views: &mut ViewBuf,
) -> Option<RequestFields> {
    // Implied by the rules below (components are UTF-8, separators ASCII); checked once here
    // so that the values can be taken as slices of the file's text.
    let text = std::str::from_utf8(bytes).ok()?;
    // A typical REQUEST line is 150-300 bytes.
    let mut fields = RequestFields::with_capacity(bytes.len() / 200 + 1);
    let mut pos = 0;
    let mut blank_seen = false;
    while pos < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let mut content_end = end;
        if content_end > pos && bytes[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        let line = &bytes[pos..content_end];
        if pos == 0 && line.starts_with(BOM) {
            return None;
        }
        if line.is_empty() {
            blank_seen = true;
        } else {
            if blank_seen {
                return None;
            }
            let view = views.view(line).ok()?;
            if view.repeated_key().is_some() {
                return None;
            }
            let position = fields.len() as u64;
            let head = fields.collect_line(text, pos..content_end);
            if parse_u64(&head.index?)? != position {
                return None;
            }
            if head.sequence?.parse::<SequenceNumber>().ok()? != x {
                return None;
            }
        }
        pos = end + 1;
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Fields;

    const KEY: &str = "batch-secret";

    fn run(process: &str, request: Option<&str>) -> Result<usize, String> {
        let name: FileName = "PROCESS_7.KVP".parse().unwrap();
        let mut views = ViewBuf::new();
        check_batch(
            name,
            process.as_bytes(),
            request.map(str::as_bytes),
            KEY,
            &mut views,
        )
        .map(|b| {
            // Every valid case goes the quick way.
            assert!(matches!(b.lines, Lines::Fields(_)));
            b.lines.len()
        })
        .map_err(|r| r.reason)
    }

    /// The quick check accepts exactly what the reader plus the batch rules accept, with the
    /// same lines.
    #[test]
    fn quick_check_agrees_with_the_reader() {
        let x = SequenceNumber::new(7).unwrap();
        #[rustfmt::skip]
        let files: &[&[u8]] = &[
            b"",
            b"\n",
            b"\n\n",
            b"xIndex=0&xSequenceNumber=7",
            b"xIndex=0&xSequenceNumber=7\n",
            b"xIndex=0&xSequenceNumber=7\r\nxIndex=1&xSequenceNumber=7\r\n",
            b"xIndex=0&xSequenceNumber=7\r\nxIndex=1&xSequenceNumber=7\r",
            b"xIndex=0&xSequenceNumber=7\n\n\n",
            b"xIndex=0&xSequenceNumber=7\n\r\n",
            b"xIndex=0&xSequenceNumber=7\n\nxIndex=1&xSequenceNumber=7\n",
            b"\nxIndex=0&xSequenceNumber=7\n",
            b"\xEF\xBB\xBFxIndex=0&xSequenceNumber=7\n",
            b"xIndex=0&xSequenceNumber=7\n\xEF\xBB\xBFxIndex=1&xSequenceNumber=7\n",
            b"x%49ndex=0&xSequence%4Eumber=7&xName=a+b\n",
            b"xIndex=0&xSequenceNumber=7&xIndex=0\n",
            b"xIndex=0&xSequenceNumber=7&x%49ndex=0\n",
            b"xIndex=0&xSequenceNumber=7&a=1&a=2\n",
            b"xIndex=0&xSequenceNumber=7&xName=%FF\n",
            b"xIndex=0&xSequenceNumber=7&xName=\xC3\xA9&k=%C3%A9\n",
            b"xIndex=0&xSequenceNumber=7&xName=\xC3\n",
            b"xIndex=00&xSequenceNumber=7\n",
            b"xIndex=+0&xSequenceNumber=7\n",
            b"xIndex=1&xSequenceNumber=7\n",
            b"xIndex=0&xSequenceNumber=07\n",
            b"xIndex=0&xSequenceNumber=8\n",
            b"xIndex=0\n",
            b"xSequenceNumber=7\n",
            b"xIndex=0&xSequenceNumber=7&&&\nxIndex=1&&xSequenceNumber=7\n",
            b"xIndex=0&xSequenceNumber=7&=v&k\n",
            b"xIndex=0&xSequenceNumber=7\nxIndex=1&xSequenceNumber=7&xA=1&xA=2\n",
            b"xKey=k1&xIndex=0&xSequenceNumber=7&xCommand=cc%3Asale&xInvoice=A+B\r\nxIndex=1&x%4Bey=k2&xSequenceNumber=7&xAmount=1.00&xCVV\n",
            b"xIndex=0&xSequenceNumber=7&xCardNum=4111111111111111&xExp=1230&xName=Jo%20Smith&xZip=\n\n",
        ];
        for bytes in files {
            let mut views = ViewBuf::new();
            let quick = quick_check(bytes, x, &mut views);
            let mut reader = Reader::new(*bytes);
            let mut rec = Record::new();
            let mut slow = Vec::new();
            let ok = loop {
                match reader.read_record(&mut rec) {
                    Ok(true) => {}
                    Ok(false) => break true,
                    Err(_) => break false,
                }
                match RequestLine::from_record(rec.clone(), reader.line()) {
                    Ok(l) if l.index == slow.len() as u64 && l.sequence == x => {
                        slow.push(rec.clone())
                    }
                    _ => break false,
                }
            };
            match (quick, ok) {
                (Some(fields), true) => {
                    assert_eq!(fields.len(), slow.len());
                    let text = std::str::from_utf8(bytes).unwrap();
                    for (n, rec) in slow.iter().enumerate() {
                        let line = fields.line(n, text);
                        for k in crate::fields::ALL_KEYS {
                            assert_eq!(line.raw(k), rec.raw(k), "{k:?} of line {n} in {bytes:?}");
                        }
                    }
                }
                (None, false) => {}
                (q, _) => panic!(
                    "{:?}: quick {q:?}, reader ok {ok}",
                    String::from_utf8_lossy(bytes)
                ),
            }
        }
    }

    const P2: &str = "xKey=batch-secret&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=7\n";
    const R2: &str = "xIndex=0&xSequenceNumber=7&xAmount=1\nxIndex=1&xSequenceNumber=7&xAmount=2\n";

    #[test]
    fn refusal_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>, Result<usize, &str>)] = &[
            (P2, Some(R2), Ok(2)),
            ("xKey=batch-secret&xSubmittedCount=2&xFormat=kvp&xSequenceNumber=7", Some(R2), Ok(2)),
            ("xKey=wrong&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=7\n", Some(R2), Err("Invalid xKey")),
            ("xKey=batch-secret&xSubmittedCount=2&xFormat=CSV&xSequenceNumber=7\n", Some(R2), Err("Unsupported xFormat")),
            ("xKey=batch-secret&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=8\n", Some(R2), Err("does not match the file name")),
            ("xKey=batch-secret&xSubmittedCount=3&xFormat=KVP&xSequenceNumber=7\n", Some(R2), Err("xSubmittedCount is 3 but REQUEST_7.KVP has 2 lines")),
            ("xKey=batch-secret&xFormat=KVP&xSequenceNumber=7\n", Some(R2), Err("xSubmittedCount")),
            (P2, None, Err("REQUEST_7.KVP not found")),
            (P2, Some(""), Err("has no transactions")),
            (P2, Some("xIndex=1&xSequenceNumber=7\nxIndex=0&xSequenceNumber=7\n"), Err("line 1: xIndex is 1, expected 0")),
            (P2, Some("xIndex=0&xSequenceNumber=7\nxIndex=1&xSequenceNumber=6\n"), Err("line 2: xSequenceNumber is 6, expected 7")),
            (P2, Some("xIndex=0&xSequenceNumber=7&xA=1&xA=2\nxIndex=1&xSequenceNumber=7\n"), Err("more than once")),
            (P2, Some("xIndex=0&xSequenceNumber=7&xName=%FF\nxIndex=1&xSequenceNumber=7\n"), Err("UTF-8")),
            (P2, Some("xIndex=0&xSequenceNumber=7\n\nxIndex=1&xSequenceNumber=7\n"), Err("blank line")),
            (P2, Some("\u{feff}xIndex=0&xSequenceNumber=7\nxIndex=1&xSequenceNumber=7\n"), Err("byte order mark")),
            (P2, Some("xSequenceNumber=7\nxIndex=1&xSequenceNumber=7\n"), Err("xIndex")),
        ];
        for (process, request, want) in cases {
            let got = run(process, *request);
            match (want, &got) {
                (Ok(n), Ok(m)) => assert_eq!(n, m),
                (Err(w), Err(g)) => assert!(
                    g.contains(w),
                    "{process:?} {request:?}: got {g:?}, want {w:?}"
                ),
                _ => panic!("{process:?} {request:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn refusal_text_never_shows_the_key() {
        let err = run(
            "xKey=not-the-key&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=7\n",
            Some(R2),
        )
        .unwrap_err();
        assert!(!err.contains("not-the-key") && !err.contains(KEY), "{err}");
        let err = run(P2, Some("xIndex=0&xSequenceNumber=7&xCardNum=4111111111111111&xCardNum=4111111111111111\nxIndex=1&xSequenceNumber=7\n")).unwrap_err();
        assert!(!err.contains("4111111111111111"), "{err}");
    }
}
