//! Per-line results: the `batch_results` CSV of a `GET_BATCH_RESULTS` answer, joined on
//! `Line_Number` (rows come in any order).

use std::collections::BTreeMap;

use super::error::{Error, Result};

/// The column that keys every row: the 1-based data row of the uploaded file.
pub const LINE_NUMBER: &str = "Line_Number";

/// One row of `batch_results`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    /// 1-based data row of the uploaded file.
    pub line_number: u64,
    /// The other columns, in header order (empty cells kept as empty strings).
    pub fields: Vec<(String, String)>,
}

impl ResultRow {
    /// The value of `column`, if the header had it.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(column))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `batch_results` CSV: a header row whose first column is `Line_Number`, then rows.
/// Accepts LF and CRLF and a missing final newline.
///
/// # Errors
/// [`Error::Csv`] naming the CSV line for a missing header, a first column other than
/// `Line_Number`, a row with a different number of cells, or a line number that is not a
/// positive integer.
pub fn parse_batch_results(reference: &str, text: &str) -> Result<Vec<ResultRow>> {
    let err = |line: u64, message: String, source: Option<csv::Error>| Error::Csv {
        reference: reference.to_owned(),
        line,
        message,
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(err(1, "unreadable header".to_owned(), Some(e))),
        None => return Err(err(1, "no header row".to_owned(), None)),
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    if header.first().map(String::as_str) != Some(LINE_NUMBER) {
        return Err(err(1, format!("first column must be {LINE_NUMBER}"), None));
    }
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            err(line, "unreadable row".to_owned(), Some(e))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let mut cells = record.iter();
        let number = cells.next().unwrap_or_default().trim();
        let line_number = number
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                err(
                    line,
                    format!("{LINE_NUMBER} {number:?} is not a positive integer"),
                    None,
                )
            })?;
        let fields = header
            .iter()
            .skip(1)
            .zip(cells)
            .map(|(k, v)| (k.clone(), v.to_owned()))
            .collect();
        rows.push(ResultRow {
            line_number,
            fields,
        });
    }
    Ok(rows)
}

/// Joins rows to the `expected` data lines `1..=expected`: one row per line, none missing,
/// none extra, none repeated.
///
/// # Errors
/// [`Error::Protocol`] listing the missing, unexpected and repeated line numbers.
pub fn join_complete(
    operation: &'static str,
    reference: &str,
    rows: Vec<ResultRow>,
    expected: u64,
) -> Result<Vec<ResultRow>> {
    let mut by_line: BTreeMap<u64, ResultRow> = BTreeMap::new();
    let mut repeated = Vec::new();
    let mut extra = Vec::new();
    for row in rows {
        if row.line_number > expected {
            extra.push(row.line_number);
        } else if let Some(old) = by_line.insert(row.line_number, row) {
            repeated.push(old.line_number);
        }
    }
    let missing: Vec<u64> = (1..=expected)
        .filter(|n| !by_line.contains_key(n))
        .collect();
    if !missing.is_empty() || !extra.is_empty() || !repeated.is_empty() {
        return Err(Error::protocol(
            operation,
            reference,
            format!(
                "batch_results does not match the {expected} uploaded lines: missing {}, unexpected {}, repeated {}",
                list(&missing),
                list(&extra),
                list(&repeated)
            ),
        ));
    }
    Ok(by_line.into_values().collect())
}

fn list(numbers: &[u64]) -> String {
    if numbers.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<String> = numbers.iter().take(10).map(u64::to_string).collect();
    let more = numbers.len().saturating_sub(10);
    if more > 0 {
        format!("{} (+{more} more)", shown.join(","))
    } else {
        shown.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Line_Number,response_code,response_message,status,fort_id,merchant_reference\r\n\
        3,13020,Transaction declined,13,169000000003,ord-3\r\n\
        1,14000,Success,14,169000000001,ord-1\n\
        2,04000,Success,04,169000000002,\"ord,2\"";

    #[test]
    fn parses_rows_in_any_order_and_joins() {
        let rows = parse_batch_results("PB1-x", TEXT).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.line_number).collect::<Vec<_>>(),
            vec![3, 1, 2]
        );
        let joined = join_complete("GET_BATCH_RESULTS", "PB1-x", rows, 3).unwrap();
        assert_eq!(
            joined.iter().map(|r| r.line_number).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(joined[1].get("merchant_reference"), Some("ord,2"));
        assert_eq!(joined[1].get("status"), Some("04"));
        assert_eq!(joined[2].get("RESPONSE_CODE"), Some("13020"));
    }

    #[test]
    fn join_reports_missing_extra_repeated() {
        let row = |n| ResultRow {
            line_number: n,
            fields: vec![],
        };
        let cases: &[(&[u64], u64, Option<&str>)] = &[
            (&[2, 1], 2, None),
            (&[1], 2, Some("missing 2, unexpected none, repeated none")),
            (
                &[1, 2, 3],
                2,
                Some("missing none, unexpected 3, repeated none"),
            ),
            (
                &[1, 1, 2],
                2,
                Some("missing none, unexpected none, repeated 1"),
            ),
            (&[], 0, None),
        ];
        for (lines, expected, problem) in cases {
            let got = join_complete(
                "GET_BATCH_RESULTS",
                "r",
                lines.iter().map(|n| row(*n)).collect(),
                *expected,
            );
            match (got, problem) {
                (Ok(_), None) => {}
                (Err(e), Some(p)) => assert!(e.to_string().contains(p), "{e}"),
                (other, _) => panic!("{lines:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_results_are_errors_with_a_line() {
        let cases: &[(&str, u64)] = &[
            ("", 1),
            ("response_code,Line_Number\n1,2\n", 1),
            ("Line_Number,a\n1,x\n0,y\n", 3),
            ("Line_Number,a\n1,x\n-1,y\n", 3),
            ("Line_Number,a\nx,y\n", 2),
            ("Line_Number,a\n1,x,extra\n", 2),
        ];
        for (text, line) in cases {
            match parse_batch_results("r", text) {
                Err(Error::Csv { line: l, .. }) => assert_eq!(l, *line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
