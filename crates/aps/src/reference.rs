//! `batch_reference`: the client's unique name for one uploaded file.
//!
//! The ledger already makes (account, sequence number) durable and unique before anything is
//! uploaded, so the reference is derived from it, and stored with the reservation
//! (`BatchRecord::external_reference`): the driver refuses to resume a batch whose stored
//! reference differs from the derived one (a changed prefix). `<prefix><sequence>-<6 hex>`, the hex being the start of SHA-256 of the account name (two
//! paybatch accounts may share one APS merchant). At most 4 + 9 + 1 + 6 = 20 characters.
//!
//! After a crash the same batch gets the same reference, so the service's "reference already
//! exists" (146) means "this batch is already there"; the client then checks that the file
//! the service holds has the same number of lines. A ledger that is recreated from scratch
//! would hand out numbers again: set a new `reference_prefix` for the account then (as the
//! Sola side sets a sequence floor), or the service answers 146 for old references.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

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

    /// The longest prefix: 4 + 9 digits + `-` + 6 hex = 20.
    pub const MAX_PREFIX_LEN: usize = 4;

    /// The reference of batch `sequence` (1..=999_999_999) of `account`.
    ///
    /// # Errors
    /// [`Error::Reference`] for a prefix longer than 4 characters or outside
    /// `[A-Za-z0-9_.]` (a `-` would make references ambiguous).
    pub fn for_batch(prefix: &str, account: &str, sequence: u32) -> Result<Self> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.');
        if prefix.len() > Self::MAX_PREFIX_LEN || !prefix.bytes().all(ok) {
            return Err(Error::Reference {
                message: format!("prefix {prefix:?} must be 0-4 characters from [A-Za-z0-9_.]"),
            });
        }
        let digest = Sha256::digest(account.as_bytes());
        let short = hex::encode(digest.get(..3).unwrap_or_default());
        Self::new(format!("{prefix}{sequence}-{short}"))
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

    const EXPECTED_ACME_1: &str = "PB1-822b33";

    #[test]
    fn derived_references_are_valid_stable_and_distinct() {
        let max = BatchReference::for_batch("PBxy", "acme", 999_999_999).unwrap();
        assert_eq!(max.as_str().len(), 20);
        let one = BatchReference::for_batch("PB", "acme", 1).unwrap();
        assert_eq!(one, BatchReference::for_batch("PB", "acme", 1).unwrap());
        assert_ne!(one, BatchReference::for_batch("PB", "acme", 2).unwrap());
        assert_ne!(one, BatchReference::for_batch("PB", "acmf", 1).unwrap());
        assert_ne!(one, BatchReference::for_batch("PC", "acme", 1).unwrap());
        // python3: "PB1-" + hashlib.sha256(b"acme").hexdigest()[:6]
        assert_eq!(one.as_str(), EXPECTED_ACME_1);
        for bad in ["PBxyz", "P-B", "P B"] {
            assert!(BatchReference::for_batch(bad, "acme", 1).is_err(), "{bad}");
        }
    }
}
