//! What a `GET_BATCH_RESULTS` answer says, and what each per-line row becomes in the merged
//! output. Pure: no I/O.
//!
//! The published reference answers `70000` both once a file is validated and once it is
//! processed (PROTOCOL.md §3b). So an answer is read as processed results only when it carries
//! per-line rows with transaction statuses ([`Reading::Processed`]); `70000` without them is
//! "validated" ([`Reading::Validated`]), never a verdict.

use crate::batch_file::{ApsCommand, is_card_data};
use crate::client::ApsAnswer;
use crate::codes::{BatchPhase, LineOutcome, UNSETTLED_STATUSES};
use crate::error::{Error, Result};
use crate::results::{ResultRow, parse_batch_results};
use gateway_protocol::LineResult;
use gateway_protocol::money::{Currency, MinorUnits};
use gateway_protocol::x_result::UNKNOWN as X_RESULT_UNKNOWN;

/// Where a batch stands according to one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reading {
    /// 138: validation still running.
    Validating,
    /// Validated and waiting for `PROCESS_BATCH`: `76xxx`, or `70000` without per-line
    /// transaction rows. `explicit` is true for `76xxx` (nothing else can be meant).
    Validated {
        /// The answer was `76xxx`.
        explicit: bool,
    },
    /// 77xxx: validation failed; nothing will be processed.
    ValidationFailed,
    /// 140: processing still running.
    Processing,
    /// Per-line rows with transaction statuses: the batch was processed.
    Processed(Vec<ResultRow>),
    /// 141: the service does not know the reference.
    UnknownReference,
    /// Any other code.
    Failed,
}

/// Reads an answer. Per-line rows of a `70000` answer decide between validated and
/// processed: none, or none with a transaction status, is validated; all with one is
/// processed.
///
/// # Errors
/// [`Error::Csv`] for unreadable `batch_results`; [`Error::Protocol`] for a `70000` answer
/// whose rows mix transaction statuses with others (neither a validation nor a verdict).
pub(crate) fn read(
    operation: &'static str,
    reference: &str,
    answer: &ApsAnswer,
) -> Result<Reading> {
    Ok(match BatchPhase::of(answer.code) {
        BatchPhase::Validating => Reading::Validating,
        BatchPhase::Validated => Reading::Validated { explicit: true },
        BatchPhase::ValidationFailed => {
            // "Validation failed" proves nothing was processed only when no row says a
            // transaction was (a status 14, 19, ...): such an answer contradicts itself, and
            // is no verdict (the batch stays triggered: its lines `unknown`).
            let processed = answer
                .batch_results
                .as_deref()
                .filter(|t| !t.trim().is_empty())
                .and_then(|t| parse_batch_results(reference, t).ok())
                .map_or(0, |rows| {
                    rows.iter().filter(|r| r.has_transaction_status()).count()
                });
            if processed > 0 {
                return Err(Error::protocol(
                    operation,
                    reference,
                    format!(
                        "{} (validation failed) answer has {processed} per-line row(s) with a transaction status: some lines may have been processed; not taken as the batch's verdict",
                        answer.code
                    ),
                ));
            }
            Reading::ValidationFailed
        }
        BatchPhase::Processing => Reading::Processing,
        BatchPhase::UnknownReference => Reading::UnknownReference,
        BatchPhase::Failed => Reading::Failed,
        BatchPhase::Processed => {
            let rows = match answer.batch_results.as_deref() {
                Some(text) if !text.trim().is_empty() => parse_batch_results(reference, text)?,
                _ => Vec::new(),
            };
            let with_status = rows.iter().filter(|r| r.has_transaction_status()).count();
            if with_status == 0 {
                Reading::Validated { explicit: false }
            } else if with_status == rows.len() {
                Reading::Processed(rows)
            } else {
                return Err(Error::protocol(
                    operation,
                    reference,
                    format!(
                        "{} answer has {with_status} of {} per-line rows with a transaction status: neither validation nor results",
                        answer.code,
                        rows.len()
                    ),
                ));
            }
        }
    })
}

/// The rows of any answer that carries some (validation reasons, validation rows, results),
/// for comparing them with the uploaded lines. Unreadable rows are none.
pub(crate) fn any_rows(reference: &str, answer: &ApsAnswer) -> Vec<ResultRow> {
    answer
        .batch_results
        .as_deref()
        .and_then(|t| parse_batch_results(reference, t).ok())
        .unwrap_or_default()
}

/// "validation failed (77136 ...): line 2: 77004 Invalid command; line 3: ..." (at most 10
/// lines named, by the service's `Line_Number`).
pub(crate) fn validation_summary(reference: &str, answer: &ApsAnswer) -> String {
    let mut text = format!(
        "validation failed ({} {})",
        answer.code, answer.response_message
    );
    let rows = any_rows(reference, answer);
    let named: Vec<String> = rows
        .iter()
        .take(10)
        .map(|r| {
            format!(
                "line {}: {} {}",
                r.line_number,
                r.get("response_code").unwrap_or(""),
                r.get("response_message").unwrap_or("")
            )
        })
        .collect();
    if !named.is_empty() {
        text.push_str(": ");
        text.push_str(&kvp_format::mask_digit_runs(&named.join("; ")));
    }
    if rows.len() > 10 {
        text.push_str(&format!(" (+{} more)", rows.len() - 10));
    }
    text
}

/// The lines a failed validation flagged, already joined to their 0-based index: each with its
/// own reason as `xStatus` (the 5-digit `response_code`) and `xError` (its
/// `response_message`) — the merge shows them as `xLineStatus`/`xLineError` next to the batch
/// verdict — followed by the row's columns.
pub(crate) fn rejected_lines(rows: Vec<(u64, ResultRow)>) -> Vec<LineResult> {
    rows.into_iter()
        .map(|(index, row)| {
            let mut fields = vec![
                (
                    "xStatus".to_owned(),
                    row.get("response_code").unwrap_or("").to_owned(),
                ),
                (
                    "xError".to_owned(),
                    row.get("response_message").unwrap_or("").to_owned(),
                ),
            ];
            fields.extend(safe_columns(row.fields));
            LineResult {
                index,
                fields: fields.into(),
            }
        })
        .collect()
}

/// The merged-output fields of one result row: the APS columns as sent, plus `xResult` /
/// `xStatus` / `xError` so the merge classifies it like any other account, and for an
/// approved line `xAuthAmount` in major units (APS answers in minor units) so the account's
/// approved amount is summed like a Sola account's.
///
/// `xResult` is `A` (the command's success status), `D` (its failure status), `E` (status 00,
/// the request was refused) or `U` ([`X_RESULT_UNKNOWN`]: any other status, an unsettled one —
/// 15 uncertain, 19 pending, 20 on hold, 40 in review — or none; money may have moved, the
/// merge reports the line `unknown` with the gateway's status and message).
pub(crate) fn line_fields(row: ResultRow) -> Vec<(String, String)> {
    let status = row.status();
    let command = row.get("command").and_then(|c| ApsCommand::parse(c).ok());
    let outcome = match (command, status) {
        (Some(command), Some(status)) => LineOutcome::of(command, status),
        // Each success/failure status belongs to exactly one command.
        (None, Some(14 | 4 | 6 | 8)) => LineOutcome::Approved,
        (None, Some(13 | 5 | 7 | 9)) => LineOutcome::Declined,
        (None, Some(crate::codes::INVALID_REQUEST)) => LineOutcome::Error,
        _ => LineOutcome::Unknown,
    };
    let (letter, word) = match outcome {
        LineOutcome::Approved => ("A", "Approved"),
        LineOutcome::Declined => ("D", "Declined"),
        LineOutcome::Error => ("E", "Error"),
        LineOutcome::Unknown => (X_RESULT_UNKNOWN, "Unknown"),
    };
    let message = row.get("response_message").unwrap_or("").to_owned();
    let mut fields = vec![
        ("xResult".to_owned(), letter.to_owned()),
        ("xStatus".to_owned(), word.to_owned()),
    ];
    match outcome {
        LineOutcome::Approved => {}
        LineOutcome::Declined | LineOutcome::Error => fields.push(("xError".to_owned(), message)),
        LineOutcome::Unknown => fields.push(("xError".to_owned(), unknown_note(status, &message))),
    }
    if let Some(fort_id) = row.get("fort_id").filter(|f| !f.is_empty()) {
        fields.push(("xRefNum".to_owned(), fort_id.to_owned()));
    }
    if outcome == LineOutcome::Approved
        && let Some(amount) = major_amount(&row)
    {
        fields.push(("xAuthAmount".to_owned(), amount));
    }
    fields.extend(safe_columns(row.fields));
    fields
}

/// The `xError` of a line whose fate is open: the gateway's status and message, and what it
/// means for the caller.
fn unknown_note(status: Option<u8>, message: &str) -> String {
    let what = match status {
        Some(s) => match UNSETTLED_STATUSES.iter().find(|(u, _)| *u == s) {
            Some((_, word)) => format!("status {s:02} ({word})"),
            None => format!("status {s:02}"),
        },
        None => "no transaction status".to_owned(),
    };
    let message = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    format!(
        "APS {what}{message}; the transaction may have been or may still be processed — do not resubmit it, check it with the gateway"
    )
}

/// A result row's columns without card data (`card_number`, `card_security_code`,
/// `expiry_date`, `card_holder_name`, and whatever `kvp_format::is_sensitive` flags): the
/// service should not return them, and if it does they must not reach the ledger or output.
pub(crate) fn safe_columns(
    fields: Vec<(String, String)>,
) -> impl Iterator<Item = (String, String)> {
    fields.into_iter().filter(|(k, _)| !is_card_data(k))
}

/// `amount` (minor units) of a result row in major units of its `currency`, if both are there
/// and make sense.
fn major_amount(row: &ResultRow) -> Option<String> {
    let minor: u64 = row.get("amount")?.trim().parse().ok()?;
    let currency = Currency::new(row.get("currency")?.trim()).ok()?;
    Some(currency.to_major(MinorUnits(minor)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::AnswerForm;
    use crate::codes::ResponseCode;

    fn row(fields: &[(&str, &str)]) -> ResultRow {
        ResultRow {
            line_number: 1,
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    fn answer(code: &str, rows: Option<&str>) -> ApsAnswer {
        ApsAnswer {
            form: AnswerForm::SignedJson,
            code: ResponseCode::parse(code).unwrap(),
            response_message: String::new(),
            transactions_count: Some(2),
            batch_results: rows.map(str::to_owned),
            fields: serde_json::Map::new(),
        }
    }

    #[test]
    fn a_70000_is_processed_only_with_transaction_rows() {
        let results = "Line_Number,status,merchant_reference\n2,14,o1\n3,19,o2\n";
        let validation_rows =
            "Line_Number,response_code,merchant_reference\n2,70000,o1\n3,70000,o2\n";
        let mixed = "Line_Number,status\n2,14\n3,70\n";
        let cases: &[(&str, Option<&str>, Option<Reading>)] = &[
            ("70000", None, Some(Reading::Validated { explicit: false })),
            (
                "70000",
                Some(""),
                Some(Reading::Validated { explicit: false }),
            ),
            (
                "70000",
                Some("Line_Number\n"),
                Some(Reading::Validated { explicit: false }),
            ),
            (
                "70000",
                Some(validation_rows),
                Some(Reading::Validated { explicit: false }),
            ),
            ("76000", None, Some(Reading::Validated { explicit: true })),
            ("70138", None, Some(Reading::Validating)),
            ("70140", None, Some(Reading::Processing)),
            (
                "77136",
                Some("Line_Number,response_code\n2,77004\n"),
                Some(Reading::ValidationFailed),
            ),
            // A failed validation whose rows say a transaction was processed: no verdict.
            ("77136", Some(results), None),
            ("71136", Some("Line_Number,status\n2,77\n3,14\n"), None),
            ("71141", None, Some(Reading::UnknownReference)),
            ("00008", None, Some(Reading::Failed)),
            ("70000", Some(mixed), None),
            ("70000", Some("status,Line_Number\n14,2\n"), None),
        ];
        for (code, rows, expected) in cases {
            let got = read("GET_BATCH_RESULTS", "r", &answer(code, *rows));
            match (got, expected) {
                (Ok(r), Some(e)) => assert_eq!(&r, e, "{code} {rows:?}"),
                (Err(_), None) => {}
                (got, _) => panic!("{code} {rows:?}: {got:?}"),
            }
        }
        let Ok(Reading::Processed(rows)) = read("G", "r", &answer("70000", Some(results))) else {
            panic!("results not read as processed")
        };
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn line_outcomes() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("command", "PURCHASE"),
                    ("status", "14"),
                    ("response_code", "14000"),
                ],
                "A",
            ),
            (
                &[
                    ("command", "PURCHASE"),
                    ("status", "13"),
                    ("response_code", "13020"),
                ],
                "D",
            ),
            // Another command's success status: not known what happened (was E).
            (&[("command", "PURCHASE"), ("status", "04")], "U"),
            (&[("command", "CAPTURE"), ("status", "04")], "A"),
            (&[("response_code", "06000")], "A"),
            (&[("response_code", "09020")], "D"),
            (&[("response_code", "00008")], "E"),
            (&[("command", "REFUND"), ("status", "00")], "E"),
            // Unsettled statuses and no status at all: unknown (were E).
            (&[("status", "15")], "U"),
            (&[("command", "CAPTURE"), ("status", "19")], "U"),
            (&[("command", "REFUND"), ("response_code", "20000")], "U"),
            (&[("command", "PURCHASE"), ("status", "40")], "U"),
            (&[("status", "88")], "U"),
            (&[], "U"),
        ];
        for (fields, letter) in cases {
            let out = line_fields(row(fields));
            assert_eq!(
                out[0],
                ("xResult".to_owned(), (*letter).to_owned()),
                "{fields:?}"
            );
            assert_eq!(*letter == X_RESULT_UNKNOWN, *letter == "U");
        }
        let out = line_fields(row(&[
            ("status", "14"),
            ("fort_id", "169"),
            ("response_message", "Success"),
        ]));
        assert!(out.contains(&("xRefNum".to_owned(), "169".to_owned())));
        assert!(!out.iter().any(|(k, _)| k == "xError"));
        // An unsettled line carries the gateway's status and message, and no amount.
        let out = line_fields(row(&[
            ("command", "CAPTURE"),
            ("status", "19"),
            ("response_code", "19000"),
            ("response_message", "Transaction pending"),
            ("amount", "1000"),
            ("currency", "USD"),
        ]));
        let get = |k: &str| out.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        assert_eq!(get("xStatus"), Some("Unknown"));
        let error = get("xError").unwrap();
        assert!(
            error.contains("status 19 (pending): Transaction pending")
                && error.contains("do not resubmit"),
            "{error}"
        );
        assert_eq!(get("status"), Some("19"));
        assert_eq!(get("xAuthAmount"), None);
    }

    #[test]
    fn card_data_in_result_rows_is_dropped() {
        let card = [
            ("card_number", "4111111111111111"),
            ("CARD_SECURITY_CODE", "123"),
            ("expiry_date", "2512"),
            ("card_holder_name", "J Doe"),
            ("xCardNum", "5111111111111118"),
            ("xCVV", "999"),
        ];
        let mut with_card = vec![("status", "14"), ("merchant_reference", "o1")];
        with_card.extend(card);
        let approved = line_fields(row(&with_card));
        let mut flagged = vec![("response_code", "77006"), ("response_message", "bad")];
        flagged.extend(card);
        let rejected = rejected_lines(vec![(0, row(&flagged))]);
        for fields in [approved.into(), rejected[0].fields.clone()] {
            for (key, value) in card {
                assert!(
                    !fields
                        .iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case(key) || v == value),
                    "{key} kept: {fields:?}"
                );
            }
        }
        assert!(line_fields(row(&with_card)).contains(&("merchant_reference".into(), "o1".into())));
    }

    #[test]
    fn approved_lines_carry_the_amount_in_major_units() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (
                &[("status", "14"), ("amount", "1234"), ("currency", "USD")],
                Some("12.34"),
            ),
            (
                &[("status", "14"), ("amount", "1234"), ("currency", "KWD")],
                Some("1.234"),
            ),
            (
                &[("status", "14"), ("amount", "1234"), ("currency", "JPY")],
                Some("1234"),
            ),
            (
                &[("status", "13"), ("amount", "1234"), ("currency", "USD")],
                None,
            ),
            (
                &[("status", "14"), ("amount", "12.34"), ("currency", "USD")],
                None,
            ),
            (&[("status", "14"), ("amount", "1234")], None),
        ];
        for (fields, expected) in cases {
            let out = line_fields(row(fields));
            let got = out
                .iter()
                .find(|(k, _)| k == "xAuthAmount")
                .map(|(_, v)| v.as_str());
            assert_eq!(got, *expected, "{fields:?}");
        }
    }
}
