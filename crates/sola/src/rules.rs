//! What a Sola input line must be before it is put into a batch.

use gateway_protocol::{AccountCommon, Chunker, LineCountChunker, LineRules};

/// Fields paybatch sets itself on every REQUEST line; an input line carrying one is invalid.
pub const RESERVED_FIELDS: &[&str] = &[
    "xKey",
    "xVersion",
    "xSoftwareName",
    "xSoftwareVersion",
    "xIndex",
    "xSequenceNumber",
];

/// The checks of a Sola account's input lines: each field once, none of the
/// [`RESERVED_FIELDS`], names the KVP format can send, no control characters in values, an
/// `xCommand`, and only the account's allowed commands. Batches are cut by line count alone.
#[derive(Debug, Clone, Default)]
pub struct SolaRules {
    account: String,
    common: AccountCommon,
}

impl SolaRules {
    /// The rules of account `account` with these common keys.
    pub fn new(account: impl Into<String>, common: AccountCommon) -> Self {
        Self {
            account: account.into(),
            common,
        }
    }
}

impl LineRules for SolaRules {
    fn check(&self, fields: &[(&str, &str)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (n, (key, value)) in fields.iter().enumerate() {
            if fields.iter().take(n).any(|(k, _)| k == key) {
                problems.push(format!("field {key:?} appears twice"));
                continue;
            }
            if let Some(reserved) = RESERVED_FIELDS.iter().find(|r| r.eq_ignore_ascii_case(key)) {
                problems.push(if *reserved == "xKey" {
                    "field \"xKey\" is not allowed: credentials come from the configuration"
                        .to_owned()
                } else {
                    format!("field {reserved:?} is set by paybatch and must not be in the input")
                });
                continue;
            }
            if !valid_field_name(key) {
                problems.push(format!(
                    "field name {key:?} cannot be sent (letters, digits and _ only)"
                ));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                problems.push(format!("field {key:?} has a control character"));
            }
        }
        let command = fields
            .iter()
            .find(|(k, _)| *k == "xCommand")
            .map(|(_, v)| *v);
        match command {
            None | Some("") => problems.push("missing xCommand".to_owned()),
            Some(command) if !self.common.allows(command) => {
                problems.push(format!(
                    "command {command:?} is not allowed for account {}",
                    self.account
                ));
            }
            Some(_) => {}
        }
        problems
    }

    fn chunker(&self) -> Box<dyn Chunker> {
        Box::new(LineCountChunker)
    }
}

fn valid_field_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
