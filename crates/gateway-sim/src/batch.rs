//! One poll of one account: find PROCESS files in arrival order, apply the sequence rule,
//! accept (durably), consume, check, process, journal, then publish RESPONSE and COMPLETE.

use std::time::SystemTime;

use bytes::Bytes;
use kvp_format::{CompleteFile, FORMAT_KVP, FileKind, FileName, Record, SequenceNumber};
use storage_backends::ErrorKind;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::fields::{Fields, LineFields};
use crate::knobs::{AccountMode, CrashPoint, ResponseOrder, SpaceEncoding};
use crate::process::{LineCtx, process_line, write_answer};
use crate::sim::{AccountState, Pending, RunStats, Shared};
use crate::validate::{BatchRefusal, Lines, check_batch};

/// Whether to go on with the next PROCESS file of this poll.
enum Next {
    Continue,
    /// Storage failed; try again on the next poll.
    Stop,
}

impl Shared {
    pub(crate) async fn poll_account(
        &self,
        cell: &tokio::sync::Mutex<AccountState>,
    ) -> Result<RunStats> {
        self.check_not_crashed()?;
        let mut guard = cell.lock().await;
        let a = &mut *guard;
        let mut stats = RunStats::default();
        if let Some(p) = a.pending.take()
            && !self.publish(a, p, &mut stats).await?
        {
            return Ok(stats);
        }
        let folder = FileKind::Process.folder();
        let listing = match a.backend.list(folder).await {
            Ok(l) => l,
            Err(e) => {
                warn!(account = %a.name, error = %e, "cannot list {folder}/; retrying next poll");
                stats.storage_errors += 1;
                return Ok(stats);
            }
        };
        let mut triggers: Vec<(Option<SystemTime>, SequenceNumber)> = Vec::new();
        for meta in &listing {
            let file = meta.name();
            if !file.starts_with("PROCESS_") {
                continue;
            }
            match FileName::parse(file) {
                Ok(n) if n.kind == FileKind::Process => triggers.push((meta.modified, n.sequence)),
                _ => {
                    let file = kvp_format::mask_digit_runs(file);
                    warn!(account = %a.name, %file, "ignoring a PROCESS file with an invalid number");
                    stats.batches_ignored += 1;
                    self.remove(a, &meta.path, &mut stats).await;
                }
            }
        }
        // Arrival order; files of the same instant (coarse server clocks) by number.
        triggers.sort();
        for (_, seq) in triggers {
            match self.handle(a, seq, &mut stats).await? {
                Next::Continue => {}
                Next::Stop => break,
            }
        }
        Ok(stats)
    }

    async fn handle(
        &self,
        a: &mut AccountState,
        seq: SequenceNumber,
        stats: &mut RunStats,
    ) -> Result<Next> {
        let name = FileName::new(FileKind::Process, seq);
        let req_name = name.with_kind(FileKind::Request);
        if let Some(last) = a.accepted.filter(|&last| seq <= last) {
            warn!(account = %a.name, sequence = %seq, last_accepted = %last,
                "ignoring batch: its number is not above the last accepted one");
            stats.batches_ignored += 1;
            self.remove(a, &name.path(), stats).await;
            self.remove(a, &req_name.path(), stats).await;
            return Ok(Next::Continue);
        }
        let process_bytes = match a.backend.get(&name.path()).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Next::Continue),
            Err(e) => return Ok(self.storage_failed(a, "read", &name.path(), &e, stats)),
        };
        let request_bytes = match a.backend.get(&req_name.path()).await {
            Ok(b) => Some(b),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Ok(self.storage_failed(a, "read", &req_name.path(), &e, stats)),
        };
        a.accept(seq)?;
        info!(account = %a.name, sequence = %seq, "accepted batch");
        self.remove(a, &name.path(), stats).await;
        self.remove(a, &req_name.path(), stats).await;
        self.crash_if_due(a, seq, CrashPoint::AfterAccept)?;
        if !a.knobs.batch_latency.is_zero() {
            tokio::time::sleep(a.knobs.batch_latency).await;
        }

        let checked = match &a.knobs.mode {
            AccountMode::GatewayError { message } => Err(BatchRefusal {
                process: kvp_format::ProcessFile::parse(&process_bytes)
                    .ok()
                    .map(Box::new),
                reason: message.clone(),
            }),
            AccountMode::Normal => check_batch(
                name,
                &process_bytes,
                request_bytes.as_deref(),
                a.batch_key.expose(),
                &mut a.views,
            ),
        };
        let batch = match checked {
            Ok(b) => b,
            Err(refusal) => {
                warn!(account = %a.name, sequence = %seq, reason = %refusal.reason,
                    "batch refused: COMPLETE with xStatus=Error");
                let p = refusal.process.as_deref();
                let complete = CompleteFile {
                    result: "Error".into(),
                    status: "Error".into(),
                    error: Some(refusal.reason.clone()),
                    processed_count: Some(0),
                    submitted_count: p.map(|p| p.submitted_count),
                    format: p.map(|p| p.format.clone()),
                    sequence: seq,
                    extra: Record::new(),
                };
                stats.batches_failed += 1;
                let pending = Pending {
                    sequence: seq,
                    response: None,
                    complete: encode(std::iter::once(complete.to_record()), a.knobs.spaces),
                };
                return Ok(if self.publish(a, pending, stats).await? {
                    Next::Continue
                } else {
                    Next::Stop
                });
            }
        };

        let now = self.clock.now();
        let now_ms = crate::clock::unix_millis(now);
        let (sequence_text, now_ms_text) = (
            crate::out::Decimal::new(u64::from(seq.get())),
            crate::out::Decimal::new(now_ms),
        );
        a.book.prune(now_ms);
        let request = request_bytes.unwrap_or_default();
        // `check_batch` made sure the whole file is text (`Lines::Fields` only then): the
        // lines' values are slices of it.
        let text = std::str::from_utf8(&request).unwrap_or_default();
        let count = batch.lines.len();
        let shuffle = match a.knobs.response_order {
            ResponseOrder::Shuffled { seed } => Some(seed),
            ResponseOrder::InOrder => None,
        };
        let mut journal = std::mem::take(&mut a.journal_buf);
        journal.clear();
        // A journal line is ~300 bytes.
        journal.reserve(count * 320);
        let mut out = BatchOutput {
            // A RESPONSE line is about as long as its REQUEST line.
            response: Vec::with_capacity(request.len() + count * 64),
            journal,
            line_ends: Vec::with_capacity(if shuffle.is_some() { count } else { 0 }),
            scratch: String::new(),
        };
        // Lines go in runs: up to 1,024 at a time (one at a time with a per-line latency);
        // between runs the task yields or sleeps. The vault is locked line by line, so that
        // accounts on the other worker threads are not held up.
        let run = if a.knobs.line_latency.is_zero() {
            1024
        } else {
            1
        };
        let mut next = 0;
        while next < count {
            let end = (next + run).min(count);
            {
                for i in next..end {
                    let mut vault = self.vault();
                    let ctx = LineCtx {
                        account: &a.name,
                        sequence_text: sequence_text.as_str(),
                        index: i as u64,
                        now,
                        now_ms,
                        now_ms_text: now_ms_text.as_str(),
                        merchants: &a.merchants,
                        ref_num: self.next_ref_num(),
                        spaces: a.knobs.spaces,
                    };
                    let (book, vault) = (&mut a.book, &mut *vault);
                    let result = match &batch.lines {
                        Lines::Fields(fields) => {
                            answer(&ctx, &fields.line(i, text), book, vault, &mut out)
                        }
                        Lines::Decoded(lines) => match lines.get(i) {
                            Some(line) => answer(&ctx, &line.fields, book, vault, &mut out),
                            None => answer(&ctx, &LineFields::empty(), book, vault, &mut out),
                        },
                    };
                    match result {
                        "A" => stats.approved += 1,
                        "D" => stats.declined += 1,
                        _ => stats.errors += 1,
                    }
                    if shuffle.is_some() {
                        out.line_ends.push(out.response.len());
                    }
                }
            }
            next = end;
            if !a.knobs.line_latency.is_zero() {
                tokio::time::sleep(a.knobs.line_latency).await;
            } else if next.is_multiple_of(1024) {
                // Accounts are polled concurrently in one task: let the others move too.
                tokio::task::yield_now().await;
            }
        }
        stats.lines += count as u64;
        // Tokens before the journal that mentions them; both before RESPONSE exists.
        self.vault().save()?;
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .append_encoded(&out.journal)?;
        // Keep the buffer for the next batch, unless it grew past what a usual batch needs.
        if out.journal.capacity() <= JOURNAL_BUF_KEEP {
            a.journal_buf = std::mem::take(&mut out.journal);
        }
        self.crash_if_due(a, seq, CrashPoint::AfterJournal)?;

        let mut response = out.response;
        if let Some(seed) = shuffle {
            let mut rng = fastrand::Rng::with_seed(
                seed ^ u64::from(seq.get()).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            // The same permutation as shuffling the lines themselves (it depends only on
            // their number).
            let mut lines: Vec<std::ops::Range<usize>> = Vec::with_capacity(count);
            let mut start = 0;
            for &end in &out.line_ends {
                lines.push(start..end);
                start = end;
            }
            rng.shuffle(&mut lines);
            let mut shuffled = Vec::with_capacity(response.len());
            for r in lines {
                shuffled.extend_from_slice(response.get(r).unwrap_or_default());
            }
            response = shuffled;
        }
        let count = count as u64;
        let complete = CompleteFile {
            result: "Success".into(),
            status: "Success".into(),
            error: Some(String::new()),
            processed_count: Some(count),
            submitted_count: Some(batch.process.submitted_count),
            format: Some(FORMAT_KVP.into()),
            sequence: seq,
            extra: Record::new(),
        };
        info!(account = %a.name, sequence = %seq, lines = count,
            "batch processed; writing RESPONSE then COMPLETE");
        stats.batches_succeeded += 1;
        let pending = Pending {
            sequence: seq,
            response: Some(Bytes::from(response)),
            complete: encode(std::iter::once(complete.to_record()), a.knobs.spaces),
        };
        Ok(if self.publish(a, pending, stats).await? {
            Next::Continue
        } else {
            Next::Stop
        })
    }

    /// Writes RESPONSE (if any) then COMPLETE, each atomically. On a storage failure keeps
    /// what is left in `a.pending` and returns `false`.
    async fn publish(
        &self,
        a: &mut AccountState,
        mut p: Pending,
        stats: &mut RunStats,
    ) -> Result<bool> {
        let seq = p.sequence;
        if let Some(body) = p.response.clone() {
            let path = FileName::new(FileKind::Response, seq).path();
            if let Err(e) = a.backend.put(&path, body).await {
                self.storage_failed(a, "write", &path, &e, stats);
                a.pending = Some(p);
                return Ok(false);
            }
            p.response = None;
        }
        self.crash_if_due(a, seq, CrashPoint::AfterResponse)?;
        let path = FileName::new(FileKind::Complete, seq).path();
        if let Err(e) = a.backend.put(&path, p.complete.clone()).await {
            self.storage_failed(a, "write", &path, &e, stats);
            a.pending = Some(p);
            return Ok(false);
        }
        a.answered += 1;
        Ok(true)
    }

    async fn remove(&self, a: &AccountState, path: &str, stats: &mut RunStats) {
        if let Err(e) = a.backend.delete(path).await {
            // Harmless: a leftover REQUEST/PROCESS of an accepted number is ignored later.
            self.storage_failed(a, "delete", path, &e, stats);
        }
    }

    fn storage_failed(
        &self,
        a: &AccountState,
        action: &str,
        path: &str,
        e: &storage_backends::Error,
        stats: &mut RunStats,
    ) -> Next {
        // A client's file name may hold anything, a card number included.
        let path = kvp_format::mask_digit_runs(path);
        let error = kvp_format::mask_digit_runs(&e.to_string()).into_owned();
        warn!(account = %a.name, action, %path, %error, "storage operation failed; retrying next poll");
        stats.storage_errors += 1;
        Next::Stop
    }

    fn crash_if_due(&self, a: &AccountState, seq: SequenceNumber, point: CrashPoint) -> Result<()> {
        match a.knobs.crash {
            Some(c) if c.point == point && a.answered >= c.batches => {
                warn!(account = %a.name, sequence = %seq, ?point, "crash knob: stopping without COMPLETE");
                let info = (a.name.clone(), seq.get(), point);
                *self
                    .crash
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(info.clone());
                Err(Error::SimulatedCrash {
                    account: info.0,
                    sequence: info.1,
                    point: info.2,
                })
            }
            _ => Ok(()),
        }
    }

    fn check_not_crashed(&self) -> Result<()> {
        let crash = self
            .crash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match crash {
            Some((account, sequence, point)) => Err(Error::SimulatedCrash {
                account,
                sequence,
                point,
            }),
            None => Ok(()),
        }
    }
}

/// Decides one line, records it, and writes its RESPONSE and journal lines; returns its
/// `xResult`.
fn answer<F: Fields + ?Sized>(
    ctx: &LineCtx<'_>,
    fields: &F,
    book: &mut crate::book::Book,
    vault: &mut crate::vault::Vault,
    out: &mut BatchOutput,
) -> &'static str {
    let outcome = process_line(ctx, fields, book, vault);
    write_answer(
        ctx,
        fields,
        &outcome,
        vault,
        &mut out.scratch,
        &mut out.response,
        &mut out.journal,
    );
    outcome.result()
}

/// Largest journal buffer an account keeps between batches (about 100,000 lines' worth).
const JOURNAL_BUF_KEEP: usize = 32 << 20;

/// What a batch writes while its lines are processed: RESPONSE_X's and the journal's lines,
/// in memory until every line is done.
struct BatchOutput {
    response: Vec<u8>,
    journal: Vec<u8>,
    /// Where each RESPONSE line ends (only to shuffle them).
    line_ends: Vec<usize>,
    /// Reused for masked numbers.
    scratch: String,
}

/// KVP lines with LF endings; spaces as `%20` or `+`.
pub(crate) fn encode(records: impl Iterator<Item = Record>, spaces: SpaceEncoding) -> Bytes {
    let mut out = Vec::with_capacity(records.size_hint().0.saturating_mul(400).max(256));
    for r in records {
        r.encode_into(&mut out);
        out.push(b'\n');
    }
    if spaces == SpaceEncoding::Plus {
        // `%` itself is always written as `%25`, so every `%20` here is a space.
        out = plus_for_spaces(&out);
    }
    Bytes::from(out)
}

fn plus_for_spaces(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(b"%20") {
            out.push(b'+');
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_as_plus_or_percent() {
        let rec: Record = [("xError", "Card Expired"), ("xName", "100% + more")]
            .into_iter()
            .collect();
        let pct = encode(std::iter::once(rec.clone()), SpaceEncoding::Percent20);
        assert_eq!(
            &pct[..],
            b"xError=Card%20Expired&xName=100%25%20%2B%20more\n"
        );
        let plus = encode(std::iter::once(rec.clone()), SpaceEncoding::Plus);
        assert_eq!(&plus[..], b"xError=Card+Expired&xName=100%25+%2B+more\n");
        let back = kvp_format::decode_line(plus.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(back[1].1, "100% + more");
    }
}
