//! Key layout and value encodings of the sled trees (format version 1).
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
//! | `bindings` | account `\0` client_ref | seq u32 BE, index u64 BE, digest 32 bytes |
//! | `results` | account `\0` seq u32 BE index u64 BE | fields: u32 count, then (u32 len, bytes) × 2 per field |
//!
//! Per-transaction values (bindings, results) are a fixed binary layout: they are the bulk of
//! the database, and JSON would double them. Batch records are few and JSON keeps them
//! readable in an export.

use kvp_format::SequenceNumber;

use crate::error::{Error, Result};
use crate::{AccountId, AccountInfo, BatchRecord, BatchState, Binding, Outcome};

/// The layout version written by this code.
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const FORMAT_KEY: &[u8] = b"format_version";

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

pub(crate) fn binding_key(account: &AccountId, client_ref: &str) -> Vec<u8> {
    let mut k = prefix(account);
    k.extend_from_slice(client_ref.as_bytes());
    k
}

pub(crate) fn result_key(account: &AccountId, seq: SequenceNumber, index: u64) -> Vec<u8> {
    let mut k = batch_key(account, seq);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
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

pub(crate) fn encode_binding(b: &Binding) -> [u8; 44] {
    let mut out = [0u8; 44];
    out[0..4].copy_from_slice(&b.sequence.get().to_be_bytes());
    out[4..12].copy_from_slice(&b.index.to_be_bytes());
    out[12..44].copy_from_slice(&b.content_digest);
    out
}

pub(crate) fn decode_binding(bytes: &[u8], what: impl Fn() -> String) -> Result<Binding> {
    if bytes.len() != 44 {
        return Err(corrupt(
            what(),
            format!("{} bytes, expected 44", bytes.len()),
        ));
    }
    let seq = be_u32(bytes, 0).ok_or_else(|| corrupt(what(), "short"))?;
    let index = be_u64(bytes, 4).ok_or_else(|| corrupt(what(), "short"))?;
    let mut content_digest = [0u8; 32];
    content_digest.copy_from_slice(&bytes[12..44]);
    Ok(Binding {
        sequence: SequenceNumber::new(seq).map_err(|e| corrupt(what(), e.to_string()))?,
        index,
        content_digest,
    })
}

pub(crate) fn encode_fields(fields: &[(String, String)]) -> Vec<u8> {
    let len: usize = fields.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    for (k, v) in fields {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

pub(crate) fn decode_fields(
    bytes: &[u8],
    what: impl Fn() -> String,
) -> Result<Vec<(String, String)>> {
    let short = || corrupt(what(), "truncated");
    let count = be_u32(bytes, 0).ok_or_else(short)? as usize;
    let mut at = 4;
    let take = |at: &mut usize| -> Result<String> {
        let len = be_u32(bytes, *at).ok_or_else(short)? as usize;
        let s = bytes.get(*at + 4..*at + 4 + len).ok_or_else(short)?;
        *at += 4 + len;
        String::from_utf8(s.to_vec()).map_err(|e| corrupt(what(), e.to_string()))
    };
    let mut fields = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let k = take(&mut at)?;
        let v = take(&mut at)?;
        fields.push((k, v));
    }
    if at != bytes.len() {
        return Err(corrupt(what(), "trailing bytes"));
    }
    Ok(fields)
}

pub(crate) fn encode_state(s: BatchState) -> u8 {
    match s {
        BatchState::Reserved => 0,
        BatchState::RequestUploaded => 1,
        BatchState::Triggered => 2,
        BatchState::Completed(Outcome::Success) => 3,
        BatchState::Completed(Outcome::GatewayError) => 4,
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
        [3] => BatchState::Completed(Outcome::Success),
        [4] => BatchState::Completed(Outcome::GatewayError),
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
        let b = Binding {
            sequence: seq(17),
            index: 4,
            content_digest: [9; 32],
        };
        assert_eq!(decode_binding(&encode_binding(&b), String::new).unwrap(), b);
        let fields = vec![
            ("xResult".to_string(), "A".to_string()),
            ("xError".into(), String::new()),
        ];
        assert_eq!(
            decode_fields(&encode_fields(&fields), String::new).unwrap(),
            fields
        );
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
            ("binding short", decode_binding(&[0; 43], String::new).map(drop)),
            ("binding seq 0", decode_binding(&[0; 44], String::new).map(drop)),
            ("fields truncated", decode_fields(&[0, 0, 0, 1, 0, 0, 0, 5, b'a'], String::new).map(drop)),
            ("fields trailing", decode_fields(&[0, 0, 0, 0, 1], String::new).map(drop)),
            ("state unknown", decode_state(&[10], String::new).map(drop)),
            ("state empty", decode_state(&[], String::new).map(drop)),
            ("batch json", decode_batch(b"{", String::new).map(drop)),
            ("key no separator", split_key(b"abc", "t").map(drop)),
        ];
        for (name, r) in cases {
            assert!(matches!(r, Err(Error::Corrupt { .. })), "{name}: {r:?}");
        }
    }
}
