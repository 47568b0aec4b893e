//! What the gateway's answers become in the ledger.

use gateway_protocol::{AnswerFile, BatchRef, GatewayVerdict};
use sequence_ledger::{
    BatchOutcome, BatchRecord, CompleteFields, PerLineAnswer, Transition, Verdict,
};

/// The batch as the ledger records it: its number and its stored gateway id.
pub(crate) fn batch_ref(record: &BatchRecord) -> BatchRef {
    BatchRef::new(record.sequence).with_gateway_batch_id(record.gateway_batch_id.clone())
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
