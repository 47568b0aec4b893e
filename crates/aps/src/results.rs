//! Per-line results: the `batch_results` CSV of a `GET_BATCH_RESULTS` answer (or a CSV body),
//! joined on `Line_Number` (rows come in any order). Data row `i` (0-based) of the uploaded
//! file is `Line_Number = i + offset`: 2 when the service counts the header row as line 1 (the
//! published example), 1 when it numbers data rows from 1 (PROTOCOL.md §3a). A join that leaves
//! a line missing, finds one outside the file or twice is an error: reasons are never shifted
//! onto neighbouring lines.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The column that keys every row: the line of the uploaded file, as the service numbers it.
pub const LINE_NUMBER: &str = "Line_Number";

/// One row of `batch_results`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    /// The line of the uploaded file, as the service numbers it (see the module docs).
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

    /// The row's 2-digit status: its `status` column, else the first two digits of its
    /// `response_code`; `None` when neither holds one.
    pub fn status(&self) -> Option<u8> {
        let text = self
            .get("status")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .or_else(|| self.get("response_code").and_then(|c| c.trim().get(..2)))?;
        if text.len() <= 2 && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().ok()
        } else {
            None
        }
    }

    /// Whether the row carries a transaction's status (a per-line result of processing),
    /// not a validation or batch-level one.
    pub fn has_transaction_status(&self) -> bool {
        self.status()
            .is_some_and(crate::codes::is_transaction_status)
    }

    /// The 0-based data row this row is about, given the file's first `Line_Number`.
    pub fn index(&self, offset: u64) -> Option<u64> {
        self.line_number.checked_sub(offset)
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
                    format!(
                        "{LINE_NUMBER} {:?} is not a positive integer",
                        kvp_format::mask_card_numbers(number)
                    ),
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

/// Joins rows to the `expected` data lines, `Line_Number` `offset..offset + expected`: one
/// row per line, none missing, none extra, none repeated. Returns (0-based index, row) by
/// index.
///
/// # Errors
/// [`Error::Protocol`] listing the missing, unexpected and repeated line numbers.
pub fn join_complete(
    operation: &'static str,
    reference: &str,
    rows: Vec<ResultRow>,
    expected: u64,
    offset: u64,
) -> Result<Vec<(u64, ResultRow)>> {
    join(
        operation,
        reference,
        rows,
        expected,
        offset,
        Coverage::Every,
    )
}

/// Joins the rows a failed validation returned (only the flagged lines) to the `expected`
/// data lines: lines may be missing, but a row outside the file or a line named twice is an
/// error. Returns (0-based index, row) by index.
///
/// # Errors
/// [`Error::Protocol`] listing the unexpected and repeated line numbers.
pub fn join_partial(
    operation: &'static str,
    reference: &str,
    rows: Vec<ResultRow>,
    expected: u64,
    offset: u64,
) -> Result<Vec<(u64, ResultRow)>> {
    join(operation, reference, rows, expected, offset, Coverage::Some)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    Every,
    Some,
}

fn join(
    operation: &'static str,
    reference: &str,
    rows: Vec<ResultRow>,
    expected: u64,
    offset: u64,
    coverage: Coverage,
) -> Result<Vec<(u64, ResultRow)>> {
    let mut by_index: BTreeMap<u64, ResultRow> = BTreeMap::new();
    let mut repeated = Vec::new();
    let mut extra = Vec::new();
    for row in rows {
        match row.index(offset).filter(|i| *i < expected) {
            None => extra.push(row.line_number),
            Some(index) => {
                if let Some(old) = by_index.insert(index, row) {
                    repeated.push(old.line_number);
                }
            }
        }
    }
    let missing: Vec<u64> = match coverage {
        Coverage::Every => (0..expected)
            .filter(|i| !by_index.contains_key(i))
            .map(|i| i + offset)
            .collect(),
        Coverage::Some => Vec::new(),
    };
    if !missing.is_empty() || !extra.is_empty() || !repeated.is_empty() {
        let last = (offset + expected).saturating_sub(1);
        return Err(Error::protocol(
            operation,
            reference,
            format!(
                "batch_results does not match the {expected} uploaded lines (Line_Number {offset}..={last}, line_number_offset {offset}): missing {}, unexpected {}, repeated {}",
                list(&missing),
                list(&extra),
                list(&repeated)
            ),
        ));
    }
    Ok(by_index.into_iter().collect())
}

/// Checks that every joined row that names a `merchant_reference` names the one of its line
/// (`expected[index]`): a row about another order is not this batch's answer (a reference
/// reused by a recreated ledger, or lines numbered differently than configured).
///
/// # Errors
/// [`Error::Protocol`] naming the first mismatches (references masked), without moving any
/// row.
pub fn check_references(
    operation: &'static str,
    reference: &str,
    rows: &[(u64, ResultRow)],
    expected: &[String],
) -> Result<()> {
    let mut wrong = Vec::new();
    let mut count = 0usize;
    for (index, row) in rows {
        let Some(got) = row
            .get("merchant_reference")
            .map(str::trim)
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        let want = usize::try_from(*index)
            .ok()
            .and_then(|i| expected.get(i))
            .map(String::as_str);
        if want != Some(got) {
            count += 1;
            if wrong.len() < 5 {
                wrong.push(format!(
                    "Line_Number {} names {:?}, the line holds {:?}",
                    row.line_number,
                    kvp_format::mask_digit_runs(got),
                    kvp_format::mask_digit_runs(want.unwrap_or("nothing"))
                ));
            }
        }
    }
    if count == 0 {
        return Ok(());
    }
    Err(Error::protocol(
        operation,
        reference,
        format!(
            "{count} per-line result(s) are about another merchant_reference than the uploaded line: {}{}; not this batch's answer (nothing recorded)",
            wrong.join("; "),
            if count > wrong.len() { "; ..." } else { "" }
        ),
    ))
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
        let joined = join_complete("GET_BATCH_RESULTS", "PB1-x", rows.clone(), 3, 1).unwrap();
        assert_eq!(
            joined
                .iter()
                .map(|(i, r)| (*i, r.line_number))
                .collect::<Vec<_>>(),
            vec![(0, 1), (1, 2), (2, 3)]
        );
        assert_eq!(joined[1].1.get("merchant_reference"), Some("ord,2"));
        assert_eq!(joined[1].1.get("status"), Some("04"));
        assert_eq!(joined[2].1.get("RESPONSE_CODE"), Some("13020"));
        // The same rows read with the published numbering (header = line 1) do not fit: line
        // 1 is outside the file, data row 2 has no row. Loud, not shifted.
        let err = join_complete("GET_BATCH_RESULTS", "PB1-x", rows, 3, 2).unwrap_err();
        assert!(err.to_string().contains("missing 4, unexpected 1"), "{err}");
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
                1,
            );
            match (got, problem) {
                (Ok(_), None) => {}
                (Err(e), Some(p)) => assert!(e.to_string().contains(p), "{e}"),
                (other, _) => panic!("{lines:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn published_numbering_joins_data_row_i_on_line_i_plus_2() {
        let row = |n| ResultRow {
            line_number: n,
            fields: vec![],
        };
        // (line numbers, lines uploaded, complete join, partial join): Ok(indexes) or Err(text)
        type Case<'a> = (
            &'a [u64],
            u64,
            Result<&'a [u64], &'a str>,
            Result<&'a [u64], &'a str>,
        );
        let cases: &[Case] = &[
            (&[3, 2, 4], 3, Ok(&[0, 1, 2]), Ok(&[0, 1, 2])),
            (&[3], 3, Err("missing 2,4, unexpected none"), Ok(&[1])),
            (
                &[1, 2, 3],
                3,
                Err("missing 4, unexpected 1"),
                Err("unexpected 1,"),
            ),
            (&[2, 3, 4, 5], 3, Err("unexpected 5"), Err("unexpected 5")),
            (&[2, 2], 1, Err("repeated 2"), Err("repeated 2")),
            (&[0], 1, Err("unexpected 0"), Err("unexpected 0")),
            (&[], 0, Ok(&[]), Ok(&[])),
        ];
        for (lines, expected, complete, partial) in cases {
            for (joined, want) in [
                (
                    join_complete(
                        "G",
                        "r",
                        lines.iter().map(|n| row(*n)).collect(),
                        *expected,
                        2,
                    ),
                    complete,
                ),
                (
                    join_partial(
                        "G",
                        "r",
                        lines.iter().map(|n| row(*n)).collect(),
                        *expected,
                        2,
                    ),
                    partial,
                ),
            ] {
                match (joined, want) {
                    (Ok(rows), Ok(indexes)) => assert_eq!(
                        rows.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                        *indexes,
                        "{lines:?}"
                    ),
                    (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{lines:?}: {e}"),
                    (got, want) => panic!("{lines:?}: {got:?} vs {want:?}"),
                }
            }
        }
    }

    #[test]
    fn statuses_of_rows() {
        let row = |f: &[(&str, &str)]| ResultRow {
            line_number: 2,
            fields: f.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        };
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<u8>, bool);
        let cases: &[Case] = &[
            (&[("status", "14")], Some(14), true),
            (
                &[("status", "04"), ("response_code", "19000")],
                Some(4),
                true,
            ),
            (&[("response_code", "19000")], Some(19), true),
            (&[("response_code", "70000")], Some(70), false),
            (&[("response_code", "77004")], Some(77), false),
            (&[("status", "")], None, false),
            (&[("status", "x1")], None, false),
            (&[("merchant_reference", "o1")], None, false),
        ];
        for (fields, status, transaction) in cases {
            let r = row(fields);
            assert_eq!(r.status(), *status, "{fields:?}");
            assert_eq!(r.has_transaction_status(), *transaction, "{fields:?}");
        }
    }

    #[test]
    fn references_must_be_the_lines_own() {
        let row = |n: u64, r: &str| {
            (
                n - 2,
                ResultRow {
                    line_number: n,
                    fields: vec![("merchant_reference".into(), r.into())],
                },
            )
        };
        let expected: Vec<String> = ["o1", "o2", "4111111111111111"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert!(
            check_references(
                "G",
                "r",
                &[row(2, "o1"), row(4, "4111111111111111")],
                &expected
            )
            .is_ok()
        );
        // A row without the column is not compared.
        let bare = (
            1,
            ResultRow {
                line_number: 3,
                fields: vec![],
            },
        );
        assert!(check_references("G", "r", &[bare], &expected).is_ok());
        let err = check_references("G", "r", &[row(2, "o2"), row(3, "o1")], &expected).unwrap_err();
        assert!(err.to_string().contains("2 per-line result(s)"), "{err}");
        let err = check_references("G", "r", &[row(3, "4111111111111112")], &expected).unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("4111111111111112") && !text.contains("4111111111111111"),
            "{text}"
        );
        assert!(text.contains("411111"), "{text}");
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
