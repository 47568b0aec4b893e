//! Golden files under `tests/data/`:
//! - `valid/<case>/KIND_X.KVP` must validate without a problem; beside each file,
//!   `KIND_X.KVP.decoded.jsonl` (one JSON array of pairs per record) and
//!   `KIND_X.KVP.canonical` (what `Writer` writes for those records) are the expected outputs.
//! - `invalid/<case>/KIND_X.KVP...` with `expected.txt`: every problem `validate` reports
//!   (plus `check_process` for a REQUEST/PROCESS pair), one `FILE:LINE: message` per line, and
//!   `reader.txt`: what the fail-fast `Reader` says about each file.
//!
//! `KVP_BLESS=1 cargo test -p kvp-format --test golden` rewrites the expected files; review
//! the diff before committing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use kvp_format::{
    FileKind, FileName, Reader, Record, ValidateOptions, Writer, check_process, validate_bytes,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn bless() -> bool {
    std::env::var_os("KVP_BLESS").is_some()
}

fn case_dirs(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(data_dir().join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    dirs
}

/// The `KIND_X.KVP` files of a case, sorted, with their parsed names.
fn kvp_files(dir: &Path) -> Vec<(PathBuf, FileName)> {
    let mut files: Vec<(PathBuf, FileName)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = FileName::parse(p.file_name()?.to_str()?).ok()?;
            Some((p, name))
        })
        .collect();
    files.sort_by_key(|(_, n)| *n);
    assert!(
        !files.is_empty(),
        "{} has no KIND_X.KVP file",
        dir.display()
    );
    files
}

/// Problems of every file of a case, plus the REQUEST/PROCESS cross-check.
fn problems(dir: &Path) -> Vec<String> {
    let opts = ValidateOptions::default();
    let files = kvp_files(dir);
    let mut out = Vec::new();
    let mut reports = Vec::new();
    for (path, name) in &files {
        let bytes = fs::read(path).unwrap();
        let report = validate_bytes(name, &name.to_string(), &bytes, &opts);
        out.extend(report.problems.iter().map(ToString::to_string));
        reports.push(report);
    }
    for request in reports.iter().filter(|r| r.name.kind == FileKind::Request) {
        let process = reports
            .iter()
            .find(|r| r.name == request.name.with_kind(FileKind::Process));
        if let Some(p) = process.and_then(|r| r.process.as_ref()) {
            let file = request.name.with_kind(FileKind::Process).to_string();
            let found = check_process(&request.name, request.records, p, &file);
            out.extend(found.iter().map(ToString::to_string));
        }
    }
    out
}

/// The fail-fast reader's verdict on one file.
fn reader_outcome(path: &Path, name: &FileName) -> String {
    let bytes = fs::read(path).unwrap();
    let mut reader = Reader::new(&bytes[..]).with_name(name.to_string());
    let mut rec = Record::new();
    let mut n = 0;
    loop {
        match reader.read_record(&mut rec) {
            Ok(true) => n += 1,
            Ok(false) => return format!("{name}: ok, {n} records"),
            Err(e) => return e.to_string(),
        }
    }
}

fn check_golden(path: &Path, actual: &str) {
    if bless() {
        fs::write(path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with KVP_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "golden file {} differs", path.display());
}

#[test]
fn valid_files_validate_and_match_their_decoded_and_canonical_forms() {
    for dir in case_dirs("valid") {
        assert_eq!(problems(&dir), Vec::<String>::new(), "{}", dir.display());
        for (path, name) in kvp_files(&dir) {
            let bytes = fs::read(&path).unwrap();
            let mut reader = Reader::new(&bytes[..]).with_name(name.to_string());
            let records: Vec<Record> = reader
                .records()
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut decoded = String::new();
            for r in &records {
                let pairs: Vec<(&str, &str)> = r.iter().collect();
                decoded.push_str(&serde_json::to_string(&pairs).unwrap());
                decoded.push('\n');
            }
            let mut w = Writer::new(Vec::new());
            for r in &records {
                w.write_record(r).unwrap();
            }
            let canonical = String::from_utf8(w.into_inner()).unwrap();
            let base = path.file_name().unwrap().to_str().unwrap().to_owned();
            check_golden(&dir.join(format!("{base}.decoded.jsonl")), &decoded);
            check_golden(&dir.join(format!("{base}.canonical")), &canonical);
            // The canonical form is a fixed point.
            let again: Vec<Record> = Reader::new(canonical.as_bytes())
                .records()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(again, records, "{}", path.display());
        }
    }
}

#[test]
fn invalid_files_report_the_expected_problems() {
    for dir in case_dirs("invalid") {
        let found = problems(&dir);
        assert!(!found.is_empty(), "{} has no problem", dir.display());
        let mut text = found.join("\n");
        text.push('\n');
        check_golden(&dir.join("expected.txt"), &text);

        let mut reader_text = String::new();
        for (path, name) in kvp_files(&dir) {
            reader_text.push_str(&reader_outcome(&path, &name));
            reader_text.push('\n');
        }
        check_golden(&dir.join("reader.txt"), &reader_text);
    }
}

#[test]
fn goldens_never_show_secrets() {
    // The sample card number and keys used in the data files must not leak into messages.
    for dir in case_dirs("invalid") {
        let text = fs::read_to_string(dir.join("expected.txt")).unwrap_or_default()
            + &fs::read_to_string(dir.join("reader.txt")).unwrap_or_default();
        for secret in ["4111111111111111", "batch_cred", "mk_0", "mk_1"] {
            assert!(!text.contains(secret), "{}: {secret}", dir.display());
        }
    }
}
