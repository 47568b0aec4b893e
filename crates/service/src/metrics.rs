//! `GET /metrics`: Prometheus text (format 0.0.4) from one snapshot taken per scrape.
//!
//! | metric | type | labels | from |
//! |---|---|---|---|
//! | `paybatch_transactions_total` | counter | account, outcome | the finished jobs' totals (kept in their records, so a restart does not reset it) |
//! | `paybatch_batches` | gauge | account, state | the ledger: every batch by state |
//! | `paybatch_batch_seconds` | histogram | — | the ledger: from RequestUploaded to the first Completed of every answered batch |
//! | `paybatch_jobs` | gauge | state | the job records |
//! | `paybatch_storage_errors_total` | counter | account, kind (`transient`, `permanent`) | the engine ([`orchestrator::Progress::storage_errors`]) since this start |
//!
//! `paybatch_transactions_total` sums each job's latest run: a job retried after a Stuck batch
//! was resolved replaces its totals (its `unknown` lines move to their final outcome).
//! A scrape reads every batch record of the ledger; at the usual scrape intervals that is
//! cheap next to the batches themselves.

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use sequence_ledger::{BatchState, SequenceLedger};

use crate::jobs::Jobs;

/// Upper bounds of the `paybatch_batch_seconds` buckets.
pub const BATCH_SECONDS_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// What one scrape shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    transactions: BTreeMap<(String, String), u64>,
    batches: BTreeMap<(String, String), u64>,
    /// Per bucket (the last is +Inf), not cumulative.
    batch_seconds: Vec<u64>,
    batch_seconds_sum: f64,
    batch_seconds_count: u64,
    jobs: BTreeMap<String, u64>,
    storage_errors: Vec<(String, &'static str, u64)>,
}

impl Snapshot {
    /// Reads the jobs, the ledger and the engine's counters.
    ///
    /// # Errors
    /// Ledger read errors.
    pub async fn take(
        jobs: &Jobs,
        ledger: &dyn SequenceLedger,
    ) -> Result<Self, sequence_ledger::Error> {
        let mut s = Snapshot {
            batch_seconds: vec![0; BATCH_SECONDS_BUCKETS.len() + 1],
            ..Snapshot::default()
        };
        for record in jobs.list() {
            for a in &record.accounts {
                for (outcome, n) in &a.totals {
                    *s.transactions
                        .entry((a.account.clone(), outcome.clone()))
                        .or_default() += n;
                }
            }
        }
        for (state, n) in jobs.count_by_state() {
            s.jobs.insert(state.as_str().to_owned(), n);
        }
        let mut names: Vec<String> = jobs.settings().accounts().keys().cloned().collect();
        for a in ledger.accounts().await? {
            if !names.contains(&a.to_string()) {
                names.push(a.to_string());
            }
        }
        for name in names {
            let account = sequence_ledger::AccountId::new(name.as_str())?;
            for b in ledger.batches(&account).await? {
                *s.batches
                    .entry((name.clone(), b.state.name().to_owned()))
                    .or_default() += 1;
                let at = |f: &dyn Fn(BatchState) -> bool| {
                    b.transitions
                        .iter()
                        .find(|t| f(t.state))
                        .map(|t| t.at_unix_ms)
                };
                let uploaded = at(&|st| st == BatchState::RequestUploaded);
                let answered = at(&|st| matches!(st, BatchState::Completed(_)));
                if let (Some(u), Some(c)) = (uploaded, answered) {
                    let secs = c.saturating_sub(u) as f64 / 1000.0;
                    let bucket = BATCH_SECONDS_BUCKETS
                        .iter()
                        .position(|le| secs <= *le)
                        .unwrap_or(BATCH_SECONDS_BUCKETS.len());
                    if let Some(n) = s.batch_seconds.get_mut(bucket) {
                        *n += 1;
                    }
                    s.batch_seconds_sum += secs;
                    s.batch_seconds_count += 1;
                }
            }
        }
        s.storage_errors = jobs
            .engine()
            .progress()
            .storage_errors()
            .into_iter()
            .map(|(a, k, n)| (a, k.as_str(), n))
            .collect();
        Ok(s)
    }

    /// The Prometheus text of this snapshot.
    ///
    /// # Errors
    /// A formatting error (not expected: it writes into a `String`).
    pub fn encode(self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "paybatch_transactions",
            "Transactions of finished jobs by account and outcome.",
            None,
            MetricType::Counter,
        )?;
        for ((account, outcome), n) in &self.transactions {
            let labels = [("account", account.as_str()), ("outcome", outcome.as_str())];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "paybatch_batches",
            "Batches in the ledger by account and state.",
            None,
            MetricType::Gauge,
        )?;
        for ((account, state), n) in &self.batches {
            let labels = [("account", account.as_str()), ("state", state.as_str())];
            ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "paybatch_batch_seconds",
            "Seconds from a batch's upload (RequestUploaded) to the gateway's answer (Completed).",
            None,
            MetricType::Histogram,
        )?;
        let buckets: Vec<(f64, u64)> = BATCH_SECONDS_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.batch_seconds.iter().copied())
            .collect();
        family.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.batch_seconds_sum,
            self.batch_seconds_count,
            &buckets,
            None,
        )?;
        let mut family = encoder.encode_descriptor(
            "paybatch_jobs",
            "Jobs by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &self.jobs {
            let labels = [("state", state.as_str())];
            ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "paybatch_storage_errors",
            "Failed storage or gateway steps by account and kind (transient: retried; permanent: the account stopped), since this start.",
            None,
            MetricType::Counter,
        )?;
        for (account, kind, n) in &self.storage_errors {
            let labels = [("account", account.as_str()), ("kind", *kind)];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
