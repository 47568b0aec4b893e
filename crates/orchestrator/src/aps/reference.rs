//! `batch_reference`: the client's unique name for one uploaded file.
//!
//! The ledger already makes (account, sequence number) durable and unique before anything is
//! uploaded, so the reference is derived from it instead of being stored separately:
//! `PB<sequence>-<8 hex>` where the hex is the start of SHA-256 over the account, the sequence
//! number and the SHA-256 of the batch file. At most 2 + 9 + 1 + 8 = 20 characters.
//!
//! Why the file digest takes part: after a crash the same batch is re-uploaded with the same
//! bytes, so it gets the same reference and the service's "reference already exists" (146)
//! means exactly "this file is already there". A fresh ledger that hands out number 1 again
//! for different transactions gets a different reference, so an old batch is never mistaken
//! for a new one.

use std::fmt;

use sha2::{Digest, Sha256};

use super::error::{Error, Result};

/// A checked `batch_reference`: 1–20 characters from `[A-Za-z0-9_./-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchReference(String);

impl BatchReference {
    /// The longest reference the service takes.
    pub const MAX_LEN: usize = 20;

    /// Checks a reference given by the caller.
    ///
    /// # Errors
    /// [`Error::Reference`] for an empty or too long reference or a character outside the set.
    pub fn new(reference: impl Into<String>) -> Result<Self> {
        let reference = reference.into();
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-');
        if reference.is_empty() || reference.len() > Self::MAX_LEN {
            return Err(Error::Reference {
                message: format!("{reference:?} must be 1-{} characters", Self::MAX_LEN),
            });
        }
        if !reference.bytes().all(ok) {
            return Err(Error::Reference {
                message: format!("{reference:?} has a character outside [A-Za-z0-9_./-]"),
            });
        }
        Ok(Self(reference))
    }

    /// The reference of batch `sequence` (1..=999_999_999) of `account` whose file has
    /// SHA-256 `file_sha256`.
    pub fn derive(account: &str, sequence: u32, file_sha256: &[u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(account.as_bytes());
        hasher.update([0]);
        hasher.update(sequence.to_be_bytes());
        hasher.update(file_sha256);
        let digest = hasher.finalize();
        let short = hex::encode(digest.get(..4).unwrap_or_default());
        Self(format!("PB{sequence}-{short}"))
    }

    /// The text sent to the service.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_references() {
        let cases: &[(&str, bool)] = &[
            ("PB1-0a1b2c3d", true),
            ("a", true),
            ("A_b.c/d-e", true),
            ("12345678901234567890", true),
            ("123456789012345678901", false),
            ("", false),
            ("a b", false),
            ("a+b", false),
            ("é", false),
        ];
        for (text, ok) in cases {
            assert_eq!(BatchReference::new(*text).is_ok(), *ok, "{text:?}");
        }
    }

    const EXPECTED_ACME_1: &str = "PB1-6d955be6";

    #[test]
    fn derived_references_are_valid_stable_and_distinct() {
        let digest = [7u8; 32];
        let max = BatchReference::derive("acme", 999_999_999, &digest);
        assert_eq!(max.as_str().len(), 20);
        assert!(BatchReference::new(max.as_str()).is_ok());
        assert_eq!(
            BatchReference::derive("acme", 1, &digest),
            BatchReference::derive("acme", 1, &digest)
        );
        assert_ne!(
            BatchReference::derive("acme", 1, &digest),
            BatchReference::derive("acme", 2, &digest)
        );
        assert_ne!(
            BatchReference::derive("acme", 1, &digest),
            BatchReference::derive("acmf", 1, &digest)
        );
        assert_ne!(
            BatchReference::derive("acme", 1, &digest),
            BatchReference::derive("acme", 1, &[8u8; 32])
        );
        // python3: hashlib.sha256(b"acme\x00" + (1).to_bytes(4,"big") + bytes([7]*32)).hexdigest()[:8]
        assert_eq!(
            BatchReference::derive("acme", 1, &digest).as_str(),
            EXPECTED_ACME_1
        );
    }
}
