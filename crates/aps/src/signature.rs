//! Request signing and response verification.
//!
//! The service's rule: sort every parameter by name, join `name=value` with no separator, put
//! the SHA phrase at both ends, hash with SHA-256 (or SHA-512) and send lowercase hex. Requests
//! use the request phrase, answers are checked with the response phrase. Parameters that do not
//! take part (`signature` itself, the uploaded `file`) are left out by the caller.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// The hash the merchant chose in the APS back office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShaType {
    /// SHA-256 (64 hex characters), the service default.
    #[default]
    Sha256,
    /// SHA-512 (128 hex characters).
    Sha512,
}

impl std::str::FromStr for ShaType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            _ => Err(format!(
                "unknown sha_type {s:?} (expected sha256 or sha512)"
            )),
        }
    }
}

/// Computes the signature of `params` with `phrase`.
///
/// The pairs are sorted by name (byte order) here; the caller leaves out the parameters that
/// do not take part. Values are used exactly as sent on the wire.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)], phrase: &str, sha: ShaType) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    match sha {
        ShaType::Sha256 => digest_hex::<Sha256>(&sorted, phrase),
        ShaType::Sha512 => digest_hex::<Sha512>(&sorted, phrase),
    }
}

/// Checks `signature` against the pairs; the comparison does not stop at the first difference
/// and ignores hex case.
pub fn verify<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    phrase: &str,
    sha: ShaType,
    signature: &str,
) -> bool {
    let expected = sign(params, phrase, sha);
    let given = signature.trim().to_ascii_lowercase();
    if expected.len() != given.len() {
        return false;
    }
    expected
        .bytes()
        .zip(given.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The pairs of a JSON answer as they take part in its signature: every top-level member
/// except `signature`; strings as they are, numbers and booleans in their JSON text, `null` as
/// the empty string, arrays and objects as compact JSON.
pub fn json_pairs(object: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    object
        .iter()
        .filter(|(k, _)| k.as_str() != "signature")
        .map(|(k, v)| (k.clone(), json_text(v)))
        .collect()
}

fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn digest_hex<D: Digest>(sorted: &[(&str, &str)], phrase: &str) -> String {
    let mut hasher = D::new();
    hasher.update(phrase.as_bytes());
    for (k, v) in sorted {
        hasher.update(k.as_bytes());
        hasher.update(b"=");
        hasher.update(v.as_bytes());
    }
    hasher.update(phrase.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected digests computed independently with python3:
    //   hashlib.sha256(b"PHRASE" + b"access_code=zx0IPmPy5jp1vAz" + ... + b"PHRASE").hexdigest()
    // over the hand-sorted, hand-concatenated strings written out in each case.
    const UPLOAD: &[(&str, &str)] = &[
        ("service_command", "UPLOAD_BATCH_FILE"),
        ("merchant_identifier", "CycHZxVj"),
        ("access_code", "zx0IPmPy5jp1vAz8Kpg7"),
        ("batch_reference", "PB1-0a1b2c3d"),
        ("language", "en"),
    ];

    const SHA256_UPLOAD: &str = "798ca62ede391d45d7410a8988ebc8de5f99d10df21aa7260dd2c6f08788f7e2";
    const SHA256_UPLOAD_UPPER: &str =
        "798CA62EDE391D45D7410A8988EBC8DE5F99D10DF21AA7260DD2C6F08788F7E2";
    const SHA512_UPLOAD: &str = "86c37b0295f02351befdbd44de03f1ed48598c3b094c3076fc46f0b482a394b8d83cde3b4d3615a19b8a23c88a23bed52ecf2011d81c4bdf49fa820d83b46ebc";
    const SHA256_JSON: &str = "919158312bdee0b1ff4e3dff1784c98473ad8faf8d783bab8f4e7824d31b95e9";

    #[test]
    fn sha256_matches_independent_digest() {
        // "TESTSHAIN" + "access_code=zx0IPmPy5jp1vAz8Kpg7batch_reference=PB1-0a1b2c3dlanguage=en
        //  merchant_identifier=CycHZxVjservice_command=UPLOAD_BATCH_FILE" + "TESTSHAIN"
        assert_eq!(sign(UPLOAD, "TESTSHAIN", ShaType::Sha256), SHA256_UPLOAD);
    }

    #[test]
    fn sha512_matches_independent_digest() {
        assert_eq!(sign(UPLOAD, "TESTSHAIN", ShaType::Sha512), SHA512_UPLOAD);
    }

    #[test]
    fn order_of_input_pairs_does_not_matter() {
        let mut reversed = UPLOAD.to_vec();
        reversed.reverse();
        assert_eq!(sign(&reversed, "TESTSHAIN", ShaType::Sha256), SHA256_UPLOAD);
    }

    #[test]
    fn verify_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("TESTSHAIN", SHA256_UPLOAD, true),
            ("TESTSHAIN", SHA256_UPLOAD_UPPER, true),
            ("OTHERPHRASE", SHA256_UPLOAD, false),
            ("TESTSHAIN", "00", false),
            ("TESTSHAIN", "", false),
        ];
        for (phrase, sig, ok) in cases {
            assert_eq!(
                verify(UPLOAD, phrase, ShaType::Sha256, sig),
                *ok,
                "{phrase} {sig}"
            );
        }
        let mut changed = UPLOAD.to_vec();
        changed[4] = ("language", "ar");
        assert!(!verify(
            &changed,
            "TESTSHAIN",
            ShaType::Sha256,
            SHA256_UPLOAD
        ));
    }

    #[test]
    fn json_answer_pairs_use_text_forms() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"response_code":"70000","transactions_count":3,"ok":true,"none":null,"signature":"x"}"#,
        )
        .unwrap();
        let mut pairs = json_pairs(v.as_object().unwrap());
        pairs.sort();
        let expected: Vec<(String, String)> = [
            ("none", ""),
            ("ok", "true"),
            ("response_code", "70000"),
            ("transactions_count", "3"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(pairs, expected);
        // "RESP" + "none=ok=trueresponse_code=70000transactions_count=3" + "RESP", by python3
        assert_eq!(sign(&pairs, "RESP", ShaType::Sha256), SHA256_JSON);
    }

    #[test]
    fn sha_type_parses() {
        assert_eq!("SHA-512".parse::<ShaType>(), Ok(ShaType::Sha512));
        assert_eq!("sha256".parse::<ShaType>(), Ok(ShaType::Sha256));
        assert!("md5".parse::<ShaType>().is_err());
    }
}
