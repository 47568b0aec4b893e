//! A validated input spilled to a temporary file, with a small per-transaction index, so a
//! million transactions never sit in memory at once.
//!
//! Each valid record is written once, as `REF FIELDS\n` (both percent-encoded, so neither holds
//! a space), with `account` and `ref` taken out of the fields. The index keeps, per record, its
//! account, the spill offset and length, its input line, and what its account's
//! [`Chunker`](gateway_protocol::Chunker) needs to cut batches (APS: a hash of the
//! `merchant_reference` and a bound of the batch-file row) — 40 bytes ([`Job::chunk_item`]).
//! Results are spilled the same way and looked up by input position when the output is
//! written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use gateway_protocol::{ChunkItem, ChunkLimits, Chunker};

use crate::error::{Error, Result};
use crate::input::{InputRecord, RecordSource};
use crate::settings::Settings;
use crate::validate::{InputProblem, Validator};

/// What to do with invalid records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InvalidPolicy {
    /// Any invalid record fails the whole input: nothing is reserved or uploaded.
    #[default]
    RejectInput,
    /// Invalid records are reported (and written to a rejects file by the caller); the rest go.
    SkipInvalid,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    account: u32,
    len: u32,
    offset: u64,
    line: u64,
    /// 0: no batch key; else the non-zero key its account's chunker gave (APS: a hash of the
    /// `merchant_reference`).
    key: u64,
    /// Upper bound of the bytes it adds to its batch's file (APS), 0 when not counted.
    size: u32,
}

/// One spilled transaction.
#[derive(Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The caller's reference.
    pub reference: String,
    /// The transaction fields, in input order, without `account` and `ref`.
    pub fields: Vec<(String, String)>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked: Vec<(&str, std::borrow::Cow<'_, str>)> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), kvp_format::mask_value(k, v)))
            .collect();
        f.debug_struct("Transaction")
            .field("reference", &self.reference)
            .field("fields", &masked)
            .finish()
    }
}

/// A validated, spilled input.
#[derive(Debug)]
pub struct Job {
    _dir: tempfile::TempDir,
    spill: File,
    entries: Vec<Entry>,
    accounts: Vec<String>,
    /// Per account: how large its new batches may grow (its chunker's word after seeing
    /// every line).
    limits: Vec<ChunkLimits>,
    input_name: String,
    problems: usize,
}

impl Job {
    /// Reads every record of `source`, validates it, and spills the valid ones.
    /// `on_problem` sees each invalid record with its problem (print it, write a rejects file).
    ///
    /// # Errors
    /// [`Error::Invalid`] when a record is invalid under [`InvalidPolicy::RejectInput`] (after
    /// reading the whole input, so every problem is reported); [`Error::Input`] when a record
    /// cannot even be read; [`Error::Io`] for the spill file.
    pub fn load(
        source: &mut dyn RecordSource,
        settings: &Settings,
        policy: InvalidPolicy,
        on_problem: &mut dyn FnMut(&InputProblem, &InputRecord),
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("paybatch-job-")
            .permissions(kvp_format::owner_only::dir_permissions())
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let path = dir.path().join("input.spill");
        let file = kvp_format::owner_only::create_new(&path).map_err(|e| Error::io(&path, e))?;
        let mut out =
            BufWriter::with_capacity(1 << 16, file.try_clone().map_err(|e| Error::io(&path, e))?);
        let accounts: Vec<String> = settings.accounts().keys().cloned().collect();
        let mut chunkers: Vec<Box<dyn Chunker>> = settings
            .accounts()
            .values()
            .map(|a| a.rules().chunker())
            .collect();
        let mut validator = Validator::new(settings);
        let mut entries = Vec::new();
        let mut rec = InputRecord::default();
        let mut buf = Vec::new();
        let mut offset = 0u64;
        let mut problems = 0usize;
        let input_name = source.name().to_owned();
        while source.read_record(&mut rec)? {
            let found = validator.check(&rec);
            if !found.is_empty() {
                problems += found.len();
                for message in found {
                    let problem = InputProblem {
                        file: input_name.clone(),
                        line: rec.line,
                        message,
                    };
                    on_problem(&problem, &rec);
                }
                continue;
            }
            if policy == InvalidPolicy::RejectInput && problems > 0 {
                continue;
            }
            let account_name = rec.get(&settings.input.account_field).unwrap_or("");
            let reference = rec.get(&settings.input.ref_field).unwrap_or("");
            let account = accounts
                .binary_search_by(|a| a.as_str().cmp(account_name))
                .map_err(|_| Error::setting("accounts", "account vanished during validation"))?;
            let item = match chunkers.get_mut(account) {
                Some(chunker) => {
                    let fields: Vec<(String, String)> = rec
                        .fields
                        .iter()
                        .filter(|(k, _)| {
                            *k != settings.input.account_field && *k != settings.input.ref_field
                        })
                        .cloned()
                        .collect();
                    chunker.item(&fields)
                }
                None => ChunkItem::default(),
            };
            buf.clear();
            kvp_format::encode_pair("r", reference, &mut buf);
            buf.drain(..2);
            buf.push(b' ');
            let mut first = true;
            for (k, v) in &rec.fields {
                if *k == settings.input.account_field || *k == settings.input.ref_field {
                    continue;
                }
                if !first {
                    buf.push(b'&');
                }
                first = false;
                kvp_format::encode_pair(k, v, &mut buf);
            }
            buf.push(b'\n');
            out.write_all(&buf).map_err(|e| Error::io(&path, e))?;
            let len = u32::try_from(buf.len())
                .map_err(|_| Error::setting("input", format!("line {} is too long", rec.line)))?;
            entries.push(Entry {
                account: u32::try_from(account).unwrap_or(u32::MAX),
                len,
                offset,
                line: rec.line,
                key: item.key.unwrap_or(0),
                size: u32::try_from(item.size).unwrap_or(u32::MAX),
            });
            offset += u64::from(len);
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
        drop(out);
        if problems > 0 && policy == InvalidPolicy::RejectInput {
            return Err(Error::Invalid { count: problems });
        }
        Ok(Self {
            _dir: dir,
            spill: file,
            entries,
            limits: accounts
                .iter()
                .zip(&chunkers)
                .map(|(name, c)| c.limits(settings.max_batch_lines(name)))
                .collect(),
            accounts,
            input_name,
            problems,
        })
    }

    /// What the planner must know of the transaction at input position `pos`: the key and
    /// size its account's chunker gave it.
    pub(crate) fn chunk_item(&self, pos: u32) -> ChunkItem {
        self.entries
            .get(pos as usize)
            .map_or_else(ChunkItem::default, |e| ChunkItem {
                key: (e.key != 0).then_some(e.key),
                size: u64::from(e.size),
            })
    }

    /// How large a new batch of account `account` (an index of [`Job::accounts`]) may grow,
    /// with at most `max_lines` lines.
    pub(crate) fn chunk_limits(&self, account: usize, max_lines: usize) -> ChunkLimits {
        match self.limits.get(account) {
            Some(limits) => ChunkLimits {
                max_lines,
                ..*limits
            },
            None => ChunkLimits::lines(max_lines),
        }
    }

    /// Plans account `account`'s `positions` (the account's name) with [`Job::chunk_limits`]
    /// and [`Job::chunk_item`]; `bound` as for [`crate::plan::plan_account`]. The planner to use for
    /// a job: an APS account's batches then never repeat a `merchant_reference` and stay
    /// under the file limit.
    ///
    /// # Errors
    /// A [`PlanConflict`](crate::plan::PlanConflict) when two transactions claim the same
    /// index of a batch.
    pub(crate) fn plan_account(
        &self,
        account: &str,
        positions: &[u32],
        max_lines: usize,
        bound: impl FnMut(u32) -> Option<crate::plan::Bound>,
    ) -> std::result::Result<crate::plan::AccountPlan, crate::plan::PlanConflict> {
        let index = self
            .accounts
            .binary_search_by(|a| a.as_str().cmp(account))
            .unwrap_or(usize::MAX);
        crate::plan::plan_account_with(
            positions,
            self.chunk_limits(index, max_lines),
            |p| self.chunk_item(p),
            bound,
        )
    }

    /// How many valid transactions there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many problems were skipped (under [`InvalidPolicy::SkipInvalid`]).
    pub fn skipped_problems(&self) -> usize {
        self.problems
    }

    /// The input's name.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The configured account names, indexed by [`Job::account_of`].
    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }

    /// The account index of the transaction at input position `pos`.
    pub fn account_of(&self, pos: usize) -> usize {
        self.entries
            .get(pos)
            .map_or(usize::MAX, |e| e.account as usize)
    }

    /// The input line of position `pos`.
    pub fn line_of(&self, pos: usize) -> u64 {
        self.entries.get(pos).map_or(0, |e| e.line)
    }

    /// Input positions of each account's transactions, in input order.
    pub fn positions_by_account(&self) -> Vec<Vec<u32>> {
        let mut by = vec![Vec::new(); self.accounts.len()];
        for (pos, e) in self.entries.iter().enumerate() {
            if let Some(list) = by.get_mut(e.account as usize) {
                list.push(u32::try_from(pos).unwrap_or(u32::MAX));
            }
        }
        by
    }

    /// Reads back the transaction at input position `pos`.
    ///
    /// # Errors
    /// [`Error::Io`] when the spill file cannot be read.
    pub fn transaction(&self, pos: usize) -> Result<Transaction> {
        let entry = self
            .entries
            .get(pos)
            .ok_or_else(|| Error::setting("input", format!("no transaction at {pos}")))?;
        let mut buf = vec![0u8; entry.len as usize];
        self.spill
            .read_exact_at(&mut buf, entry.offset)
            .map_err(|e| Error::io(self.input_name.as_str(), e))?;
        buf.pop();
        let bad = |m: &str| Error::Input {
            file: self.input_name.clone(),
            line: entry.line,
            message: format!("spilled record unreadable: {m}"),
        };
        let space = buf
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("no separator"))?;
        let (head, tail) = buf.split_at(space);
        let reference = kvp_format::decode_line(&[b"r=", head].concat())
            .map_err(|_| bad("ref"))?
            .into_iter()
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let fields = kvp_format::decode_line(tail.get(1..).unwrap_or_default())
            .map_err(|_| bad("fields"))?
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Transaction { reference, fields })
    }
}

/// Per-position output records spilled to a file, written in any order, read in input order.
#[derive(Debug)]
pub struct ResultSpill {
    _dir: tempfile::TempDir,
    path: PathBuf,
    file: File,
    end: u64,
    index: Vec<(u64, u32)>,
}

impl ResultSpill {
    /// An empty spill for `len` positions.
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary file cannot be made.
    pub fn new(len: usize) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("paybatch-results-")
            .permissions(kvp_format::owner_only::dir_permissions())
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let path = dir.path().join("results.spill");
        let file = kvp_format::owner_only::create_new(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self {
            _dir: dir,
            path,
            file,
            end: 0,
            index: vec![(0, 0); len],
        })
    }

    /// Stores the output record of position `pos` (encoded pairs; replaces an earlier one).
    ///
    /// # Errors
    /// [`Error::Io`] when the spill cannot be written.
    pub fn put(&mut self, pos: usize, pairs: &[(String, String)]) -> Result<()> {
        let mut buf = Vec::with_capacity(256);
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                buf.push(b'&');
            }
            kvp_format::encode_pair(k, v, &mut buf);
        }
        self.file
            .write_all_at(&buf, self.end)
            .map_err(|e| Error::io(&self.path, e))?;
        if let Some(slot) = self.index.get_mut(pos) {
            *slot = (self.end, u32::try_from(buf.len()).unwrap_or(u32::MAX));
        }
        self.end += buf.len() as u64;
        Ok(())
    }

    /// The output record of position `pos`, or `None` if none was stored.
    ///
    /// # Errors
    /// [`Error::Io`] when the spill cannot be read.
    pub fn get(&self, pos: usize) -> Result<Option<Vec<(String, String)>>> {
        let Some(&(offset, len)) = self.index.get(pos) else {
            return Ok(None);
        };
        if len == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&self.path, e))?;
        let pairs = kvp_format::decode_line(&buf)
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e.to_string())))?
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Some(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Format, InputReader};

    fn settings() -> Settings {
        Settings::from_toml(
            "[accounts.acme]\nlocation = \"file:///tmp/a\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n\
             [accounts.beta]\nlocation = \"file:///tmp/b\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n", &crate::test_protocols())
        .unwrap()
    }

    fn load(text: &str, policy: InvalidPolicy) -> (Result<Job>, Vec<String>) {
        load_with(&settings(), text, policy)
    }

    /// Loads KVP `text` as `in.kvp` under `settings`; returns the job and the problems seen.
    fn load_with(
        settings: &Settings,
        text: &str,
        policy: InvalidPolicy,
    ) -> (Result<Job>, Vec<String>) {
        let mut src = InputReader::new(
            "in.kvp",
            Format::Kvp,
            Box::new(std::io::Cursor::new(text.to_owned().into_bytes())),
        )
        .unwrap();
        let mut seen = Vec::new();
        let job = Job::load(&mut src, settings, policy, &mut |p, _| {
            seen.push(p.to_string())
        });
        (job, seen)
    }

    /// [`load_with`] for input without problems.
    fn load_valid(settings: &Settings, text: &str) -> Job {
        let (job, problems) = load_with(settings, text, InvalidPolicy::RejectInput);
        assert_eq!(problems, Vec::<String>::new());
        job.unwrap()
    }

    #[test]
    fn spills_and_reads_back_in_order() {
        let (job, problems) = load(
            "account=beta&ref=a%20b&xCommand=cc:sale&xName=J%C3%B6%2B\naccount=acme&ref=2&xCommand=cc:void&xRefNum=1\naccount=beta&ref=3&xCommand=cc:sale\n",
            InvalidPolicy::RejectInput,
        );
        assert!(problems.is_empty());
        let job = job.unwrap();
        assert_eq!(job.len(), 3);
        assert_eq!(job.positions_by_account(), [vec![1], vec![0, 2]]);
        let t = job.transaction(0).unwrap();
        assert_eq!(t.reference, "a b");
        assert_eq!(
            t.fields,
            [
                ("xCommand".to_owned(), "cc:sale".to_owned()),
                ("xName".to_owned(), "Jö+".to_owned())
            ]
        );
        assert_eq!(job.line_of(2), 3);
    }

    #[test]
    fn invalid_input_fails_whole_or_skips() {
        let text = "account=acme&ref=1&xCommand=cc:sale\naccount=nope&ref=2&xCommand=cc:sale\naccount=acme&ref=3\n";
        let (job, problems) = load(text, InvalidPolicy::RejectInput);
        assert!(matches!(job, Err(Error::Invalid { count: 2 })));
        assert_eq!(
            problems,
            [
                "in.kvp:2: unknown account \"nope\"",
                "in.kvp:3: missing xCommand"
            ]
        );
        let (job, _) = load(text, InvalidPolicy::SkipInvalid);
        assert_eq!(job.unwrap().len(), 1);
    }

    #[test]
    fn aps_purchase_and_capture_of_one_order_plan_into_two_batches() {
        let settings = Settings::from_toml(
            "[accounts.acme]\nlocation = \"file:///tmp/a\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n\
             [accounts.shop]\nprotocol = \"aps\"\nendpoint = \"http://127.0.0.1:9/\"\nmerchant_identifier = \"m\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\ncurrency = \"USD\"\n", &crate::test_protocols())
        .unwrap();
        let purchase = "merchant_reference=o1&amount=1.00&token_name=t&customer_email=a@b.c";
        let text = format!(
            "account=shop&ref=1&command=PURCHASE&{purchase}\n\
             account=acme&ref=2&xCommand=cc:sale\n\
             account=shop&ref=3&command=CAPTURE&merchant_reference=o1&amount=1.00&order_note=n\n\
             account=shop&ref=4&command=PURCHASE&merchant_reference=o2&amount=1.00&token_name=t&customer_email=a@b.c\n\
             account=acme&ref=5&xCommand=cc:sale\n"
        );
        let job = load_valid(&settings, &text);
        let by = job.positions_by_account();
        assert_eq!(by, [vec![1, 4], vec![0, 2, 3]]);
        let shop = job.plan_account("shop", &by[1], 100, |_| None).unwrap();
        assert_eq!(shop.fresh, vec![vec![0], vec![2, 3]]);
        // Sola accounts have no batch key and no file limit.
        let acme = job.plan_account("acme", &by[0], 100, |_| None).unwrap();
        assert_eq!(acme.fresh, vec![vec![1, 4]]);
        assert_eq!(job.chunk_limits(0, 7), ChunkLimits::lines(7));
        // A small file limit closes APS batches by size as well.
        let item = job.chunk_item(0);
        assert!(item.size > 0 && item.key.is_some());
        let per_line = job.chunk_limits(1, 100).per_line;
        let small = ChunkLimits {
            max_bytes: Some(aps_batch::header_size() + item.size + per_line),
            ..job.chunk_limits(1, 100)
        };
        let plan =
            crate::plan::plan_account_with(&by[1], small, |p| job.chunk_item(p), |_| None).unwrap();
        assert_eq!(plan.fresh.len(), 3);
        // Every APS row is counted with an empty cell for each extra column of the account.
        let bare = aps_batch::row_size_bound(&job.transaction(0).unwrap().fields);
        assert_eq!(item.size, bare);
        assert_eq!(per_line, 1, "one extra column (order_note) in the account");
    }

    #[test]
    fn planned_aps_files_stay_under_a_small_limit() {
        let settings = Settings::from_toml(
            "[accounts.shop]\nprotocol = \"aps\"\nendpoint = \"http://127.0.0.1:9/\"\nmerchant_identifier = \"m\"\naccess_code = \"a\"\nsha_request_phrase = \"i\"\nsha_response_phrase = \"o\"\ncurrency = \"KWD\"\n", &crate::test_protocols())
        .unwrap();
        let mut text = String::new();
        for i in 0..40 {
            let extra = match i % 3 {
                0 => format!("&note_{i}=a%22b%2Cc"),
                1 => String::new(),
                _ => "&order_description=%22%22%22%22".to_owned(),
            };
            text.push_str(&format!(
                "account=shop&ref={i}&command=PURCHASE&merchant_reference=o{i}&amount=1&token_name=t&customer_email=a@b.c{extra}\n"
            ));
        }
        let job = load_valid(&settings, &text);
        let positions = &job.positions_by_account()[0];
        for max_bytes in [700u64, 1500, 4000] {
            let limits = ChunkLimits {
                max_bytes: Some(max_bytes),
                ..job.chunk_limits(0, 1000)
            };
            let plan =
                crate::plan::plan_account_with(positions, limits, |p| job.chunk_item(p), |_| None)
                    .unwrap();
            assert!(plan.fresh.len() > 1, "{max_bytes}");
            assert_eq!(plan.len(), 40);
            for chunk in &plan.fresh {
                let txs: Vec<aps_batch::ApsTransaction> = chunk
                    .iter()
                    .map(|p| {
                        let t = job.transaction(*p as usize).unwrap();
                        aps_batch::ApsTransaction::from_fields(
                            t.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                            aps_batch::Currency::new("KWD").ok(),
                        )
                        .unwrap()
                    })
                    .collect();
                let file = aps_batch::write_batch_file(&txs).unwrap();
                assert!(file.len() as u64 <= max_bytes, "{max_bytes}: {chunk:?}");
            }
        }
    }

    #[test]
    fn spill_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let (job, _) = load(
            "account=acme&ref=1&xCommand=cc:sale&xCardNum=4111111111111111\n",
            InvalidPolicy::RejectInput,
        );
        let job = job.unwrap();
        assert_eq!(mode(job._dir.path()), 0o700);
        assert_eq!(mode(&job._dir.path().join("input.spill")), 0o600);
        let spill = ResultSpill::new(1).unwrap();
        assert_eq!((mode(spill._dir.path()), mode(&spill.path)), (0o700, 0o600));
    }

    #[test]
    fn result_spill_round_trips_in_any_order() {
        let mut spill = ResultSpill::new(3).unwrap();
        let rec = |v: &str| {
            vec![
                ("ref".to_owned(), v.to_owned()),
                ("xError".to_owned(), "a&b=c %".to_owned()),
            ]
        };
        spill.put(2, &rec("two")).unwrap();
        spill.put(0, &rec("zero")).unwrap();
        assert_eq!(spill.get(0).unwrap(), Some(rec("zero")));
        assert_eq!(spill.get(1).unwrap(), None);
        assert_eq!(spill.get(2).unwrap(), Some(rec("two")));
    }
}
