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
/// characters), otherwise [`REDACTED`]. A key that itself holds a card-like number (see
/// [`mask_key`]) is malformed data, so its value is [`REDACTED`] too. The result depends only
/// on what is shown, so it is also safe to hash.
pub fn mask_value<'a>(key: &str, value: &'a str) -> Cow<'a, str> {
    if !is_sensitive(key) {
        if matches!(mask_key(key), Cow::Owned(_)) {
            return Cow::Borrowed(REDACTED);
        }
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

/// Digits in a run that make it look like a card (or bank) number: PANs have 13 to 19.
const CARD_RUN_DIGITS: usize = 13;

/// A key as it may be shown (errors, problems, `Debug`, `Display`): unchanged for a normal
/// key (`xCustom01`); when a misplaced card number ended up as a key (`...&4111111111111111`),
/// every run of 13 or more digits keeps its first 6 and last 4 digits and the others become
/// `*` (see [`mask_digit_runs`]).
pub fn mask_key(key: &str) -> Cow<'_, str> {
    mask_digit_runs(key)
}

/// Masks every run of 13 or more ASCII digits in `text` (spaces or dashes between digits
/// continue a run, as in `4111 1111 1111 1111`): first 6 and last 4 digits kept, the others
/// replaced by `*`. Idempotent; borrowed when nothing needed masking.
pub fn mask_digit_runs(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    for run in digit_runs(bytes) {
        if run.digits < CARD_RUN_DIGITS {
            continue;
        }
        // Run boundaries are ASCII bytes, so these slices fall on character boundaries.
        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
        o.push_str(&text[copied..run.start]);
        let mut seen = 0;
        for &b in &bytes[run.start..run.end] {
            if b.is_ascii_digit() {
                seen += 1;
                o.push(if seen <= 6 || seen > run.digits - 4 {
                    char::from(b)
                } else {
                    '*'
                });
            } else {
                o.push(char::from(b));
            }
        }
        copied = run.end;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// Digits in a run that can be a card number at most (ISO/IEC 7812: 19).
const CARD_MAX_DIGITS: usize = 19;

/// Whether `text` holds a card number: a digit run read as [`mask_digit_runs`] reads runs
/// (digits, with single spaces or dashes between them: `4111 1111 1111 1111`,
/// `4111-1111-1111-1111`) of 13 to 19 digits that passes the Luhn check. A run of 20 or more
/// digits is not a card number, and neither is any part of it.
///
/// A reference, an invoice number or a header cell for which this holds must not be stored or
/// echoed: it is indistinguishable from a card number (PROTOCOL.md decision 10).
pub fn contains_card_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    digit_runs(bytes).any(|run| {
        (CARD_RUN_DIGITS..=CARD_MAX_DIGITS).contains(&run.digits)
            && luhn_valid(
                bytes[run.start..run.end]
                    .iter()
                    .filter(|b| b.is_ascii_digit()),
            )
    })
}

/// `text` with its digit runs masked ([`mask_digit_runs`]) when it holds a card number
/// ([`contains_card_number`]), else borrowed as it is: for text from outside (a gateway's
/// answer) that is kept, shown or stored, where a long number that is not a card number (a
/// gateway's reference) must stay readable.
pub fn mask_card_numbers(text: &str) -> Cow<'_, str> {
    if contains_card_number(text) {
        mask_digit_runs(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// The Luhn (mod 10) check over ASCII digits, most significant first.
fn luhn_valid<'a>(digits: impl DoubleEndedIterator<Item = &'a u8>) -> bool {
    let sum: u32 = digits
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// One run of digits in a text: bytes `start..end`, `digits` of them digits.
#[derive(Debug, Clone, Copy)]
struct DigitRun {
    start: usize,
    end: usize,
    digits: usize,
}

/// The digit runs of `bytes`, left to right: a run starts at a digit and goes on through
/// digits and through single spaces or dashes that are followed by a digit.
fn digit_runs(bytes: &[u8]) -> impl Iterator<Item = DigitRun> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let start = i;
        let (mut end, mut digits, mut j) = (i, 0, i);
        while j < bytes.len() {
            if bytes[j].is_ascii_digit() {
                digits += 1;
                j += 1;
                end = j;
            } else if matches!(bytes[j], b' ' | b'-')
                && bytes.get(j + 1).is_some_and(u8::is_ascii_digit)
            {
                j += 1;
            } else {
                break;
            }
        }
        i = end;
        Some(DigitRun { start, end, digits })
    })
}

/// Whether `haystack` (a log, a journal, a database file read as text) shows `secret`: the
/// check leak tests make. A secret made only of ASCII digits (a CVV, a routing or account
/// number) counts only as a whole digit run, not inside a longer one: `8642` inside a
/// millisecond timestamp `1763778642123` is chance, not a leak, while `xCVV=8642` or
/// `cvv 8642.` is one. Any other secret counts wherever it occurs.
pub fn contains_secret(haystack: &str, secret: &str) -> bool {
    if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_digit()) {
        return !secret.is_empty() && haystack.contains(secret);
    }
    let bytes = haystack.as_bytes();
    haystack.match_indices(secret).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + secret.len()).copied();
        !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
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

/// `url` with the password of its user part (`scheme://user:password@host`), of every
/// `password=` query parameter, or of a `password` pair of a libpq `key = value` string replaced
/// by `***`: a database or drop URL quoted in a message or shown in settings.
///
/// A URL is text that starts with a scheme and `://`; anything else is read as libpq's
/// `key = value` form (as tokio-postgres reads it). A URL has a password when its user part, up
/// to the first `@`, holds a `:` (tokio-postgres reads user and password up to the first `@`,
/// whatever `/`, `?` or `#` they hold); it is masked up to the **last** `@`, which also covers
/// a reader that takes the last one — more than needed, never less. A query parameter is
/// masked up to the next `&`, its key compared percent-decoded.
pub fn mask_url_password(url: &str) -> String {
    match url_prefix_len(url) {
        Some(prefix) => mask_in_url(url, prefix),
        None => mask_keyword_password(url),
    }
}

/// The length of `scheme://` when `text` starts with one (a letter, then letters, digits, `+`,
/// `.` or `-`).
fn url_prefix_len(text: &str) -> Option<usize> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let plain = chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
    plain.then_some(scheme.len() + 3)
}

fn mask_in_url(url: &str, prefix: usize) -> String {
    let (head, rest) = url.split_at(prefix);
    let mut out = match (rest.split_once('@'), rest.rsplit_once('@')) {
        (Some((first, _)), Some((_, host))) if first.contains(':') => {
            let user = first.split_once(':').map_or(first, |(u, _)| u);
            format!("{head}{user}:***@{host}")
        }
        _ => url.to_owned(),
    };
    if let Some(q) = out.find('?') {
        let (before, query) = out.split_at(q + 1);
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _))
                    if percent_encoding::percent_decode_str(key)
                        .decode_utf8_lossy()
                        .eq_ignore_ascii_case("password") =>
                {
                    format!("{key}=***")
                }
                _ => param.to_owned(),
            })
            .collect();
        out = format!("{before}{}", params.join("&"));
    }
    out
}

/// A libpq `key = value` string with the value of every `password` key (any whitespace around
/// `=`, quoted with `'`, backslash escapes) replaced by `***`.
fn mask_keyword_password(conninfo: &str) -> String {
    let mut out = String::with_capacity(conninfo.len());
    let mut chars = conninfo.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            out.push(c);
            chars.next();
            continue;
        }
        // The key: up to `=` or whitespace (at least one character, or the `=` itself next).
        let mut end = start;
        while let Some((i, c)) = chars.next_if(|&(_, c)| c != '=' && !c.is_whitespace()) {
            end = i + c.len_utf8();
        }
        let key = &conninfo[start..end];
        out.push_str(key);
        while let Some((_, c)) = chars.next_if(|&(_, c)| c.is_whitespace()) {
            out.push(c);
        }
        if chars.next_if(|&(_, c)| c == '=').is_none() {
            continue;
        }
        out.push('=');
        while let Some((_, c)) = chars.next_if(|&(_, c)| c.is_whitespace()) {
            out.push(c);
        }
        let mut value = String::new();
        let quoted = chars.next_if(|&(_, c)| c == '\'').is_some();
        if quoted {
            value.push('\'');
        }
        while let Some((_, c)) = chars.next_if(|&(_, c)| quoted || !c.is_whitespace()) {
            value.push(c);
            if c == '\\' {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            } else if quoted && c == '\'' && value.len() > 1 {
                break;
            }
        }
        if key.eq_ignore_ascii_case("password") {
            out.push_str("***");
        } else {
            out.push_str(&value);
        }
    }
    out
}

/// The name of an environment variable as a message may show it: the name itself when it
/// looks like one (a letter or `_`, then letters, digits and `_`, at most 64), otherwise a
/// placeholder — an operator who pasted the secret (a URL, a token, a password) where its
/// variable's name belongs must not find it in the error that says so.
pub fn shown_env_name(name: &str) -> Cow<'_, str> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if plain {
        Cow::Borrowed(name)
    } else {
        Cow::Borrowed(
            "(a value that is not a variable name; not shown: it may be the secret itself)",
        )
    }
}

/// The name of an environment variable that holds a secret, as a `*_env` setting gives it.
///
/// Debug, Display and `Serialize` show it as [`shown_env_name`] does: an operator who pasted
/// the secret itself where its variable's name belongs finds a placeholder in a settings dump,
/// a log line or an error, never the value. [`EnvName::as_str`] gives the name as written, for
/// reading the variable. Deserializes from a plain string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EnvName(String);

impl EnvName {
    /// Wraps a variable's name.
    pub fn new(name: impl Into<String>) -> Self {
        EnvName(name.into())
    }

    /// The name as written: for `std::env::var`, never for a message.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a message may show it ([`shown_env_name`]).
    pub fn shown(&self) -> Cow<'_, str> {
        shown_env_name(&self.0)
    }
}

impl From<String> for EnvName {
    fn from(name: String) -> Self {
        EnvName(name)
    }
}

impl From<&str> for EnvName {
    fn from(name: &str) -> Self {
        EnvName(name.to_owned())
    }
}

impl std::str::FromStr for EnvName {
    type Err = std::convert::Infallible;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(EnvName::from(name))
    }
}

impl fmt::Debug for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shown(), f)
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(EnvName)
    }
}

impl serde::Serialize for EnvName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

/// Whether `url` carries a password (in any of the places [`mask_url_password`] masks).
pub fn url_has_password(url: &str) -> bool {
    mask_url_password(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_env_name_never_shows_a_pasted_secret() {
        let name = EnvName::from("PAYBATCH_BATCH_KEY");
        assert_eq!(name.to_string(), "PAYBATCH_BATCH_KEY");
        assert_eq!(format!("{name:?}"), "\"PAYBATCH_BATCH_KEY\"");
        assert_eq!(name.as_str(), "PAYBATCH_BATCH_KEY");
        let pasted: EnvName = serde_json::from_str("\"xK3y:s3cret/4111111111111111\"").unwrap();
        assert_eq!(pasted.as_str(), "xK3y:s3cret/4111111111111111");
        for shown in [
            pasted.to_string(),
            format!("{pasted:?}"),
            format!("{:?}", Some(&pasted)),
            serde_json::to_string(&pasted).unwrap(),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(!shown.contains("4111"), "{shown}");
        }
    }

    #[test]
    fn only_card_numbers_are_masked_in_outside_text() {
        // A 16-digit gateway reference that fails the Luhn check stays readable; a card
        // number (with spaces, inside a sentence) does not.
        assert!(matches!(
            mask_card_numbers("ref 4111111111111112"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            mask_card_numbers("declined: card 4111 1111 1111 1111 expired"),
            "declined: card 4111 11** **** 1111 expired"
        );
        assert_eq!(mask_card_numbers("Approved"), "Approved");
    }

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
            ("4111111111111111", "", "[REDACTED]"),
            ("x4111111111111111", "987", "[REDACTED]"),
            ("xCustom01", "4", "4"),
        ];
        for (key, value, want) in cases {
            assert_eq!(mask_value(key, value), *want, "{key}={value}");
        }
    }

    #[test]
    fn mask_key_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("xCustom01", "xCustom01"),
            ("xIndex", "xIndex"),
            ("", ""),
            ("123456789012", "123456789012"),
            ("4111111111111", "411111***1111"),
            ("4111111111111111", "411111******1111"),
            ("5500000000000004123", "550000*********4123"),
            ("x4111111111111111y", "x411111******1111y"),
            ("4111 1111 1111 1111", "4111 11** **** 1111"),
            ("4111-1111-1111-1111", "4111-11**-****-1111"),
            ("%B4111111111111111^DOE^2512?", "%B411111******1111^DOE^2512?"),
            ("a4111111111111111&b5500000000000004", "a411111******1111&b550000******0004"),
            ("411111******1111", "411111******1111"),
            ("é4111111111111111é", "é411111******1111é"),
            ("4111 ", "4111 "),
        ];
        for (key, want) in cases {
            let got = mask_key(key);
            assert_eq!(got, *want, "{key}");
            assert_eq!(mask_key(&got), *want, "idempotent: {key}");
        }
        assert!(matches!(mask_key("xCustom01"), Cow::Borrowed(_)));
    }

    #[test]
    fn card_number_table() {
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            ("4111111111111111", true),
            ("4111 1111 1111 1111", true),
            ("4111-1111-1111-1111", true),
            ("order 4111111111111111 of May", true),
            ("INV5500000000000004", true),
            ("4111111111111", false),          // 13 digits, Luhn fails
            ("4222222222222", true),           // 13 digits, Luhn holds
            ("4111111111111112", false),       // Luhn fails
            ("6011000990139424", true),
            ("3530111333300000", true),
            ("41111111111111111111", false),   // 20 digits: no card number
            ("411111111111", false),           // 12 digits
            ("4111  1111 1111 1111", false),   // a double space ends the run
            ("411111******1111", false),       // already masked
            ("r-1", false),
            ("", false),
        ];
        for (text, want) in cases {
            assert_eq!(contains_card_number(text), *want, "{text}");
        }
    }

    #[test]
    fn contains_secret_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            ("xCVV=8642&x=1", "8642", true),
            ("cvv 8642.", "8642", true),
            ("8642", "8642", true),
            ("at_unix_ms=1763778642123", "8642", false),
            ("ref 186420 and 86421", "8642", false),
            ("ref 186420 then 8642", "8642", true),
            ("x4111111111111111y", "4111111111111111", true),
            ("key=abc-secret-key", "secret", true),
            ("nothing here", "secret", false),
            ("anything", "", false),
        ];
        for (haystack, secret, want) in cases {
            assert_eq!(
                contains_secret(haystack, secret),
                *want,
                "{secret} in {haystack}"
            );
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

    #[test]
    fn only_variable_names_are_shown() {
        for name in ["PAYBATCH_TOKENS", "_X", "pb_ledger_url2"] {
            assert_eq!(shown_env_name(name), name);
        }
        for value in [
            "postgres://pb:s3@db/l",
            "tok-3f9a.b",
            "",
            "9LIVES",
            "a b",
            &"A".repeat(65),
        ] {
            assert!(
                !shown_env_name(value).contains(value) || value.is_empty(),
                "{value}"
            );
        }
    }

    #[test]
    fn url_passwords_are_masked() {
        #[rustfmt::skip]
        let cases = [
            ("postgres://pb:s3@h:5432/db", "postgres://pb:***@h:5432/db"),
            ("postgres://pb@h/db", "postgres://pb@h/db"),
            ("postgres://pb@h/db?password=s3&sslmode=require", "postgres://pb@h/db?password=***&sslmode=require"),
            ("host=h user=pb password=s3 dbname=db", "host=h user=pb password=*** dbname=db"),
            ("password=s3 host=h", "password=*** host=h"),
            // Passwords some clients take unescaped: masked up to the last `@`.
            ("postgres://pb:Zx9/kQ@db:5432/ledger", "postgres://pb:***@db:5432/ledger"),
            ("postgres://pb:a?b#c@db/l", "postgres://pb:***@db/l"),
            ("postgres://pb:a@b@db/l?sslmode=require", "postgres://pb:***@db/l?sslmode=require"),
            ("sftp://acme:pa/ss@host/drop", "sftp://acme:***@host/drop"),
            // No password: an `@` further on is not one.
            ("postgres://pb@db:5432/ledger?application_name=ops@eu", "postgres://pb@db:5432/ledger?application_name=ops@eu"),
            // Query parameters: each, up to the next `&`, the key percent-decoded.
            ("postgres://h/db?sslmode=require&password=s3#x&a=1", "postgres://h/db?sslmode=require&password=***&a=1"),
            ("postgres://h/db?password=a&pass%77ord=b", "postgres://h/db?password=***&pass%77ord=***"),
            // libpq's other spellings: spaces around `=`, quoted values, escapes, any
            // whitespace, and `://` inside a value.
            ("host=db password = s3cret", "host=db password = ***"),
            ("password='s3 cret' host=db", "password=*** host=db"),
            (r"password='it\'s me' host=db", "password=*** host=db"),
            (r"PASSWORD=a\ b user=pb", "PASSWORD=*** user=pb"),
            ("host=db\u{a0}password=s3", "host=db\u{a0}password=***"),
            ("host=db password=ab://cd", "host=db password=***"),
            ("host=é user=pb", "host=é user=pb"),
            ("host=db user=pb", "host=db user=pb"),
            ("password=", "password=***"),
            ("=x password='unterminated", "=x password=***"),
        ];
        for (url, masked) in cases {
            assert_eq!(mask_url_password(url), masked, "{url}");
            assert_eq!(url_has_password(url), url != masked, "{url}");
        }
    }
}
