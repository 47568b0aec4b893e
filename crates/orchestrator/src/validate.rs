//! Validation of input records before anything is reserved or uploaded.

use std::collections::HashMap;

use std::hash::{BuildHasher, RandomState};

use crate::input::InputRecord;
use crate::settings::Settings;

/// One invalid input record: `FILE:LINE: message`. Never quotes a sensitive field's value, and
/// every digit run that could be a card number in what it does quote (a field name, a `ref`, a
/// header cell, an account) is masked (first 6 / last 4 digits): [`Validator::check`] masks its
/// messages and `Display` masks the message again (PROTOCOL.md decision 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// The input name.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            self.file,
            self.line,
            kvp_format::mask_digit_runs(&self.message)
        )
    }
}

/// Checks records one at a time and remembers every `ref` seen (as a 128-bit hash — two
/// SipHash values under this validator's random keys — so the
/// memory per transaction stays small) to find repeats.
#[derive(Debug)]
pub struct Validator<'a> {
    settings: &'a Settings,
    seen: HashMap<u128, u64>,
    hash: [RandomState; 2],
}

impl<'a> Validator<'a> {
    /// A validator for `settings`' accounts and routing fields.
    pub fn new(settings: &'a Settings) -> Self {
        Self {
            settings,
            seen: HashMap::new(),
            hash: [RandomState::new(), RandomState::new()],
        }
    }

    /// Every problem of `rec` (empty when valid), each with its card-like digit runs masked
    /// ([`kvp_format::mask_digit_runs`]). A valid record's `ref` is remembered.
    ///
    /// A `ref` holding a card number ([`kvp_format::contains_card_number`]: 13 to 19 digits,
    /// spaces or dashes allowed between them, passing the Luhn check) is refused: it would be
    /// stored in the ledger and written to the output.
    pub fn check(&mut self, rec: &InputRecord) -> Vec<String> {
        let mut problems = Vec::new();
        let account_field = &self.settings.input.account_field;
        let ref_field = &self.settings.input.ref_field;
        let account_name = rec.get(account_field).unwrap_or("");
        if account_name.is_empty() {
            problems.push(format!("missing {account_field}"));
        }
        let account = self.settings.accounts().get(account_name);
        if !account_name.is_empty() && account.is_none() {
            problems.push(format!("unknown {account_field} {account_name:?}"));
        }
        let reference = rec.get(ref_field).unwrap_or("");
        if reference.is_empty() {
            problems.push(format!("missing {ref_field}"));
        } else if reference.len() > 256 || reference.chars().any(char::is_control) {
            problems.push(format!(
                "{ref_field} must be at most 256 characters without control characters"
            ));
        } else if kvp_format::contains_card_number(reference) {
            problems.push(format!(
                "{ref_field} {reference:?} holds a card number (13 to 19 digits passing the Luhn check); use a reference that is not a card number"
            ));
        }
        if let Some(account) = account {
            // The transaction fields, as the account's protocol will see them.
            let fields: Vec<(&str, &str)> = rec
                .fields
                .iter()
                .filter(|(k, _)| k != account_field && k != ref_field)
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            problems.extend(account.rules().check(&fields));
        } else {
            // No protocol to ask: still name the cells no protocol can take as a field name
            // (a CSV exported without its header row makes a transaction's cells the names).
            for (key, _) in &rec.fields {
                if key != account_field && key != ref_field && !plain_field_name(key) {
                    problems.push(format!(
                        "field name {key:?} cannot be sent (letters, digits and _ only)"
                    ));
                }
            }
        }
        self.remember(reference, rec.line, problems)
    }

    /// Remembers a valid record's `ref` (or reports it repeated), then masks every message:
    /// the one way out of [`Validator::check`].
    fn remember(&mut self, reference: &str, line: u64, mut problems: Vec<String>) -> Vec<String> {
        let ref_field = &self.settings.input.ref_field;
        if !reference.is_empty() {
            let key = ref_hash(&self.hash, reference);
            if let Some(first) = self.seen.get(&key) {
                problems.push(format!(
                    "{ref_field} {reference:?} repeated (first on line {first})"
                ));
            } else if problems.is_empty() {
                self.seen.insert(key, line);
            }
        }
        for p in &mut problems {
            if let std::borrow::Cow::Owned(masked) = kvp_format::mask_digit_runs(p) {
                *p = masked;
            }
        }
        problems
    }
}

/// A name every protocol can send: a letter, then letters, digits and `_`.
fn plain_field_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn ref_hash(hash: &[RandomState; 2], reference: &str) -> u128 {
    u128::from(hash[0].hash_one(reference)) << 64 | u128::from(hash[1].hash_one(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_toml(
            "[accounts.acme]\nlocation = \"file:///tmp/a\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\nallowed_commands = [\"cc:sale\"]\n\
             [accounts.beta]\nlocation = \"file:///tmp/b\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n", &crate::test_protocols())
        .unwrap()
    }

    fn rec(line: u64, kvp: &str) -> InputRecord {
        let fields = kvp
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        InputRecord { line, fields }
    }

    #[test]
    fn each_rule() {
        let s = settings();
        for (kvp, needle) in [
            ("ref=1&xCommand=cc:sale", "missing account"),
            (
                "account=zeta&ref=1&xCommand=cc:sale",
                "unknown account \"zeta\"",
            ),
            ("account=acme&xCommand=cc:sale", "missing ref"),
            ("account=acme&ref=1", "missing xCommand"),
            (
                "account=acme&ref=1&xCommand=cc:refund",
                "not allowed for account acme",
            ),
            (
                "account=acme&ref=1&xCommand=cc:sale&xKey=k",
                "credentials come from the configuration",
            ),
            (
                "account=acme&ref=1&xCommand=cc:sale&xindex=3",
                "set by paybatch",
            ),
            (
                "account=acme&ref=1&xCommand=cc:sale&x-y=3",
                "cannot be sent",
            ),
            (
                "account=acme&ref=1&xCommand=cc:sale&xName=a\u{1}",
                "control character",
            ),
            (
                "account=acme&ref=1&xCommand=cc:sale&xName=a&xName=b",
                "appears twice",
            ),
        ] {
            let problems = Validator::new(&s).check(&rec(1, kvp));
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{kvp}: {problems:?}"
            );
        }
    }

    #[test]
    fn aps_lines_respect_allowed_commands() {
        let s = Settings::from_toml(
            "[accounts.shop]\nprotocol = \"aps\"\nendpoint = \"http://127.0.0.1:9/\"\nmerchant_identifier = \"m\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\ncurrency = \"USD\"\nallowed_commands = [\"PURCHASE\"]\n\
             [accounts.open]\nprotocol = \"aps\"\nendpoint = \"http://127.0.0.1:9/\"\nmerchant_identifier = \"m\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\ncurrency = \"USD\"\n", &crate::test_protocols())
        .unwrap();
        let refund = "command=REFUND&merchant_reference=o1&amount=1.00";
        let purchase = "merchant_reference=o1&amount=1.00&token_name=t&customer_email=a@b.c";
        for (line, expected) in [
            (
                format!("account=shop&ref=1&command=purchase&{purchase}"),
                None,
            ),
            (
                format!("account=shop&ref=1&command=Purchase&{purchase}"),
                None,
            ),
            (
                format!("account=shop&ref=1&{refund}"),
                Some("command \"REFUND\" is not allowed for account shop"),
            ),
            (format!("account=open&ref=1&{refund}"), None),
        ] {
            let problems = Validator::new(&s).check(&rec(1, &line));
            match expected {
                None => assert!(problems.is_empty(), "{line}: {problems:?}"),
                Some(e) => assert_eq!(problems, [e], "{line}"),
            }
        }
    }

    #[test]
    fn an_aps_line_that_alone_could_pass_the_file_limit_is_refused() {
        let s = Settings::from_toml(
            "[accounts.shop]\nprotocol = \"aps\"\nendpoint = \"http://127.0.0.1:9/\"\nmerchant_identifier = \"m\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\ncurrency = \"USD\"\n", &crate::test_protocols())
        .unwrap();
        let line = |note_len: usize| {
            let mut r = rec(
                1,
                "account=shop&ref=1&command=CAPTURE&merchant_reference=o1&amount=1.00",
            );
            r.fields
                .push(("order_description".into(), "x".repeat(note_len)));
            r
        };
        let half = aps_batch::ApsAccountConfig::MAX_FILE_BYTES / 2;
        assert!(Validator::new(&s).check(&line(1000)).is_empty());
        let problems = Validator::new(&s).check(&line(half));
        assert_eq!(
            problems,
            [format!(
                "line could be larger than the APS batch file limit of {} bytes",
                aps_batch::ApsAccountConfig::MAX_FILE_BYTES
            )]
        );
    }

    #[test]
    fn valid_records_pass_and_repeats_are_found() {
        let s = settings();
        let mut v = Validator::new(&s);
        assert!(
            v.check(&rec(
                1,
                "account=acme&ref=r1&xCommand=cc:SALE&xCardNum=4111111111111111"
            ))
            .is_empty()
        );
        assert!(
            v.check(&rec(2, "account=beta&ref=r2&xCommand=cc:refund&xRefNum=9"))
                .is_empty()
        );
        let p = v.check(&rec(3, "account=beta&ref=r1&xCommand=cc:sale"));
        assert_eq!(p, ["ref \"r1\" repeated (first on line 1)"]);
    }

    #[test]
    fn a_ref_holding_a_card_number_is_refused_and_masked() {
        let s = settings();
        let line = |r: &str| format!("account=acme&ref={r}&xCommand=cc:sale");
        for (reference, refused) in [
            ("4111111111111111", true),
            ("4111 1111 1111 1111", true),
            ("4111-1111-1111-1111", true),
            ("order-5500000000000004", true),
            ("4111111111111112", false), // fails the Luhn check
            ("41111111111111111111", false),
            ("r-1", false),
        ] {
            let problems = Validator::new(&s).check(&rec(1, &line(reference)));
            let text = problems.join("\n");
            assert_eq!(
                text.contains("holds a card number"),
                refused,
                "{reference}: {text}"
            );
            if refused {
                assert!(!text.contains(reference), "{text}");
                assert!(text.contains("****"), "shown masked: {text}");
            }
        }
    }

    #[test]
    fn problems_mask_card_numbers_in_field_names_refs_and_accounts() {
        let s = settings();
        // A CSV whose header row is a transaction's cells (the account and ref columns kept
        // their names): the card number became a field name.
        let headerless =
            "account=acme&ref=r2&cc:sale=cc:sale&4111111111111111=5500000000000004&1225=1225";
        let repeated = "account=acme&ref=4111111111111112&xCommand=cc:sale";
        let mut v = Validator::new(&s);
        let mut problems = v.check(&rec(1, headerless));
        problems.extend(v.check(&rec(2, "account=4111111111111111&ref=x&xCommand=cc:sale")));
        assert!(v.check(&rec(3, repeated)).is_empty());
        problems.extend(v.check(&rec(4, repeated)));
        let text = problems.join("\n");
        for needle in [
            "field name \"411111******1111\" cannot be sent",
            "unknown account \"411111******1111\"",
            "ref \"411111******1112\" repeated (first on line 3)",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(
            !text.contains("4111111111111111") && !text.contains("4111111111111112"),
            "{text}"
        );
        let shown = InputProblem {
            file: "in.csv".into(),
            line: 2,
            message: "field name \"4111111111111111\"".into(),
        }
        .to_string();
        assert_eq!(shown, "in.csv:2: field name \"411111******1111\"");
    }

    #[test]
    fn problems_never_quote_card_numbers() {
        let s = settings();
        let p = Validator::new(&s).check(&rec(
            1,
            "account=zeta&ref=1&xCardNum=4111111111111111&xKey=secret",
        ));
        let text = p.join("\n");
        assert!(
            !text.contains("4111111111111111") && !text.contains("secret"),
            "{text}"
        );
    }
}
