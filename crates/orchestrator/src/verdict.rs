//! What the gateway's answers become in the ledger.

use gateway_protocol::{AnswerFile, BatchRef, GatewayVerdict};
use sequence_ledger::{
    BatchOutcome, BatchRecord, CompleteFields, PerLineAnswer, Transition, Verdict,
};

/// The batch as the ledger records it: its number and its stored gateway id.
pub(crate) fn batch_ref(record: &BatchRecord) -> BatchRef {
    BatchRef::new(record.sequence).with_gateway_batch_id(record.gateway_batch_id.clone())
}

/// `verdict` with every card number in its text masked (`kvp_format::mask_card_numbers`):
/// what a gateway writes is stored, logged and shown, and a card number in it (an error
/// quoting the card, a field echoed in the wrong place) must reach none of those. Applied to
/// every verdict as it arrives from the protocol, before anything else sees it.
pub(crate) fn scrubbed(mut verdict: GatewayVerdict) -> GatewayVerdict {
    let mask = |s: &mut String| {
        if let std::borrow::Cow::Owned(masked) = kvp_format::mask_card_numbers(s) {
            *s = masked;
        }
    };
    mask(&mut verdict.status);
    if let Some(error) = verdict.error.as_mut() {
        mask(error);
    }
    for (key, value) in &mut verdict.fields {
        mask(key);
        mask(value);
    }
    verdict
}

/// A line's result fields with every card number in a key or value masked (see
/// [`scrubbed`]); the fields as they are (no copy) when none holds one.
pub(crate) fn scrubbed_fields(fields: kvp_format::Record) -> kvp_format::Record {
    let holds_card = fields
        .iter()
        .any(|(k, v)| kvp_format::contains_card_number(k) || kvp_format::contains_card_number(v));
    if !holds_card {
        return fields;
    }
    fields
        .iter()
        .map(|(k, v)| {
            (
                kvp_format::mask_card_numbers(k),
                kvp_format::mask_card_numbers(v),
            )
        })
        .collect()
}

/// The ledger transition recording `verdict`: `Completed` with the verdict and the rest of the
/// gateway's fields (never a sensitive key: the ledger drops them).
pub(crate) fn completed(verdict: GatewayVerdict) -> Transition {
    let fields =
        CompleteFields::from_pairs(verdict.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Transition::CompletedWith(ledger_verdict(verdict), fields)
}

/// The ledger's record of the verdict: `Success` or `GatewayError`, with the gateway's
/// status, error and processed count as given.
fn ledger_verdict(v: GatewayVerdict) -> Verdict {
    Verdict {
        outcome: if v.success {
            BatchOutcome::Success
        } else {
            BatchOutcome::GatewayError
        },
        status: v.status,
        error: v.error,
        processed_count: v.processed_count,
    }
}

/// What the per-line answer was, as the ledger keeps it.
pub(crate) fn per_line_answer(answer: AnswerFile) -> PerLineAnswer {
    match answer {
        AnswerFile::Absent => PerLineAnswer::Absent,
        AnswerFile::Unreadable => PerLineAnswer::Unreadable,
        // A protocol's future kinds count as read: their lines were handed over.
        _ => PerLineAnswer::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_from_the_gateway_are_masked_before_anything_keeps_them() {
        let card = "4111111111111111";
        let v = scrubbed(GatewayVerdict {
            success: false,
            status: format!("Error {card}"),
            error: Some(format!("card {card} declined")),
            processed_count: None,
            fields: vec![(card.into(), "x".into()), ("xEcho".into(), card.into())],
        });
        let shown = format!("{v:?}");
        assert!(!shown.contains(card), "{shown}");
        assert_eq!(v.error.as_deref(), Some("card 411111******1111 declined"));
        let fields: kvp_format::Record = [
            ("xResult", "A"),
            ("xRefNum", "4111111111111112"),
            ("xError", "bad card 4111111111111111"),
        ]
        .into_iter()
        .collect();
        let kept = scrubbed_fields(fields);
        assert_eq!(
            kept.get("xRefNum"),
            Some("4111111111111112"),
            "not a card: kept"
        );
        assert_eq!(kept.get("xError"), Some("bad card 411111******1111"));
        assert_eq!(kept.get("xResult"), Some("A"));
    }

    #[test]
    fn completed_keeps_the_gateway_fields_but_no_key() {
        let v = GatewayVerdict {
            success: true,
            status: "Success".into(),
            error: None,
            processed_count: Some(2),
            fields: [
                ("xResult", "Success"),
                ("xStatus", "Success"),
                ("xKey", "batch-secret"),
                ("xSubmittedCount", "2"),
                ("xProcessedCount", "2"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        };
        let Transition::CompletedWith(verdict, fields) = completed(v) else {
            panic!("expected CompletedWith");
        };
        assert_eq!(verdict.outcome, BatchOutcome::Success);
        assert_eq!(fields.result.as_deref(), Some("Success"));
        assert_eq!(
            fields.extra,
            vec![("xSubmittedCount".to_owned(), "2".to_owned())]
        );
    }

    #[test]
    fn verdict_converts_to_the_ledger_s() {
        for (success, outcome) in [
            (true, BatchOutcome::Success),
            (false, BatchOutcome::GatewayError),
        ] {
            let v = GatewayVerdict {
                success,
                status: "S".into(),
                error: Some("e".into()),
                processed_count: Some(0),
                fields: Vec::new(),
            };
            let got = ledger_verdict(v);
            assert_eq!(
                (
                    got.outcome,
                    got.status.as_str(),
                    got.error.as_deref(),
                    got.processed_count
                ),
                (outcome, "S", Some("e"), Some(0))
            );
        }
    }
}
