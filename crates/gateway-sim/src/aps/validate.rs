//! Validation of an uploaded batch file, as the service does it before anything is processed:
//! the header, then every line (command, unique `merchant_reference`, amount, required
//! parameters). Problems are collected per line, not stopped at the first.

use std::collections::HashSet;

/// A data line that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLine {
    /// 1-based data row (the header is not counted).
    pub line_number: u64,
    /// Upper-case command.
    pub command: String,
    /// The order reference.
    pub merchant_reference: String,
    /// Minor units (money commands).
    pub amount: Option<u64>,
    /// Currency code (money commands).
    pub currency: Option<String>,
    /// `fort_id` of the original transaction, if given.
    pub fort_id: Option<String>,
}

/// One rejected line: 3-digit message code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based data row.
    pub line_number: u64,
    /// The line's reference as written.
    pub merchant_reference: String,
    /// 001 missing parameter, 002 invalid format, 004 invalid command, 005 invalid amount,
    /// 007 duplicate order number, 013 invalid currency.
    pub message_code: u16,
    /// Human text.
    pub message: String,
}

/// The verdict on a whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// Every line is good.
    Valid(Vec<BatchLine>),
    /// The header row is missing, unreadable, repeats a column or lacks a required one.
    HeaderInvalid {
        /// Data rows seen.
        count: u64,
        /// Why.
        message: String,
    },
    /// At least one line is bad; nothing of the file will be processed.
    LinesInvalid {
        /// Data rows seen.
        count: u64,
        /// Every bad line.
        problems: Vec<LineProblem>,
    },
}

impl Validation {
    /// Data rows in the file.
    pub fn count(&self) -> u64 {
        match self {
            Self::Valid(lines) => lines.len() as u64,
            Self::HeaderInvalid { count, .. } | Self::LinesInvalid { count, .. } => *count,
        }
    }
}

const REQUIRED: &[&str] = &["command", "merchant_reference"];

/// Validates a whole uploaded file whose header uses the parameter names.
#[cfg(test)]
pub fn validate(file: &[u8]) -> Validation {
    validate_with(file, &[])
}

/// [`validate`] for a file whose standard columns may carry other header cells: `renamed`
/// holds (parameter, cell) pairs; such cells are read as their parameter.
pub fn validate_with(file: &[u8], renamed: &[(String, String)]) -> Validation {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    let mut records = reader.records();
    let raw: Vec<String> = match records.next() {
        Some(Ok(h)) => h.iter().map(|c| c.trim().to_owned()).collect(),
        _ => {
            return Validation::HeaderInvalid {
                count: 0,
                message: "no readable header row".into(),
            };
        }
    };
    let header: Vec<String> = raw
        .iter()
        .map(|c| {
            renamed
                .iter()
                .find(|(_, cell)| cell == c)
                .map_or(c.as_str(), |(parameter, _)| parameter.as_str())
                .to_owned()
        })
        .collect();
    let rows: Vec<Result<csv::StringRecord, csv::Error>> = records.collect();
    let count = rows.len() as u64;
    // With a template of its own, the service knows a renamed column only by its cell.
    if let Some((parameter, cell)) = renamed
        .iter()
        .find(|(p, c)| p != c && raw.contains(p) && !renamed.iter().any(|(_, other)| other == p))
    {
        return Validation::HeaderInvalid {
            count,
            message: format!(
                "column {parameter:?} must be named {:?}",
                kvp_format::mask_card_numbers(cell)
            ),
        };
    }
    let mut names = HashSet::new();
    for name in &header {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Validation::HeaderInvalid {
                count,
                message: format!(
                    "invalid column name {:?}",
                    kvp_format::mask_card_numbers(name)
                ),
            };
        }
        if !names.insert(name.as_str()) {
            return Validation::HeaderInvalid {
                count,
                message: format!("column {:?} repeated", kvp_format::mask_card_numbers(name)),
            };
        }
    }
    if let Some(missing) = REQUIRED.iter().find(|r| !names.contains(**r)) {
        return Validation::HeaderInvalid {
            count,
            message: format!("required column {missing:?} missing"),
        };
    }
    let mut lines = Vec::with_capacity(rows.len());
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (i, row) in rows.into_iter().enumerate() {
        let line_number = i as u64 + 1;
        let row = match row {
            Ok(r) if r.len() == header.len() => r,
            _ => {
                problems.push(LineProblem {
                    line_number,
                    merchant_reference: String::new(),
                    message_code: 2,
                    message: "Invalid parameter format: cell count differs from the header".into(),
                });
                continue;
            }
        };
        let get = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .and_then(|i| row.get(i))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let merchant_reference = get("merchant_reference").unwrap_or("").to_owned();
        match check_line(&get, &mut seen) {
            Ok(line) => lines.push(BatchLine {
                line_number,
                ..line
            }),
            Err((message_code, message)) => problems.push(LineProblem {
                line_number,
                merchant_reference,
                message_code,
                message,
            }),
        }
    }
    if problems.is_empty() {
        Validation::Valid(lines)
    } else {
        Validation::LinesInvalid { count, problems }
    }
}

fn check_line<'a>(
    get: &dyn Fn(&str) -> Option<&'a str>,
    seen: &mut HashSet<String>,
) -> Result<BatchLine, (u16, String)> {
    let command = get("command")
        .ok_or((1, "Missing parameter: command".to_owned()))?
        .to_owned();
    if !matches!(
        command.as_str(),
        "PURCHASE" | "CAPTURE" | "REFUND" | "VOID_AUTHORIZATION"
    ) {
        return Err((
            4,
            format!(
                "Invalid command {:?}",
                kvp_format::mask_card_numbers(&command)
            ),
        ));
    }
    let reference =
        get("merchant_reference").ok_or((1, "Missing parameter: merchant_reference".to_owned()))?;
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if reference.len() > 40 || !reference.bytes().all(ok_char) {
        return Err((2, "Invalid parameter format: merchant_reference".to_owned()));
    }
    if !seen.insert(reference.to_owned()) {
        return Err((7, "Duplicate order number in file".to_owned()));
    }
    let money = command != "VOID_AUTHORIZATION";
    let (amount, currency) = if money {
        let amount = get("amount").ok_or((1, "Missing parameter: amount".to_owned()))?;
        let amount = (amount.bytes().all(|b| b.is_ascii_digit()))
            .then(|| amount.parse::<u64>().ok())
            .flatten()
            .filter(|a| *a > 0)
            .ok_or((5, "Invalid amount".to_owned()))?;
        let currency = get("currency").ok_or((1, "Missing parameter: currency".to_owned()))?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err((13, "Invalid currency".to_owned()));
        }
        (Some(amount), Some(currency.to_owned()))
    } else {
        if get("amount").is_some() {
            return Err((
                5,
                "Invalid amount: VOID_AUTHORIZATION takes none".to_owned(),
            ));
        }
        (None, None)
    };
    if command == "PURCHASE" {
        for required in ["token_name", "customer_email"] {
            if get(required).is_none() {
                return Err((1, format!("Missing parameter: {required}")));
            }
        }
        if get("eci") != Some("RECURRING") {
            return Err((
                2,
                "Invalid parameter format: eci must be RECURRING".to_owned(),
            ));
        }
    }
    Ok(BatchLine {
        line_number: 0,
        command,
        merchant_reference: reference.to_owned(),
        amount,
        currency,
        fort_id: get("fort_id").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "command,merchant_reference,amount,currency,token_name,customer_email,eci,fort_id\r\n";

    fn file(rows: &[&str]) -> Vec<u8> {
        let mut f = HEADER.to_owned();
        for r in rows {
            f.push_str(r);
            f.push_str("\r\n");
        }
        f.into_bytes()
    }

    #[test]
    fn valid_file() {
        let v = validate(&file(&[
            "PURCHASE,o1,1000,USD,tok,a@b.c,RECURRING,",
            "CAPTURE,o2,5,KWD,,,,1690001",
            "VOID_AUTHORIZATION,o3,,,,,,",
        ]));
        let Validation::Valid(lines) = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            lines.iter().map(|l| l.line_number).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(lines[1].fort_id.as_deref(), Some("1690001"));
        assert_eq!(lines[0].amount, Some(1000));
    }

    #[test]
    fn line_problems() {
        let cases: &[(&str, u16)] = &[
            ("AUTHORIZATION,o1,1,USD,,,,", 4),
            (",o1,1,USD,,,,", 1),
            ("CAPTURE,,1,USD,,,,", 1),
            ("CAPTURE,o 1,1,USD,,,,", 2),
            ("CAPTURE,o1,12.34,USD,,,,", 5),
            ("CAPTURE,o1,0,USD,,,,", 5),
            ("CAPTURE,o1,-5,USD,,,,", 5),
            ("CAPTURE,o1,5,usd,,,,", 13),
            ("CAPTURE,o1,5,,,,,", 1),
            ("VOID_AUTHORIZATION,o1,5,USD,,,,", 5),
            ("PURCHASE,o1,5,USD,,a@b.c,RECURRING,", 1),
            ("PURCHASE,o1,5,USD,tok,a@b.c,ECOMMERCE,", 2),
            ("CAPTURE,o1,5", 2),
        ];
        for (row, code) in cases {
            match validate(&file(&[row])) {
                Validation::LinesInvalid { count: 1, problems } => {
                    assert_eq!(problems.len(), 1, "{row}");
                    assert_eq!(problems[0].message_code, *code, "{row}: {:?}", problems[0]);
                    assert_eq!(problems[0].line_number, 1);
                }
                other => panic!("{row}: {other:?}"),
            }
        }
    }

    #[test]
    fn duplicate_reference_flags_the_second_line() {
        let v = validate(&file(&[
            "CAPTURE,o1,5,USD,,,,",
            "REFUND,o1,5,USD,,,,",
            "CAPTURE,o2,5,USD,,,,",
        ]));
        let Validation::LinesInvalid { count, problems } = v else {
            panic!("{v:?}")
        };
        assert_eq!(count, 3);
        assert_eq!(
            problems
                .iter()
                .map(|p| (p.line_number, p.message_code))
                .collect::<Vec<_>>(),
            vec![(2, 7)]
        );
    }

    #[test]
    fn renamed_header_cells_are_read_as_their_parameters() {
        let text = "Command,Merchant Reference,amount,currency\r\nCAPTURE,o1,5,USD\r\n";
        let renamed = vec![
            ("command".to_owned(), "Command".to_owned()),
            (
                "merchant_reference".to_owned(),
                "Merchant Reference".to_owned(),
            ),
        ];
        let Validation::Valid(lines) = validate_with(text.as_bytes(), &renamed) else {
            panic!("renamed header refused")
        };
        assert_eq!(lines[0].merchant_reference, "o1");
        assert!(matches!(
            validate(text.as_bytes()),
            Validation::HeaderInvalid { .. }
        ));
        // The parameter's own name is not the template's.
        let plain = "command,merchant_reference,amount,currency\r\nCAPTURE,o1,5,USD\r\n";
        assert!(matches!(
            validate_with(plain.as_bytes(), &renamed),
            Validation::HeaderInvalid { message, .. } if message.contains("must be named")
        ));
    }

    #[test]
    fn header_problems() {
        let cases: &[&str] = &[
            "",
            "command,command,merchant_reference\n",
            "command,amount\n",
            "Command,merchant_reference\n",
        ];
        for text in cases {
            assert!(
                matches!(validate(text.as_bytes()), Validation::HeaderInvalid { .. }),
                "{text:?}"
            );
        }
    }
}
