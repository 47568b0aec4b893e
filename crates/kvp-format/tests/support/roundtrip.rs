//! The fuzz property, shared by `tests/roundtrip.rs` (proptest + crashers corpus) and the
//! cargo-fuzz target in `fuzz/` (which includes this file by path).
//!
//! For any bytes: read them as a KVP file (stopping at the first error), write the records
//! back canonically, re-read that output — it must read without error to the same records —
//! write again (byte-identical), convert every record to each typed kind and back, and
//! validate the original and the rewritten bytes under every file kind. Nothing may panic.

use kvp_format::{
    CompleteFile, FileName, KvpLine, ProcessFile, Reader, Record, RequestLine, ResponseLine,
    ValidateOptions, ViewBuf, Writer, decode_into, decode_line, decode_line_lossy, pairs, validate,
};

fn read_until_error(data: &[u8]) -> Vec<Record> {
    let mut reader = Reader::new(data).with_name("FUZZ.KVP");
    let mut out = Vec::new();
    let mut rec = Record::new();
    // An error ends reading, exactly as in production; its message must format.
    loop {
        match reader.read_record(&mut rec) {
            Ok(true) => out.push(rec.clone()),
            Ok(false) => break,
            Err(e) => {
                let _ = e.to_string();
                let _ = e.message();
                break;
            }
        }
    }
    out
}

fn write_all(records: &[Record]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    for r in records {
        w.write_record(r)
            .expect("writing a non-empty record to memory");
    }
    w.into_inner()
}

fn typed_round_trip<T: KvpLine + PartialEq + std::fmt::Debug>(rec: &Record) {
    if let Ok(t) = T::from_record(rec.clone(), 1) {
        let back = T::from_record(t.to_record(), 1).expect("a typed line re-reads");
        assert_eq!(back, t);
    }
}

/// Panics (test failure / fuzz crash) when the property does not hold.
pub fn check(data: &[u8]) {
    // The line codec alone, on every physical line: its four decoders must agree.
    let mut views = ViewBuf::new();
    let mut rec = Record::new();
    for line in data.split(|&b| b == b'\n') {
        let eager = decode_line(line);
        let lazy: Result<Vec<_>, _> = pairs(line).collect();
        let into = decode_into(line, &mut rec);
        let viewed = views.view(line).map(|v| v.iter().collect::<Vec<_>>());
        match (&eager, &lazy, &into, &viewed) {
            (Ok(a), Ok(b), Ok(()), Ok(d)) => {
                assert_eq!(a, b, "decode_line vs pairs");
                assert_eq!(a, d, "decode_line vs LineView");
                let c: Vec<(&str, &str)> = rec.iter().collect();
                let a: Vec<(&str, &str)> = a.iter().map(|(k, v)| (&**k, &**v)).collect();
                assert_eq!(a, c, "decode_line vs decode_into");
            }
            (Err(a), Err(b), Err(c), Err(d)) => {
                let shown = [a, b, c, d].map(|e| e.to_string());
                assert!(shown.iter().all(|m| *m == shown[0]), "{shown:?}");
            }
            _ => panic!("decoders disagree on {line:?}: {eager:?} {lazy:?} {into:?} {viewed:?}"),
        }
        let _ = decode_line_lossy(line);
    }

    let records: Vec<Record> = read_until_error(data)
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    let written = write_all(&records);

    let mut reader = Reader::new(&written[..]);
    let reread: Vec<Record> = reader
        .records()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("canonical output does not re-read: {e}"));
    assert_eq!(reread, records, "re-read records differ");
    assert_eq!(write_all(&reread), written, "encoding is not stable");

    for rec in &records {
        let _ = format!("{rec:?} {rec}");
        typed_round_trip::<RequestLine>(rec);
        typed_round_trip::<ResponseLine>(rec);
        typed_round_trip::<ProcessFile>(rec);
        typed_round_trip::<CompleteFile>(rec);
    }
    let _ = ProcessFile::parse(data);
    let _ = CompleteFile::parse(data);

    let opts = ValidateOptions::default();
    for name in [
        "REQUEST_1.KVP",
        "PROCESS_1.KVP",
        "RESPONSE_1.KVP",
        "COMPLETE_1.KVP",
    ] {
        let name = FileName::parse(name).expect("a valid name");
        for bytes in [data, &written[..]] {
            for p in validate(&name, bytes, &opts) {
                let _ = p.to_string();
            }
        }
    }
}
