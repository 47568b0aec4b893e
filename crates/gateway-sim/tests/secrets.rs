//! No card number, CVV, bank account or key reaches the logs, the journal, the state files or
//! `Debug` output. Its own test binary: `tracing`'s per-callsite interest cache is shared by
//! every thread of a process, so a scoped subscriber only sees everything when no other test
//! runs beside it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{BATCH_KEY, MK, MK2, VISA, sale, txn};
use gateway_sim::{Journal, Knobs};
use kvp_format::XResult;

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_logs_journal_state_or_debug() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let target = storage_backends::test_env::local().unwrap();
    let env = common::Env::local(target).await;
    let sim = env.sim(Knobs::default());
    let cards = ["4111111111111111", "5555555555554444", "4000000000000002"];
    env.submit(
        1,
        &[
            txn(
                "cc:sale",
                &[
                    ("xCardNum", cards[0]),
                    ("xExp", "1230"),
                    ("xAmount", "1"),
                    ("xCVV", "8642"),
                ],
            ),
            txn(
                "cc:authonly",
                &[
                    ("xCardNum", cards[1]),
                    ("xExp", "1230"),
                    ("xAmount", "2"),
                    ("xKey", MK2),
                ],
            ),
            txn(
                "cc:sale",
                &[("xCardNum", cards[2]), ("xExp", "1230"), ("xAmount", "3")],
            ),
            txn(
                "check:sale",
                &[
                    ("xRouting", "021000021"),
                    ("xAccount", "7654321098"),
                    ("xAmount", "4"),
                ],
            ),
            txn(
                "cc:sale",
                &[
                    ("xMagstripe", ";6011111111111117=30121010000?"),
                    ("xAmount", "5"),
                ],
            ),
            txn(
                "cc:sale",
                &[
                    ("xCardNum", VISA),
                    ("xExp", "1230"),
                    ("xAmount", "6"),
                    ("xKey", "unknown-merchant-key"),
                ],
            ),
        ],
    )
    .await;
    sim.run_once().await.unwrap();
    assert_eq!(
        env.response(1).await.unwrap()[0].result(),
        XResult::Approved
    );
    // A refused batch (wrong batch key) and an ignored one.
    env.put_request(
        2,
        format!("xIndex=0&xSequenceNumber=2&xKey={MK}&xCardNum={VISA}\n").into_bytes(),
    )
    .await;
    env.put_process(
        2,
        b"xKey=wrong-batch-key-Q7&xSubmittedCount=1&xFormat=KVP&xSequenceNumber=2\n".to_vec(),
    )
    .await;
    env.submit(1, &[sale("9", "again")]).await;
    sim.run_once().await.unwrap();

    let mut haystack = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        haystack.contains("accepted batch"),
        "logs captured: {haystack}"
    );
    for entry in walk(env.state.path()) {
        haystack.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    haystack.push_str(&format!("{:?}", env.account(Knobs::default())));
    haystack.push_str(&format!("{sim:?}"));
    let secrets = [
        cards[0],
        cards[1],
        cards[2],
        "6011111111111117",
        "7654321098",
        "021000021",
        "8642",
        BATCH_KEY,
        MK,
        MK2,
        "unknown-merchant-key",
        "wrong-batch-key-Q7",
    ];
    for s in secrets {
        // A short digit secret (the CVV) counts only as a whole digit run: timestamps and
        // reference numbers contain any 4 digits by chance.
        assert!(!kvp_format::contains_secret(&haystack, s), "{s} leaked");
    }
    let journal = Journal::read(sim.journal_path()).unwrap();
    assert_eq!(journal[0].masked.as_deref(), Some("4xxxxxxxxxxx1111"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
