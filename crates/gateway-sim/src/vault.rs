//! The token vault: random tokens for cards and bank accounts, and the salt behind every
//! fingerprint the simulator keeps.
//!
//! A token is 32 random hex characters, issued the first time a card (or account) is approved
//! and returned for it ever after; it is not computed from the number, so it cannot be turned
//! back into one. The vault finds a card's token by a salted SHA-256 of the number; the salt is
//! random per state directory (`vault.salt`) and never leaves it. Files: `vault.salt` and
//! `vault.jsonl` (one JSON object per token), both in the state directory.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::jsonl::{self, Appender};

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SourceKind {
    Card,
    Check,
}

/// A token and what the gateway may say about its payment source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VaultEntry {
    /// Salted hash of the number: the lookup key, never the number itself.
    pub hash: String,
    pub token: String,
    pub kind: SourceKind,
    /// `4xxxxxxxxxxx1111` or `xxxxx6789`.
    pub masked: String,
    /// Card brand (`Visa`, ...) or `Check`.
    pub brand: String,
    /// Card expiry MMYY as given when tokenized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<String>,
}

/// A salted SHA-256 (the lookup key of a payment source; hex in `vault.jsonl`).
pub(crate) type Digest32 = [u8; 32];

/// Tokens and the salt.
pub(crate) struct Vault {
    salt: [u8; 32],
    by_hash: HashMap<Digest32, usize>,
    by_token: HashMap<String, usize>,
    entries: Vec<VaultEntry>,
    unsaved: usize,
    path: PathBuf,
    rng: fastrand::Rng,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("tokens", &self.entries.len())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens the vault of `state_dir`, creating the salt on first use.
    ///
    /// # Errors
    /// [`Error::State`] on I/O failure, [`Error::Journal`] on a corrupt vault line.
    pub(crate) fn open(state_dir: &Path) -> Result<Vault> {
        let salt_path = state_dir.join("vault.salt");
        let salt = match std::fs::read(&salt_path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut s = [0u8; 32];
                s.copy_from_slice(&bytes);
                s
            }
            Ok(_) => {
                return Err(Error::state(
                    &salt_path,
                    "read vault salt",
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "not 32 bytes"),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = random_bytes();
                jsonl::write_durably(&salt_path, &s)?;
                s
            }
            Err(e) => return Err(Error::state(&salt_path, "read vault salt", e)),
        };
        let path = state_dir.join("vault.jsonl");
        let mut v = Vault {
            salt,
            by_hash: HashMap::new(),
            by_token: HashMap::new(),
            entries: Vec::new(),
            unsaved: 0,
            path,
            rng: fastrand::Rng::with_seed(u64::from_le_bytes(
                random_bytes()[..8].try_into().unwrap_or([7; 8]),
            )),
        };
        for e in jsonl::read::<VaultEntry>(&v.path)? {
            let Some(hash) = parse_digest(&e.hash) else {
                return Err(Error::state(
                    &v.path,
                    "read vault",
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "an entry's hash is not 64 lower-case hex digits",
                    ),
                ));
            };
            v.insert(hash, e);
        }
        v.unsaved = v.entries.len();
        Ok(v)
    }

    fn insert(&mut self, hash: Digest32, e: VaultEntry) {
        let i = self.entries.len();
        self.by_hash.insert(hash, i);
        self.by_token.insert(e.token.clone(), i);
        self.entries.push(e);
    }

    /// Salted SHA-256 of `parts` (each prefixed with its length, so parts cannot run into
    /// each other).
    pub(crate) fn keyed_digest(&self, parts: &[&str]) -> Digest32 {
        let mut h = Sha256::new();
        h.update(self.salt);
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        h.finalize().into()
    }

    /// [`Vault::keyed_digest`] as hex, truncated to `len` characters.
    pub(crate) fn keyed_hash(&self, parts: &[&str], len: usize) -> String {
        let digest = self.keyed_digest(parts);
        let mut s = hex::encode(&digest[..len.div_ceil(2).min(digest.len())]);
        s.truncate(len);
        s
    }

    /// The opaque id of a merchant key.
    pub(crate) fn merchant_id(&self, key: &str) -> String {
        format!("m-{}", self.keyed_hash(&["merchant", key], 16))
    }

    /// The lookup hash of a card number or a routing+account pair (`vault.jsonl` keeps it as
    /// 64 hex digits).
    pub(crate) fn source_hash(&self, kind: SourceKind, number: &str) -> Digest32 {
        let k = match kind {
            SourceKind::Card => "card",
            SourceKind::Check => "check",
        };
        self.keyed_digest(&[k, number])
    }

    /// The entry of `token` and its position, if this vault issued it.
    pub(crate) fn by_token(&self, token: &str) -> Option<(usize, &VaultEntry)> {
        self.by_token.get(token).map(|&i| (i, &self.entries[i]))
    }

    /// The entry at `i` (a position [`Vault::by_token`] or [`Vault::tokenize`] returned).
    pub(crate) fn entry(&self, i: usize) -> Option<&VaultEntry> {
        self.entries.get(i)
    }

    /// The lookup hash of the entry at `i`.
    pub(crate) fn entry_hash(&self, i: usize) -> Option<Digest32> {
        self.entries.get(i).and_then(|e| parse_digest(&e.hash))
    }

    /// The position of the token for the source with lookup hash `hash`, issuing one if
    /// needed; `describe` gives the new entry's masked number, brand and expiry (called only
    /// then, so a known source costs one lookup and no allocation).
    pub(crate) fn tokenize(
        &mut self,
        hash: &Digest32,
        kind: SourceKind,
        describe: impl FnOnce() -> (String, String, Option<String>),
    ) -> usize {
        if let Some(&i) = self.by_hash.get(hash) {
            return i;
        }
        let (masked, brand, exp) = describe();
        let token = format!("{:032x}", self.rng.u128(..));
        let i = self.entries.len();
        self.insert(
            *hash,
            VaultEntry {
                hash: hex::encode(hash),
                token,
                kind,
                masked,
                brand,
                exp,
            },
        );
        i
    }

    /// Appends tokens issued since the last save and fsyncs.
    ///
    /// # Errors
    /// [`Error::State`] when writing fails.
    pub(crate) fn save(&mut self) -> Result<()> {
        if self.unsaved == self.entries.len() {
            return Ok(());
        }
        Appender::open(&self.path)?.append(&self.entries[self.unsaved..])?;
        self.unsaved = self.entries.len();
        Ok(())
    }
}

/// The digest written as `hex` (64 lower-case hex digits, as [`Vault::tokenize`] writes it).
fn parse_digest(hex: &str) -> Option<Digest32> {
    let mut out = [0u8; 32];
    let ok = hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && hex::decode_to_slice(hex, &mut out).is_ok();
    ok.then_some(out)
}

/// 32 bytes from the OS random source, falling back to a time-seeded generator.
fn random_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    let from_os = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut out));
    if from_os.is_err() {
        let mut rng = fastrand::Rng::new();
        rng.fill(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_random_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::open(dir.path()).unwrap();
        let h = v.source_hash(SourceKind::Card, "4111111111111111");
        assert!(!hex::encode(h).contains("4111111111111111"));
        let visa = || {
            (
                "4xxxxxxxxxxx1111".to_owned(),
                "Visa".to_owned(),
                Some("1230".to_owned()),
            )
        };
        let i1 = v.tokenize(&h, SourceKind::Card, visa);
        let t1 = v.entry(i1).unwrap().token.clone();
        let i2 = v.tokenize(&h, SourceKind::Card, || {
            panic!("known source described again")
        });
        assert_eq!(i1, i2);
        assert_eq!(t1.len(), 32);
        let other = v.source_hash(SourceKind::Card, "5555555555554444");
        let i3 = v.tokenize(&other, SourceKind::Card, || {
            ("5xxxxxxxxxxx4444".into(), "MasterCard".into(), None)
        });
        assert_ne!(t1, v.entry(i3).unwrap().token);
        v.save().unwrap();
        let file = std::fs::read_to_string(dir.path().join("vault.jsonl")).unwrap();
        assert!(!file.contains("4111111111111111"), "{file}");
        let v2 = Vault::open(dir.path()).unwrap();
        assert_eq!(v2.source_hash(SourceKind::Card, "4111111111111111"), h);
        let (i, e) = v2.by_token(&t1).unwrap();
        assert_eq!(e.masked, "4xxxxxxxxxxx1111");
        assert_eq!(v2.entry_hash(i), Some(h));
        // Reopened, the same source finds the same token.
        let mut v2 = v2;
        assert_eq!(v2.tokenize(&h, SourceKind::Card, visa), i);
    }

    #[test]
    fn keyed_hash_is_the_hex_of_keyed_digest() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path()).unwrap();
        let d = v.keyed_digest(&["a", "bc"]);
        assert_eq!(v.keyed_hash(&["a", "bc"], 64), hex::encode(d));
        assert_eq!(v.keyed_hash(&["a", "bc"], 7), hex::encode(d)[..7]);
        assert_ne!(d, v.keyed_digest(&["ab", "c"]));
    }

    #[test]
    fn a_vault_entry_with_a_bad_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Vault::open(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("vault.jsonl"),
            "{\"hash\":\"XYZ\",\"token\":\"t\",\"kind\":\"card\",\"masked\":\"m\",\"brand\":\"Visa\"}\n",
        )
        .unwrap();
        let err = Vault::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("64 lower-case hex"), "{err}");
    }

    #[test]
    fn salts_differ_between_state_dirs() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let va = Vault::open(a.path()).unwrap();
        let vb = Vault::open(b.path()).unwrap();
        assert_ne!(va.merchant_id("k"), vb.merchant_id("k"));
        assert_eq!(
            va.merchant_id("k"),
            Vault::open(a.path()).unwrap().merchant_id("k")
        );
    }
}
