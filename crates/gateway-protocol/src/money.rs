//! Money: ISO 4217 currencies and their minor units, shared by every gateway and by the
//! engine's summary of approved amounts.
//!
//! A gateway may take amounts as integers in the currency's minor unit (APS: `12.34 USD` is
//! `1234`, `12.345 KWD` is `12345`, `1200 JPY` is `1200`). Decimal amounts in major units are
//! converted exactly: one with more decimals than the currency has minor digits is an error,
//! never rounded.

use std::fmt;

/// A currency code or an amount that cannot be used: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct MoneyError {
    /// `currency` or `amount`.
    pub field: &'static str,
    /// What was wrong (the amount is quoted; it is never card data).
    pub message: String,
}

/// Active ISO 4217 codes with their minor-unit exponent (list of 2024), sorted for binary search.
#[rustfmt::skip]
const ISO_4217: &[(&str, u8)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2),
    ("AUD", 2), ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2),
    ("BHD", 3), ("BIF", 0), ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2),
    ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2),
    ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4), ("CLP", 0), ("CNY", 2), ("COP", 2),
    ("COU", 2), ("CRC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0), ("DKK", 2),
    ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2),
    ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2), ("GNF", 0),
    ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2), ("HUF", 2), ("IDR", 2),
    ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3),
    ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0),
    ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2),
    ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2),
    ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2),
    ("MXV", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2), ("NOK", 2),
    ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2), ("PHP", 2),
    ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2),
    ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2),
    ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2),
    ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2),
    ("USN", 2), ("UYI", 0), ("UYU", 2), ("UYW", 4), ("UZS", 2), ("VED", 2), ("VES", 2),
    ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XOF", 0), ("XPF", 0),
    ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// An ISO 4217 alphabetic code known to the table, with its minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

impl Currency {
    /// Looks up a code (case-insensitive).
    ///
    /// # Errors
    /// [`MoneyError`] for a code that is not an active ISO 4217 currency.
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        // Every code is three ASCII letters: upper-cased on the stack, no allocation.
        let upper = <[u8; 3]>::try_from(code.trim().as_bytes())
            .ok()
            .map(|b| b.map(|c| c.to_ascii_uppercase()));
        upper
            .and_then(|upper| {
                ISO_4217
                    .binary_search_by(|(c, _)| c.as_bytes().cmp(&upper[..]))
                    .ok()
            })
            .and_then(|i| ISO_4217.get(i))
            .map(|&(code, exponent)| Self { code, exponent })
            .ok_or_else(|| MoneyError {
                field: "currency",
                message: format!("unknown ISO 4217 code {code:?}"),
            })
    }

    /// The three-letter code, upper case.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// Digits after the decimal point (2 for USD, 3 for KWD, 0 for JPY).
    pub fn exponent(self) -> u8 {
        self.exponent
    }

    /// Converts a decimal in major units (`12.34`) to minor units.
    ///
    /// Accepted: digits, optionally a `.` and at most `exponent` more significant digits
    /// (trailing zeros beyond that are fine: `12.340` USD is `1234`). No sign, no exponent, no
    /// thousands separators.
    ///
    /// # Errors
    /// [`MoneyError`] for a malformed amount, one with too many decimals for the currency,
    /// or one that does not fit in 64 bits.
    pub fn to_minor(self, amount: &str) -> Result<MinorUnits, MoneyError> {
        let bad = |why: &str| MoneyError {
            field: "amount",
            message: format!("{amount:?} {why} ({})", self.code),
        };
        let (whole, frac) = match amount.split_once('.') {
            Some((w, f)) => (w, f),
            None => (amount, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(bad("is not a decimal number"));
        }
        if !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(bad("is not a decimal number"));
        }
        let significant = frac.trim_end_matches('0');
        if significant.len() > usize::from(self.exponent) {
            return Err(bad("has more decimals than the currency's minor unit"));
        }
        let mut value: u64 = 0;
        let digits = whole
            .bytes()
            .chain(significant.bytes())
            .chain(std::iter::repeat_n(
                b'0',
                usize::from(self.exponent) - significant.len(),
            ));
        for d in digits {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or_else(|| bad("is too large"))?;
        }
        Ok(MinorUnits(value))
    }

    /// Formats minor units as a decimal in major units (`1234` USD is `12.34`).
    pub fn to_major(self, minor: MinorUnits) -> String {
        let exp = u32::from(self.exponent);
        if exp == 0 {
            return minor.0.to_string();
        }
        let scale = 10u64.pow(exp);
        format!(
            "{}.{:0width$}",
            minor.0 / scale,
            minor.0 % scale,
            width = exp as usize
        )
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// An amount in a currency's minor unit, as APS expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MinorUnits(pub u64);

impl fmt::Display for MinorUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The currency of an approved line that names none (Sola answers in the account's currency
/// and does not echo it).
pub const DEFAULT_CURRENCY: &str = "USD";

/// `"12.3"` in `currency` → its minor units (`1230` for USD, `12300` for KWD, `None` for JPY
/// since yen have no decimals); an optional leading `-`. `None` for a malformed amount, one
/// with more decimals than the currency has, or an unknown currency code.
pub fn parse_amount(currency: &str, text: &str) -> Option<i64> {
    parse_amount_in(Currency::new(currency).ok()?, text)
}

/// [`parse_amount`] in a currency already looked up.
pub fn parse_amount_in(currency: Currency, text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let minor = i64::try_from(currency.to_minor(digits).ok()?.0).ok()?;
    Some(if negative { -minor } else { minor })
}

/// Minor units of `currency` as a decimal in major units: `1230` USD → `"12.30"`, `-5` KWD →
/// `"-0.005"`, `1200` JPY → `"1200"`. An unknown code is shown with two decimals.
pub fn format_amount(currency: &str, minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = MinorUnits(minor.unsigned_abs());
    let text = match Currency::new(currency) {
        Ok(c) => c.to_major(minor),
        Err(_) => format!("{}.{:02}", minor.0 / 100, minor.0 % 100),
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(ISO_4217.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn conversions() {
        let cases: &[(&str, &str, Option<u64>)] = &[
            ("USD", "12.34", Some(1234)),
            ("usd", "12", Some(1200)),
            ("USD", "12.3", Some(1230)),
            ("USD", "12.340", Some(1234)),
            ("USD", ".5", Some(50)),
            ("USD", "0.01", Some(1)),
            ("USD", "12.", Some(1200)),
            ("USD", "12.345", None),
            ("USD", "-1.00", None),
            ("USD", "1e3", None),
            ("USD", "1,000.00", None),
            ("USD", "", None),
            ("USD", ".", None),
            ("USD", " 1.00", None),
            ("KWD", "12.345", Some(12345)),
            ("KWD", "0.001", Some(1)),
            ("BHD", "1.2345", None),
            ("JPY", "1200", Some(1200)),
            ("JPY", "1200.00", Some(1200)),
            ("JPY", "1200.5", None),
            ("CLF", "1.2345", Some(12345)),
            ("USD", "184467440737095516.15", Some(u64::MAX)),
            ("USD", "184467440737095516.16", None),
        ];
        for (code, amount, expected) in cases {
            let got = Currency::new(code)
                .unwrap()
                .to_minor(amount)
                .ok()
                .map(|m| m.0);
            assert_eq!(got, *expected, "{code} {amount:?}");
        }
    }

    #[test]
    fn back_to_major() {
        let cases: &[(&str, u64, &str)] = &[
            ("USD", 1234, "12.34"),
            ("USD", 5, "0.05"),
            ("KWD", 12345, "12.345"),
            ("JPY", 1200, "1200"),
            ("CLF", 1, "0.0001"),
        ];
        for (code, minor, major) in cases {
            assert_eq!(
                Currency::new(code).unwrap().to_major(MinorUnits(*minor)),
                *major
            );
        }
    }

    #[test]
    fn unknown_currency_is_an_input_error() {
        for code in ["", "US", "XXX", "usdd", "HRK"] {
            assert!(
                matches!(
                    Currency::new(code),
                    Err(MoneyError {
                        field: "currency",
                        ..
                    })
                ),
                "{code}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn major_minor_round_trip(minor in 0u64..u64::MAX, pick in 0usize..ISO_4217.len()) {
            let currency = Currency::new(ISO_4217[pick].0).unwrap();
            let major = currency.to_major(MinorUnits(minor));
            proptest::prop_assert_eq!(currency.to_minor(&major).unwrap(), MinorUnits(minor));
        }

        #[test]
        fn to_minor_never_panics(text in "[0-9.,eE+ -]{0,30}") {
            let _ = Currency::new("KWD").unwrap().to_minor(&text);
        }
    }
}
