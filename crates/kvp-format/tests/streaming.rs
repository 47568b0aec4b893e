//! Readers and the validator stream: a file far larger than what the process may grow by is
//! read and validated through them. The data is generated on the fly, so the only memory in
//! play is what the reader keeps. (Its own test binary, so no other test allocates meanwhile.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufReader, Read};

use kvp_format::{FileName, Reader, Record, ValidateOptions, validate_reader};

const LINES: u64 = 200_000;

/// A REQUEST_9.KVP of `LINES` lines (~110 bytes each), produced as it is read.
struct Generated {
    next: u64,
    pending: Vec<u8>,
    at: usize,
}

impl Generated {
    fn new() -> Self {
        Generated {
            next: 0,
            pending: Vec::new(),
            at: 0,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            if self.next == LINES {
                return Ok(0);
            }
            self.pending = format!(
                "xIndex={i}&xSequenceNumber=9&xKey=k&xCommand=cc%3Asale&xAmount={i}.00\
                 &xName=Zo%C3%AB%20{i}&xInvoice=INV-{i:08}\n",
                i = self.next
            )
            .into_bytes();
            self.at = 0;
            self.next += 1;
        }
        let n = out.len().min(self.pending.len() - self.at);
        out[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Peak resident set size of this process, in kB (Linux).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn reading_and_validating_a_large_file_keeps_memory_flat() {
    let before = peak_rss_kb();
    let mut reader = Reader::new(BufReader::new(Generated::new())).with_name("REQUEST_9.KVP");
    let mut rec = Record::new();
    let mut lines = 0u64;
    while reader.read_record(&mut rec).unwrap() {
        assert_eq!(rec.get("xIndex"), Some(lines.to_string().as_str()));
        lines += 1;
    }
    assert_eq!(lines, LINES);

    let name = FileName::parse("REQUEST_9.KVP").unwrap();
    let report = validate_reader(
        &name,
        "REQUEST_9.KVP",
        BufReader::new(Generated::new()),
        &ValidateOptions::default(),
    )
    .unwrap();
    assert_eq!(report.records, LINES);
    assert!(report.is_valid(), "{:?}", report.problems);

    // ~22 MB went through each; the process may not have grown by anything like that.
    if let (Some(before), Some(after)) = (before, peak_rss_kb()) {
        let grown = after.saturating_sub(before);
        assert!(grown < 4_096, "peak RSS grew by {grown} kB while streaming");
    }
}
