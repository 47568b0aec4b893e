//! Opening a ledger of an older layout: format version 1 kept one sled entry per transaction
//! (tree `bindings`: account `\0` client_ref → seq u32 BE, index u64 BE, digest 32 bytes; tree
//! `results`: account `\0` seq u32 BE index u64 BE → u32 BE field count, then u32 BE length +
//! bytes for each name and value). Version 2 keeps one blob of references and one of results
//! per batch (`codec.rs`); version 3 keeps the same blobs in pieces (`pieces.rs`), and reads a
//! version-2 blob as one piece, so 2 → 3 only writes the new version.
//!
//! The migration runs when the ledger is opened, before anything else can read it, and is
//! safe to interrupt: (1) every batch's blobs are written from the old trees and made durable,
//! (2) the version becomes 2, durably, (3) the old trees are dropped. A crash before (2)
//! leaves a version-1 ledger whose old trees are intact, and the next open starts over
//! (writing the same blobs again); a crash after (2) leaves old trees that the next open drops.
//!
//! A version-1 binding names only the last batch a reference was bound to: a line whose
//! reference a later batch took over (its own batch abandoned or rejected) has lost it. Such a
//! line is stored without a reference ([`crate::LineRef::client_ref`] is `None`); it is
//! released, so nothing asks for it, and the later batch's binding is what the index finds.

use std::collections::HashMap;

use kvp_format::SequenceNumber;

use crate::codec::{self, FORMAT_KEY, FORMAT_VERSION, corrupt};
use crate::crash::crash_point;
use crate::error::{Error, Result};
use crate::{AccountId, Binding, Ledger, StoredResult};

/// The older format versions this code migrates.
pub(crate) const FROM: &[u32] = &[1, 2];

/// One account's version-1 bindings by batch number: (line, reference, content digest).
type BoundByBatch = HashMap<u32, Vec<(u64, String, [u8; 32])>>;

/// The trees of version 1 that version 2 no longer has.
const OLD_TREES: [&str; 2] = ["bindings", "results"];

impl Ledger {
    /// Migrates a ledger of format version `from` to this code's layout.
    pub(crate) fn migrate(&self, from: u32) -> Result<()> {
        if from == 2 {
            // Version 2's whole blobs are read as blobs of one piece: only the version changes,
            // so that older code refuses the pieces this code writes from now on.
            self.meta()?
                .insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                .map_err(Error::storage("writing the format version"))?;
            self.durable("open")?;
            tracing::info!(path = %self.path().display(), from, to = FORMAT_VERSION, "ledger migrated");
            return Ok(());
        }
        if from != 1 {
            return Err(Error::UnsupportedFormat {
                path: self.path().to_path_buf(),
                found: from,
                supported: FORMAT_VERSION,
            });
        }
        let started = std::time::Instant::now();
        let bindings = self.tree(OLD_TREES[0])?;
        let results = self.tree(OLD_TREES[1])?;
        let mut batches = 0u64;
        let mut account: Option<AccountId> = None;
        let mut bound: BoundByBatch = HashMap::new();
        let mut refs_batch = sled::Batch::default();
        let mut results_batch = sled::Batch::default();
        for item in self.batches.iter() {
            let (k, v) = item.map_err(Error::storage("migrating: reading batches"))?;
            let (owner, rest) = codec::split_key(&k, "batches")?;
            let seq = codec::seq_from_suffix(&rest, "batches")?;
            if account.as_ref() != Some(&owner) {
                if let Some(done) = &account {
                    leftover(done, &bound)?;
                }
                self.write_batches(&mut refs_batch, &mut results_batch)?;
                bound = v1::bindings_by_batch(&bindings, &owner)?;
                account = Some(owner.clone());
            }
            let what = || format!("batch {seq} of account {owner}");
            let record = codec::decode_batch(&v, what)?;
            let n = usize::try_from(record.line_count)
                .ok()
                .filter(|n| u32::try_from(*n).is_ok())
                .ok_or_else(|| corrupt(what(), "too many lines"))?;
            let mut lines: Vec<Option<(String, [u8; 32])>> = vec![None; n];
            for (index, client_ref, digest) in bound.remove(&seq.get()).unwrap_or_default() {
                let slot = usize::try_from(index)
                    .ok()
                    .and_then(|i| lines.get_mut(i))
                    .ok_or_else(|| corrupt(what(), "a binding past the batch's lines"))?;
                *slot = Some((client_ref, digest));
            }
            let blob = crate::refs::encode(
                n,
                lines
                    .iter()
                    .map(|l| l.as_ref().map(|(r, d)| (r.as_str(), d))),
            );
            crate::pieces::insert_batch(&mut refs_batch, &k, &blob);
            let stored = v1::results_of(&results, &owner, seq)?;
            if !stored.is_empty() {
                crate::pieces::insert_batch(
                    &mut results_batch,
                    &k,
                    &crate::results::encode(&stored),
                );
            }
            batches += 1;
        }
        if let Some(done) = &account {
            leftover(done, &bound)?;
        } else if !bindings.is_empty() || !results.is_empty() {
            return Err(corrupt("ledger", "bindings or results without any batch"));
        }
        self.write_batches(&mut refs_batch, &mut results_batch)?;
        self.durable("open")?;
        crash_point("migrate.after_write");
        self.meta()?
            .insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
            .map_err(Error::storage("writing the format version"))?;
        self.durable("open")?;
        crash_point("migrate.after_version");
        tracing::info!(path = %self.path().display(), from, to = FORMAT_VERSION, batches, elapsed_ms = started.elapsed().as_millis() as u64, "ledger migrated");
        self.finish_migration()
    }

    /// Drops the trees of an older layout left by a migration that a crash interrupted after
    /// the new version was written.
    pub(crate) fn finish_migration(&self) -> Result<()> {
        let names = self.db.tree_names();
        let mut dropped = false;
        for old in OLD_TREES {
            if names.iter().any(|n| n.as_ref() == old.as_bytes()) {
                self.db
                    .drop_tree(old)
                    .map_err(Error::storage("dropping a tree of the old layout"))?;
                dropped = true;
            }
        }
        if dropped {
            self.durable("open")?;
            crash_point("migrate.after_drop");
        }
        Ok(())
    }

    fn tree(&self, name: &str) -> Result<sled::Tree> {
        self.db
            .open_tree(name)
            .map_err(Error::storage("opening a tree"))
    }

    fn write_batches(&self, refs: &mut sled::Batch, results: &mut sled::Batch) -> Result<()> {
        self.batch_refs
            .apply_batch(std::mem::take(refs))
            .map_err(Error::storage("migrating: writing references"))?;
        self.batch_results
            .apply_batch(std::mem::take(results))
            .map_err(Error::storage("migrating: writing results"))
    }
}

/// Bindings of an account to batches it does not have: a damaged ledger.
fn leftover(account: &AccountId, bound: &BoundByBatch) -> Result<()> {
    match bound.keys().min() {
        Some(seq) => Err(corrupt(
            format!("bindings of account {account}"),
            format!("bound to batch {seq}, which does not exist"),
        )),
        None => Ok(()),
    }
}

/// The value encodings of format version 1.
pub(crate) mod v1 {
    use super::*;

    pub(crate) fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(b))
    }

    /// Every binding of one account, by batch number.
    pub(crate) fn bindings_by_batch(
        tree: &sled::Tree,
        account: &AccountId,
    ) -> Result<BoundByBatch> {
        let mut out: HashMap<u32, Vec<_>> = HashMap::new();
        for item in tree.scan_prefix(codec::prefix(account)) {
            let (k, v) = item.map_err(Error::storage("migrating: reading bindings"))?;
            let (_, rest) = codec::split_key(&k, "bindings")?;
            let client_ref = String::from_utf8(rest).map_err(|e| Error::Corrupt {
                what: format!("binding key of account {account}"),
                detail: e.to_string(),
            })?;
            let b = decode_binding(&v, || format!("binding {client_ref:?} of {account}"))?;
            out.entry(b.sequence.get())
                .or_default()
                .push((b.index, client_ref, b.content_digest));
        }
        Ok(out)
    }

    /// The results of one batch, by index.
    pub(crate) fn results_of(
        tree: &sled::Tree,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<Vec<StoredResult>> {
        let mut out = Vec::new();
        for item in tree.scan_prefix(codec::batch_key(account, seq)) {
            let (k, v) = item.map_err(Error::storage("migrating: reading results"))?;
            let what = || format!("result of batch {seq} of account {account}");
            let index = k
                .len()
                .checked_sub(8)
                .and_then(|at| be_u64(&k, at))
                .ok_or_else(|| corrupt(what(), "short key"))?;
            out.push(StoredResult {
                index,
                fields: decode_fields(&v, what)?.into_iter().collect(),
            });
        }
        Ok(out)
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

    #[cfg(test)]
    pub(crate) fn encode_binding(b: &Binding) -> [u8; 44] {
        let mut out = [0u8; 44];
        out[0..4].copy_from_slice(&b.sequence.get().to_be_bytes());
        out[4..12].copy_from_slice(&b.index.to_be_bytes());
        out[12..44].copy_from_slice(&b.content_digest);
        out
    }

    #[cfg(test)]
    pub(crate) fn encode_fields(fields: &[(String, String)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        for (k, v) in fields {
            for s in [k, v] {
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::v1::*;
    use super::*;

    fn seq(n: u32) -> SequenceNumber {
        SequenceNumber::new(n).unwrap()
    }

    #[test]
    fn version_1_values_decode() {
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
    }

    #[test]
    fn damaged_version_1_values_are_corrupt_errors() {
        #[rustfmt::skip]
        let cases: &[(&str, Result<()>)] = &[
            ("binding short", decode_binding(&[0; 43], String::new).map(drop)),
            ("binding seq 0", decode_binding(&[0; 44], String::new).map(drop)),
            ("fields truncated", decode_fields(&[0, 0, 0, 1, 0, 0, 0, 5, b'a'], String::new).map(drop)),
            ("fields trailing", decode_fields(&[0, 0, 0, 0, 1], String::new).map(drop)),
        ];
        for (name, r) in cases {
            assert!(matches!(r, Err(Error::Corrupt { .. })), "{name}: {r:?}");
        }
    }
}
