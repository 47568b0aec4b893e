//! The digests the ledger keeps: of one transaction's content, and of a batch's transactions.

use sha2::{Digest, Sha256};

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The digest of a batch's transactions ([`crate::BatchRecord::content_sha256`]): SHA-256 over
/// the lines' [content digests](content_digest), in line order. It says what the batch
/// carries, not how the file that carried it was spelled: keys, software versions and other
/// protocol fields are not in it, and neither is anything a card number could be recovered
/// from.
pub fn batch_digest<'a>(line_digests: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for d in line_digests {
        h.update(d);
    }
    h.finalize().into()
}

/// The content digest of one transaction for the idempotency index: SHA-256 over its canonical
/// KVP encoding (`k=v&k=v`, `kvp_format::encode_pair`) with every sensitive value replaced by
/// its masked form (`kvp_format::mask_value`), so the ledger never holds a hash that could be
/// brute-forced back to a card number. `xIndex` and `xSequenceNumber` are left out: they
/// describe where the transaction went, not what it is. Pair order matters.
pub fn content_digest<'a, I>(pairs: I) -> [u8; 32]
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut buf = Vec::with_capacity(256);
    let mut first = true;
    for (k, v) in pairs {
        if k.eq_ignore_ascii_case("xIndex") || k.eq_ignore_ascii_case("xSequenceNumber") {
            continue;
        }
        if !first {
            buf.push(b'&');
        }
        first = false;
        kvp_format::encode_pair(k, &kvp_format::mask_value(k, v), &mut buf);
    }
    sha256(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "4111111111111111";

    #[test]
    fn digest_cases() {
        let base = content_digest([
            ("xCommand", "cc:sale"),
            ("xCardNum", CARD),
            ("xAmount", "1.00"),
        ]);
        #[rustfmt::skip]
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("xCommand", "cc:sale"), ("xCardNum", CARD), ("xAmount", "1.00")], true),
            (&[("xIndex", "3"), ("xCommand", "cc:sale"), ("xSequenceNumber", "9"), ("xCardNum", CARD), ("xAmount", "1.00")], true),
            // same first 6 / last 4: the masked forms are equal, so is the digest
            (&[("xCommand", "cc:sale"), ("xCardNum", "4111119999991111"), ("xAmount", "1.00")], true),
            (&[("xCommand", "cc:sale"), ("xCardNum", CARD), ("xAmount", "1.01")], false),
            (&[("xCommand", "cc:sale"), ("xCardNum", "4111111111111112"), ("xAmount", "1.00")], false),
            (&[("xAmount", "1.00"), ("xCommand", "cc:sale"), ("xCardNum", CARD)], false),
        ];
        for (pairs, same) in cases {
            assert_eq!(
                content_digest(pairs.iter().copied()) == base,
                *same,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn digest_is_of_the_masked_encoding() {
        let masked = kvp_format::mask_value("xCardNum", CARD).into_owned();
        assert_ne!(masked, CARD);
        let mut buf = Vec::new();
        kvp_format::encode_pair("xCardNum", &masked, &mut buf);
        assert_eq!(content_digest([("xCardNum", CARD)]), sha256(&buf));
    }

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
