//! Pure merging: a gateway response line (or a batch verdict) becomes one output record, and
//! outcomes are counted per account.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use gateway_protocol::money::{Currency, DEFAULT_CURRENCY, format_amount, parse_amount_in};
use gateway_protocol::x_result;

/// The per-transaction outcome written to the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LineOutcome {
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

impl LineOutcome {
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
    pub const ALL: [LineOutcome; 5] = [
        Self::Approved,
        Self::Declined,
        Self::Error,
        Self::NotProcessed,
        Self::Unknown,
    ];

    /// The outcome of a response line, from its `xResult` letter: `A`, `D`, `U` (the
    /// protocol says the line's fate is not known, e.g. an APS line still pending), anything
    /// else is an error.
    pub fn from_x_result(x_result: Option<&str>) -> Self {
        match x_result.map(str::trim) {
            Some(r) if r.eq_ignore_ascii_case(x_result::APPROVED) => Self::Approved,
            Some(r) if r.eq_ignore_ascii_case(x_result::DECLINED) => Self::Declined,
            Some(r) if r.eq_ignore_ascii_case(x_result::UNKNOWN) => Self::Unknown,
            _ => Self::Error,
        }
    }
}

impl std::fmt::Display for LineOutcome {
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

/// One field of an output record: a name (the input's, a result's or one of ours) and its
/// value, borrowed where it can be.
pub(crate) type OutPair<'a> = (&'a str, Cow<'a, str>);

/// One output record: ref, account, outcome, xSequenceNumber, xIndex, then every response
/// field except the echoed `xIndex`/`xSequenceNumber` and sensitive ones (never a card number).
pub(crate) fn output_record<'a>(
    head: OutputHead<'a>,
    outcome: LineOutcome,
    response: &[OutPair<'a>],
) -> Vec<OutPair<'a>> {
    let mut out: Vec<OutPair<'a>> = Vec::with_capacity(response.len() + 5);
    out.push((head.ref_field, Cow::Borrowed(head.reference)));
    out.push((head.account_field, Cow::Borrowed(head.account)));
    out.push(("outcome", Cow::Borrowed(outcome.as_str())));
    out.push((
        "xSequenceNumber",
        head.sequence
            .map_or(Cow::Borrowed(""), |s| Cow::Owned(s.to_string())),
    ));
    out.push((
        "xIndex",
        head.index
            .map_or(Cow::Borrowed(""), |s| Cow::Owned(s.to_string())),
    ));
    for (k, v) in response {
        if *k == "xIndex" || *k == "xSequenceNumber" || kvp_format::is_sensitive(k) {
            continue;
        }
        if out.iter().any(|(o, _)| o == k) {
            continue;
        }
        out.push((k, v.clone()));
    }
    out
}

/// Counts per outcome and the approved amounts, for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountSummary {
    /// Transactions per outcome.
    pub outcomes: BTreeMap<LineOutcome, u64>,
    /// Sum of the approved lines' `xAuthAmount` per ISO 4217 currency code, in the currency's
    /// minor unit (USD cents, KWD fils, JPY yen), signed as the gateway reports it (a refund
    /// counts as its gateway answers it). A line's currency is its `xCurrency` or
    /// `currency` field (APS results carry one), else [`DEFAULT_CURRENCY`] (Sola answers in
    /// the account's currency and does not echo it). Show one with [`format_amount`].
    pub approved: BTreeMap<String, i64>,
    /// Approved lines with an amount that could not be read (malformed, more decimals than the
    /// currency has, unknown currency code): counted here, not in `approved`. An approved line
    /// without an amount (a void, a card save) is in neither.
    pub approved_unreadable: u64,
    /// Batches by final state name.
    pub batches: BTreeMap<String, u64>,
    /// Why the account failed, if it did.
    pub failure: Option<String>,
}

impl AccountSummary {
    /// Counts one output record.
    pub fn add<K: AsRef<str>, V: AsRef<str>>(&mut self, outcome: LineOutcome, response: &[(K, V)]) {
        *self.outcomes.entry(outcome).or_default() += 1;
        if outcome != LineOutcome::Approved {
            return;
        }
        let field = |name: &str| {
            response
                .iter()
                .find(|(k, v)| k.as_ref() == name && !v.as_ref().trim().is_empty())
                .map(|(_, v)| v.as_ref())
        };
        let currency = field("xCurrency")
            .or_else(|| field("currency"))
            .unwrap_or(DEFAULT_CURRENCY);
        // A void or a card save moves no money: nothing to add, nothing unreadable.
        let Some(amount) = field("xAuthAmount") else {
            return;
        };
        let currency = Currency::new(currency).ok();
        match currency.and_then(|c| parse_amount_in(c, amount).map(|minor| (c, minor))) {
            Some((c, minor)) => match self.approved.get_mut(c.code()) {
                Some(total) => *total = total.saturating_add(minor),
                None => {
                    self.approved.insert(c.code().to_owned(), minor);
                }
            },
            _ => self.approved_unreadable += 1,
        }
    }

    /// Adds another summary's counts and amounts to this one.
    pub fn absorb(&mut self, other: &AccountSummary) {
        for (o, n) in &other.outcomes {
            *self.outcomes.entry(*o).or_default() += n;
        }
        for (c, minor) in &other.approved {
            let total = self.approved.entry(c.clone()).or_default();
            *total = total.saturating_add(*minor);
        }
        self.approved_unreadable += other.approved_unreadable;
        for (s, n) in &other.batches {
            *self.batches.entry(s.clone()).or_default() += n;
        }
    }

    /// How many transactions had `outcome`.
    pub fn count(&self, outcome: LineOutcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// All transactions counted.
    pub fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// The approved amounts for people, one `CODE amount` per currency:
    /// `"KWD 12.345, USD 1234.50"`; `"0"` when nothing was approved.
    pub fn approved_text(&self) -> String {
        if self.approved.is_empty() {
            return "0".to_owned();
        }
        self.approved
            .iter()
            .map(|(code, minor)| format!("{code} {}", format_amount(code, *minor)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_protocol::money::parse_amount;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn outcomes_from_letters() {
        for (r, o) in [
            (Some("A"), LineOutcome::Approved),
            (Some("d"), LineOutcome::Declined),
            (Some("E"), LineOutcome::Error),
            (Some("Q"), LineOutcome::Error),
            (None, LineOutcome::Error),
            (Some("U"), LineOutcome::Unknown),
            (Some(" u "), LineOutcome::Unknown),
        ] {
            assert_eq!(LineOutcome::from_x_result(r), o, "{r:?}");
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
        let resp: Vec<OutPair<'_>> = [
            ("xIndex", "3"),
            ("xSequenceNumber", "7"),
            ("xResult", "A"),
            ("xCardNum", "4111111111111111"),
            ("xMaskedCardNumber", "4xxxxxxxxxxx1111"),
            ("xKey", "k"),
        ]
        .into_iter()
        .map(|(k, v)| (k, Cow::Borrowed(v)))
        .collect();
        let out: Vec<(String, String)> = output_record(head, LineOutcome::Approved, &resp)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_owned()))
            .collect();
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
    fn amounts_by_currency() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, Option<i64>)] = &[
            ("USD", "12.3", Some(1230)),
            ("USD", "0.05", Some(5)),
            ("USD", "7", Some(700)),
            ("USD", "-1.25", Some(-125)),
            ("USD", ".5", Some(50)),
            ("USD", "1.230", Some(123)),
            ("USD", "1.234", None),
            ("KWD", "12.345", Some(12345)),
            ("kwd", "1", Some(1000)),
            ("JPY", "1200", Some(1200)),
            ("JPY", "1.5", None),
            ("USD", "x", None),
            ("USD", "", None),
            ("USD", "--1", None),
            ("XXX", "1", None),
        ];
        for (currency, text, want) in cases {
            assert_eq!(parse_amount(currency, text), *want, "{text} {currency}");
        }
        #[rustfmt::skip]
        let shown: &[(&str, i64, &str)] = &[
            ("USD", 1230, "12.30"), ("USD", -5, "-0.05"), ("KWD", 12345, "12.345"),
            ("KWD", -5, "-0.005"), ("JPY", 1200, "1200"), ("XXX", 1230, "12.30"),
        ];
        for (currency, minor, want) in shown {
            assert_eq!(format_amount(currency, *minor), *want, "{minor} {currency}");
        }
    }

    #[test]
    fn summary_counts() {
        let mut s = AccountSummary::default();
        s.add(LineOutcome::Approved, &pairs(&[("xAuthAmount", "10.50")]));
        s.add(LineOutcome::Approved, &pairs(&[("xAuthAmount", "1")]));
        s.add(LineOutcome::Declined, &pairs(&[("xAuthAmount", "99")]));
        s.add(
            LineOutcome::Approved,
            &pairs(&[("xAuthAmount", "12.345"), ("currency", "KWD")]),
        );
        s.add(
            LineOutcome::Approved,
            &pairs(&[("xAuthAmount", "2"), ("xCurrency", "kwd")]),
        );
        // Three decimals in USD, an unknown currency: unreadable. No amount (a void): neither.
        s.add(LineOutcome::Approved, &pairs(&[("xAuthAmount", "1.005")]));
        s.add(LineOutcome::Approved, &pairs(&[("xAuthAmount", " ")]));
        s.add(LineOutcome::Approved, &pairs(&[]));
        s.add(
            LineOutcome::Approved,
            &pairs(&[("xAuthAmount", "1"), ("currency", "ZZZ")]),
        );
        assert_eq!(
            (
                s.count(LineOutcome::Approved),
                s.count(LineOutcome::Declined),
                s.total()
            ),
            (8, 1, 9)
        );
        let want: BTreeMap<String, i64> = [("KWD".to_owned(), 14345), ("USD".to_owned(), 1150)]
            .into_iter()
            .collect();
        assert_eq!((&s.approved, s.approved_unreadable), (&want, 2));
        assert_eq!(s.approved_text(), "KWD 14.345, USD 11.50");
        assert_eq!(AccountSummary::default().approved_text(), "0");

        let mut total = AccountSummary::default();
        total.absorb(&s);
        total.absorb(&s);
        assert_eq!(total.approved["KWD"], 28690);
        assert_eq!((total.total(), total.approved_unreadable), (18, 4));
    }
}
