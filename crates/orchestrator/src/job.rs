//! A validated input spilled to a temporary file, so a million transactions never sit in
//! memory at once.
//!
//! Each valid record is written once, into its account's stream of the spill
//! ([`crate::spill`]): its input position and line, what its account's
//! [`Chunker`](gateway_protocol::Chunker) said of it (APS: a hash of the
//! `merchant_reference` and a bound of the batch-file row), its content digest (the one the
//! ledger binds, computed once here), its `ref`, and its other fields in canonical KVP
//! encoding ([`LineFields`]), `account` and `ref` taken out. In memory the job keeps only each
//! position's account (4 bytes per transaction).
//!
//! Everything after loading reads an account's records in input order with one read per
//! segment ([`Job::records`]), or the records of one batch ([`Job::batch`]).

use gateway_protocol::{ChunkItem, ChunkLimits, Chunker, LineFields};

use crate::error::{Error, Result};
use crate::input::{InputRecord, RecordSource};
use crate::scratch::ScratchDir;
use crate::settings::Settings;
use crate::spill::{Cursor, StreamWriter, Streams};
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

/// One spilled transaction, owned.
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

/// One spilled transaction, borrowed from the spill's read buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxView<'a> {
    /// Input position (0-based, among valid records).
    pub pos: u32,
    /// 1-based input line.
    pub line: u64,
    /// What the account's chunker said of it.
    pub item: ChunkItem,
    /// The content digest the ledger binds ([`sequence_ledger::content_digest`]).
    pub digest: [u8; 32],
    /// The caller's reference.
    pub reference: &'a str,
    /// The transaction fields.
    pub fields: LineFields<'a>,
}

/// What the spill's account streams buffer together while the input is read (then one
/// account is read at a time).
const SPILL_BUDGET: usize = 8 << 20;

/// pos, line, key, size, digest, ref length.
const HEAD: usize = 4 + 8 + 8 + 4 + 32 + 4;

impl<'a> TxView<'a> {
    fn write(
        out: &mut Vec<u8>,
        pos: u32,
        line: u64,
        item: ChunkItem,
        digest: &[u8; 32],
        reference: &str,
        fields: &[(&str, &str)],
    ) {
        out.extend_from_slice(&pos.to_le_bytes());
        out.extend_from_slice(&line.to_le_bytes());
        out.extend_from_slice(&item.key.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&u32::try_from(item.size).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(digest);
        // A ref is at most 256 characters (validation).
        out.extend_from_slice(&u32::try_from(reference.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(reference.as_bytes());
        LineFields::encode(fields, out);
    }

    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let head = bytes.get(..HEAD)?;
        let u32_at = |at: usize| {
            head.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let u64_at = |at: usize| {
            head.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let key = u64_at(12)?;
        let ref_len = u32_at(56)? as usize;
        let reference = bytes.get(HEAD..HEAD + ref_len)?;
        Some(TxView {
            pos: u32_at(0)?,
            line: u64_at(4)?,
            item: ChunkItem {
                key: (key != 0).then_some(key),
                size: u64::from(u32_at(20)?),
            },
            digest: head.get(24..56)?.try_into().ok()?,
            reference: std::str::from_utf8(reference).ok()?,
            fields: LineFields::from_canonical(bytes.get(HEAD + ref_len..)?),
        })
    }

    /// An owned copy.
    pub(crate) fn to_transaction(self) -> Transaction {
        Transaction {
            reference: self.reference.to_owned(),
            fields: self.fields.to_vec(),
        }
    }
}

/// A validated, spilled input.
#[derive(Debug)]
pub struct Job {
    _dir: ScratchDir,
    records: Streams,
    /// Each position's account (an index of `accounts`).
    account_of: Vec<u32>,
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
        let dir = ScratchDir::create("paybatch-job-")?;
        let accounts: Vec<String> = settings.accounts().keys().cloned().collect();
        let mut out = StreamWriter::create(
            &dir.path().join("input.spill"),
            accounts.len(),
            SPILL_BUDGET,
        )?;
        let mut chunkers: Vec<Box<dyn Chunker>> = settings
            .accounts()
            .values()
            .map(|a| a.rules().chunker())
            .collect();
        let mut validator = Validator::new(settings);
        let mut account_of = Vec::new();
        let mut rec = InputRecord::default();
        let mut problems = 0usize;
        let input_name = source.name().to_owned();
        let (account_field, ref_field) = (
            settings.input.account_field.as_str(),
            settings.input.ref_field.as_str(),
        );
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
            let account_name = rec.get(account_field).unwrap_or("");
            let reference = rec.get(ref_field).unwrap_or("");
            let account = accounts
                .binary_search_by(|a| a.as_str().cmp(account_name))
                .map_err(|_| Error::setting("accounts", "account vanished during validation"))?;
            let fields: Vec<(&str, &str)> = rec
                .fields
                .iter()
                .filter(|(k, _)| k != account_field && k != ref_field)
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let item = match chunkers.get_mut(account) {
                Some(chunker) => chunker.item(&fields),
                None => ChunkItem::default(),
            };
            let digest = sequence_ledger::content_digest(fields.iter().copied());
            let pos = u32::try_from(account_of.len()).map_err(|_| {
                Error::setting("input", "more than 4,294,967,295 transactions in one input")
            })?;
            out.push_with(account, |buf| {
                TxView::write(buf, pos, rec.line, item, &digest, reference, &fields);
            })?;
            account_of.push(u32::try_from(account).unwrap_or(u32::MAX));
        }
        if problems > 0 && policy == InvalidPolicy::RejectInput {
            return Err(Error::Invalid { count: problems });
        }
        account_of.shrink_to_fit();
        Ok(Self {
            _dir: dir,
            records: out.finish()?,
            account_of,
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

    /// The index of account `name` in [`Job::accounts`].
    pub(crate) fn account_index(&self, name: &str) -> Option<usize> {
        self.accounts
            .binary_search_by(|a| a.as_str().cmp(name))
            .ok()
    }

    /// How many valid transactions there are.
    pub fn len(&self) -> usize {
        self.account_of.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.account_of.is_empty()
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
        self.account_of.get(pos).map_or(usize::MAX, |a| *a as usize)
    }

    /// Input positions of each account's transactions, in input order.
    pub fn positions_by_account(&self) -> Vec<Vec<u32>> {
        let mut by = vec![Vec::new(); self.accounts.len()];
        for (pos, account) in self.account_of.iter().enumerate() {
            if let Some(list) = by.get_mut(*account as usize) {
                list.push(u32::try_from(pos).unwrap_or(u32::MAX));
            }
        }
        by
    }

    /// Account `account`'s transactions in input order, read sequentially.
    pub(crate) fn records(&self, account: usize) -> Records<'_> {
        Records {
            cursor: self.records.cursor(account),
            input_name: &self.input_name,
        }
    }

    /// The transactions at `positions` (all of account `account`), in that order: the lines
    /// of one batch. One sequential pass over the account's records.
    ///
    /// # Errors
    /// [`Error::Io`] reading the spill; [`Error::Input`] for a position the account does not
    /// have.
    pub(crate) fn batch(&self, account: usize, positions: &[u32]) -> Result<BatchTxs> {
        let mut wanted: Vec<(u32, usize)> =
            positions.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        wanted.sort_unstable();
        let mut buf = Vec::new();
        let mut spans = vec![(0usize, 0usize); positions.len()];
        let mut next = wanted.iter().peekable();
        let mut cursor = self.records.cursor(account);
        while let Some(&&(pos, _)) = next.peek() {
            let Some(bytes) = cursor.next_record()? else {
                return Err(self.missing(pos));
            };
            let view = TxView::parse(bytes).ok_or_else(|| self.unreadable())?;
            if view.pos < pos {
                continue;
            }
            if view.pos > pos {
                return Err(self.missing(pos));
            }
            let start = buf.len();
            buf.extend_from_slice(bytes);
            while let Some(&(_, i)) = next.next_if(|(p, _)| *p == pos) {
                if let Some(span) = spans.get_mut(i) {
                    *span = (start, buf.len());
                }
            }
        }
        Ok(BatchTxs { buf, spans })
    }

    /// The input line of position `pos` (0 when there is none). Reads the account's records
    /// up to it: for error messages, not for loops.
    pub fn line_of(&self, pos: usize) -> u64 {
        self.find(pos).map_or(0, |t| t.0)
    }

    /// Reads back the transaction at input position `pos`, owned. Reads the account's records
    /// up to it: for tools and tests, not for loops.
    ///
    /// # Errors
    /// [`Error::Io`] when the spill file cannot be read; [`Error::Input`] for an unknown
    /// position.
    pub fn transaction(&self, pos: usize) -> Result<Transaction> {
        self.find(pos)?;
        let pos32 = u32::try_from(pos).map_err(|_| self.missing(u32::MAX))?;
        let batch = self.batch(self.account_of(pos), &[pos32])?;
        Ok(batch.get(0)?.to_transaction())
    }

    fn find(&self, pos: usize) -> Result<(u64, u32)> {
        let pos = u32::try_from(pos).map_err(|_| self.missing(u32::MAX))?;
        let mut records = self.records(self.account_of(pos as usize));
        while let Some(view) = records.next()? {
            if view.pos == pos {
                return Ok((view.line, view.pos));
            }
        }
        Err(self.missing(pos))
    }

    fn missing(&self, pos: u32) -> Error {
        Error::Input {
            file: self.input_name.clone(),
            line: 0,
            message: format!("no spilled transaction at position {pos}"),
        }
    }

    fn unreadable(&self) -> Error {
        unreadable(&self.input_name)
    }
}

fn unreadable(input_name: &str) -> Error {
    Error::Input {
        file: input_name.to_owned(),
        line: 0,
        message: "spilled record unreadable".into(),
    }
}

/// An account's spilled transactions, in input order ([`Job::records`]).
#[derive(Debug)]
pub(crate) struct Records<'a> {
    cursor: Cursor<'a>,
    input_name: &'a str,
}

impl Records<'_> {
    /// The next transaction, or `None` after the last.
    ///
    /// # Errors
    /// [`Error::Io`] reading the spill; [`Error::Input`] for a damaged record.
    pub(crate) fn next(&mut self) -> Result<Option<TxView<'_>>> {
        let input_name = self.input_name;
        match self.cursor.next_record()? {
            None => Ok(None),
            Some(bytes) => TxView::parse(bytes)
                .map(Some)
                .ok_or_else(|| unreadable(input_name)),
        }
    }
}

/// The transactions of one batch, in batch order ([`Job::batch`]).
#[derive(Debug)]
pub(crate) struct BatchTxs {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl BatchTxs {
    /// How many lines.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Line `i`.
    ///
    /// # Errors
    /// [`Error::Input`] for a line out of range or damaged.
    pub(crate) fn get(&self, i: usize) -> Result<TxView<'_>> {
        self.spans
            .get(i)
            .and_then(|(start, end)| self.buf.get(*start..*end))
            .and_then(TxView::parse)
            .ok_or_else(|| unreadable("spill"))
    }

    /// Every line, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Result<TxView<'_>>> + '_ {
        (0..self.len()).map(|i| self.get(i))
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

    /// Account `name`'s plan with no ledger bindings, cut by its protocol's chunk rules.
    fn plan_fresh(job: &Job, name: &str, max: usize) -> crate::plan::AccountPlan {
        let account = job.account_index(name).unwrap();
        let positions = &job.positions_by_account()[account];
        let items = items(job, account);
        crate::plan::plan_account_with(
            positions,
            job.chunk_limits(account, max),
            |p| items[&p],
            |_| None,
        )
        .unwrap()
    }

    fn items(job: &Job, account: usize) -> std::collections::HashMap<u32, ChunkItem> {
        let mut records = job.records(account);
        let mut items = std::collections::HashMap::new();
        while let Some(v) = records.next().unwrap() {
            items.insert(v.pos, v.item);
        }
        items
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
        // A batch's lines come back in the order asked, each with its digest.
        let batch = job.batch(1, &[2, 0]).unwrap();
        let refs: Vec<&str> = batch.iter().map(|t| t.unwrap().reference).collect();
        assert_eq!(refs, ["3", "a b"]);
        let first = batch.get(1).unwrap();
        assert_eq!(
            first.digest,
            sequence_ledger::content_digest([("xCommand", "cc:sale"), ("xName", "Jö+")])
        );
        assert_eq!((first.pos, first.line), (0, 1));
        assert!(job.batch(1, &[1]).is_err(), "position 1 is acme's");
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
        let shop = plan_fresh(&job, "shop", 100);
        assert_eq!(shop.fresh, vec![vec![0], vec![2, 3]]);
        // Sola accounts have no batch key and no file limit.
        let acme = plan_fresh(&job, "acme", 100);
        assert_eq!(acme.fresh, vec![vec![1, 4]]);
        assert_eq!(job.chunk_limits(0, 7), ChunkLimits::lines(7));
        // A small file limit closes APS batches by size as well.
        let shop_items = items(&job, 1);
        let item = shop_items[&0];
        assert!(item.size > 0 && item.key.is_some());
        let per_line = job.chunk_limits(1, 100).per_line;
        let small = ChunkLimits {
            max_bytes: Some(aps_batch::header_size() + item.size + per_line),
            ..job.chunk_limits(1, 100)
        };
        let plan =
            crate::plan::plan_account_with(&by[1], small, |p| shop_items[&p], |_| None).unwrap();
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
        let shop_items = items(&job, 0);
        for max_bytes in [700u64, 1500, 4000] {
            let limits = ChunkLimits {
                max_bytes: Some(max_bytes),
                ..job.chunk_limits(0, 1000)
            };
            let plan =
                crate::plan::plan_account_with(positions, limits, |p| shop_items[&p], |_| None)
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
    }
}
