//! `paybatch validate` end to end: the real binary over real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn validate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

const GOOD: &[u8] =
    b"xIndex=0&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale&xCardNum=4111111111111111\n\
xIndex=1&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale\n";

#[test]
fn the_sample_files_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = validate(
        root,
        &["examples/data/REQUEST_1.KVP", "examples/data/PROCESS_1.KVP"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "paybatch validate: 2 files checked, 0 problems\n"
    );
}

#[test]
fn problems_are_listed_as_file_line_message() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "REQUEST_3.KVP",
        b"\xef\xbb\xbfxIndex=0&xSequenceNumber=3&xKey=k&xCommand=c\n\
xIndex=5&xSequenceNumber=3&xKey=k&xCommand=c&xKey=j\n\n\
xIndex=2&xSequenceNumber=4&xKey=k&xCommand=c&xName=%FF\n",
    );
    let out = validate(dir.path(), &["REQUEST_3.KVP", "-q"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "REQUEST_3.KVP:1: the file starts with a UTF-8 byte order mark (BOM); KVP files must not have one\n\
REQUEST_3.KVP:2: key xKey appears more than once on this line\n\
REQUEST_3.KVP:2: xIndex is 5 but this is row 1 of the file (rows count from 0); expected xIndex=1\n\
REQUEST_3.KVP:3: blank line in the middle of the file (line 4 has content again)\n\
REQUEST_3.KVP:4: the value of key xName is not valid UTF-8 after percent-decoding\n\
REQUEST_3.KVP:4: xSequenceNumber is 4 but the file name says 3\n"
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn request_is_checked_against_the_process_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "REQUEST_3.KVP", GOOD);
    write(
        dir.path(),
        "PROCESS_3.KVP",
        b"xKey=batchsecret&xSubmittedCount=5&xFormat=KVP&xSequenceNumber=3\n",
    );
    #[rustfmt::skip]
    let cases: &[(&[&str], i32, &str)] = &[
        (&["REQUEST_3.KVP"], 1, "PROCESS_3.KVP:1: xSubmittedCount is 5 but REQUEST_3.KVP has 2 lines\n"),
        (&["REQUEST_3.KVP", "PROCESS_3.KVP"], 1, "PROCESS_3.KVP:1: xSubmittedCount is 5 but REQUEST_3.KVP has 2 lines\n"),
        (&["REQUEST_3.KVP", "--no-beside"], 0, ""),
        (&["PROCESS_3.KVP"], 0, ""),
    ];
    for (args, code, want) in cases {
        let out = validate(dir.path(), args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}");
        assert_eq!(text(&out.stdout), *want, "{args:?}");
        assert!(!text(&out.stdout).contains("batchsecret"));
    }
}

#[test]
fn response_is_checked_against_its_request_when_both_are_given() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "REQUEST_3.KVP", GOOD);
    write(
        dir.path(),
        "RESPONSE_3.KVP",
        b"xIndex=5&xSequenceNumber=3&xResult=A\nxIndex=0&xSequenceNumber=3&xResult=D\n",
    );
    let out = validate(dir.path(), &["REQUEST_3.KVP", "RESPONSE_3.KVP"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "RESPONSE_3.KVP: 1 line of REQUEST_3.KVP has no answer: xIndex 1\n\
RESPONSE_3.KVP: answers for lines REQUEST_3.KVP does not have (2 lines): xIndex 5\n"
    );
    let out = validate(dir.path(), &["RESPONSE_3.KVP"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "alone, a RESPONSE has nothing to be checked against"
    );
}

#[test]
fn json_output_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "REQUEST_3.KVP", GOOD);
    write(
        dir.path(),
        "RESPONSE_3.KVP",
        b"xIndex=0&xSequenceNumber=3\nxIndex=0&xSequenceNumber=2\n",
    );
    let out = validate(dir.path(), &["--json", "REQUEST_3.KVP", "RESPONSE_3.KVP"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["valid"], true);
    assert_eq!(files[0]["kind"], "REQUEST");
    assert_eq!(files[0]["lines"], 2);
    assert_eq!(files[1]["total_problems"], 3);
    let p = &files[1]["problems"][0];
    assert_eq!(p["line"], 2);
    assert_eq!(p["key"], "xIndex");
    assert_eq!(
        p["message"],
        "xIndex 0 was already answered on an earlier line"
    );
    assert_eq!(files[1]["problems"][1]["key"], "xSequenceNumber");
    let whole_file = &files[1]["problems"][2];
    assert_eq!(whole_file["line"], serde_json::Value::Null);
    assert_eq!(
        whole_file["message"],
        "1 line of REQUEST_3.KVP has no answer: xIndex 1"
    );
}

#[test]
fn bad_names_unreadable_files_and_options() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "REQUEST_03.KVP", GOOD);
    write(
        dir.path(),
        "REQUEST_4.KVP",
        b"xIndex=0&xSequenceNumber=4&xKey=k&xCommand=c\r\n",
    );
    #[rustfmt::skip]
    let cases: &[(&[&str], i32, &str)] = &[
        (&["REQUEST_03.KVP"], 1, "REQUEST_03.KVP: cannot tell the file kind from its name: invalid file name \"REQUEST_03.KVP\": sequence number \"03\": leading zeros are not allowed\n"),
        (&["REQUEST_4.KVP"], 0, ""),
        (&["--lf-only", "REQUEST_4.KVP"], 1, "REQUEST_4.KVP:1: CRLF line end; only LF is allowed here\n"),
        (&["--max-problems", "1", "--lf-only", "--require-final-newline", "REQUEST_4.KVP"], 1, "REQUEST_4.KVP:1: CRLF line end; only LF is allowed here\n"),
    ];
    for (args, code, want) in cases {
        let out = validate(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}: {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stdout).starts_with(want),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    let out = validate(dir.path(), &["missing/REQUEST_9.KVP", "REQUEST_4.KVP"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "an unreadable file is an I/O failure"
    );
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).starts_with("paybatch: missing/REQUEST_9.KVP: cannot open the file:"),
        "{}",
        text(&out.stderr)
    );
    let out = validate(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "no FILE is a usage error");
}

#[test]
fn problem_limit_reports_the_rest_as_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = "xIndex=9&xSequenceNumber=3&xKey=k&xCommand=c\n".repeat(10);
    write(dir.path(), "REQUEST_3.KVP", data.as_bytes());
    let out = validate(dir.path(), &["--max-problems", "2", "REQUEST_3.KVP"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout.ends_with(
            "REQUEST_3.KVP: ... and 7 more problems (raise --max-problems to see them)\n"
        ),
        "{stdout}"
    );
}

#[test]
fn help_is_complete() {
    let out = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(["validate", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    for needle in [
        "--json",
        "--max-problems",
        "--lf-only",
        "PROCESS_X.KVP",
        "FILE:LINE: message",
        "Exit codes",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}
