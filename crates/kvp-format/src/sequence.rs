//! `SequenceNumber`: the `X` of `REQUEST_X.KVP`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A batch sequence number, `1..=999_999_999`, checked at construction.
///
/// Parsed from text it must be canonical decimal: ASCII digits only, no sign, no leading
/// zeros (`REQUEST_007.KVP` is not a batch file the gateway would pick up). It never wraps:
/// [`SequenceNumber::next`] returns `None` past [`SequenceNumber::MAX`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber(u32);

impl SequenceNumber {
    /// The smallest sequence number, 1.
    pub const MIN: SequenceNumber = SequenceNumber(1);
    /// The largest sequence number, 999,999,999.
    pub const MAX: SequenceNumber = SequenceNumber(999_999_999);

    /// Checks `n`.
    ///
    /// # Errors
    /// [`Error::InvalidSequence`] for 0 or a number above 999,999,999.
    pub fn new(n: u32) -> Result<Self> {
        if n == 0 {
            return Err(Error::InvalidSequence {
                value: n.to_string(),
                reason: "sequence numbers start at 1",
            });
        }
        if n > Self::MAX.0 {
            return Err(Error::InvalidSequence {
                value: n.to_string(),
                reason: "sequence numbers end at 999999999",
            });
        }
        Ok(SequenceNumber(n))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The following number, or `None` past [`SequenceNumber::MAX`] (never wraps).
    pub fn next(self) -> Option<Self> {
        if self.0 >= Self::MAX.0 {
            None
        } else {
            Some(SequenceNumber(self.0 + 1))
        }
    }
}

impl FromStr for SequenceNumber {
    type Err = Error;

    /// Canonical decimal only.
    ///
    /// # Errors
    /// [`Error::InvalidSequence`] for an empty string, a non-digit, a leading zero, 0 or a
    /// number above 999,999,999.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidSequence {
            value: crate::redact::mask_digit_runs(&s.chars().take(40).collect::<String>())
                .into_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("only the digits 0-9 are allowed"));
        }
        if s == "0" {
            return Err(bad("sequence numbers start at 1"));
        }
        if s.starts_with('0') {
            return Err(bad("leading zeros are not allowed"));
        }
        if s.len() > 9 {
            return Err(bad("sequence numbers end at 999999999"));
        }
        // At most 9 digits, so it fits a u32 and is <= MAX.
        let n = s.bytes().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
        SequenceNumber::new(n)
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<u32> for SequenceNumber {
    type Error = Error;
    fn try_from(n: u32) -> Result<Self> {
        SequenceNumber::new(n)
    }
}

impl From<SequenceNumber> for u32 {
    fn from(s: SequenceNumber) -> u32 {
        s.0
    }
}

impl Serialize for SequenceNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for SequenceNumber {
    /// Accepts a number or a canonical decimal string (KVP values are strings).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SequenceNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence number 1..=999999999")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SequenceNumber, E> {
                let n = u32::try_from(v).map_err(|_| E::custom("sequence number too large"))?;
                SequenceNumber::new(n).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SequenceNumber, E> {
                let n = u32::try_from(v).map_err(|_| E::custom("sequence number out of range"))?;
                SequenceNumber::new(n).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SequenceNumber, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<u32>)] = &[
            ("1", Some(1)),
            ("42", Some(42)),
            ("999999999", Some(999_999_999)),
            ("0", None),
            ("007", None),
            ("1000000000", None),
            ("99999999999999999999", None),
            ("", None),
            ("+5", None),
            ("-5", None),
            (" 5", None),
            ("5a", None),
            ("٣", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<SequenceNumber>().ok().map(SequenceNumber::get);
            assert_eq!(got, *want, "{text:?}");
        }
    }

    #[test]
    fn new_bounds_and_next() {
        assert!(SequenceNumber::new(0).is_err());
        assert!(SequenceNumber::new(1_000_000_000).is_err());
        assert_eq!(SequenceNumber::MIN.next().unwrap().get(), 2);
        assert_eq!(SequenceNumber::MAX.next(), None);
        assert_eq!(SequenceNumber::new(7).unwrap().to_string(), "7");
    }

    #[test]
    fn errors_say_why() {
        let e = "007".parse::<SequenceNumber>().unwrap_err().to_string();
        assert!(e.contains("leading zeros"), "{e}");
        let e = SequenceNumber::new(0).unwrap_err().to_string();
        assert!(e.contains("start at 1"), "{e}");
    }

    #[test]
    fn serde_round_trip() {
        let s = SequenceNumber::new(17).unwrap();
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "17");
        assert_eq!(serde_json::from_str::<SequenceNumber>(&j).unwrap(), s);
        assert_eq!(serde_json::from_str::<SequenceNumber>("\"17\"").unwrap(), s);
        assert!(serde_json::from_str::<SequenceNumber>("0").is_err());
    }
}
