//! Decode, validate and encode a generated 1,000,000-line REQUEST file (~240 bytes a line,
//! some values needing escapes), each beside two references measured in the same run:
//! `serde_urlencoded` into a typed struct, and a bare `memchr` split on `\n`, `&`, `=` with
//! no decoding (the practical ceiling).
//!
//! `cargo bench -p kvp-format` (set `KVP_BENCH_LINES` to change the size). Figures and the
//! conditions they were taken in are in the crate README.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvp_format::{FileName, Reader, Record, ValidateOptions, Writer, decode_line, validate_bytes};

mod common;
use common::{SerdeRequest, lines, memchr_split, request_file, serde_parse};

fn bench_config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
}

fn benches(c: &mut Criterion) {
    // `cargo test --benches` runs each bench once without `--bench`: a small file keeps that
    // a quick smoke test; `cargo bench` measures the full million lines.
    let measuring = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("KVP_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 1_000_000 } else { 10_000 });
    let data = request_file(n);
    eprintln!(
        "REQUEST file: {n} lines, {} bytes, {:.0} bytes/line",
        data.len(),
        data.len() as f64 / n as f64
    );
    let name: FileName = "REQUEST_42.KVP".parse().unwrap();
    let opts = ValidateOptions::default();
    assert!(validate_bytes(&name, "bench", &data, &opts).is_valid());

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("kvp_format Reader::read_record", |b| {
        b.iter(|| {
            let mut reader = Reader::new(&data[..]);
            let mut rec = Record::new();
            let mut pairs = 0;
            while reader.read_record(&mut rec).unwrap() {
                pairs += rec.len();
            }
            black_box(pairs)
        })
    });
    g.bench_function("kvp_format decode_line (borrowed)", |b| {
        b.iter(|| {
            let mut pairs = 0;
            for line in lines(&data) {
                pairs += decode_line(line).unwrap().len();
            }
            black_box(pairs)
        })
    });
    g.bench_function("serde_urlencoded typed struct", |b| {
        b.iter(|| black_box(serde_parse(&data, false)))
    });
    g.bench_function("memchr split (ceiling)", |b| {
        b.iter(|| black_box(memchr_split(&data)))
    });
    g.finish();

    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("kvp_format validate_bytes", |b| {
        b.iter(|| black_box(validate_bytes(&name, "bench", &data, &opts).records))
    });
    g.bench_function("serde_urlencoded typed struct + checks", |b| {
        b.iter(|| black_box(serde_parse(&data, true)))
    });
    g.bench_function("memchr split (ceiling)", |b| {
        b.iter(|| black_box(memchr_split(&data)))
    });
    g.finish();

    // Encoding: 10,000 distinct records written 100 times over (1,000,000 lines) so the
    // input does not need a gigabyte of decoded records.
    let sample = &data[..lines(&data)
        .take(10_000)
        .map(|l| l.len() + 1)
        .sum::<usize>()];
    let records: Vec<Record> = Reader::new(sample).records().map(Result::unwrap).collect();
    let structs: Vec<SerdeRequest> = lines(sample)
        .map(|l| serde_urlencoded::from_bytes(l).unwrap())
        .collect();
    let rounds = (n as usize).div_ceil(records.len().max(1));
    let out_len = sample.len() * rounds;
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(out_len as u64));
    g.bench_function("kvp_format Writer::write_record", |b| {
        b.iter(|| {
            let mut w = Writer::new(Vec::with_capacity(out_len));
            for _ in 0..rounds {
                for r in &records {
                    w.write_record(r).unwrap();
                }
            }
            black_box(w.into_inner().len())
        })
    });
    g.bench_function("serde_urlencoded to_string per line", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(out_len);
            for _ in 0..rounds {
                for s in &structs {
                    out.extend_from_slice(serde_urlencoded::to_string(s).unwrap().as_bytes());
                    out.push(b'\n');
                }
            }
            black_box(out.len())
        })
    });
    g.bench_function("copy pre-encoded lines (ceiling)", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(out_len);
            for _ in 0..rounds {
                for line in lines(sample) {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group! {
    name = codec;
    config = bench_config();
    targets = benches
}
criterion_main!(codec);
