//! A batch's blobs (`batch_refs`, `batch_results`) kept in sled as pieces of at most
//! [`PIECE`] bytes, under the batch's key followed by the piece number (u32 BE).
//!
//! Why: sled splits a leaf at 17 entries, whatever their size, and writes a node over a
//! quarter of its segment (128 KiB by default) to a blob file of its own. A leaf of whole
//! blobs (a 5,000-line batch's results are ~300 KB) was such a node every time it was
//! rewritten: a file created, written and fsynced per consolidation, and a page its cache
//! counts by the size of the pointer, so `cache_capacity` never evicted it (a million lines
//! kept ~100 MiB resident). Leaves of pieces stay under 128 KiB: they live in the log and the
//! cache counts them.
//!
//! A cut never falls inside a run of digits, so a card-like number that should never be in a
//! blob is still whole in the files for a search to find.
//!
//! A blob written whole under the batch's key (ledgers written before pieces) is read as one
//! piece; nothing rewrites it.

use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use crate::codec;
use crate::error::{Error, Result};

/// The most bytes one piece holds: 17 of them (a leaf about to split) are well under the
/// 128 KiB at which sled writes a node to a blob file.
pub(crate) const PIECE: usize = 4096;

/// How far a cut moves back so as not to split a run of digits.
const MAX_DIGIT_RUN: usize = 64;

/// The key of piece `n` of the blob under `key`.
fn piece_key(key: &[u8], n: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 4);
    k.extend_from_slice(key);
    k.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    k
}

/// The pieces of `blob`, each with its key: `PIECE` bytes or fewer, never cut inside a run of
/// digits (unless the run is longer than [`MAX_DIGIT_RUN`]). An empty blob is one empty piece.
pub(crate) fn split<'a>(
    key: &'a [u8],
    blob: &'a [u8],
) -> impl Iterator<Item = (Vec<u8>, &'a [u8])> {
    let mut rest = blob;
    let mut n = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut cut = rest.len().min(PIECE);
        if cut < rest.len() {
            let digit = |i: usize| rest.get(i).is_some_and(u8::is_ascii_digit);
            let floor = cut.saturating_sub(MAX_DIGIT_RUN).max(1);
            let mut c = cut;
            while c > floor && digit(c - 1) && digit(c) {
                c -= 1;
            }
            if !(digit(c - 1) && digit(c)) {
                cut = c;
            }
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        done = rest.is_empty();
        let item = (piece_key(key, n), piece);
        n += 1;
        Some(item)
    })
}

/// Writes `blob` under `key` inside a transaction.
pub(crate) fn insert(
    tree: &TransactionalTree,
    key: &[u8],
    blob: &[u8],
) -> std::result::Result<(), UnabortableTransactionError> {
    for (k, piece) in split(key, blob) {
        tree.insert(k, piece)?;
    }
    Ok(())
}

/// Writes `blob` under `key` into a sled batch, removing a whole value under `key` (left by an
/// interrupted migration of older code) that would otherwise be read before the pieces.
pub(crate) fn insert_batch(batch: &mut sled::Batch, key: &[u8], blob: &[u8]) {
    batch.remove(key);
    for (k, piece) in split(key, blob) {
        batch.insert(k, piece);
    }
}

/// Removes, inside a transaction, the keys a [`Blob`] was read from.
pub(crate) fn remove(
    tree: &TransactionalTree,
    blob: &Blob,
) -> std::result::Result<(), UnabortableTransactionError> {
    for k in &blob.keys {
        tree.remove(k.as_ref())?;
    }
    Ok(())
}

/// A blob as read: its batch key, its bytes and the keys of its pieces.
#[derive(Debug)]
pub(crate) struct Blob {
    pub(crate) key: Vec<u8>,
    pub(crate) bytes: bytes::Bytes,
    pub(crate) keys: Vec<sled::IVec>,
}

/// Joins pieces read in key order; one piece is shared, not copied.
fn join(key: Vec<u8>, parts: Vec<(sled::IVec, sled::IVec)>) -> Blob {
    let (keys, values): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let bytes = if values.len() == 1 {
        values
            .into_iter()
            .next()
            .map(codec::bytes)
            .unwrap_or_default()
    } else {
        let mut all = Vec::with_capacity(values.iter().map(|v| v.len()).sum());
        for v in &values {
            all.extend_from_slice(v);
        }
        bytes::Bytes::from(all)
    };
    Blob { key, bytes, keys }
}

/// The blob under `key` (a batch key), if any.
pub(crate) fn get(tree: &sled::Tree, key: &[u8], what: &'static str) -> Result<Option<Blob>> {
    let mut parts = Vec::new();
    for item in tree.scan_prefix(key) {
        parts.push(item.map_err(Error::storage(what))?);
    }
    Ok((!parts.is_empty()).then(|| join(key.to_vec(), parts)))
}

/// Every blob whose batch key starts with `prefix` (an account's prefix, or empty for all),
/// in key order. A batch key is an account, `\0`, and a 4-byte number; a piece's key adds 4.
pub(crate) fn scan(
    tree: &sled::Tree,
    prefix: &[u8],
    what: &'static str,
) -> impl Iterator<Item = Result<Blob>> + use<> {
    let mut items = tree.scan_prefix(prefix).peekable();
    std::iter::from_fn(move || {
        let (k, v) = match items.next()? {
            Ok(kv) => kv,
            Err(e) => return Some(Err(Error::storage(what)(e))),
        };
        let key = match batch_key_of(&k) {
            Some(b) => b.to_vec(),
            None => {
                return Some(Err(codec::corrupt(
                    what,
                    format!("key {} is not a batch's", String::from_utf8_lossy(&k)),
                )));
            }
        };
        let mut parts = vec![(k, v)];
        loop {
            match items.peek() {
                Some(Ok((next, _))) if batch_key_of(next) == Some(key.as_slice()) => {}
                // An error is this blob's as much as the next one's: not a shorter blob.
                Some(Err(_)) => {
                    if let Some(Err(e)) = items.next() {
                        return Some(Err(Error::storage(what)(e)));
                    }
                }
                _ => break,
            }
            match items.next() {
                Some(Ok(kv)) => parts.push(kv),
                Some(Err(e)) => return Some(Err(Error::storage(what)(e))),
                None => break,
            }
        }
        Some(Ok(join(key, parts)))
    })
}

/// The batch key a stored key belongs to: the key itself (a whole blob) or the key without
/// its 4-byte piece number.
fn batch_key_of(k: &[u8]) -> Option<&[u8]> {
    let zero = k.iter().position(|&b| b == 0)?;
    match k.len() - zero - 1 {
        4 => Some(k),
        8 => k.get(..k.len() - 4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(key: &[u8], blob: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut keys = Vec::new();
        let mut all = Vec::new();
        for (k, p) in split(key, blob) {
            assert!(p.len() <= PIECE);
            assert_eq!(&k[..key.len()], key);
            keys.push(k);
            all.extend_from_slice(p);
        }
        (keys, all)
    }

    #[test]
    fn pieces_join_back_in_key_order() {
        let key = b"acct\0\0\0\0\x07";
        for len in [0, 1, PIECE - 1, PIECE, PIECE + 1, 5 * PIECE + 17] {
            let blob: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let (keys, all) = joined(key, &blob);
            assert_eq!(all, blob, "length {len}");
            assert!(keys.is_sorted(), "length {len}");
            assert_eq!(keys.len(), len.div_ceil(PIECE).max(1), "length {len}");
        }
    }

    #[test]
    fn a_run_of_digits_is_never_cut() {
        let key = b"a\0\0\0\0\x01";
        let mut blob = vec![b'x'; PIECE - 8];
        blob.extend_from_slice(b"4111111111111111");
        blob.extend(std::iter::repeat_n(b'y', 3 * PIECE));
        let (_, all) = joined(key, &blob);
        assert_eq!(all, blob);
        let pieces: Vec<&[u8]> = split(key, &blob).map(|(_, p)| p).collect();
        assert!(
            pieces
                .iter()
                .any(|p| p.windows(16).any(|w| w == b"4111111111111111"))
        );
        // A run longer than the look-back is cut (the piece size still holds).
        let digits = vec![b'7'; 3 * PIECE];
        let (_, all) = joined(key, &digits);
        assert_eq!(all, digits);
    }

    #[test]
    fn whole_blobs_and_pieces_are_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let old = b"a\0\0\0\0\x01".to_vec();
        tree.insert(&old, &b"whole"[..]).unwrap();
        let new = b"a\0\0\0\0\x02".to_vec();
        let blob: Vec<u8> = (0..3 * PIECE + 5).map(|i| (i % 251) as u8).collect();
        let mut batch = sled::Batch::default();
        insert_batch(&mut batch, &new, &blob);
        tree.apply_batch(batch).unwrap();
        let other = b"b\0\0\0\0\x01".to_vec();
        tree.insert(&other, &b"b's"[..]).unwrap();

        let got = get(&tree, &old, "t").unwrap().unwrap();
        assert_eq!(&got.bytes[..], b"whole");
        let got = get(&tree, &new, "t").unwrap().unwrap();
        assert_eq!(&got.bytes[..], &blob[..]);
        assert_eq!(got.keys.len(), 4);
        assert!(get(&tree, b"a\0\0\0\0\x03", "t").unwrap().is_none());

        let all: Vec<Blob> = scan(&tree, b"a\0", "t").map(|b| b.unwrap()).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key, old);
        assert_eq!(all[1].key, new);
        assert_eq!(&all[1].bytes[..], &blob[..]);
        assert_eq!(scan(&tree, b"", "t").count(), 3);

        let removed: std::result::Result<(), sled::transaction::TransactionError<()>> = tree
            .transaction(|t| {
                remove(t, &all[1])?;
                Ok(())
            });
        removed.unwrap();
        assert!(get(&tree, &new, "t").unwrap().is_none());
        assert_eq!(scan(&tree, b"", "t").count(), 2);
    }
}
