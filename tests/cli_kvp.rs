//! `paybatch kvp decode|encode` end to end: the real binary, real files and pipes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn paybatch(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn decode_table() {
    #[rustfmt::skip]
    let cases: &[(&[u8], &str)] = &[
        (b"a=1&b=2\n", "[[\"a\",\"1\"],[\"b\",\"2\"]]\n"),
        (b"xName=Jo+Smith&x=%41%zz\r\n", "[[\"xName\",\"Jo Smith\"],[\"x\",\"A%zz\"]]\n"),
        (b"a=1&a=2&&b", "[[\"a\",\"1\"],[\"a\",\"2\"],[\"b\",\"\"]]\n"),
        (b"\nk=%C3%A9\n", "[]\n[[\"k\",\"é\"]]\n"),
        (b"", ""),
    ];
    for (input, want) in cases {
        let out = paybatch(&["kvp", "decode"], input);
        assert!(out.status.success(), "{input:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), *want, "{input:?}");
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    }
}

#[test]
fn decode_bad_utf8_fails_naming_line_and_key_unless_lossy() {
    let input = b"a=1\nxIndex=1&xName=Jo%FF\n";
    let out = paybatch(&["kvp", "decode"], input);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "paybatch: <stdin>:2: the value of key xName is not valid UTF-8 after percent-decoding \
         (use --lossy to replace it with U+FFFD)\n"
    );
    let out = paybatch(&["kvp", "decode", "--lossy"], input);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "[[\"a\",\"1\"]]\n[[\"xIndex\",\"1\"],[\"xName\",\"Jo\u{FFFD}\"]]\n"
    );
}

#[test]
fn encode_table() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("[[\"a\",\"1\"],[\"b\",\"x y+z\"]]\n", "a=1&b=x%20y%2Bz\n"),
        ("[[\"xName\",\"Zoë O'Brien & Co\"]]", "xName=Zo%C3%AB%20O%27Brien%20%26%20Co\n"),
        ("\n  \n[[\"k\",\"~-._*\"]]\n", "k=~-._%2A\n"),
        ("[]\n", "\n"),
    ];
    for (input, want) in cases {
        let out = paybatch(&["kvp", "encode"], input.as_bytes());
        assert!(out.status.success(), "{input:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), *want, "{input:?}");
    }
}

#[test]
fn encode_rejects_non_pairs_without_echoing_values() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("[[\"xCardNum\",4111111111111111]]\n", "paybatch: <stdin>:1: column"),
        ("[[\"a\",\"1\"]]\n{\"xCardNum\":\"4111111111111111\"}\n", "paybatch: <stdin>:2: column"),
        ("[[\"xCardNum\",\"4111111111111111\"\n", "is not valid JSON"),
    ];
    for (input, want) in cases {
        let out = paybatch(&["kvp", "encode"], input.as_bytes());
        assert_eq!(out.status.code(), Some(1), "{input:?}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{input:?}: {err}");
        assert!(!err.contains("4111111111111111"), "{err}");
    }
}

#[test]
fn file_round_trip_is_byte_identical_for_canonical_input() {
    let dir = tempfile::tempdir().unwrap();
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/REQUEST_1.KVP");
    let decoded = paybatch(&["kvp", "decode", sample.to_str().unwrap()], b"");
    assert!(decoded.status.success(), "{}", text(&decoded.stderr));
    let json = dir.path().join("lines.jsonl");
    std::fs::write(&json, &decoded.stdout).unwrap();
    let encoded = paybatch(&["kvp", "encode", json.to_str().unwrap()], b"");
    assert!(encoded.status.success(), "{}", text(&encoded.stderr));
    assert_eq!(encoded.stdout, std::fs::read(&sample).unwrap());
}

#[test]
fn missing_file_is_an_io_error() {
    let out = paybatch(&["kvp", "decode", "/nonexistent/REQUEST_1.KVP"], b"");
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("cannot open /nonexistent/REQUEST_1.KVP"));
}

#[test]
fn help_documents_the_rules_and_exit_codes() {
    for sub in ["decode", "encode"] {
        let out = paybatch(&["kvp", sub, "--help"], b"");
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("Exit codes"), "{help}");
        assert!(help.contains("percent") || help.contains("%XX"), "{help}");
    }
}
