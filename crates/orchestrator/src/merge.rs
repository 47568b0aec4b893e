//! Pure merging: a gateway response line (or a batch verdict) becomes one output record, and
//! outcomes are counted per account.

use std::collections::BTreeMap;

use serde::Serialize;

/// The per-transaction outcome written to the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// `xResult=A`.
    Approved,
    /// `xResult=D`.
    Declined,
    /// `xResult=E` or any other letter: the gateway's per-line error.
    Error,
    /// The gateway did not and will not process this transaction: the gateway rejected its
    /// batch, or it was never bound to a batch (the account failed or stopped first); `xError`
    /// says why. Only these may be sent again elsewhere. A rejected batch's lines also carry
    /// any per-line fields its RESPONSE held (`xResult`, `xRefNum`, ..., the line's own
    /// `xLineStatus`/`xLineError`); the verdict still decides.
    NotProcessed,
    /// The gateway may or may not process it: the transaction is bound to a batch that is not
    /// final (`Reserved`, `RequestUploaded`, `Triggered`, `Completed`, `Stuck` — the next run of
    /// the same submit finishes that batch; `xError` says which and that these must not be
    /// resubmitted elsewhere), a batch an operator abandoned, or a line without a result.
    Unknown,
}

impl Outcome {
    /// The output spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Error => "error",
            Self::NotProcessed => "not_processed",
            Self::Unknown => "unknown",
        }
    }

    /// Every outcome, in report order.
    pub const ALL: [Outcome; 5] = [
        Self::Approved,
        Self::Declined,
        Self::Error,
        Self::NotProcessed,
        Self::Unknown,
    ];

    /// The outcome of a response line, from its `xResult` letter.
    pub fn from_x_result(x_result: Option<&str>) -> Self {
        match x_result.map(str::trim) {
            Some(r) if r.eq_ignore_ascii_case("A") => Self::Approved,
            Some(r) if r.eq_ignore_ascii_case("D") => Self::Declined,
            _ => Self::Error,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The routing part of an output record.
#[derive(Debug, Clone, Copy)]
pub struct OutputHead<'a> {
    /// Output name of the ref field.
    pub ref_field: &'a str,
    /// Output name of the account field.
    pub account_field: &'a str,
    /// The caller's ref.
    pub reference: &'a str,
    /// The account.
    pub account: &'a str,
    /// The batch number, if one was assigned.
    pub sequence: Option<u32>,
    /// The line in the batch.
    pub index: Option<u64>,
}

/// One output record: ref, account, outcome, xSequenceNumber, xIndex, then every response
/// field except the echoed `xIndex`/`xSequenceNumber` and sensitive ones (never a card number).
pub fn output_record(
    head: OutputHead<'_>,
    outcome: Outcome,
    response: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(response.len() + 5);
    out.push((head.ref_field.to_owned(), head.reference.to_owned()));
    out.push((head.account_field.to_owned(), head.account.to_owned()));
    out.push(("outcome".to_owned(), outcome.as_str().to_owned()));
    out.push((
        "xSequenceNumber".to_owned(),
        head.sequence.map(|s| s.to_string()).unwrap_or_default(),
    ));
    out.push((
        "xIndex".to_owned(),
        head.index.map(|s| s.to_string()).unwrap_or_default(),
    ));
    for (k, v) in response {
        if k == "xIndex" || k == "xSequenceNumber" || kvp_format::is_sensitive(k) {
            continue;
        }
        if out.iter().any(|(o, _)| o == k) {
            continue;
        }
        out.push((k.clone(), v.clone()));
    }
    out
}

/// Counts per outcome and the approved amount, for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountSummary {
    /// Transactions per outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Sum of `xAuthAmount` of approved lines, in cents.
    pub approved_cents: i64,
    /// Batches by final state name.
    pub batches: BTreeMap<String, u64>,
    /// Why the account failed, if it did.
    pub failure: Option<String>,
}

impl AccountSummary {
    /// Counts one output record.
    pub fn add(&mut self, outcome: Outcome, response: &[(String, String)]) {
        *self.outcomes.entry(outcome).or_default() += 1;
        if outcome == Outcome::Approved {
            let amount = response
                .iter()
                .find(|(k, _)| k == "xAuthAmount")
                .and_then(|(_, v)| parse_cents(v));
            self.approved_cents += amount.unwrap_or(0);
        }
    }

    /// How many transactions had `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// All transactions counted.
    pub fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }
}

/// `"12.3"` → 1230; at most two decimals, optional sign.
pub fn parse_cents(text: &str) -> Option<i64> {
    let text = text.trim();
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 2 {
        return None;
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    let cents = whole.checked_mul(100)?.checked_add(frac)?;
    Some(if neg { -cents } else { cents })
}

/// `1230` → `"12.30"`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn outcomes_from_letters() {
        for (r, o) in [
            (Some("A"), Outcome::Approved),
            (Some("d"), Outcome::Declined),
            (Some("E"), Outcome::Error),
            (Some("Q"), Outcome::Error),
            (None, Outcome::Error),
        ] {
            assert_eq!(Outcome::from_x_result(r), o, "{r:?}");
        }
    }

    #[test]
    fn output_record_drops_echoes_and_card_data() {
        let head = OutputHead {
            ref_field: "ref",
            account_field: "account",
            reference: "r1",
            account: "acme",
            sequence: Some(7),
            index: Some(3),
        };
        let resp = pairs(&[
            ("xIndex", "3"),
            ("xSequenceNumber", "7"),
            ("xResult", "A"),
            ("xCardNum", "4111111111111111"),
            ("xMaskedCardNumber", "4xxxxxxxxxxx1111"),
            ("xKey", "k"),
        ]);
        let out = output_record(head, Outcome::Approved, &resp);
        assert_eq!(
            out,
            pairs(&[
                ("ref", "r1"),
                ("account", "acme"),
                ("outcome", "approved"),
                ("xSequenceNumber", "7"),
                ("xIndex", "3"),
                ("xResult", "A"),
                ("xMaskedCardNumber", "4xxxxxxxxxxx1111")
            ])
        );
    }

    #[test]
    fn cents() {
        for (t, c) in [
            ("12.3", Some(1230)),
            ("0.05", Some(5)),
            ("7", Some(700)),
            ("-1.25", Some(-125)),
            (".5", Some(50)),
            ("1.234", None),
            ("x", None),
            ("", None),
        ] {
            assert_eq!(parse_cents(t), c, "{t}");
        }
        assert_eq!(format_cents(1230), "12.30");
        assert_eq!(format_cents(-5), "-0.05");
    }

    #[test]
    fn summary_counts() {
        let mut s = AccountSummary::default();
        s.add(Outcome::Approved, &pairs(&[("xAuthAmount", "10.50")]));
        s.add(Outcome::Approved, &pairs(&[("xAuthAmount", "1")]));
        s.add(Outcome::Declined, &pairs(&[("xAuthAmount", "99")]));
        assert_eq!(
            (
                s.count(Outcome::Approved),
                s.count(Outcome::Declined),
                s.total(),
                s.approved_cents
            ),
            (2, 1, 3, 1150)
        );
    }
}
