//! The simulator's answers: requests as read, answers as built (members in order, signed at
//! the end by the server), result rows and their CSV, and the small rules they share.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::journal::ApsJournalEntry;
use super::validate::Validation;

/// One result row: column name and value pairs, `Line_Number` first.
pub(super) type Row = Vec<(String, String)>;

pub(super) const FORT_BASE: u64 = 169_000_000_000_000_000;

/// The service's `batch_id` of a merchant's reference: 18 decimal digits derived from both, so
/// a restarted simulator gives every batch the id it had.
pub(super) fn batch_id_of(merchant: &str, reference: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{merchant}\0{reference}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    (u64::from_be_bytes(first) % 900_000_000_000_000_000 + 100_000_000_000_000_000).to_string()
}

/// The 2-digit statuses of unsettled lines, taken in turn by line number.
pub(super) const UNSETTLED: [(u8, &str); 4] = [
    (15, "Uncertain transaction"),
    (19, "Transaction pending"),
    (20, "On hold"),
    (40, "In review"),
];

/// One processed line's result row; `offset` is the `Line_Number` of the first data row.
pub(super) fn result_row(e: &ApsJournalEntry, offset: u64) -> Row {
    let code = e.response_code.clone();
    let status = code.get(..2).and_then(|s| s.parse::<u8>().ok());
    let message = if let Some((_, text)) = UNSETTLED.iter().find(|(s, _)| Some(*s) == status) {
        (*text).to_owned()
    } else if code.ends_with("000") {
        "Success".to_owned()
    } else if code.ends_with("007") {
        "Duplicate order number".to_owned()
    } else {
        "Transaction declined".to_owned()
    };
    vec![
        (
            "Line_Number".into(),
            (e.line_number - 1 + offset).to_string(),
        ),
        ("command".into(), e.command.clone()),
        ("merchant_reference".into(), e.merchant_reference.clone()),
        ("response_code".into(), code.clone()),
        ("response_message".into(), message),
        ("status".into(), code.get(..2).unwrap_or("").to_owned()),
        ("fort_id".into(), e.fort_id.clone()),
        (
            "amount".into(),
            e.amount.map(|a| a.to_string()).unwrap_or_default(),
        ),
        ("currency".into(), e.currency.clone().unwrap_or_default()),
    ]
}

/// A request after its parameters were read, before they were checked.
pub(super) struct Request {
    pub(super) params: Vec<(String, String)>,
    pub(super) file: Option<Vec<u8>>,
}

impl Request {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: members in order; signed at the end.
pub(super) struct Answer {
    pub(super) members: Map<String, Value>,
    /// Carries processed per-line results (what the `ProcessedResults` knobs act on).
    pub(super) processed: bool,
}

impl Answer {
    pub(super) fn echo(req: &Request) -> Self {
        let mut members = Map::new();
        for (k, v) in &req.params {
            if k != "signature" {
                members.insert(k.clone(), Value::String(v.clone()));
            }
        }
        Self {
            members,
            processed: false,
        }
    }

    /// `70000` with the processed rows.
    pub(super) fn processed(self, rows: &[Row]) -> Self {
        let mut answer = self
            .code(70, 0, "Success")
            .with("batch_results", Value::String(rows_csv(rows)));
        answer.processed = true;
        answer
    }

    pub(super) fn code(mut self, status: u8, message: u16, text: &str) -> Self {
        self.members.insert(
            "response_code".into(),
            Value::String(format!("{status:02}{message:03}")),
        );
        self.members
            .insert("response_message".into(), Value::String(text.to_owned()));
        self.members
            .insert("status".into(), Value::String(format!("{status:02}")));
        self
    }

    pub(super) fn with(mut self, key: &str, value: Value) -> Self {
        self.members.insert(key.to_owned(), value);
        self
    }
}

/// The JSON parameters of a command request, as text.
pub(super) fn json_params(body: &[u8]) -> Option<Vec<(String, String)>> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    Some(
        object
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
    )
}

pub(super) fn rejected(validation: &Validation, offset: u64, answer: Answer) -> Answer {
    match validation {
        Validation::HeaderInvalid { message, .. } => {
            answer.code(77, 142, &format!("Invalid batch file header: {message}"))
        }
        Validation::LinesInvalid { problems, .. } => {
            let rows: Vec<Row> = problems
                .iter()
                .map(|p| {
                    vec![
                        (
                            "Line_Number".into(),
                            (p.line_number - 1 + offset).to_string(),
                        ),
                        ("merchant_reference".into(), p.merchant_reference.clone()),
                        ("response_code".into(), format!("77{:03}", p.message_code)),
                        ("response_message".into(), p.message.clone()),
                    ]
                })
                .collect();
            answer
                .code(77, 136, "Batch file validation failed")
                .with("batch_results", Value::String(rows_csv(&rows)))
        }
        Validation::Valid(_) => answer.code(76, 0, "Batch file validated successfully"),
    }
}

pub(super) fn rows_csv(rows: &[Row]) -> String {
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let header: Vec<&str> = rows
        .first()
        .map(|r| r.iter().map(|(k, _)| k.as_str()).collect())
        .unwrap_or_else(|| vec!["Line_Number"]);
    // Writing into a Vec cannot fail; a failure would only lose rows, which the client detects.
    let _ = out.write_record(&header);
    for row in rows {
        let _ = out.write_record(row.iter().map(|(_, v)| v.as_str()));
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

pub(super) fn valid_reference(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 20
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
}

pub(super) fn json(members: &Map<String, Value>) -> Response {
    let body = serde_json::to_string(members).unwrap_or_else(|_| "{}".to_owned());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
