//! `paybatch validate FILE...`: check KVP files against the protocol's rules.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use kvp_format::{
    FileKind, FileName, Policy, Problem, Report, SequenceNumber, ValidateOptions, check_process,
    check_response, validate_reader,
};
use serde::Serialize;

use super::Global;

/// What `paybatch validate --help` shows after the options. (The one-line summary comes from
/// the subcommand's doc in `main.rs`, which replaces this struct's own doc comment.)
const DETAILS: &str = "\
Each FILE must be named KIND_X.KVP (REQUEST_42.KVP, PROCESS_42.KVP, RESPONSE_42.KVP,
COMPLETE_42.KVP); the name gives its kind and its sequence number X.

Checked in every file: no UTF-8 byte order mark; no blank line in the middle (trailing blank
lines are fine); no key repeated on a line; keys and values are UTF-8 after percent-decoding;
xSequenceNumber on every line equals X. REQUEST: xIndex equals the line's 0-based position,
xKey and xCommand are present. RESPONSE: xIndex present and unique (lines may come in any
order). PROCESS: exactly one line with xKey, xSubmittedCount, xFormat=KVP. COMPLETE: exactly
one line with xResult and xStatus. A REQUEST is also checked against its PROCESS (same X,
xSubmittedCount = the REQUEST's number of lines) when both are given, or when PROCESS_X.KVP
sits beside the REQUEST (unless --no-beside); a RESPONSE is checked against its REQUEST when
both are given (every submitted xIndex answered, no other). LF and CRLF line ends and a missing final
newline are accepted unless --lf-only / --require-final-newline.

Output: one line per problem on stdout, `FILE:LINE: message` (`FILE: message` for a problem
with the whole file), or one JSON document with --json. A file that cannot be read is an
error on stderr (exit 3). A summary goes to stderr unless -q.
Values of card and key fields never appear in the output.

Exit codes: 0 every file is valid; 1 problems found; 2 usage error; 3 a file could not be read.";

#[derive(Debug, clap::Args)]
#[command(after_help = crate::EXIT_CODES, after_long_help = DETAILS)]
pub struct Args {
    /// The files to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print one JSON document: {"valid": bool, "files": [{"file", "kind", "sequence",
    /// "lines", "valid", "total_problems", "problems": [{"file", "line", "key", "message"}]}]}.
    #[arg(long)]
    json: bool,
    /// Record at most this many problems per file (all are counted).
    #[arg(long, default_value_t = 100, value_name = "N")]
    max_problems: usize,
    /// Reject CRLF line ends (only LF allowed).
    #[arg(long)]
    lf_only: bool,
    /// Reject a last line without a final newline.
    #[arg(long)]
    require_final_newline: bool,
    /// Do not look for PROCESS_X.KVP beside a REQUEST_X.KVP that was given alone.
    #[arg(long)]
    no_beside: bool,
}

#[derive(Debug, Serialize)]
struct FileOutcome {
    file: String,
    kind: Option<String>,
    sequence: Option<SequenceNumber>,
    lines: Option<u64>,
    valid: bool,
    total_problems: u64,
    problems: Vec<Problem>,
    /// Set when the file was checked because it sits beside a REQUEST given on the line.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    found_beside: bool,
    /// The file could not be read: an error (stderr, exit 3), not a validation result.
    #[serde(skip)]
    io_failed: bool,
}

#[derive(Debug, Serialize)]
struct Output {
    valid: bool,
    files: Vec<FileOutcome>,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    let opts = ValidateOptions {
        max_problems: args.max_problems,
        crlf: if args.lf_only {
            Policy::Reject
        } else {
            Policy::Allow
        },
        missing_final_newline: if args.require_final_newline {
            Policy::Reject
        } else {
            Policy::Allow
        },
        ..ValidateOptions::default()
    };

    let mut todo: Vec<(PathBuf, bool)> = args.files.iter().map(|p| (p.clone(), false)).collect();
    if !args.no_beside {
        for path in &args.files {
            if let Some(beside) = process_beside(path)
                && !todo.iter().any(|(p, _)| same_file(p, &beside))
            {
                todo.push((beside, true));
            }
        }
    }

    let mut outcomes = Vec::with_capacity(todo.len());
    let mut reports: Vec<Option<Report>> = Vec::with_capacity(todo.len());
    let mut io_failed = false;
    for (path, found_beside) in &todo {
        let shown = path.display().to_string();
        let (outcome, report) = match check_file(path, &shown, &opts) {
            Ok(report) => (outcome_of(&report, *found_beside), Some(report)),
            Err((problem, is_io)) => {
                io_failed |= is_io;
                (failed_outcome(problem, *found_beside, is_io), None)
            }
        };
        outcomes.push(outcome);
        reports.push(report);
    }

    pair_requests_with_processes(&todo, &reports, &mut outcomes);
    pair_responses_with_requests(&reports, &mut outcomes);

    let valid = outcomes.iter().all(|o| o.valid);
    let total: u64 = outcomes.iter().map(|o| o.total_problems).sum();
    for o in outcomes.iter().filter(|o| o.io_failed) {
        for p in &o.problems {
            eprintln!("paybatch: {p}");
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &Output {
                valid,
                files: outcomes,
            },
        )
        .map_err(io::Error::other)
        .and_then(|()| out.write_all(b"\n"))
    } else {
        print_text(&mut out, &outcomes)
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            return Err(anyhow::Error::new(e).context("stdout: I/O error"));
        }
        _ => {}
    }
    if !global.quiet {
        eprintln!(
            "paybatch validate: {} file{} checked, {total} problem{}",
            todo.len(),
            if todo.len() == 1 { "" } else { "s" },
            if total == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::from(if io_failed {
        3
    } else if valid {
        0
    } else {
        1
    }))
}

/// PROCESS_X.KVP in the folder of a REQUEST_X.KVP, if it exists.
fn process_beside(path: &Path) -> Option<PathBuf> {
    let name = FileName::from_path(&path.file_name()?.to_string_lossy()).ok()?;
    if name.kind != FileKind::Request {
        return None;
    }
    let beside = path.with_file_name(name.with_kind(FileKind::Process).to_string());
    beside.is_file().then_some(beside)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Validates one file. `Err((problem, is_io))` when it could not be checked at all.
fn check_file(path: &Path, shown: &str, opts: &ValidateOptions) -> Result<Report, (Problem, bool)> {
    let whole_file = |message: String| Problem {
        file: shown.to_owned(),
        line: None,
        key: None,
        message,
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = FileName::parse(&base).map_err(|e| {
        (
            whole_file(format!("cannot tell the file kind from its name: {e}")),
            false,
        )
    })?;
    let file =
        File::open(path).map_err(|e| (whole_file(format!("cannot open the file: {e}")), true))?;
    validate_reader(&name, shown, BufReader::with_capacity(1 << 16, file), opts)
        .map_err(|e| (whole_file(format!("cannot read the file: {e:#}")), true))
}

fn outcome_of(report: &Report, found_beside: bool) -> FileOutcome {
    FileOutcome {
        file: report.file.clone(),
        kind: Some(report.name.kind.to_string()),
        sequence: Some(report.name.sequence),
        lines: Some(report.records),
        valid: report.is_valid(),
        total_problems: report.total_problems,
        problems: report.problems.clone(),
        found_beside,
        io_failed: false,
    }
}

fn failed_outcome(problem: Problem, found_beside: bool, io_failed: bool) -> FileOutcome {
    FileOutcome {
        file: problem.file.clone(),
        kind: None,
        sequence: None,
        lines: None,
        valid: false,
        total_problems: 1,
        problems: vec![problem],
        found_beside,
        io_failed,
    }
}

/// For every REQUEST with a readable PROCESS of the same X in the same folder, checks the
/// PROCESS against it and adds the problems to the PROCESS file's outcome.
fn pair_requests_with_processes(
    todo: &[(PathBuf, bool)],
    reports: &[Option<Report>],
    outcomes: &mut [FileOutcome],
) {
    let folder = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut processes: BTreeMap<(PathBuf, SequenceNumber), usize> = BTreeMap::new();
    for (i, report) in reports.iter().enumerate() {
        if let Some(r) = report
            && r.name.kind == FileKind::Process
        {
            processes.insert((folder(&todo[i].0), r.name.sequence), i);
        }
    }
    for (i, report) in reports.iter().enumerate() {
        let Some(request) = report else { continue };
        if request.name.kind != FileKind::Request {
            continue;
        }
        let key = (folder(&todo[i].0), request.name.sequence);
        let Some(&p) = processes.get(&key) else {
            continue;
        };
        let Some(process) = reports[p].as_ref().and_then(|r| r.process.as_ref()) else {
            continue;
        };
        let found = check_process(&request.name, request.records, process, &outcomes[p].file);
        let outcome = &mut outcomes[p];
        outcome.total_problems += found.len() as u64;
        outcome.valid &= found.is_empty();
        outcome.problems.extend(found);
    }
}

/// For every RESPONSE whose REQUEST (same X) is among the files — exactly one of them —
/// checks that the answered `xIndex` set equals the submitted one.
fn pair_responses_with_requests(reports: &[Option<Report>], outcomes: &mut [FileOutcome]) {
    for (i, report) in reports.iter().enumerate() {
        let Some(response) = report else { continue };
        if response.name.kind != FileKind::Response {
            continue;
        }
        let mut requests = reports.iter().flatten().filter(|r| {
            r.name.kind == FileKind::Request && r.name.sequence == response.name.sequence
        });
        let (Some(request), None) = (requests.next(), requests.next()) else {
            continue;
        };
        let found = check_response(&request.name, request.records, response);
        let outcome = &mut outcomes[i];
        outcome.total_problems += found.len() as u64;
        outcome.valid &= found.is_empty();
        outcome.problems.extend(found);
    }
}

fn print_text(out: &mut impl Write, outcomes: &[FileOutcome]) -> io::Result<()> {
    for o in outcomes.iter().filter(|o| !o.io_failed) {
        for p in &o.problems {
            writeln!(out, "{p}")?;
        }
        let unrecorded = o.total_problems.saturating_sub(o.problems.len() as u64);
        if unrecorded > 0 {
            writeln!(
                out,
                "{}: ... and {unrecorded} more problem{} (raise --max-problems to see them)",
                o.file,
                if unrecorded == 1 { "" } else { "s" }
            )?;
        }
    }
    Ok(())
}
