//! Writing straight into reusable byte buffers, without a `Record` or a `String` per value:
//! canonical KVP components (the same bytes as `kvp_format::encode_component`, or `+` for a
//! space), JSON strings (the same bytes as `serde_json`), decimals and hex.

use crate::knobs::SpaceEncoding;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// Appends the canonical encoding of `s`: unreserved bytes as they are, every other byte as
/// upper-case `%XX`, except a space as `+` when `spaces` says so.
pub(crate) fn kvp_component(s: &str, spaces: SpaceEncoding, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if kvp_format::is_unreserved(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if b == b' ' && spaces == SpaceEncoding::Plus {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 0xF)],
            ]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `&key=value` (or `key=value` at the start of a line: when `out` is empty or ends
/// with a newline). `key` must be unreserved bytes only (every protocol key is).
pub(crate) fn kvp_pair(key: &str, value: &str, spaces: SpaceEncoding, out: &mut Vec<u8>) {
    if out.last().is_some_and(|&b| b != b'\n') {
        out.push(b'&');
    }
    debug_assert!(key.bytes().all(kvp_format::is_unreserved), "{key}");
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    kvp_component(value, spaces, out);
}

/// Appends `&key=value` (see [`kvp_pair`]) for a value made of unreserved bytes only
/// (digits, hex, the fixed result words): nothing to encode, so it is copied as it is.
pub(crate) fn kvp_plain(key: &str, value: &str, out: &mut Vec<u8>) {
    if out.last().is_some_and(|&b| b != b'\n') {
        out.push(b'&');
    }
    debug_assert!(value.bytes().all(kvp_format::is_unreserved), "{value}");
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
}

/// Appends `&key=<decimal>` (see [`kvp_pair`]).
pub(crate) fn kvp_u64(key: &str, value: u64, out: &mut Vec<u8>) {
    if out.last().is_some_and(|&b| b != b'\n') {
        out.push(b'&');
    }
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    decimal(value, out);
}

/// The two-digit decimals `00` to `99`.
static PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Appends `value` in decimal.
pub(crate) fn decimal(value: u64, out: &mut Vec<u8>) {
    let d = Decimal::new(value);
    out.extend_from_slice(d.as_bytes());
}

/// `value` in decimal, on the stack.
pub(crate) struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut value: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        // Two digits per division.
        while value >= 100 {
            let pair = PAIRS[(value % 100) as usize];
            value /= 100;
            i -= 2;
            buf[i..i + 2].copy_from_slice(&pair);
        }
        if value >= 10 {
            i -= 2;
            buf[i..i + 2].copy_from_slice(&PAIRS[value as usize]);
        } else {
            i -= 1;
            // `value` is below 10 here.
            buf[i] = b'0' + value as u8;
        }
        Decimal { buf, start: i }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

/// Appends cents as `d.dd` (`1050` → `10.50`).
pub(crate) fn cents(value: u64, out: &mut Vec<u8>) {
    decimal(value / 100, out);
    let c = value % 100;
    out.extend_from_slice(&[b'.', b'0' + (c / 10) as u8, b'0' + (c % 10) as u8]);
}

/// Appends `bytes` as lower-case hex.
pub(crate) fn hex_lower(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.extend_from_slice(&[
            HEX_LOWER[usize::from(b >> 4)],
            HEX_LOWER[usize::from(b & 0xF)],
        ]);
    }
}

/// `bytes` as lower-case hex into `buf` (which must be twice as long); returns it as text.
pub(crate) fn hex_lower_into<'b>(bytes: &[u8], buf: &'b mut [u8]) -> &'b str {
    for (i, &b) in bytes.iter().enumerate() {
        buf[2 * i] = HEX_LOWER[usize::from(b >> 4)];
        buf[2 * i + 1] = HEX_LOWER[usize::from(b & 0xF)];
    }
    std::str::from_utf8(&buf[..2 * bytes.len()]).unwrap_or("")
}

/// How `serde_json` escapes a byte in a string: 0 not at all, `u` as `\u00xx`, else a
/// backslash and this character.
static JSON_ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a JSON string (quotes included), escaped exactly as `serde_json` does:
/// `"` and `\` with a backslash, `\b \t \n \f \r` short, other control bytes as `\u00xx`.
pub(crate) fn json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = JSON_ESCAPE[usize::from(b)];
        if short == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if short == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_LOWER[usize::from(b >> 4)],
                HEX_LOWER[usize::from(b & 0xF)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A JSON object written field by field: `{"k":v,...}`.
pub(crate) struct JsonObject<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> JsonObject<'o> {
    pub(crate) fn begin(out: &'o mut Vec<u8>) -> JsonObject<'o> {
        out.push(b'{');
        JsonObject { out, first: true }
    }

    /// `"key":` — keys are this crate's field names, which need no escaping.
    fn key(&mut self, key: &str) {
        debug_assert!(
            key.bytes().all(|b| JSON_ESCAPE[usize::from(b)] == 0),
            "{key}"
        );
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        json_str(value, self.out);
    }

    /// A string that needs no escaping (no quote, backslash or control byte: names checked
    /// at configuration, digits, hex, fixed words).
    pub(crate) fn plain_str(&mut self, key: &str, value: &str) {
        debug_assert!(
            value.bytes().all(|b| JSON_ESCAPE[usize::from(b)] == 0),
            "{value}"
        );
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        decimal(value, self.out);
    }

    /// A number already written in decimal.
    pub(crate) fn raw_number(&mut self, key: &str, digits: &str) {
        self.key(key);
        self.out.extend_from_slice(digits.as_bytes());
    }

    /// A string value written by `f` (which must write valid JSON string content: no quote,
    /// backslash or control byte).
    pub(crate) fn raw_str(&mut self, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        self.key(key);
        self.out.push(b'"');
        f(self.out);
        self.out.push(b'"');
    }

    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            "plain",
            "Jo Smith",
            "100% + more & = ? # / é 💳 李",
            "a\"b\\c\u{7f}",
            "tab\there\nnew\rline\u{8}\u{c}",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.push((0u8..=0x7F).map(char::from).collect());
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..500 {
            let len = rng.usize(..24);
            v.push(
                (0..len)
                    .map(|_| match rng.u8(..4) {
                        0 => char::from(rng.u8(..0x80)),
                        1 => rng.char('\u{80}'..'\u{800}'),
                        2 => rng.char('\u{800}'..'\u{FFFF}'),
                        _ => rng.char('\u{10000}'..'\u{10FFFF}'),
                    })
                    .collect(),
            );
        }
        v
    }

    #[test]
    fn kvp_component_matches_kvp_format_and_plus_matches_replacing_percent20() {
        for s in samples() {
            let mut mine = Vec::new();
            kvp_component(&s, SpaceEncoding::Percent20, &mut mine);
            let mut theirs = Vec::new();
            kvp_format::encode_component(&s, &mut theirs);
            assert_eq!(mine, theirs, "{s:?}");
            let mut plus = Vec::new();
            kvp_component(&s, SpaceEncoding::Plus, &mut plus);
            let replaced = String::from_utf8(theirs).unwrap().replace("%20", "+");
            assert_eq!(String::from_utf8(plus).unwrap(), replaced, "{s:?}");
        }
    }

    #[test]
    fn json_str_matches_serde_json() {
        for s in samples() {
            let mut mine = Vec::new();
            json_str(&s, &mut mine);
            assert_eq!(
                String::from_utf8(mine).unwrap(),
                serde_json::to_string(&s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn numbers() {
        #[rustfmt::skip]
        let cases: &[(u64, &str, &str)] = &[
            (0, "0", "0.00"),
            (1, "1", "0.01"),
            (10, "10", "0.10"),
            (1050, "1050", "10.50"),
            (99, "99", "0.99"),
            (100, "100", "1.00"),
            (101, "101", "1.01"),
            (3_000_000_001, "3000000001", "30000000.01"),
            (1_795_305_600_000, "1795305600000", "17953056000.00"),
            (99_999_999_999, "99999999999", "999999999.99"),
            (u64::MAX, "18446744073709551615", "184467440737095516.15"),
        ];
        for &(n, dec, money) in cases {
            let mut out = Vec::new();
            decimal(n, &mut out);
            assert_eq!(out, dec.as_bytes());
            assert_eq!(Decimal::new(n).as_str(), dec);
            let mut out = Vec::new();
            cents(n, &mut out);
            assert_eq!(out, money.as_bytes(), "{n}");
        }
        let mut out = Vec::new();
        hex_lower(&[0x00, 0xAB, 0x7f], &mut out);
        assert_eq!(out, b"00ab7f");
        let mut buf = [0u8; 6];
        assert_eq!(hex_lower_into(&[0x00, 0xAB, 0x7f], &mut buf), "00ab7f");
    }

    #[test]
    fn pairs_and_objects() {
        let mut out = Vec::new();
        kvp_pair("xError", "Card Expired", SpaceEncoding::Percent20, &mut out);
        kvp_u64("xBatch", 7, &mut out);
        kvp_plain("xRefNum", "3000000001", &mut out);
        out.push(b'\n');
        kvp_pair("xError", "a b", SpaceEncoding::Plus, &mut out);
        assert_eq!(
            out,
            b"xError=Card%20Expired&xBatch=7&xRefNum=3000000001\nxError=a+b"
        );
        let mut out = Vec::new();
        let mut o = JsonObject::begin(&mut out);
        o.str("a", "x\"y");
        o.opt_str("skip", None);
        o.u64("n", 5);
        o.plain_str("p", "m-00ff");
        o.raw_str("h", |out| out.extend_from_slice(b"00ff"));
        o.end();
        assert_eq!(out, br#"{"a":"x\"y","n":5,"p":"m-00ff","h":"00ff"}"#);
    }
}
