//! The CSV batch file: one header row of APS parameter names, one row per transaction.
//!
//! Inferred from the public documentation (see docs/APS.md): the exact column set, CRLF row
//! ends, and empty cells for parameters a command does not use. Rows keep the caller's order.
//! The header cells of the standard parameters can be renamed per account ([`HeaderNames`]):
//! the template's exact header is not published. How the service numbers rows in its answers
//! (`Line_Number`) is the account's `line_number_offset`, not this file's business.

use std::fmt;

use crate::error::{Error, Result};
use gateway_protocol::money::{Currency, MinorUnits};

/// A command the batch service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApsCommand {
    /// A recurring purchase on a stored token (`eci=RECURRING`).
    Purchase,
    /// Capture of an earlier authorization.
    Capture,
    /// Refund of an earlier capture or purchase.
    Refund,
    /// Void of an earlier authorization.
    VoidAuthorization,
}

impl ApsCommand {
    /// Parses a command name (case-insensitive).
    ///
    /// # Errors
    /// [`Error::Input`] for any command the batch service does not take.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "PURCHASE" => Ok(Self::Purchase),
            "CAPTURE" => Ok(Self::Capture),
            "REFUND" => Ok(Self::Refund),
            "VOID_AUTHORIZATION" => Ok(Self::VoidAuthorization),
            "PAYMENT_LINK" => Err(Error::input(
                "command",
                "PAYMENT_LINK is not supported yet: its batch template is not published (docs/APS.md, \"Payment links\")",
            )),
            _ => Err(Error::input(
                "command",
                format!(
                    "{text:?} cannot be batched (PURCHASE, CAPTURE, REFUND, VOID_AUTHORIZATION)"
                ),
            )),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "PURCHASE",
            Self::Capture => "CAPTURE",
            Self::Refund => "REFUND",
            Self::VoidAuthorization => "VOID_AUTHORIZATION",
        }
    }

    /// The (success, failure) 2-digit statuses of this command.
    pub fn statuses(self) -> (u8, u8) {
        match self {
            Self::Purchase => (14, 13),
            Self::Capture => (4, 5),
            Self::Refund => (6, 7),
            Self::VoidAuthorization => (8, 9),
        }
    }

    /// Whether the command moves money and so needs `amount` and `currency`.
    pub fn needs_amount(self) -> bool {
        !matches!(self, Self::VoidAuthorization)
    }
}

impl fmt::Display for ApsCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The columns every batch file has, in this order; extra parameters follow.
pub const COLUMNS: &[&str] = &[
    "command",
    "merchant_reference",
    "amount",
    "currency",
    "token_name",
    "customer_email",
    "eci",
    "fort_id",
];

/// The longest header cell [`HeaderNames`] accepts.
pub const MAX_HEADER_NAME: usize = 64;

/// The batch file's header cells for the standard parameters ([`COLUMNS`]): each parameter's
/// own name unless renamed. Extra parameters keep their names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderNames {
    /// (parameter, header cell), only for renamed parameters.
    renamed: Vec<(String, String)>,
}

impl HeaderNames {
    /// Renames standard parameters: `("merchant_reference", "Merchant_Reference")`, ...
    ///
    /// # Errors
    /// [`Error::Input`] (field = the parameter) for a parameter that is not one of
    /// [`COLUMNS`], a cell that is empty, longer than [`MAX_HEADER_NAME`] or holds anything
    /// but printable ASCII without `,` and `"`, or two parameters given the same cell.
    pub fn new<K: AsRef<str>, V: AsRef<str>>(
        names: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut renamed: Vec<(String, String)> = Vec::new();
        for (k, v) in names {
            let (k, v) = (k.as_ref(), v.as_ref());
            if !COLUMNS.contains(&k) {
                return Err(Error::input(
                    k,
                    format!("not a standard batch file column ({})", COLUMNS.join(", ")),
                ));
            }
            let printable = |b: u8| (0x20..0x7f).contains(&b) && b != b',' && b != b'"';
            if v.is_empty() || v.len() > MAX_HEADER_NAME || !v.bytes().all(printable) {
                return Err(Error::input(
                    k,
                    format!(
                        "header name must be 1-{MAX_HEADER_NAME} printable ASCII characters without , or \""
                    ),
                ));
            }
            if renamed.iter().any(|(p, _)| p == k) {
                return Err(Error::input(k, "renamed twice"));
            }
            renamed.push((k.to_owned(), v.to_owned()));
        }
        let names = Self { renamed };
        let mut cells = std::collections::HashSet::new();
        for c in COLUMNS {
            if !cells.insert(names.cell(c)) {
                return Err(Error::input(
                    *c,
                    format!("header name {:?} is used twice", names.cell(c)),
                ));
            }
        }
        Ok(names)
    }

    /// The header cell of `parameter`.
    pub fn cell<'a>(&'a self, parameter: &'a str) -> &'a str {
        self.renamed
            .iter()
            .find(|(p, _)| p == parameter)
            .map_or(parameter, |(_, c)| c.as_str())
    }

    /// The renamed parameters, as (parameter, cell).
    pub fn renamed(&self) -> &[(String, String)] {
        &self.renamed
    }
}

/// Card data must never be in a batch file: recurring purchases use `token_name`.
const REFUSED: &[&str] = &[
    "card_number",
    "card_security_code",
    "expiry_date",
    "card_holder_name",
];

/// Whether a column holds card data or anything else [`kvp_format::is_sensitive`] flags:
/// such columns of a result row are dropped before results reach the ledger or the output.
pub(crate) fn is_card_data(key: &str) -> bool {
    REFUSED.iter().any(|r| r.eq_ignore_ascii_case(key)) || kvp_format::is_sensitive(key)
}

/// One line of a batch file, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct ApsTransaction {
    /// What to do.
    pub command: ApsCommand,
    /// The order: a new one for `PURCHASE`, the original one for maintenance commands.
    pub merchant_reference: String,
    /// In minor units; `None` for `VOID_AUTHORIZATION`.
    pub amount: Option<MinorUnits>,
    /// `None` for `VOID_AUTHORIZATION`.
    pub currency: Option<Currency>,
    /// The stored card token (`PURCHASE`).
    pub token_name: Option<String>,
    /// Required by the service for `PURCHASE`.
    pub customer_email: Option<String>,
    /// `RECURRING` for `PURCHASE`.
    pub eci: Option<String>,
    /// The gateway's id of the original transaction (maintenance commands, optional).
    pub fort_id: Option<String>,
    /// Further APS parameters passed through as columns, in input order.
    pub extra: Vec<(String, String)>,
}

impl fmt::Debug for ApsTransaction {
    // The token and e-mail identify a customer: keep them out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApsTransaction")
            .field("command", &self.command)
            .field("merchant_reference", &self.merchant_reference)
            .field("amount", &self.amount)
            .field("currency", &self.currency.map(Currency::code))
            .field(
                "token_name",
                &self.token_name.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "customer_email",
                &self.customer_email.as_ref().map(|_| "[REDACTED]"),
            )
            .field("eci", &self.eci)
            .field("fort_id", &self.fort_id)
            .field(
                "extra_columns",
                &self.extra.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ApsTransaction {
    /// Builds a line from input fields named after APS parameters (the orchestrator has already
    /// removed `account` and `ref`). `amount` is a decimal in major units; `currency` defaults
    /// to `default_currency`; `eci` defaults to `RECURRING` for `PURCHASE`.
    ///
    /// # Errors
    /// [`Error::Input`] naming the first bad field: unknown command, missing or malformed
    /// `merchant_reference`, non-representable amount, unknown currency, a `PURCHASE` without
    /// `token_name`/`customer_email` or with an `eci` other than `RECURRING`, card fields,
    /// a repeated field.
    pub fn from_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        default_currency: Option<Currency>,
    ) -> Result<Self> {
        let mut known: [Option<&str>; 8] = [None; 8];
        let mut extra: Vec<(String, String)> = Vec::new();
        for (key, value) in fields {
            if let Some(i) = COLUMNS.iter().position(|c| *c == key) {
                let slot = known
                    .get_mut(i)
                    .ok_or_else(|| Error::input(key, "internal"))?;
                if slot.replace(value).is_some() {
                    return Err(Error::input(key, "given more than once"));
                }
            } else if REFUSED.contains(&key) {
                return Err(Error::input(
                    key,
                    "card data cannot be batched; use token_name",
                ));
            } else if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(Error::input(key, "not an APS parameter name ([a-z0-9_]+)"));
            } else if extra.iter().any(|(k, _)| k == key) {
                return Err(Error::input(key, "given more than once"));
            } else {
                extra.push((key.to_owned(), value.to_owned()));
            }
        }
        let [
            command,
            merchant_reference,
            amount,
            currency,
            token_name,
            customer_email,
            eci,
            fort_id,
        ] = known.map(|v| v.map(str::trim).filter(|v| !v.is_empty()));
        let command =
            ApsCommand::parse(command.ok_or_else(|| Error::input("command", "missing"))?)?;
        let merchant_reference = merchant_reference
            .ok_or_else(|| Error::input("merchant_reference", "missing"))?
            .to_owned();
        check_merchant_reference(&merchant_reference)?;
        let (amount, currency) = if command.needs_amount() {
            let currency = match currency {
                Some(code) => Currency::new(code)?,
                None => default_currency
                    .ok_or_else(|| Error::input("currency", "missing and no default configured"))?,
            };
            let amount =
                currency.to_minor(amount.ok_or_else(|| Error::input("amount", "missing"))?)?;
            if amount.0 == 0 {
                return Err(Error::input("amount", "must be greater than zero"));
            }
            (Some(amount), Some(currency))
        } else {
            if amount.is_some() {
                return Err(Error::input("amount", "VOID_AUTHORIZATION takes no amount"));
            }
            (None, None)
        };
        let eci = match (command, eci) {
            (ApsCommand::Purchase, None) => Some("RECURRING".to_owned()),
            (ApsCommand::Purchase, Some(e)) if e.eq_ignore_ascii_case("RECURRING") => {
                Some("RECURRING".to_owned())
            }
            (ApsCommand::Purchase, Some(_)) => {
                return Err(Error::input("eci", "batched purchases must be RECURRING"));
            }
            (_, e) => e.map(str::to_owned),
        };
        if command == ApsCommand::Purchase {
            if token_name.is_none() {
                return Err(Error::input(
                    "token_name",
                    "missing (required for PURCHASE)",
                ));
            }
            if customer_email.is_none() {
                return Err(Error::input(
                    "customer_email",
                    "missing (required for PURCHASE)",
                ));
            }
        }
        Ok(Self {
            command,
            merchant_reference,
            amount,
            currency,
            token_name: token_name.map(str::to_owned),
            customer_email: customer_email.map(str::to_owned),
            eci,
            fort_id: fort_id.map(str::to_owned),
            extra,
        })
    }

    fn cell(&self, column: &str) -> String {
        match column {
            "command" => self.command.as_str().to_owned(),
            "merchant_reference" => self.merchant_reference.clone(),
            "amount" => self.amount.map(|a| a.to_string()).unwrap_or_default(),
            "currency" => self
                .currency
                .map(|c| c.code().to_owned())
                .unwrap_or_default(),
            "token_name" => self.token_name.clone().unwrap_or_default(),
            "customer_email" => self.customer_email.clone().unwrap_or_default(),
            "eci" => self.eci.clone().unwrap_or_default(),
            "fort_id" => self.fort_id.clone().unwrap_or_default(),
            other => self
                .extra
                .iter()
                .find(|(k, _)| k == other)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        }
    }
}

/// APS order references: 1–40 characters from `[A-Za-z0-9_.-]`.
fn check_merchant_reference(reference: &str) -> Result<()> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if reference.len() > 40 || !reference.bytes().all(ok_char) {
        return Err(Error::input(
            "merchant_reference",
            "must be 1-40 characters from [A-Za-z0-9_.-]",
        ));
    }
    Ok(())
}

/// Writes the batch file for `lines`: header row, then one row per line, CRLF row ends.
///
/// # Errors
/// [`Error::Input`] when two lines share a `merchant_reference` (the service rejects the whole
/// file for that; a purchase and its capture go in different batches), [`Error::Csv`] if the
/// CSV writer fails.
pub fn write_batch_file(lines: &[ApsTransaction]) -> Result<Vec<u8>> {
    write_batch_file_with(lines, &HeaderNames::default())
}

/// [`write_batch_file`] with the standard columns' header cells named by `names`.
///
/// # Errors
/// As [`write_batch_file`]; also [`Error::Input`] when an extra parameter's name equals a
/// renamed header cell (the header would repeat a column).
pub fn write_batch_file_with(lines: &[ApsTransaction], names: &HeaderNames) -> Result<Vec<u8>> {
    let mut seen = std::collections::HashSet::with_capacity(lines.len());
    for line in lines {
        if !seen.insert(line.merchant_reference.as_str()) {
            return Err(Error::input(
                "merchant_reference",
                format!(
                    "{:?} appears twice in one batch",
                    kvp_format::mask_card_numbers(&line.merchant_reference)
                ),
            ));
        }
    }
    let columns = columns_of(lines);
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(lines.len() * 96 + 128));
    let csv_err = |source: csv::Error| Error::Csv {
        reference: "-".to_owned(),
        line: 0,
        message: "cannot write the batch file".to_owned(),
        source: Some(source),
    };
    let header: Vec<&str> = columns.iter().map(|c| names.cell(c)).collect();
    let mut cells = std::collections::HashSet::with_capacity(header.len());
    for cell in &header {
        if !cells.insert(*cell) {
            return Err(Error::input(
                *cell,
                "the batch file header would repeat this column (an extra parameter has the name of a renamed header)",
            ));
        }
    }
    out.write_record(&header).map_err(csv_err)?;
    for line in lines {
        out.write_record(columns.iter().map(|c| line.cell(c)))
            .map_err(csv_err)?;
    }
    out.into_inner().map_err(|e| Error::Csv {
        reference: "-".to_owned(),
        line: 0,
        message: format!("cannot finish the batch file: {}", e.error()),
        source: None,
    })
}

/// Splits `lines` into consecutive runs whose files stay within `max_bytes` (the service takes
/// at most 50 MB per file). A single line larger than the limit is an error.
///
/// # Errors
/// [`Error::Input`] for a line that cannot fit in any file.
pub fn split_by_size(
    lines: &[ApsTransaction],
    max_bytes: usize,
) -> Result<Vec<std::ops::Range<usize>>> {
    let header = write_batch_file(&[])?.len();
    let mut estimated = Vec::new();
    let (mut start, mut size) = (0, header);
    for (i, line) in lines.iter().enumerate() {
        // A row measured in a file of its own; extra columns of other rows can still add
        // empty cells, so every run is checked exactly below.
        let row = write_batch_file(std::slice::from_ref(line))?.len() - header;
        if header + row > max_bytes {
            return Err(Error::input(
                "merchant_reference",
                format!(
                    "{:?}: one line is larger than the file limit",
                    kvp_format::mask_card_numbers(&line.merchant_reference)
                ),
            ));
        }
        if size + row > max_bytes && i > start {
            estimated.push(start..i);
            start = i;
            size = header;
        }
        size += row;
    }
    if start < lines.len() {
        estimated.push(start..lines.len());
    }
    let mut runs = Vec::with_capacity(estimated.len());
    while let Some(run) = estimated.pop() {
        let fits = write_batch_file(lines.get(run.clone()).unwrap_or_default())?.len() <= max_bytes;
        if fits || run.len() == 1 {
            runs.push(run);
        } else {
            let mid = run.start + run.len() / 2;
            estimated.push(mid..run.end);
            estimated.push(run.start..mid);
        }
    }
    runs.sort_by_key(|r| r.start);
    Ok(runs)
}

/// An upper bound of the bytes of a batch file's header of the standard [`COLUMNS`], whatever
/// [`HeaderNames`] renames them to (each cell at most [`MAX_HEADER_NAME`] bytes, never quoted);
/// extra columns are counted in [`row_size_bound`] of the lines that bring them.
pub fn header_size() -> u64 {
    COLUMNS
        .iter()
        .map(|c| c.len().max(MAX_HEADER_NAME) as u64 + 1)
        .sum::<u64>()
        + 1
}

/// Room for what the writer adds that the input does not hold: a default `currency` (3),
/// `eci=RECURRING` (9), up to 3 more digits when an amount becomes minor units, and a comma
/// per standard column.
const ROW_SLACK: u64 = 3 + 9 + 3 + COLUMNS.len() as u64 + 16;

/// An upper bound of the bytes one input line (its fields without `account` and `ref`) adds to
/// a batch file: its row with every value quoted and every character doubled, a comma per
/// cell, CRLF, what the writer adds ([`ROW_SLACK`]), and the header cell of each of its extra
/// columns. Computed from the input alone, so the planner can close a batch before its file
/// could pass the 50 MB limit. Not counted here: the empty cells (one comma each) other lines'
/// extra columns add to this row — `Job::chunk_item` adds one per extra column of the account;
/// `encode_request` still checks the exact size.
pub fn row_size_bound<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> u64 {
    let quoted = |s: &str| 2 * s.len() as u64 + 3;
    fields.iter().fold(2 + ROW_SLACK, |n, (k, v)| {
        let (k, v) = (k.as_ref(), v.as_ref());
        let header = if COLUMNS.contains(&k) { 0 } else { quoted(k) };
        n + quoted(v) + header
    })
}

fn columns_of(lines: &[ApsTransaction]) -> Vec<String> {
    let mut columns: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    for line in lines {
        for (k, _) in &line.extra {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Option<Currency> {
        Currency::new("USD").ok()
    }

    fn tx(fields: &[(&str, &str)]) -> Result<ApsTransaction> {
        ApsTransaction::from_fields(fields.iter().copied(), usd())
    }

    const PURCHASE: &[(&str, &str)] = &[
        ("command", "purchase"),
        ("merchant_reference", "ord-1"),
        ("amount", "12.34"),
        ("token_name", "tok_abc"),
        ("customer_email", "a@example.com"),
    ];

    #[test]
    fn a_repeated_reference_that_is_a_card_number_is_quoted_masked() {
        let card: &[(&str, &str)] = &[
            ("command", "purchase"),
            ("merchant_reference", "4111111111111111"),
            ("amount", "1.00"),
            ("token_name", "tok_abc"),
            ("customer_email", "a@example.com"),
        ];
        let line = tx(card).unwrap();
        let e = write_batch_file(&[line.clone(), line])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("411111******1111 ") || e.contains("411111******1111\""),
            "{e}"
        );
        assert!(!e.contains("4111111111111111"), "{e}");
    }

    #[test]
    fn purchase_defaults() {
        let t = tx(PURCHASE).unwrap();
        assert_eq!(t.command, ApsCommand::Purchase);
        assert_eq!(t.amount, Some(MinorUnits(1234)));
        assert_eq!(t.currency.map(Currency::code), Some("USD"));
        assert_eq!(t.eci.as_deref(), Some("RECURRING"));
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("tok_abc") && !debug.contains("a@example.com"),
            "{debug}"
        );
    }

    #[test]
    fn input_errors_name_the_field() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("merchant_reference", "a"), ("amount", "1")], "command"),
            (
                &[("command", "AUTHORIZATION"), ("merchant_reference", "a")],
                "command",
            ),
            (
                &[("command", "CAPTURE"), ("amount", "1")],
                "merchant_reference",
            ),
            (
                &[
                    ("command", "CAPTURE"),
                    ("merchant_reference", "a b"),
                    ("amount", "1"),
                ],
                "merchant_reference",
            ),
            (
                &[("command", "CAPTURE"), ("merchant_reference", "a")],
                "amount",
            ),
            (
                &[
                    ("command", "CAPTURE"),
                    ("merchant_reference", "a"),
                    ("amount", "1.001"),
                ],
                "amount",
            ),
            (
                &[
                    ("command", "CAPTURE"),
                    ("merchant_reference", "a"),
                    ("amount", "0.00"),
                ],
                "amount",
            ),
            (
                &[
                    ("command", "REFUND"),
                    ("merchant_reference", "a"),
                    ("amount", "1"),
                    ("currency", "ABC"),
                ],
                "currency",
            ),
            (
                &[
                    ("command", "VOID_AUTHORIZATION"),
                    ("merchant_reference", "a"),
                    ("amount", "1"),
                ],
                "amount",
            ),
            (
                &[
                    ("command", "PURCHASE"),
                    ("merchant_reference", "a"),
                    ("amount", "1"),
                    ("customer_email", "e"),
                ],
                "token_name",
            ),
            (
                &[
                    ("command", "PURCHASE"),
                    ("merchant_reference", "a"),
                    ("amount", "1"),
                    ("token_name", "t"),
                ],
                "customer_email",
            ),
            (
                &[
                    ("command", "PURCHASE"),
                    ("merchant_reference", "a"),
                    ("amount", "1"),
                    ("token_name", "t"),
                    ("customer_email", "e"),
                    ("eci", "ECOMMERCE"),
                ],
                "eci",
            ),
            (
                &[
                    ("command", "CAPTURE"),
                    ("merchant_reference", "a"),
                    ("amount", "1"),
                    ("card_number", "4111111111111111"),
                ],
                "card_number",
            ),
            (
                &[
                    ("command", "CAPTURE"),
                    ("merchant_reference", "a"),
                    ("amount", "1"),
                    ("Bad-Name", "x"),
                ],
                "Bad-Name",
            ),
            (
                &[
                    ("command", "CAPTURE"),
                    ("merchant_reference", "a"),
                    ("amount", "1"),
                    ("amount", "2"),
                ],
                "amount",
            ),
        ];
        for (fields, field) in cases {
            match tx(fields) {
                Err(Error::Input { field: f, message }) => {
                    assert_eq!(f, *field, "{fields:?}: {message}");
                    assert!(!message.contains("4111111111111111"));
                }
                other => panic!("{fields:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn writes_header_and_rows_in_order() {
        let lines = vec![
            tx(PURCHASE).unwrap(),
            tx(&[
                ("command", "CAPTURE"),
                ("merchant_reference", "ord-0"),
                ("amount", "5"),
                ("currency", "KWD"),
                ("fort_id", "1690000000000001"),
            ])
            .unwrap(),
            tx(&[
                ("command", "VOID_AUTHORIZATION"),
                ("merchant_reference", "ord-9"),
                ("order_description", "a, \"quoted\" note"),
            ])
            .unwrap(),
        ];
        let text = String::from_utf8(write_batch_file(&lines).unwrap()).unwrap();
        let expected = "command,merchant_reference,amount,currency,token_name,customer_email,eci,fort_id,order_description\r\n\
            PURCHASE,ord-1,1234,USD,tok_abc,a@example.com,RECURRING,,\r\n\
            CAPTURE,ord-0,5000,KWD,,,,1690000000000001,\r\n\
            VOID_AUTHORIZATION,ord-9,,,,,,,\"a, \"\"quoted\"\" note\"\r\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn duplicate_merchant_reference_is_refused() {
        let lines = vec![tx(PURCHASE).unwrap(), tx(PURCHASE).unwrap()];
        assert!(
            matches!(write_batch_file(&lines), Err(Error::Input { field, .. }) if field == "merchant_reference")
        );
    }

    #[test]
    fn split_respects_the_limit() {
        let lines: Vec<ApsTransaction> = (0..50)
            .map(|i| {
                let r = format!("ord-{i}");
                tx(&[
                    ("command", "CAPTURE"),
                    ("merchant_reference", &r),
                    ("amount", "1"),
                ])
                .unwrap()
            })
            .collect();
        let whole = write_batch_file(&lines).unwrap().len();
        assert_eq!(split_by_size(&lines, whole).unwrap(), vec![0..50]);
        let runs = split_by_size(&lines, 400).unwrap();
        assert!(runs.len() > 1);
        let mut next = 0;
        for run in &runs {
            assert_eq!(run.start, next);
            next = run.end;
            assert!(
                write_batch_file(&lines[run.clone()]).unwrap().len() <= 400,
                "{run:?}"
            );
        }
        assert_eq!(next, 50);
        assert!(split_by_size(&lines, 50).is_err());
    }

    #[test]
    fn row_size_bound_covers_the_written_file() {
        let owned = |f: &[(&str, &str)]| -> Vec<(String, String)> {
            f.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        for fields in [
            PURCHASE.to_vec(),
            vec![
                ("command", "capture"),
                ("merchant_reference", "o"),
                ("amount", "1"),
            ],
            vec![
                ("command", "VOID_AUTHORIZATION"),
                ("merchant_reference", "o"),
                ("order_description", "\"\"\",,"),
            ],
        ] {
            let file = write_batch_file(&[tx(&fields).unwrap()]).unwrap();
            let bound = header_size() + row_size_bound(&owned(&fields));
            assert!(
                file.len() as u64 <= bound,
                "{fields:?}: {} > {bound}",
                file.len()
            );
        }
        assert!(header_size() >= write_batch_file(&[]).unwrap().len() as u64);
        // Also with every standard column renamed to the longest name allowed.
        let long: Vec<(String, String)> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    (*c).to_owned(),
                    format!("{i}{}", "X".repeat(MAX_HEADER_NAME - 1)),
                )
            })
            .collect();
        let names = HeaderNames::new(long).unwrap();
        assert_eq!(
            header_size(),
            write_batch_file_with(&[], &names).unwrap().len() as u64
        );
    }

    #[test]
    fn payment_links_are_refused_with_the_reason() {
        for text in ["PAYMENT_LINK", "payment_link"] {
            let err = ApsCommand::parse(text).unwrap_err().to_string();
            assert!(
                err.contains("PAYMENT_LINK is not supported yet") && err.contains("docs/APS.md"),
                "{err}"
            );
        }
        assert!(
            ApsCommand::parse("SALE")
                .unwrap_err()
                .to_string()
                .contains("cannot be batched")
        );
    }

    #[test]
    fn header_names_rename_standard_columns_only() {
        let names = HeaderNames::new([
            ("merchant_reference", "Merchant Reference"),
            ("command", "Command"),
        ])
        .unwrap();
        let file = write_batch_file_with(
            &[tx(&[
                ("command", "CAPTURE"),
                ("merchant_reference", "o1"),
                ("amount", "1"),
                ("order_description", "x"),
            ])
            .unwrap()],
            &names,
        )
        .unwrap();
        let text = String::from_utf8(file).unwrap();
        assert!(
            text.starts_with("Command,Merchant Reference,amount,currency,token_name,customer_email,eci,fort_id,order_description\r\nCAPTURE,o1,100,USD,"),
            "{text}"
        );
        // The default writes today's names.
        assert_eq!(
            write_batch_file_with(&[], &HeaderNames::default()).unwrap(),
            write_batch_file(&[]).unwrap()
        );
        let bad: &[&[(&str, &str)]] = &[
            &[("order_description", "Desc")],
            &[("amount", "")],
            &[("amount", "a,b")],
            &[("amount", "a\"b")],
            &[("amount", "a\nb")],
            &[("amount", "Amount"), ("amount", "Amt")],
            &[("amount", "currency")],
            &[("amount", "A"), ("currency", "A")],
        ];
        for case in bad {
            assert!(HeaderNames::new(case.iter().copied()).is_err(), "{case:?}");
        }
        assert!(HeaderNames::new([("amount", "X".repeat(MAX_HEADER_NAME + 1))]).is_err());
        // An extra parameter named like a renamed cell would repeat a column.
        let names = HeaderNames::new([("amount", "note")]).unwrap();
        let clash = tx(&[
            ("command", "CAPTURE"),
            ("merchant_reference", "o1"),
            ("amount", "1"),
            ("note", "x"),
        ])
        .unwrap();
        assert!(write_batch_file_with(&[clash], &names).is_err());
    }
}
