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

/// Tokens and the salt.
pub(crate) struct Vault {
    salt: [u8; 32],
    by_hash: HashMap<String, usize>,
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
            v.insert(e);
        }
        v.unsaved = v.entries.len();
        Ok(v)
    }

    fn insert(&mut self, e: VaultEntry) {
        let i = self.entries.len();
        self.by_hash.insert(e.hash.clone(), i);
        self.by_token.insert(e.token.clone(), i);
        self.entries.push(e);
    }

    /// Salted SHA-256 of `parts`, hex, truncated to `len` characters.
    pub(crate) fn keyed_hash(&self, parts: &[&str], len: usize) -> String {
        let mut h = Sha256::new();
        h.update(self.salt);
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        let digest = h.finalize();
        let mut s = hex::encode(&digest[..len.div_ceil(2).min(digest.len())]);
        s.truncate(len);
        s
    }

    /// The opaque id of a merchant key.
    pub(crate) fn merchant_id(&self, key: &str) -> String {
        format!("m-{}", self.keyed_hash(&["merchant", key], 16))
    }

    /// The lookup hash of a card number or a routing+account pair.
    pub(crate) fn source_hash(&self, kind: SourceKind, number: &str) -> String {
        let k = match kind {
            SourceKind::Card => "card",
            SourceKind::Check => "check",
        };
        self.keyed_hash(&[k, number], 64)
    }

    /// The entry of `token`, if this vault issued it.
    pub(crate) fn by_token(&self, token: &str) -> Option<&VaultEntry> {
        self.by_token.get(token).map(|&i| &self.entries[i])
    }

    /// The token for the source with lookup hash `hash`, issuing one if needed.
    pub(crate) fn tokenize(
        &mut self,
        hash: String,
        kind: SourceKind,
        masked: String,
        brand: &str,
        exp: Option<&str>,
    ) -> String {
        if let Some(&i) = self.by_hash.get(&hash) {
            return self.entries[i].token.clone();
        }
        let token = format!("{:032x}", self.rng.u128(..));
        self.insert(VaultEntry {
            hash,
            token: token.clone(),
            kind,
            masked,
            brand: brand.to_owned(),
            exp: exp.map(str::to_owned),
        });
        token
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
        assert!(!h.contains("4111111111111111"));
        let t1 = v.tokenize(
            h.clone(),
            SourceKind::Card,
            "4xxxxxxxxxxx1111".into(),
            "Visa",
            Some("1230"),
        );
        let t2 = v.tokenize(
            h.clone(),
            SourceKind::Card,
            "4xxxxxxxxxxx1111".into(),
            "Visa",
            Some("1230"),
        );
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 32);
        let other = v.source_hash(SourceKind::Card, "5555555555554444");
        let t3 = v.tokenize(
            other,
            SourceKind::Card,
            "5xxxxxxxxxxx4444".into(),
            "MasterCard",
            None,
        );
        assert_ne!(t1, t3);
        v.save().unwrap();
        let file = std::fs::read_to_string(dir.path().join("vault.jsonl")).unwrap();
        assert!(!file.contains("4111111111111111"), "{file}");
        let v2 = Vault::open(dir.path()).unwrap();
        assert_eq!(v2.source_hash(SourceKind::Card, "4111111111111111"), h);
        assert_eq!(v2.by_token(&t1).unwrap().masked, "4xxxxxxxxxxx1111");
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
