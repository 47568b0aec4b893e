//! Whole-batch checks before any line is processed: the PROCESS trigger and the REQUEST file.
//! Any failure is answered with a COMPLETE `xStatus=Error` whose `xError` is the returned
//! text (which never contains a key or card data: kvp-format's errors mask them).

use kvp_format::{FORMAT_KVP, FileKind, FileName, ProcessFile, Reader, Record, RequestLine};

/// A batch that passed the checks.
#[derive(Debug)]
pub(crate) struct CheckedBatch {
    pub process: ProcessFile,
    pub lines: Vec<RequestLine>,
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
pub(crate) fn check_batch(
    name: FileName,
    process_bytes: &[u8],
    request_bytes: Option<&[u8]>,
    batch_key: &str,
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
            process.format
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
    Ok(CheckedBatch { process, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "batch-secret";

    fn run(process: &str, request: Option<&str>) -> Result<usize, String> {
        let name: FileName = "PROCESS_7.KVP".parse().unwrap();
        check_batch(name, process.as_bytes(), request.map(str::as_bytes), KEY)
            .map(|b| b.lines.len())
            .map_err(|r| r.reason)
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
