//! `xAmount`: a positive decimal with at most two decimals, held as cents.

use std::fmt;

/// An amount in cents. Parsed strictly: `^[0-9]+(\.[0-9]{1,2})?$`, greater than zero, at most
/// 999,999,999.99 (the sim's ceiling; larger numbers are rejected as invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Cents(pub u64);

const MAX_CENTS: u64 = 99_999_999_999;

impl Cents {
    /// Parses an `xAmount`; `None` when it is not a positive amount with at most two decimals.
    pub(crate) fn parse(s: &str) -> Option<Cents> {
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (s, None),
        };
        if whole.is_empty() || whole.len() > 9 || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut cents = whole.parse::<u64>().ok()?.checked_mul(100)?;
        if let Some(f) = frac {
            if f.is_empty() || f.len() > 2 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v = f.parse::<u64>().ok()?;
            cents += if f.len() == 1 { v * 10 } else { v };
        }
        (cents > 0 && cents <= MAX_CENTS).then_some(Cents(cents))
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1", Some(100)),
            ("1.5", Some(150)),
            ("1.05", Some(105)),
            ("0.01", Some(1)),
            ("999999999.99", Some(99_999_999_999)),
            ("0", None),
            ("0.00", None),
            ("1.234", None),
            ("1.", None),
            (".5", None),
            ("-1", None),
            ("+1", None),
            ("1e3", None),
            ("", None),
            (" 1", None),
            ("1,00", None),
            ("1000000000", None),
        ];
        for &(s, want) in cases {
            assert_eq!(Cents::parse(s).map(|c| c.0), want, "{s:?}");
        }
    }

    #[test]
    fn display_has_two_decimals() {
        assert_eq!(Cents(1).to_string(), "0.01");
        assert_eq!(Cents(150).to_string(), "1.50");
        assert_eq!(Cents(123_456).to_string(), "1234.56");
    }
}
