//! Property tests: codec round trips, canonical encoding, the fuzz property over random
//! bytes and over the crashers corpus in `tests/data/crashers/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod roundtrip;
}

use std::borrow::Cow;

use kvp_format::{Reader, Record, Writer, decode_line, encode_pairs};
use proptest::prelude::*;

/// The rule written out the slowest, most obvious way: unreserved bytes as themselves,
/// every other byte as `%XX` with upper-case hex.
fn reference_encode(pairs: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_pairs(pairs.iter().map(|(k, v)| (k, v)), &mut out);
    out
}

fn owned(pairs: Vec<(Cow<'_, str>, Cow<'_, str>)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Bytes that exercise the codec's corners more often than uniform bytes would.
fn kvp_ish() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: &[u8] = b"ax=&%+2F0c3\r\n\xef\xbb\xbf\xff\x00 ";
    proptest::collection::vec(proptest::sample::select(alphabet), 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decode_inverts_encode(pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..12)) {
        let line = encode(&pairs);
        prop_assert_eq!(owned(decode_line(&line).unwrap()), pairs.clone());
    }

    #[test]
    fn encode_is_stable_and_canonical(pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..12)) {
        let line = encode(&pairs);
        prop_assert_eq!(String::from_utf8(line.clone()).unwrap(), reference_encode(&pairs));
        let again = encode(&owned(decode_line(&line).unwrap()));
        prop_assert_eq!(again, line);
    }

    #[test]
    fn decode_agrees_with_serde_urlencoded(line in "[a-zA-Z0-9=&%+. é]{0,80}") {
        // form_urlencoded (under serde_urlencoded) is a WHATWG parser; where our decoder
        // accepts a line, both must give the same pairs.
        if let Ok(ours) = decode_line(line.as_bytes()) {
            let theirs: Vec<(String, String)> = serde_urlencoded::from_str(&line).unwrap();
            prop_assert_eq!(owned(ours), theirs);
        }
    }

    #[test]
    fn files_round_trip(records in proptest::collection::vec(
        // Unique keys per line: readers reject a repeated key.
        proptest::collection::btree_map(any::<String>(), any::<String>(), 1..6), 0..20)) {
        let mut w = Writer::new(Vec::new());
        for r in &records {
            w.write_pairs(r.iter()).unwrap();
        }
        let bytes = w.into_inner();
        prop_assert!(bytes.is_empty() || bytes.ends_with(b"\n"));
        prop_assert!(!bytes.windows(2).any(|w| w == b"\r\n"));
        let back: Vec<Record> = Reader::new(&bytes[..]).records().collect::<Result<_, _>>().unwrap();
        let want: Vec<Record> = records.iter().map(|r| r.iter().collect()).collect();
        prop_assert_eq!(back, want);
    }

    #[test]
    fn fuzz_property_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        support::roundtrip::check(&data);
    }

    #[test]
    fn fuzz_property_on_kvp_like_bytes(data in kvp_ish()) {
        support::roundtrip::check(&data);
    }
}

#[test]
fn crashers_corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/crashers");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| support::roundtrip::check(&data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    assert!(n >= 10, "the corpus has only {n} files");
    // Inputs too large to keep as files.
    let long_line = [
        b"xIndex=0&xName=".as_slice(),
        &b"%41+".repeat(250_000),
        b"\n",
    ]
    .concat();
    support::roundtrip::check(&long_line);
    let many_keys = (0..5_000)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join("&");
    support::roundtrip::check(many_keys.as_bytes());
}
