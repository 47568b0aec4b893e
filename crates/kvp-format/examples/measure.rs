//! Measures one codec variant in a process of its own, so that `perf stat -e cycles:u`
//! (user-mode CPU cycles, which other processes on a busy machine do not inflate the way
//! they inflate wall time) can compare the variants of `benches/codec.rs`:
//!
//! ```sh
//! cargo build --release -p kvp-format --example measure
//! M=target/release/examples/measure
//! $M gen /tmp/REQUEST_42.KVP 1000000
//! for v in load validate serde_checks split read_record serde; do
//!   perf stat -x, -e cycles:u $M $v /tmp/REQUEST_42.KVP 5
//! done
//! ```
//! Subtract the `load` cycles from the others; the ratios are the throughput ratios.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use kvp_format::{FileName, Reader, Record, ValidateOptions, validate_bytes};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (variant, path) = (args[1].as_str(), &args[2]);
    if variant == "gen" {
        let n: u64 = args[3].parse().unwrap();
        std::fs::write(path, common::request_file(n)).unwrap();
        return;
    }
    let rounds: u32 = args[3].parse().unwrap();
    let data = std::fs::read(path).unwrap();
    let name: FileName = "REQUEST_42.KVP".parse().unwrap();
    let opts = ValidateOptions::default();
    let mut sink = 0u64;
    for _ in 0..rounds {
        sink += match variant {
            "load" => data.len() as u64,
            "validate" => {
                let r = validate_bytes(&name, "m", &data, &opts);
                assert!(r.is_valid());
                r.records
            }
            "read_record" => {
                let mut reader = Reader::new(&data[..]);
                let mut rec = Record::new();
                let mut n = 0;
                while reader.read_record(&mut rec).unwrap() {
                    n += rec.len() as u64;
                }
                n
            }
            "serde" => common::serde_parse(&data, false),
            "serde_checks" => common::serde_parse(&data, true),
            "split" => common::memchr_split(&data) as u64,
            other => panic!("unknown variant {other}"),
        };
    }
    black_box(sink);
}
