//! Streaming readers of caller input: KVP lines, CSV with a header, JSON Lines.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// The format of an input or output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// One `key=value&…` record per line.
    Kvp,
    /// CSV with a header row; an empty cell means "field absent".
    Csv,
    /// One JSON object per line; values are strings or numbers, `null` means absent.
    Jsonl,
}

impl Format {
    /// The format implied by a file name's extension (`.kvp`, `.csv`, `.jsonl`/`.ndjson`).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "kvp" | "txt" => Some(Self::Kvp),
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// The format of the merged output: "same format as the input unless `--output-format`".
    /// `explicit` (`--output-format`) wins; else the input's (`input_format`, i.e. `--format`,
    /// else the input's extension); the output file's extension only decides when the input's
    /// format is unknown (a custom source), and JSON Lines when nothing does.
    pub fn for_output(
        explicit: Option<Format>,
        input_format: Option<Format>,
        input: &Path,
        output: &Path,
    ) -> Format {
        explicit
            .or(input_format)
            .or_else(|| Format::from_path(input))
            .or_else(|| Format::from_path(output))
            .unwrap_or(Format::Jsonl)
    }

    /// The usual extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Kvp => "kvp",
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "kvp" => Ok(Self::Kvp),
            "csv" => Ok(Self::Csv),
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            other => Err(format!("unknown format {other:?} (kvp, csv, jsonl)")),
        }
    }
}

/// One input record: its 1-based line and its fields in order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct InputRecord {
    /// 1-based line where the record starts.
    pub line: u64,
    /// The fields, in input order.
    pub fields: Vec<(String, String)>,
}

impl InputRecord {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for InputRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_map();
        for (k, v) in &self.fields {
            list.entry(k, &kvp_format::mask_value(k, v));
        }
        list.finish()
    }
}

/// A source of input records. Implement it to feed the orchestrator from anywhere
/// (a database cursor, a queue); [`InputReader`] reads files.
pub trait RecordSource {
    /// Reads the next record into `rec` (reusing its buffers); `Ok(false)` at the end.
    ///
    /// # Errors
    /// [`Error::Input`] for a record that cannot be read.
    fn read_record(&mut self, rec: &mut InputRecord) -> Result<bool>;
    /// The name used in problem reports (`FILE:LINE: message`).
    fn name(&self) -> &str;
}

/// Reads records from a file or any `Read`, one at a time (memory does not grow with input).
/// `Debug` shows the input's name only (the reader holds transaction data).
pub struct InputReader {
    name: String,
    inner: Inner,
    /// Strings of earlier records, reused for the next one's fields.
    spare: Vec<(String, String)>,
}

enum Inner {
    Lines {
        reader: Box<dyn BufRead + Send>,
        buf: Vec<u8>,
        line: u64,
        format: Format,
    },
    Csv {
        reader: Box<csv::Reader<Box<dyn Read + Send>>>,
        headers: Vec<String>,
        row: csv::StringRecord,
    },
}

impl std::fmt::Debug for InputReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputReader")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inner")
    }
}

impl InputReader {
    /// Opens `path` in `format` (or the format its extension implies).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened, [`Error::Input`] for an unknown extension
    /// or an unreadable CSV header.
    pub fn open(path: &Path, format: Option<Format>) -> Result<Self> {
        let name = path.display().to_string();
        let format = format.or_else(|| Format::from_path(path)).ok_or_else(|| Error::Input {
            file: name.clone(),
            line: 0,
            message: "cannot tell the format from the extension; use .kvp, .csv or .jsonl or pass --format".into(),
        })?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Self::new(name, format, Box::new(file))
    }

    /// Reads `format` from any reader; `name` appears in error messages.
    ///
    /// # Errors
    /// [`Error::Input`] for an unreadable CSV header.
    pub fn new(
        name: impl Into<String>,
        format: Format,
        read: Box<dyn Read + Send>,
    ) -> Result<Self> {
        let name = name.into();
        let inner = match format {
            Format::Kvp | Format::Jsonl => Inner::Lines {
                reader: Box::new(BufReader::with_capacity(1 << 16, read)),
                buf: Vec::new(),
                line: 0,
                format,
            },
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(read);
                let headers = reader
                    .headers()
                    .map_err(|e| Error::Input {
                        file: name.clone(),
                        line: 1,
                        message: format!("bad CSV header: {}", csv_message(&e)),
                    })?
                    .iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>();
                if let Some(dup) = first_duplicate(&headers) {
                    return Err(Error::Input {
                        file: name,
                        line: 1,
                        message: format!("CSV header repeats column {dup:?}"),
                    });
                }
                Inner::Csv {
                    reader: Box::new(reader),
                    headers,
                    row: csv::StringRecord::new(),
                }
            }
        };
        Ok(Self {
            name,
            inner,
            spare: Vec::new(),
        })
    }
}

impl RecordSource for InputReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn read_record(&mut self, rec: &mut InputRecord) -> Result<bool> {
        // The previous record's strings are refilled instead of allocated again.
        self.spare.append(&mut rec.fields);
        let name = self.name.as_str();
        let spare = &mut self.spare;
        match &mut self.inner {
            Inner::Lines {
                reader,
                buf,
                line,
                format,
            } => loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', buf)
                    .map_err(|e| Error::io(name, e))?;
                if n == 0 {
                    return Ok(false);
                }
                *line += 1;
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                rec.line = *line;
                let at = *line;
                let result = match format {
                    Format::Jsonl => parse_json(buf, &mut rec.fields),
                    _ => parse_kvp(buf, &mut rec.fields, spare),
                };
                return match result {
                    Ok(()) => Ok(true),
                    Err(message) => Err(Error::Input {
                        file: name.to_owned(),
                        line: at,
                        message,
                    }),
                };
            },
            Inner::Csv {
                reader,
                headers,
                row,
            } => {
                let more = reader.read_record(row).map_err(|e| Error::Input {
                    file: name.to_owned(),
                    line: e.position().map_or(0, |p| p.line()),
                    message: csv_message(&e),
                })?;
                if !more {
                    return Ok(false);
                }
                rec.line = row.position().map_or(0, |p| p.line());
                if row.len() != headers.len() {
                    return Err(Error::Input {
                        file: name.to_owned(),
                        line: rec.line,
                        message: format!("{} cells, the header has {}", row.len(), headers.len()),
                    });
                }
                for (k, v) in headers.iter().zip(row.iter()) {
                    if !v.is_empty() {
                        rec.fields.push(refill(spare, k, v));
                    }
                }
                Ok(true)
            }
        }
    }
}

/// A CSV error without the cell contents (which may hold card data).
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "a cell is not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} cells, expected {expected_len}")
        }
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => "malformed CSV".into(),
    }
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    names
        .iter()
        .find(|n| !seen.insert(n.as_str()))
        .map(String::as_str)
}

fn parse_kvp(
    line: &[u8],
    out: &mut Vec<(String, String)>,
    spare: &mut Vec<(String, String)>,
) -> std::result::Result<(), String> {
    for pair in kvp_format::pairs(line) {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        out.push(refill(spare, &k, &v));
    }
    Ok(())
}

/// A field made of strings from `spare` (an earlier record's), refilled with `key` and `value`.
fn refill(spare: &mut Vec<(String, String)>, key: &str, value: &str) -> (String, String) {
    let (mut k, mut v) = spare.pop().unwrap_or_default();
    k.clear();
    k.push_str(key);
    v.clear();
    v.push_str(value);
    (k, v)
}

fn parse_json(line: &[u8], out: &mut Vec<(String, String)>) -> std::result::Result<(), String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
        .map_err(|e| format!("not a JSON object (column {})", e.column()))?;
    for (k, v) in object {
        let v = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => if b { "True" } else { "False" }.to_owned(),
            _ => {
                return Err(format!(
                    "field {k:?}: nested arrays and objects are not allowed"
                ));
            }
        };
        out.push((k, v));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_format_is_the_inputs_unless_told() {
        use Format::{Csv, Jsonl, Kvp};
        // (--output-format, --format, input, output, expected)
        type Case = (
            Option<Format>,
            Option<Format>,
            &'static str,
            &'static str,
            Format,
        );
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (None,        None,      "in.csv",   "out.jsonl", Csv),
            (None,        None,      "in.kvp",   "out.csv",   Kvp),
            (None,        Some(Csv), "in.data",  "out.kvp",   Csv),
            (None,        Some(Kvp), "in.csv",   "out.jsonl", Kvp),
            (Some(Jsonl), None,      "in.csv",   "out.kvp",   Jsonl),
            (Some(Csv),   Some(Kvp), "in.kvp",   "out.jsonl", Csv),
            (None,        None,      "in.data",  "out.csv",   Csv),
            (None,        None,      "in.data",  "out",       Jsonl),
        ];
        for &(explicit, input_format, input, output, want) in cases {
            let got =
                Format::for_output(explicit, input_format, Path::new(input), Path::new(output));
            assert_eq!(got, want, "{explicit:?} {input_format:?} {input} {output}");
        }
    }

    fn read_all(format: Format, text: &str) -> Result<Vec<InputRecord>> {
        let mut r = InputReader::new(
            "in",
            format,
            Box::new(std::io::Cursor::new(text.to_owned().into_bytes())),
        )?;
        let mut out = Vec::new();
        let mut rec = InputRecord::default();
        while r.read_record(&mut rec)? {
            out.push(rec.clone());
        }
        Ok(out)
    }

    fn pairs(r: &InputRecord) -> Vec<(&str, &str)> {
        r.fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn reads_each_format() {
        let kvp = read_all(
            Format::Kvp,
            "account=a&ref=1&xName=J%C3%B6+D\r\n\naccount=b&ref=2\n",
        )
        .unwrap();
        assert_eq!(kvp.len(), 2);
        assert_eq!(
            pairs(&kvp[0]),
            [("account", "a"), ("ref", "1"), ("xName", "Jö D")]
        );
        assert_eq!(kvp[1].line, 3);
        let csv = read_all(
            Format::Csv,
            "account,ref,xToken,xCardNum\na,1,,4111\nb,\"2,3\",t,\n",
        )
        .unwrap();
        assert_eq!(
            pairs(&csv[0]),
            [("account", "a"), ("ref", "1"), ("xCardNum", "4111")]
        );
        assert_eq!(
            pairs(&csv[1]),
            [("account", "b"), ("ref", "2,3"), ("xToken", "t")]
        );
        assert_eq!(csv[1].line, 3);
        let json = read_all(
            Format::Jsonl,
            "{\"account\":\"a\",\"ref\":1,\"xAmount\":1.5,\"xToken\":null}\n",
        )
        .unwrap();
        assert_eq!(
            pairs(&json[0]),
            [("account", "a"), ("ref", "1"), ("xAmount", "1.5")]
        );
    }

    #[test]
    fn errors_name_the_line_and_never_the_value() {
        for (format, text, line) in [
            (
                Format::Jsonl,
                "{\"a\":\"1\"}\n{\"xCardNum\":[\"4111111111111111\"]}\n",
                2,
            ),
            (
                Format::Jsonl,
                "{\"a\":\"1\"}\nnot json 4111111111111111\n",
                2,
            ),
            (Format::Kvp, "a=1\nxCardNum=%FF4111111111111111\n", 2),
            (Format::Csv, "a,b\n1,2\n3\n", 3),
            // Messages that quote a header cell or a field name mask card numbers in it.
            (Format::Csv, "4111111111111111,4111111111111111\n1,2\n", 1),
            (Format::Jsonl, "{\"4111111111111111\":[1]}\n", 1),
        ] {
            let err = read_all(format, text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("in:{line}:")), "{msg}");
            assert!(!msg.contains("4111111111111111"), "{msg}");
        }
    }

    #[test]
    fn format_from_extension() {
        for (name, format) in [
            ("a.kvp", Some(Format::Kvp)),
            ("a.CSV", Some(Format::Csv)),
            ("a.jsonl", Some(Format::Jsonl)),
            ("a.xml", None),
        ] {
            assert_eq!(Format::from_path(Path::new(name)), format, "{name}");
        }
    }
}
