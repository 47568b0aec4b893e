//! The simulator's own signature code (kept apart from the client's on purpose: two
//! implementations of one rule check each other in the end-to-end tests).

use sha2::{Digest, Sha256, Sha512};

/// The merchant's hash choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShaType {
    /// SHA-256.
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

/// `hex(SHA(phrase + sorted "name=value"... + phrase))`.
pub fn signature(pairs: &[(String, String)], phrase: &str, sha: ShaType) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = String::with_capacity(phrase.len() * 2 + pairs.len() * 32);
    text.push_str(phrase);
    for (k, v) in sorted {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
    }
    text.push_str(phrase);
    match sha {
        ShaType::Sha256 => hex::encode(Sha256::digest(text.as_bytes())),
        ShaType::Sha512 => hex::encode(Sha512::digest(text.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example() {
        // python3: hashlib.sha256(b"PASSa=1b=2PASS").hexdigest()
        let pairs = vec![
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ];
        assert_eq!(signature(&pairs, "PASS", ShaType::Sha256), A1B2_SHA256);
        assert_eq!(signature(&pairs, "PASS", ShaType::Sha512).len(), 128);
    }

    const A1B2_SHA256: &str = "a3a4643cb1dd702cfb1c918f1eb5533783c246dda5af20558e31f4d3ff03d595";
}
