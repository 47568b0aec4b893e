//! `paybatch kvp decode|encode`: KVP lines ⇄ JSON arrays of `[key, value]` pairs, one per line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use kvp_format::{decode_line, decode_line_lossy, encode_pairs};

use super::{Exit, Global};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KvpCommand {
    /// Decode KVP lines: for each input line, one JSON array of [key, value] pairs on stdout.
    ///
    /// Decoding is WHATWG application/x-www-form-urlencoded: `+` is a space, `%XX` a byte, a
    /// `%` without two hex digits stays literal, empty pieces are skipped, repeated keys are
    /// kept in order. LF and CRLF line ends are accepted; an empty line gives `[]`.
    /// Exits 1 (naming the line and key) when decoded bytes are not UTF-8, unless --lossy.
    #[command(after_help = crate::EXIT_CODES)]
    Decode {
        /// The file to read; standard input when absent or `-`.
        file: Option<PathBuf>,
        /// Replace invalid UTF-8 with U+FFFD instead of failing.
        #[arg(long)]
        lossy: bool,
    },
    /// Encode JSON arrays of [key, value] string pairs (one array per line) into canonical
    /// KVP lines.
    ///
    /// Canonical: every byte outside `A-Z a-z 0-9 - . _ ~` is percent-encoded with upper-case
    /// hex, a space is `%20` (never `+`), lines end with LF. Blank input lines are skipped.
    /// Exits 1 (naming the line) on input that is not such an array.
    #[command(after_help = crate::EXIT_CODES)]
    Encode {
        /// The file to read; standard input when absent or `-`.
        file: Option<PathBuf>,
    },
}

/// Runs the subcommand.
pub fn run(args: KvpCommand, _global: &Global) -> Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = match args {
        KvpCommand::Decode { file, lossy } => {
            let (input, name) = open_input(file.as_ref())?;
            decode_stream(input, &name, lossy, &mut out)
        }
        KvpCommand::Encode { file } => {
            let (input, name) = open_input(file.as_ref())?;
            encode_stream(input, &name, &mut out)
        }
    };
    let result = result.and_then(|()| out.flush().map_err(|e| Failure::Io(e, "stdout".into())));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The reader of our output went away (`| head`): not an error of ours.
        Err(Failure::Io(e, _)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(Failure::Io(e, what)) => {
            Err(anyhow::Error::new(e).context(format!("{what}: I/O error")))
        }
        Err(Failure::Input(message)) => Err(Exit { code: 1, message }.into()),
    }
}

/// The input and the name to use for it in messages.
fn open_input(file: Option<&PathBuf>) -> Result<(Box<dyn BufRead>, String)> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            Ok((
                Box::new(BufReader::with_capacity(1 << 16, f)),
                path.display().to_string(),
            ))
        }
        _ => Ok((
            Box::new(BufReader::with_capacity(1 << 16, io::stdin())),
            "<stdin>".to_owned(),
        )),
    }
}

enum Failure {
    Io(io::Error, String),
    Input(String),
}

fn strip_line_end(raw: &[u8]) -> &[u8] {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn decode_stream(
    mut input: Box<dyn BufRead>,
    name: &str,
    lossy: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut buf = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| Failure::Io(e, name.to_owned()))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let line = strip_line_end(&buf);
        let pairs = if lossy {
            decode_line_lossy(line)
        } else {
            decode_line(line).map_err(|e| {
                Failure::Input(format!(
                    "{name}:{line_no}: {} (use --lossy to replace it with U+FFFD)",
                    e.message()
                ))
            })?
        };
        serde_json::to_writer(&mut *out, &pairs)
            .map_err(|e| Failure::Io(io::Error::other(e), "stdout".into()))?;
        out.write_all(b"\n")
            .map_err(|e| Failure::Io(e, "stdout".into()))?;
    }
}

fn encode_stream(
    mut input: Box<dyn BufRead>,
    name: &str,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut buf = Vec::with_capacity(1024);
    let mut encoded = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| Failure::Io(e, name.to_owned()))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let pairs: Vec<(String, String)> = serde_json::from_slice(&buf).map_err(|e| {
            // serde_json's own message can quote the offending value, which may be a card
            // number: say where and what kind of problem, not what the value was.
            let what = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "is not valid JSON"
                }
                _ => "is not a JSON array of [key, value] string pairs",
            };
            Failure::Input(format!(
                "{name}:{line_no}: column {}: the input {what}",
                e.column()
            ))
        })?;
        encoded.clear();
        encode_pairs(pairs.iter().map(|(k, v)| (k, v)), &mut encoded);
        encoded.push(b'\n');
        out.write_all(&encoded)
            .map_err(|e| Failure::Io(e, "stdout".into()))?;
    }
}
