//! Shared by `benches/codec.rs` and `examples/measure.rs`: the generated REQUEST file and
//! the two reference implementations.
#![allow(dead_code)]

use kvp_format::{Record, Writer};
use memchr::memchr;
use serde::{Deserialize, Serialize};

/// The REQUEST file: realistic keys, a few values with spaces, `&`, `'`, `/`, `:` and
/// non-ASCII letters (escaped), the rest plain.
pub fn request_file(lines: u64) -> Vec<u8> {
    let names = [
        "John Smith",
        "Zoë O'Brien & Co",
        "ACME/Widgets",
        "Mary-Jane Watson",
        "Li Wei",
    ];
    let streets = [
        "1 Main St",
        "221B Baker Street",
        "Via dell'Orso 7",
        "10 Downing St",
        "5th Ave",
    ];
    let mut w = Writer::new(Vec::with_capacity(lines as usize * 250));
    let mut rec = Record::with_capacity(20, 400);
    for i in 0..lines {
        rec.clear();
        rec.push_str("xIndex", &i.to_string());
        rec.push_str("xSequenceNumber", "42");
        rec.push_str("xKey", "ifields_pbtest_7f3a9c");
        rec.push_str("xVersion", "5.0.0");
        rec.push_str("xSoftwareName", "paybatch");
        rec.push_str("xCommand", "cc:sale");
        rec.push_str("xCardNum", &format!("41111111{:08}", i % 100_000_000));
        rec.push_str("xExp", "1230");
        rec.push_str("xAmount", &format!("{}.{:02}", 1 + i % 500, i % 100));
        rec.push_str("xName", names[(i % 5) as usize]);
        rec.push_str("xStreet", streets[(i % 3) as usize]);
        rec.push_str("xZip", "10001");
        rec.push_str("xInvoice", &format!("INV-{i:08}"));
        w.write_record(&rec).unwrap();
    }
    w.into_inner()
}

/// What a user of `serde_urlencoded` would deserialize a request line into.
#[derive(Debug, Deserialize, Serialize)]
pub struct SerdeRequest {
    #[serde(rename = "xIndex")]
    index: u64,
    #[serde(rename = "xSequenceNumber")]
    sequence: u32,
    #[serde(rename = "xKey")]
    key: String,
    #[serde(rename = "xVersion")]
    version: String,
    #[serde(rename = "xSoftwareName")]
    software_name: String,
    #[serde(rename = "xCommand")]
    command: String,
    #[serde(rename = "xCardNum")]
    card: String,
    #[serde(rename = "xExp")]
    exp: String,
    #[serde(rename = "xAmount")]
    amount: String,
    #[serde(rename = "xName")]
    name: String,
    #[serde(rename = "xStreet")]
    street: String,
    #[serde(rename = "xZip")]
    zip: String,
    #[serde(rename = "xInvoice")]
    invoice: String,
}

pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// The ceiling: find every line, piece and `=` with memchr, decode nothing.
pub fn memchr_split(data: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = data;
    while !rest.is_empty() {
        let end = memchr(b'\n', rest).unwrap_or(rest.len());
        let mut line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        while !line.is_empty() {
            let amp = memchr(b'&', line).unwrap_or(line.len());
            let piece = &line[..amp];
            let eq = memchr(b'=', piece).unwrap_or(piece.len());
            n += eq + (piece.len() - eq);
            line = line.get(amp + 1..).unwrap_or_default();
        }
    }
    n
}

/// serde_urlencoded line by line, plus the same semantic checks `validate` makes.
pub fn serde_parse(data: &[u8], check: bool) -> u64 {
    let mut n = 0;
    for (i, line) in lines(data).enumerate() {
        let r: SerdeRequest = serde_urlencoded::from_bytes(line).unwrap();
        if check {
            assert!(r.index == i as u64 && r.sequence == 42 && !r.key.is_empty());
        }
        n += r.index;
    }
    n
}
