//! Shared helpers of the protocol tests: a drop on one backend, a client that writes REQUEST
//! and PROCESS files the way paybatch does, and readers for the answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gateway_sim::{GatewaySim, Journal, JournalEntry, Knobs, ManualClock, SimAccount, SimOptions};
use kvp_format::{CompleteFile, Reader, ResponseLine, Writer};
use storage_backends::{Backend, ErrorKind, Scheme, test_env};

pub const ACCOUNT: &str = "acme";
pub const BATCH_KEY: &str = "batch-key-Zq9vT";
pub const MK: &str = "merchant-key-Pw3Jd";
pub const MK2: &str = "merchant-key-Lx8Hk";
pub const VISA: &str = "4111111111111111";
/// 2026-11-22 00:00:00 UTC: cards expiring 1126 or later are valid.
pub const NOW: u64 = 1_795_305_600;

pub type Line = Vec<(String, String)>;

/// A transaction line with the fields every line needs.
pub fn txn(command: &str, extra: &[(&str, &str)]) -> Line {
    let mut l: Line = vec![
        ("xKey".into(), MK.into()),
        ("xVersion".into(), "5.0.0".into()),
        ("xSoftwareName".into(), "gateway-sim-tests".into()),
        ("xSoftwareVersion".into(), "1.0".into()),
        ("xCommand".into(), command.into()),
    ];
    for (k, v) in extra {
        match l.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = (*v).into(),
            None => l.push(((*k).into(), (*v).into())),
        }
    }
    l
}

pub fn sale(amount: &str, invoice: &str) -> Line {
    txn(
        "cc:sale",
        &[
            ("xCardNum", VISA),
            ("xExp", "1230"),
            ("xAmount", amount),
            ("xInvoice", invoice),
        ],
    )
}

pub struct Env {
    pub backend: Arc<dyn Backend>,
    pub state: tempfile::TempDir,
    pub clock: ManualClock,
    pub scheme: Scheme,
    _target: test_env::TestTarget,
}

impl Env {
    pub fn account(&self, knobs: Knobs) -> SimAccount {
        SimAccount::new(ACCOUNT, self.backend.clone(), BATCH_KEY, [MK, MK2]).with_knobs(knobs)
    }

    pub fn options(&self) -> SimOptions {
        SimOptions::new(self.state.path())
            .with_clock(Arc::new(self.clock.clone()))
            .with_poll_interval(Duration::from_millis(20))
    }

    pub fn sim(&self, knobs: Knobs) -> GatewaySim {
        GatewaySim::new(vec![self.account(knobs)], self.options()).unwrap()
    }

    /// REQUEST_X (complete, atomically), then PROCESS_X with the right count: paybatch's way.
    pub async fn submit(&self, seq: u32, lines: &[Line]) {
        let mut w = Writer::new(Vec::new());
        for (i, l) in lines.iter().enumerate() {
            let mut pairs = vec![
                ("xIndex".to_string(), i.to_string()),
                ("xSequenceNumber".to_string(), seq.to_string()),
            ];
            pairs.extend(l.iter().cloned());
            w.write_pairs(pairs).unwrap();
        }
        self.put_request(seq, w.into_inner()).await;
        let process = format!(
            "xKey={BATCH_KEY}&xSubmittedCount={}&xFormat=KVP&xSequenceNumber={seq}\n",
            lines.len()
        );
        self.put_process(seq, process.into_bytes()).await;
    }

    pub async fn put_request(&self, seq: u32, bytes: Vec<u8>) {
        self.backend
            .put(&format!("Request/REQUEST_{seq}.KVP"), bytes.into())
            .await
            .unwrap();
    }

    pub async fn put_process(&self, seq: u32, bytes: Vec<u8>) {
        self.backend
            .put(&format!("Request/PROCESS_{seq}.KVP"), bytes.into())
            .await
            .unwrap();
    }

    async fn read(&self, path: &str) -> Option<bytes::Bytes> {
        match self.backend.get(path).await {
            Ok(b) => Some(b),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => panic!("{path}: {e}"),
        }
    }

    pub async fn complete(&self, seq: u32) -> Option<CompleteFile> {
        let bytes = self.read(&format!("Response/COMPLETE_{seq}.KVP")).await?;
        Some(CompleteFile::parse(&bytes).unwrap())
    }

    pub async fn response_bytes(&self, seq: u32) -> Option<bytes::Bytes> {
        self.read(&format!("Response/RESPONSE_{seq}.KVP")).await
    }

    pub async fn response(&self, seq: u32) -> Option<Vec<ResponseLine>> {
        let bytes = self.response_bytes(seq).await?;
        let mut r = Reader::new(&bytes[..]);
        Some(
            r.typed::<ResponseLine>()
                .collect::<Result<Vec<_>, _>>()
                .unwrap(),
        )
    }

    /// The RESPONSE lines ordered by xIndex.
    pub async fn response_by_index(&self, seq: u32) -> Vec<ResponseLine> {
        let mut lines = self.response(seq).await.expect("RESPONSE present");
        lines.sort_by_key(|l| l.index);
        lines
    }

    pub async fn files(&self, folder: &str) -> Vec<String> {
        self.backend
            .list(folder)
            .await
            .unwrap()
            .iter()
            .map(|m| m.name().to_owned())
            .collect()
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        Journal::read_dir(self.state.path()).unwrap()
    }
}

/// Runs `test` against a fresh drop on `scheme`; returns early (printing why) when that
/// server is not configured, and fails when servers are required.
pub async fn run<F, Fut>(scheme: Scheme, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let target = test_env::target(scheme).expect("test environment");
    let Some(target) = target else { return };
    test(Env::open(target, scheme).await).await;
}

impl Env {
    pub async fn open(target: test_env::TestTarget, scheme: Scheme) -> Env {
        let backend = storage_backends::open(&target.location, &target.options)
            .await
            .unwrap();
        Env {
            backend,
            state: tempfile::tempdir().unwrap(),
            clock: ManualClock::at_unix(NOW),
            scheme,
            _target: target,
        }
    }

    pub async fn local(target: test_env::TestTarget) -> Env {
        Env::open(target, Scheme::Local).await
    }
}

/// One `#[tokio::test]` per backend for each protocol test: `mod local`, `mod sftp`, `mod s3`.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[tokio::test] async fn $name() { $crate::common::run(storage_backends::Scheme::Local, super::$name).await } )*
        }
        mod sftp {
            $( #[tokio::test] async fn $name() { $crate::common::run(storage_backends::Scheme::Sftp, super::$name).await } )*
        }
        mod s3 {
            $( #[tokio::test] async fn $name() { $crate::common::run(storage_backends::Scheme::S3, super::$name).await } )*
        }
    };
}
