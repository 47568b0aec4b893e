//! The batch account a sequence number belongs to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A batch account: the gateway credential (SFTP login / batch key) that sequence numbers are
/// scoped to. Non-empty, at most [`AccountId::MAX_LEN`] characters from `[A-Za-z0-9._-]`.
///
/// The character set keeps ids safe in file names and log lines and lets the ledger use a `\0`
/// byte as the separator in its keys (no id is a prefix of another id's key space).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Checks and wraps an id.
    ///
    /// # Errors
    /// [`Error::InvalidAccount`] when empty, longer than [`Self::MAX_LEN`] or using a character
    /// outside `[A-Za-z0-9._-]`.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("empty")
        } else if id.len() > Self::MAX_LEN {
            Some("longer than 64 characters")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            Some("only A-Z a-z 0-9 . _ - are allowed")
        } else {
            None
        };
        match reason {
            // Quoted in the error: typed by someone, it may be any text (a card number too).
            Some(reason) => Err(Error::InvalidAccount {
                id: kvp_format::mask_digit_runs(&id).into_owned(),
                reason,
            }),
            None => Ok(AccountId(id)),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for AccountId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        AccountId::new(s)
    }
}

impl AsRef<str> for AccountId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AccountId::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        let long = "a".repeat(65);
        let max = "a".repeat(64);
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            ("acme", true),
            ("Acme-01.batch_2", true),
            (&max, true),
            ("", false),
            (&long, false),
            ("a b", false),
            ("a/b", false),
            ("a\0b", false),
            ("é", false),
        ];
        for (id, ok) in cases {
            assert_eq!(AccountId::new(*id).is_ok(), *ok, "{id:?}");
        }
    }

    #[test]
    fn a_rejected_id_is_quoted_without_a_card_number() {
        let e = AccountId::new("4111 1111 1111 1111")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("4111 1111 1111 1111") && e.contains("4111 11"),
            "{e}"
        );
    }

    #[test]
    fn display_honours_width() {
        assert_eq!(
            format!("{:<6}|", AccountId::new("acme").unwrap()),
            "acme  |"
        );
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        let a: AccountId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(a.as_str(), "acme");
        assert!(serde_json::from_str::<AccountId>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"acme\"");
    }
}
