//! Redaction: which keys are secret, how their values are masked, and `Secret<T>`.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// Keys whose values never reach logs, errors, `Debug` output or the ledger. Matched
/// case-insensitively (the gateway's field names are case-insensitive).
pub const SENSITIVE_KEYS: &[&str] = &[
    "xCardNum",
    "xCVV",
    "xMagstripe",
    "xAccount",
    "xRouting",
    "xKey",
];

/// What a fully masked value looks like.
pub const REDACTED: &str = "[REDACTED]";

/// Whether `key` is one of [`SENSITIVE_KEYS`] (ASCII case-insensitive).
pub fn is_sensitive(key: &str) -> bool {
    SENSITIVE_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// The value to show for `key`: unchanged for ordinary keys; for `xCardNum` the first 6 and
/// last 4 digits with `*` between (when the value looks like a card number: 13 or more ASCII
/// characters), otherwise [`REDACTED`]. The result depends only on what is shown, so it is
/// also safe to hash.
pub fn mask_value<'a>(key: &str, value: &'a str) -> Cow<'a, str> {
    if !is_sensitive(key) {
        return Cow::Borrowed(value);
    }
    if key.eq_ignore_ascii_case("xCardNum") {
        return Cow::Owned(mask_card(value));
    }
    Cow::Borrowed(REDACTED)
}

/// First 6 / last 4 for something that looks like a card number, [`REDACTED`] otherwise
/// (a short value would reveal most of itself).
pub fn mask_card(value: &str) -> String {
    let len = value.len();
    if len < 13 || !value.is_ascii() {
        return REDACTED.to_owned();
    }
    let mut out = String::with_capacity(len);
    out.push_str(&value[..6]);
    out.extend(std::iter::repeat_n('*', len - 10));
    out.push_str(&value[len - 4..]);
    out
}

/// A value that must not be printed: `Debug` and `Display` show `[REDACTED]`.
///
/// Read it with [`Secret::expose`] at the one place that needs it (e.g. writing the PROCESS
/// file). Deserializes transparently; deliberately does not implement `Serialize`, so a secret
/// cannot end up in a config dump by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value. Do not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("xCardNum", "4111111111111111", "411111******1111"),
            ("xcardnum", "4111111111111111", "411111******1111"),
            ("xCardNum", "5500000000000004123", "550000*********4123"),
            ("xCardNum", "4111111111111", "411111***1111"),
            ("xCardNum", "411111111111", "[REDACTED]"),
            ("xCardNum", "41111111111111é", "[REDACTED]"),
            ("xCVV", "123", "[REDACTED]"),
            ("XCVV", "123", "[REDACTED]"),
            ("xMagstripe", "%B4111111111111111^X^2512?", "[REDACTED]"),
            ("xAccount", "123456789", "[REDACTED]"),
            ("xRouting", "021000021", "[REDACTED]"),
            ("xKey", "merchant_key_abc", "[REDACTED]"),
            ("xName", "John Smith", "John Smith"),
            ("xMaskedCardNumber", "4xxxxxxxxxxx1111", "4xxxxxxxxxxx1111"),
        ];
        for (key, value, want) in cases {
            assert_eq!(mask_value(key, value), *want, "{key}={value}");
        }
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(
            format!("{s:?} {s} {s:#?}"),
            "[REDACTED] [REDACTED] [REDACTED]"
        );
        assert_eq!(s.expose(), "hunter2");
        let d: Secret<String> = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(d.into_inner(), "hunter2");
    }
}
