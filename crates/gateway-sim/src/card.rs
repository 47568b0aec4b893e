//! Card and bank-account checks and the masked forms the sim answers with.
//!
//! Masked card format (Sola style): the first digit, then `x` for every hidden digit, then the
//! last four digits, same length as the number: `4111111111111111` → `4xxxxxxxxxxx1111`.
//! Masked bank account: `x` for every digit but the last four: `123456789` → `xxxxx6789`.

use std::time::SystemTime;

use crate::clock::year_month;

/// A card number as the gateway accepts it: 13–19 ASCII digits passing the Luhn check.
pub(crate) fn is_valid_card_number(n: &str) -> bool {
    (13..=19).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) && luhn_ok(n)
}

/// The Luhn (mod 10) check over ASCII digits.
pub(crate) fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// `4xxxxxxxxxxx1111`: first digit, `x`s, last four (see the module docs).
pub(crate) fn mask_card(n: &str) -> String {
    let mut out = String::with_capacity(n.len());
    mask_card_into(n, &mut out);
    out
}

/// [`mask_card`] into `out` (cleared first).
pub(crate) fn mask_card_into(n: &str, out: &mut String) {
    out.clear();
    if n.is_ascii() && n.len() > 5 {
        // Every number the rules accept: one byte per character.
        const XS: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        out.push_str(&n[..1]);
        match XS.get(..n.len() - 5) {
            Some(xs) => out.push_str(xs),
            None => out.extend(std::iter::repeat_n('x', n.len() - 5)),
        }
        out.push_str(&n[n.len() - 4..]);
        return;
    }
    let len = n.chars().count();
    if len <= 5 {
        out.extend(std::iter::repeat_n('x', len));
        return;
    }
    out.extend(
        n.chars()
            .enumerate()
            .map(|(i, c)| if i == 0 || i + 4 >= len { c } else { 'x' }),
    );
}

/// `xxxxx6789`: every character but the last four hidden.
pub(crate) fn mask_account(n: &str) -> String {
    let mut out = String::with_capacity(n.len());
    mask_account_into(n, &mut out);
    out
}

/// [`mask_account`] into `out` (cleared first).
pub(crate) fn mask_account_into(n: &str, out: &mut String) {
    out.clear();
    let len = n.chars().count();
    out.extend(
        n.chars()
            .enumerate()
            .map(|(i, c)| if i + 4 >= len { c } else { 'x' }),
    );
}

/// The brand name Sola reports in `xCardType`, from the number's prefix.
pub(crate) fn card_type(n: &str) -> &'static str {
    let two: u32 = n.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let four: u32 = n.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    match n.as_bytes().first() {
        Some(b'4') => "Visa",
        _ if (51..=55).contains(&two) || (2221..=2720).contains(&four) => "MasterCard",
        _ if two == 34 || two == 37 => "Amex",
        _ if four == 6011 || two == 65 => "Discover",
        _ => "Unknown",
    }
}

/// Why an `xExp` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpiryProblem {
    /// Not four digits MMYY with a month 01..=12.
    Malformed,
    /// The card's last valid month is before the current month.
    Expired,
}

/// Checks `xExp` (MMYY, valid through the end of that month, years 2000–2099) against `now`.
pub(crate) fn check_expiry(exp: &str, now: SystemTime) -> Result<(), ExpiryProblem> {
    if exp.len() != 4 || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExpiryProblem::Malformed);
    }
    let month: u32 = exp[..2].parse().map_err(|_| ExpiryProblem::Malformed)?;
    let yy: i64 = exp[2..].parse().map_err(|_| ExpiryProblem::Malformed)?;
    if !(1..=12).contains(&month) {
        return Err(ExpiryProblem::Malformed);
    }
    let (year, this_month) = year_month(now);
    if (2000 + yy, month) < (year, this_month) {
        return Err(ExpiryProblem::Expired);
    }
    Ok(())
}

/// An ABA routing number: nine digits whose 3-7-1 weighted sum is a multiple of ten.
pub(crate) fn is_valid_routing(r: &str) -> bool {
    if r.len() != 9 || !r.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let weights = [3u32, 7, 1, 3, 7, 1, 3, 7, 1];
    let sum: u32 = r
        .bytes()
        .zip(weights)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    sum.is_multiple_of(10)
}

/// A bank account number: 4–17 digits.
pub(crate) fn is_valid_account(a: &str) -> bool {
    (4..=17).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn card_numbers() {
        let cases: &[(&str, bool)] = &[
            ("4111111111111111", true),
            ("4111111111111112", false),
            ("5555555555554444", true),
            ("378282246310005", true),
            ("6011111111111117", true),
            ("4000000000000002", true),
            ("411111111111", false),         // too short
            ("41111111111111111111", false), // too long
            ("4111 1111 1111 1111", false),
            ("", false),
        ];
        for &(n, want) in cases {
            assert_eq!(is_valid_card_number(n), want, "{n}");
        }
    }

    #[test]
    fn masks() {
        assert_eq!(mask_card("4111111111111111"), "4xxxxxxxxxxx1111");
        assert_eq!(mask_card("378282246310005"), "3xxxxxxxxxx0005");
        assert_eq!(mask_card("12345"), "xxxxx");
        assert_eq!(mask_card("123456"), "1x3456");
        assert_eq!(
            mask_card(&"1".repeat(40)),
            format!("1{}1111", "x".repeat(35))
        );
        assert_eq!(mask_card("é23456789"), "éxxxx6789");
        assert_eq!(mask_account("123456789"), "xxxxx6789");
        assert_eq!(mask_account("123"), "123");
        let mut reused = String::from("left over");
        mask_card_into("5555555555554444", &mut reused);
        assert_eq!(reused, "5xxxxxxxxxxx4444");
        mask_account_into("123456789", &mut reused);
        assert_eq!(reused, "xxxxx6789");
    }

    #[test]
    fn card_types() {
        let cases: &[(&str, &str)] = &[
            ("4111111111111111", "Visa"),
            ("5555555555554444", "MasterCard"),
            ("2223003122003222", "MasterCard"),
            ("378282246310005", "Amex"),
            ("6011111111111117", "Discover"),
            ("3530111333300000", "Unknown"),
        ];
        for &(n, want) in cases {
            assert_eq!(card_type(n), want, "{n}");
        }
    }

    #[test]
    fn expiry_against_a_fixed_now() {
        // 2026-11-22 00:00:00 UTC
        let now = UNIX_EPOCH + Duration::from_secs(1_795_305_600);
        let cases: &[(&str, Result<(), ExpiryProblem>)] = &[
            ("1126", Ok(())),
            ("1226", Ok(())),
            ("0130", Ok(())),
            ("1026", Err(ExpiryProblem::Expired)),
            ("1225", Err(ExpiryProblem::Expired)),
            ("1326", Err(ExpiryProblem::Malformed)),
            ("0026", Err(ExpiryProblem::Malformed)),
            ("126", Err(ExpiryProblem::Malformed)),
            ("11/26", Err(ExpiryProblem::Malformed)),
            ("", Err(ExpiryProblem::Malformed)),
        ];
        for &(exp, want) in cases {
            assert_eq!(check_expiry(exp, now), want, "{exp}");
        }
    }

    #[test]
    fn routing_numbers() {
        let cases: &[(&str, bool)] = &[
            ("021000021", true),
            ("011000015", true),
            ("021000022", false),
            ("02100002", false),
            ("02100002a", false),
        ];
        for &(r, want) in cases {
            assert_eq!(is_valid_routing(r), want, "{r}");
        }
    }
}
