//! Why a line was not approved: the sim's `xResult`/`xErrorCode`/`xError` table.
//!
//! `E` lines are errors (the request was wrong or could not be processed), `D` lines are
//! declines (the request was fine, the answer is no). The codes are the simulator's own and
//! are listed in the crate docs.

use std::borrow::Cow;

/// One reason a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A required field is missing or empty (`Required: xAmount`).
    Missing(&'static str),
    /// A field is present but malformed (`Invalid xAmount`).
    Invalid(&'static str),
    /// `xKey` is not one of the account's merchant keys.
    InvalidKey,
    /// `xCommand` is unknown or not simulated.
    UnsupportedCommand,
    /// The card number fails the length or Luhn check.
    InvalidCard,
    /// `xExp` is before the current month.
    CardExpired,
    /// More than one of `xCardNum`, `xToken`, `xMagstripe`.
    TooManySources,
    /// `xToken` was not issued by this gateway (or is of the wrong kind).
    InvalidToken,
    /// `xRefNum` names no transaction this gateway approved for this merchant.
    OriginalNotFound,
    /// The referenced transaction was voided.
    AlreadyVoided,
    /// The referenced transaction is not an uncaptured authorization.
    NotCapturable,
    /// Capture amount above the authorized amount.
    ExceedsAuthorized,
    /// Refund amount above what is captured and not yet refunded.
    ExceedsCaptured,
    /// The referenced transaction cannot be refunded with this command.
    NotRefundable,
    /// The referenced transaction cannot be voided (it has refunds, or is not a payment).
    NotVoidable,
    /// Decline-table: generic decline.
    Declined,
    /// Decline-table: insufficient funds.
    InsufficientFunds,
    /// Decline-table: pick up card (lost/stolen).
    PickUpCard,
    /// Decline-table: amount above the sim's limit.
    ExceedsLimit,
    /// The same transaction was approved in the last 10 minutes.
    Duplicate,
    /// Decline-table: the issuer did not answer (an error, not a decline).
    IssuerUnavailable,
}

impl Refusal {
    /// `D` for declines, `E` for errors.
    pub(crate) fn result(self) -> &'static str {
        match self {
            Refusal::Declined
            | Refusal::InsufficientFunds
            | Refusal::PickUpCard
            | Refusal::ExceedsLimit
            | Refusal::Duplicate => "D",
            _ => "E",
        }
    }

    /// `Declined` or `Error`, the `xStatus` that goes with [`Refusal::result`].
    pub(crate) fn status(self) -> &'static str {
        if self.result() == "D" {
            "Declined"
        } else {
            "Error"
        }
    }

    /// The five-digit `xErrorCode`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::Missing(_) => "00001",
            Refusal::Invalid(_) => "00002",
            Refusal::InvalidKey => "00003",
            Refusal::UnsupportedCommand => "00004",
            Refusal::InvalidCard => "00005",
            Refusal::CardExpired => "00006",
            Refusal::TooManySources => "00007",
            Refusal::InvalidToken => "00008",
            Refusal::OriginalNotFound => "00009",
            Refusal::AlreadyVoided => "00010",
            Refusal::NotCapturable => "00011",
            Refusal::ExceedsAuthorized => "00012",
            Refusal::ExceedsCaptured => "00013",
            Refusal::NotRefundable => "00014",
            Refusal::NotVoidable => "00015",
            Refusal::Declined => "01000",
            Refusal::InsufficientFunds => "01001",
            Refusal::PickUpCard => "01002",
            Refusal::ExceedsLimit => "01003",
            Refusal::Duplicate => "01004",
            Refusal::IssuerUnavailable => "02000",
        }
    }

    /// The `xError` text.
    pub(crate) fn message(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Refusal::Missing(field) => return Cow::Owned(format!("Required: {field}")),
            Refusal::Invalid(field) => return Cow::Owned(format!("Invalid {field}")),
            Refusal::InvalidKey => "Invalid xKey",
            Refusal::UnsupportedCommand => "Unsupported Command",
            Refusal::InvalidCard => "Invalid Card Number",
            Refusal::CardExpired => "Card Expired",
            Refusal::TooManySources => "More than one payment source",
            Refusal::InvalidToken => "Invalid Token",
            Refusal::OriginalNotFound => "Original Transaction Not Found",
            Refusal::AlreadyVoided => "Original Transaction Already Voided",
            Refusal::NotCapturable => "Original Transaction Cannot Be Captured",
            Refusal::ExceedsAuthorized => "Amount Exceeds Authorized Amount",
            Refusal::ExceedsCaptured => "Amount Exceeds Refundable Amount",
            Refusal::NotRefundable => "Original Transaction Cannot Be Refunded",
            Refusal::NotVoidable => "Original Transaction Cannot Be Voided",
            Refusal::Declined => "Declined",
            Refusal::InsufficientFunds => "Insufficient Funds",
            Refusal::PickUpCard => "Pick Up Card",
            Refusal::ExceedsLimit => "Amount Exceeds Limit",
            Refusal::Duplicate => "Duplicate Transaction",
            Refusal::IssuerUnavailable => "Issuer Unavailable",
        })
    }
}

/// Test card numbers with a fixed answer (see the crate docs' decline table).
pub(crate) const DECLINE_CARDS: &[(&str, Refusal)] = &[
    ("4000000000000002", Refusal::Declined),
    ("4000000000009995", Refusal::InsufficientFunds),
    ("4000000000009987", Refusal::PickUpCard),
    ("4000000000000119", Refusal::IssuerUnavailable),
];

/// Amounts in cents with a fixed answer (see the crate docs' decline table).
pub(crate) const DECLINE_AMOUNTS: &[(u64, Refusal)] = &[
    (1_313, Refusal::Declined),
    (1_414, Refusal::InsufficientFunds),
    (1_515, Refusal::IssuerUnavailable),
];

/// Amounts above this many cents are declined with [`Refusal::ExceedsLimit`].
pub(crate) const LIMIT_CENTS: u64 = 5_000_000;

/// The bank account number that is always declined for insufficient funds.
pub(crate) const NSF_ACCOUNT: &str = "9999999999";

/// The decline-table answer for a card number, if it is a test card.
pub(crate) fn for_card(number: &str) -> Option<Refusal> {
    DECLINE_CARDS
        .iter()
        .find(|(n, _)| *n == number)
        .map(|&(_, r)| r)
}

/// The decline-table answer for an amount in cents, if it has one.
pub(crate) fn for_amount(cents: u64) -> Option<Refusal> {
    if cents > LIMIT_CENTS {
        return Some(Refusal::ExceedsLimit);
    }
    DECLINE_AMOUNTS
        .iter()
        .find(|(a, _)| *a == cents)
        .map(|&(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::is_valid_card_number;

    #[test]
    fn decline_cards_are_valid_numbers() {
        for (n, _) in DECLINE_CARDS {
            assert!(is_valid_card_number(n), "{n}");
        }
    }

    #[test]
    fn codes_are_unique_and_results_match_status() {
        let all = [
            Refusal::Missing("x"),
            Refusal::Invalid("x"),
            Refusal::InvalidKey,
            Refusal::UnsupportedCommand,
            Refusal::InvalidCard,
            Refusal::CardExpired,
            Refusal::TooManySources,
            Refusal::InvalidToken,
            Refusal::OriginalNotFound,
            Refusal::AlreadyVoided,
            Refusal::NotCapturable,
            Refusal::ExceedsAuthorized,
            Refusal::ExceedsCaptured,
            Refusal::NotRefundable,
            Refusal::NotVoidable,
            Refusal::Declined,
            Refusal::InsufficientFunds,
            Refusal::PickUpCard,
            Refusal::ExceedsLimit,
            Refusal::Duplicate,
            Refusal::IssuerUnavailable,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), all.len());
        for r in all {
            let want = if r.result() == "D" {
                "Declined"
            } else {
                "Error"
            };
            assert_eq!(r.status(), want, "{r:?}");
        }
    }

    #[test]
    fn amount_table() {
        let cases: &[(u64, Option<Refusal>)] = &[
            (1_000, None),
            (1_313, Some(Refusal::Declined)),
            (1_414, Some(Refusal::InsufficientFunds)),
            (1_515, Some(Refusal::IssuerUnavailable)),
            (5_000_000, None),
            (5_000_001, Some(Refusal::ExceedsLimit)),
        ];
        for &(c, want) in cases {
            assert_eq!(for_amount(c), want, "{c}");
        }
    }
}
