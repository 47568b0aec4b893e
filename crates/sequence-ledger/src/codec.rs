//! Key layout and value encodings of the sled trees (format version 3).
//!
//! Trees and keys (`\0` separates the account id, which cannot contain it; numbers are
//! big-endian so a prefix scan returns batches in number order):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `format_version` | u32 BE |
//! | `accounts` | account | [`AccountInfo`]: high water, floor, triggered: 3 × u32 BE (0 = none) |
//! | `batches` | account `\0` seq u32 BE | [`BatchRecord`] as JSON |
//! | `open` | account `\0` seq u32 BE | state code (1 byte) of every batch not final |
//! | `batch_refs` | account `\0` seq u32 BE, piece u32 BE | the batch's lines: references and content digests (`refs.rs`), in pieces of ≤ 4 KiB (`pieces.rs`) |
//! | `batch_results` | account `\0` seq u32 BE, piece u32 BE | the batch's per-line results (`results.rs`), once collected, in pieces |
//!
//! One record, one blob of references and one blob of results per batch — the three columns of
//! one row of a `batches` table in a database — instead of one entry per transaction: per
//! transaction the ledger keeps its reference, its 32-byte content digest and its result
//! fields, nothing else. Batch records are few and JSON keeps them readable in an export.
//! The idempotency index (reference → batch, line, digest) is built in memory from the
//! `batch_refs` blobs (`index.rs`).
//!
//! Format version 1 kept one sled entry per transaction (`bindings`: account `\0` client_ref →
//! binding; `results`: account `\0` seq index → fields); `migrate.rs` turns it into this layout
//! when a ledger is opened.

use kvp_format::SequenceNumber;

use crate::error::{Error, Result};
use crate::{AccountId, AccountInfo, BatchOutcome, BatchRecord, BatchState};

/// The layout version written by this code. Version 3 keeps the blobs of version 2 in pieces
/// (`pieces.rs`); code of version 2 would find no results under a batch's key, so it must
/// refuse such a ledger rather than read it.
pub(crate) const FORMAT_VERSION: u32 = 3;
/// The version of `Ledger::export`'s JSON lines (the same for every layout and backend).
pub(crate) const EXPORT_VERSION: u32 = 2;
pub(crate) const FORMAT_KEY: &[u8] = b"format_version";

/// A sled value as the blob readers take it, without a copy (the value's buffer is shared).
pub(crate) fn bytes(v: sled::IVec) -> bytes::Bytes {
    bytes::Bytes::from_owner(v)
}

pub(crate) fn prefix(account: &AccountId) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.as_str().len() + 1);
    k.extend_from_slice(account.as_str().as_bytes());
    k.push(0);
    k
}

pub(crate) fn batch_key(account: &AccountId, seq: SequenceNumber) -> Vec<u8> {
    let mut k = prefix(account);
    k.extend_from_slice(&seq.get().to_be_bytes());
    k
}

/// Appends `v` as an unsigned LEB128 varint (1 byte below 128).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A forward reader over a blob; every method answers `None` past the end or on a malformed
/// value, which callers turn into [`Error::Corrupt`].
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    pub(crate) fn at(bytes: &'a [u8], at: usize) -> Self {
        Cursor { bytes, at }
    }

    pub(crate) fn position(&self) -> usize {
        self.at
    }

    pub(crate) fn is_done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A varint that must fit a `usize` (a length or a count).
    pub(crate) fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    /// A varint length followed by that many bytes of UTF-8.
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn seq_or_none(n: u32, what: &str) -> Result<Option<SequenceNumber>> {
    if n == 0 {
        return Ok(None);
    }
    SequenceNumber::new(n)
        .map(Some)
        .map_err(|e| corrupt(what, e.to_string()))
}

/// Splits a key of the form `account \0 rest`.
pub(crate) fn split_key(key: &[u8], tree: &str) -> Result<(AccountId, Vec<u8>)> {
    let what = || format!("{tree} key {}", String::from_utf8_lossy(key));
    let sep = key
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| corrupt(what(), "no separator"))?;
    let id = std::str::from_utf8(&key[..sep]).map_err(|e| corrupt(what(), e.to_string()))?;
    let account = AccountId::new(id).map_err(|e| corrupt(what(), e.to_string()))?;
    Ok((account, key[sep + 1..].to_vec()))
}

pub(crate) fn seq_from_suffix(rest: &[u8], tree: &str) -> Result<SequenceNumber> {
    let n = be_u32(rest, 0).ok_or_else(|| corrupt(tree, "short sequence in key"))?;
    SequenceNumber::new(n).map_err(|e| corrupt(tree, e.to_string()))
}

pub(crate) fn encode_account(info: &AccountInfo) -> [u8; 12] {
    let n = |s: Option<SequenceNumber>| s.map_or(0, SequenceNumber::get).to_be_bytes();
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&n(info.high_water));
    out[4..8].copy_from_slice(&n(info.floor));
    out[8..12].copy_from_slice(&n(info.triggered));
    out
}

pub(crate) fn decode_account(bytes: &[u8], account: &AccountId) -> Result<AccountInfo> {
    let what = || format!("account {account}");
    if bytes.len() != 12 {
        return Err(corrupt(
            what(),
            format!("{} bytes, expected 12", bytes.len()),
        ));
    }
    let field = |at| be_u32(bytes, at).ok_or_else(|| corrupt(what(), "short"));
    Ok(AccountInfo {
        high_water: seq_or_none(field(0)?, &what())?,
        floor: seq_or_none(field(4)?, &what())?,
        triggered: seq_or_none(field(8)?, &what())?,
    })
}

pub(crate) fn encode_state(s: BatchState) -> u8 {
    match s {
        BatchState::Reserved => 0,
        BatchState::RequestUploaded => 1,
        BatchState::Triggered => 2,
        BatchState::Completed(BatchOutcome::Success) => 3,
        BatchState::Completed(BatchOutcome::GatewayError) => 4,
        BatchState::Collected => 5,
        BatchState::Cleaned => 6,
        BatchState::Stuck => 7,
        BatchState::Abandoned => 8,
        BatchState::MarkedUnknown => 9,
    }
}

pub(crate) fn decode_state(bytes: &[u8], what: impl Fn() -> String) -> Result<BatchState> {
    Ok(match bytes {
        [0] => BatchState::Reserved,
        [1] => BatchState::RequestUploaded,
        [2] => BatchState::Triggered,
        [3] => BatchState::Completed(BatchOutcome::Success),
        [4] => BatchState::Completed(BatchOutcome::GatewayError),
        [5] => BatchState::Collected,
        [6] => BatchState::Cleaned,
        [7] => BatchState::Stuck,
        [8] => BatchState::Abandoned,
        [9] => BatchState::MarkedUnknown,
        other => return Err(corrupt(what(), format!("unknown state code {other:?}"))),
    })
}

pub(crate) fn encode_batch(record: &BatchRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| {
        corrupt(
            format!("batch {} of account {}", record.sequence, record.account),
            e.to_string(),
        )
    })
}

pub(crate) fn decode_batch(bytes: &[u8], what: impl Fn() -> String) -> Result<BatchRecord> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what(), e.to_string()))
}

/// serde for `[u8; 32]` as 64 lowercase hex digits.
pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SequenceNumber {
        SequenceNumber::new(n).unwrap()
    }

    #[test]
    fn keys_sort_by_account_then_number() {
        let a = AccountId::new("a").unwrap();
        let ab = AccountId::new("a.b").unwrap();
        let mut keys = [
            batch_key(&ab, seq(1)),
            batch_key(&a, seq(256)),
            batch_key(&a, seq(2)),
        ];
        keys.sort();
        assert_eq!(keys[0], batch_key(&a, seq(2)));
        assert_eq!(keys[1], batch_key(&a, seq(256)));
        assert!(!batch_key(&ab, seq(1)).starts_with(&prefix(&a)));
    }

    #[test]
    fn values_round_trip() {
        let info = AccountInfo {
            high_water: Some(seq(7)),
            floor: None,
            triggered: Some(seq(999_999_999)),
        };
        let acc = AccountId::new("x").unwrap();
        assert_eq!(decode_account(&encode_account(&info), &acc).unwrap(), info);
        for code in 0..=9u8 {
            assert_eq!(
                encode_state(decode_state(&[code], String::new).unwrap()),
                code
            );
        }
    }

    #[test]
    fn a_batch_record_without_complete_fields_decodes() {
        // As format version 1 wrote it before `complete_fields` existed.
        let old = r#"{"account":"acme","sequence":3,"state":{"Completed":"Success"},"request_sha256":"0000000000000000000000000000000000000000000000000000000000000000","request_len":10,"line_count":1,"transitions":[{"state":"Reserved","at_unix_ms":1}],"verdict":{"outcome":"Success","status":"Success","error":null,"processed_count":1},"note":null}"#;
        let rec = decode_batch(old.as_bytes(), String::new).unwrap();
        assert_eq!(rec.sequence, seq(3));
        assert_eq!(rec.verdict.as_ref().unwrap().processed_count, Some(1));
        assert_eq!(rec.complete_fields, None);
        assert_eq!(rec.external_reference, None);
        assert_eq!(rec.gateway_batch_id, None);
        // And a record with them round-trips.
        let mut with = rec.clone();
        with.complete_fields = Some(crate::CompleteFields {
            result: Some("A".into()),
            extra: vec![("xFormat".into(), "KVP".into())],
        });
        with.external_reference = Some("pb-acme-3".into());
        with.gateway_batch_id = Some("1234567890".into());
        let again = decode_batch(&encode_batch(&with).unwrap(), String::new).unwrap();
        assert_eq!(again, with);
        // Missing parts of `complete_fields` default too.
        let partial = old.replace(r#""note":null"#, r#""note":null,"complete_fields":{}"#);
        let rec = decode_batch(partial.as_bytes(), String::new).unwrap();
        assert_eq!(rec.complete_fields, Some(crate::CompleteFields::default()));
    }

    #[test]
    fn damaged_values_are_corrupt_errors() {
        let acc = AccountId::new("x").unwrap();
        #[rustfmt::skip]
        let cases: &[(&str, Result<()>)] = &[
            ("account short", decode_account(&[0; 11], &acc).map(drop)),
            ("account seq too big", decode_account(&[0xff; 12], &acc).map(drop)),
            ("state unknown", decode_state(&[10], String::new).map(drop)),
            ("state empty", decode_state(&[], String::new).map(drop)),
            ("batch json", decode_batch(b"{", String::new).map(drop)),
            ("key no separator", split_key(b"abc", "t").map(drop)),
        ];
        for (name, r) in cases {
            assert!(matches!(r, Err(Error::Corrupt { .. })), "{name}: {r:?}");
        }
    }

    #[test]
    fn varints_round_trip_and_refuse_garbage() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut c = Cursor::new(&out);
            assert_eq!(c.varint(), Some(v), "{v}");
            assert!(c.is_done());
        }
        #[rustfmt::skip]
        let bad: &[(&str, &[u8])] = &[
            ("empty", &[]),
            ("unterminated", &[0x80, 0x80]),
            ("past 64 bits", &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            ("eleven bytes", &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
        ];
        for (name, bytes) in bad {
            assert_eq!(Cursor::new(bytes).varint(), None, "{name}");
        }
        let mut c = Cursor::new(&[2, b'h', b'i', 5, b'x']);
        assert_eq!(c.str(), Some("hi"));
        assert_eq!(c.str(), None, "shorter than its length");
        assert_eq!(Cursor::new(&[2, 0xc3, 0x28]).str(), None, "not UTF-8");
    }
}

/// Times as RFC 3339 text, UTC, to the millisecond (leases in status output and exports).
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::Serializer;

    pub(crate) fn format(t: SystemTime) -> String {
        humantime::format_rfc3339_millis(t).to_string()
    }

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }
}
