//! Protocol tests driven only through files, each written once over a backend and run on the
//! local, SFTP and S3 backends (`per_backend!`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Env, MK2, VISA, sale, txn};
use gateway_sim::{Knobs, ResponseOrder, SpaceEncoding};
use kvp_format::XResult;

per_backend!(
    good_batch,
    validation_failures,
    stale_number_ignored,
    number_reused_after_restart_ignored,
    every_command,
    duplicate_rule,
    shuffled_order,
    plus_for_spaces,
);

async fn good_batch(env: Env) {
    let sim = env.sim(Knobs::default());
    let lines = vec![
        sale("10.00", "INV-1"),
        sale("13.13", "INV-2"),
        txn(
            "cc:sale",
            &[
                ("xCardNum", "4111111111111112"),
                ("xExp", "1230"),
                ("xAmount", "1"),
            ],
        ),
    ];
    env.submit(7, &lines).await;
    let stats = sim.run_once().await.unwrap();
    assert_eq!(stats.batches_succeeded, 1);
    assert_eq!((stats.approved, stats.declined, stats.errors), (1, 1, 1));

    let complete = env.complete(7).await.expect("COMPLETE_7");
    assert!(complete.is_success(), "{complete:?}");
    assert_eq!(complete.processed_count, Some(3));
    assert_eq!(complete.submitted_count, Some(3));
    assert_eq!(complete.sequence.get(), 7);
    let resp = env.response_by_index(7).await;
    assert_eq!(resp.iter().map(|l| l.index).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(resp.iter().all(|l| l.sequence.get() == 7));
    let results: Vec<XResult> = resp.iter().map(|l| l.result()).collect();
    assert_eq!(
        results,
        [XResult::Approved, XResult::Declined, XResult::Error]
    );
    assert_eq!(resp[0].get("xInvoice"), Some("INV-1"));
    assert_eq!(resp[0].get("xMaskedCardNumber"), Some("4xxxxxxxxxxx1111"));
    assert_eq!(resp[0].get("xAuthAmount"), Some("10.00"));
    assert_eq!(resp[1].get("xError"), Some("Declined"));
    assert_eq!(resp[2].get("xError"), Some("Invalid Card Number"));
    let refs: BTreeSet<_> = resp
        .iter()
        .map(|l| l.get("xRefNum").unwrap().to_owned())
        .collect();
    assert_eq!(refs.len(), 3, "xRefNum unique");
    // The request files are consumed; a second poll does nothing.
    assert!(env.files("Request").await.is_empty());
    assert!(sim.run_once().await.unwrap().is_idle());
    let journal = env.journal();
    assert_eq!(journal.len(), 3);
    assert_eq!(journal[1].invoice.as_deref(), Some("INV-2"));
    assert_eq!(
        sim.accepted(common::ACCOUNT).await.map(|s| s.get()),
        Some(7)
    );
}

async fn validation_failures(env: Env) {
    let sim = env.sim(Knobs::default());
    let good = "xIndex=0&xSequenceNumber=X&xKey=k&xCommand=cc:sale\n";
    let process = |key: &str, count: &str, format: &str, seq: &str| {
        format!("xKey={key}&xSubmittedCount={count}&xFormat={format}&xSequenceNumber={seq}\n")
    };
    let k = common::BATCH_KEY;
    #[rustfmt::skip]
    let cases: Vec<(&str, Option<String>, String, &str)> = vec![
        ("wrong batch key", Some(good.into()), process("not-the-key", "1", "KVP", "X"), "Invalid xKey"),
        ("count too high", Some(good.into()), process(k, "2", "KVP", "X"), "xSubmittedCount is 2"),
        ("format", Some(good.into()), process(k, "1", "CSV", "X"), "Unsupported xFormat"),
        ("process seq", Some(good.into()), process(k, "1", "KVP", "999"), "does not match the file name"),
        ("missing request", None, process(k, "1", "KVP", "X"), "not found"),
        ("xIndex not position", Some("xIndex=1&xSequenceNumber=X\n".into()), process(k, "1", "KVP", "X"), "xIndex is 1, expected 0"),
        ("line seq", Some("xIndex=0&xSequenceNumber=998\n".into()), process(k, "1", "KVP", "X"), "xSequenceNumber is 998"),
        ("repeated key", Some("xIndex=0&xSequenceNumber=X&xAmount=1&xAmount=2\n".into()), process(k, "1", "KVP", "X"), "more than once"),
        ("not utf-8", Some("xIndex=0&xSequenceNumber=X&xName=%C3%28\n".into()), process(k, "1", "KVP", "X"), "UTF-8"),
        ("process unreadable", Some(good.into()), "xKey=a&xKey=b\n".into(), "PROCESS_"),
    ];
    for (i, (what, request, process, want)) in cases.iter().enumerate() {
        let seq = 10 + i as u32;
        let x = seq.to_string();
        if let Some(r) = request {
            env.put_request(seq, r.replace('X', &x).into_bytes()).await;
        }
        env.put_process(seq, process.replace('X', &x).into_bytes())
            .await;
        let stats = sim.run_once().await.unwrap();
        assert_eq!(stats.batches_failed, 1, "{what}");
        let c = env
            .complete(seq)
            .await
            .unwrap_or_else(|| panic!("{what}: no COMPLETE"));
        assert!(!c.is_success(), "{what}");
        assert_eq!(c.status, "Error", "{what}");
        assert_eq!(c.processed_count, Some(0), "{what}");
        let err = c.error.clone().unwrap_or_default();
        assert!(err.contains(want), "{what}: xError {err:?} lacks {want:?}");
        assert!(
            !err.contains("not-the-key") && !err.contains(k),
            "{what}: key in {err:?}"
        );
        assert!(
            env.response_bytes(seq).await.is_none(),
            "{what}: RESPONSE written"
        );
    }
    assert!(env.journal().is_empty());
    assert!(env.files("Request").await.is_empty());
}

async fn stale_number_ignored(env: Env) {
    let sim = env.sim(Knobs::default());
    env.submit(5, &[sale("1.00", "a")]).await;
    sim.run_once().await.unwrap();
    assert!(env.complete(5).await.unwrap().is_success());
    // A lower number, and the same number again: removed, never answered.
    env.submit(3, &[sale("2.00", "b")]).await;
    env.backend.delete("Response/COMPLETE_5.KVP").await.unwrap();
    env.backend.delete("Response/RESPONSE_5.KVP").await.unwrap();
    env.submit(5, &[sale("3.00", "c")]).await;
    let stats = sim.run_once().await.unwrap();
    assert_eq!(stats.batches_ignored, 2);
    assert_eq!(stats.batches_answered(), 0);
    assert!(env.complete(3).await.is_none());
    assert!(env.complete(5).await.is_none());
    assert!(env.files("Request").await.is_empty());
    assert!(env.files("Response").await.is_empty());
    // Invalid numbers in the name are ignored the same way.
    env.put_process(0, b"xKey=x".to_vec()).await;
    env.backend
        .put("Request/PROCESS_0007.KVP", "x".into())
        .await
        .unwrap();
    assert_eq!(sim.run_once().await.unwrap().batches_ignored, 2);
    assert!(env.files("Request").await.is_empty());
    // A higher number still works; the journal holds only the accepted batches.
    env.submit(6, &[sale("4.00", "d")]).await;
    assert_eq!(sim.run_once().await.unwrap().batches_succeeded, 1);
    let seqs: Vec<u32> = env.journal().iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, [5, 6]);
}

async fn number_reused_after_restart_ignored(env: Env) {
    let sim = env.sim(Knobs::default());
    env.submit(1, &[sale("25.00", "r-1")]).await;
    sim.run_once().await.unwrap();
    let first = env.response(1).await.unwrap();
    let ref_num = first[0].get("xRefNum").unwrap().to_owned();
    let token = first[0].get("xToken").unwrap().to_owned();
    drop(sim);

    let sim = env.sim(Knobs::default());
    env.submit(1, &[sale("26.00", "r-2")]).await;
    let stats = sim.run_once().await.unwrap();
    assert_eq!((stats.batches_ignored, stats.lines), (1, 0));
    assert!(env.files("Request").await.is_empty());
    // The new instance still knows the earlier approval, and the duplicate window.
    env.submit(
        2,
        &[
            txn("cc:refund", &[("xRefNum", &ref_num), ("xAmount", "5.00")]),
            sale("25.00", "r-1"),
        ],
    )
    .await;
    sim.run_once().await.unwrap();
    let resp = env.response_by_index(2).await;
    assert_eq!(resp[0].result(), XResult::Approved, "{:?}", resp[0]);
    assert_eq!(resp[1].get("xError"), Some("Duplicate Transaction"));
    assert!(resp[0].get("xRefNum") != Some(ref_num.as_str()));
    // Same card, same token after the restart; and the token still pays.
    assert_eq!(resp[1].get("xMaskedCardNumber"), Some("4xxxxxxxxxxx1111"));
    env.submit(
        3,
        &[txn("cc:sale", &[("xToken", &token), ("xAmount", "1.00")])],
    )
    .await;
    sim.run_once().await.unwrap();
    let by_token = &env.response(3).await.unwrap()[0];
    assert_eq!(by_token.result(), XResult::Approved, "{by_token:?}");
    assert_eq!(by_token.get("xToken"), Some(token.as_str()));
    let keys: Vec<(u32, u64)> = env
        .journal()
        .iter()
        .map(|e| (e.sequence, e.index))
        .collect();
    assert_eq!(keys, [(1, 0), (2, 0), (2, 1), (3, 0)]);
}

async fn every_command(env: Env) {
    let sim = env.sim(Knobs::default());
    let mc = "5555555555554444";
    env.submit(
        1,
        &[
            txn(
                "cc:authonly",
                &[("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "100.00")],
            ),
            txn(
                "cc:sale",
                &[("xCardNum", mc), ("xExp", "1230"), ("xAmount", "40.00")],
            ),
            txn(
                "cc:save",
                &[("xCardNum", "378282246310005"), ("xExp", "0127")],
            ),
            txn(
                "check:sale",
                &[
                    ("xRouting", "021000021"),
                    ("xAccount", "123456789"),
                    ("xAmount", "9.99"),
                ],
            ),
            txn(
                "cc:credit",
                &[("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "3.00")],
            ),
            txn(
                "CC:Sale",
                &[("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "7.00")],
            ),
        ],
    )
    .await;
    sim.run_once().await.unwrap();
    let r1 = env.response_by_index(1).await;
    for l in &r1 {
        assert_eq!(l.result(), XResult::Approved, "{l:?}");
    }
    let refn = |i: usize| r1[i].get("xRefNum").unwrap().to_owned();
    let (auth, sale_mc, sale_visa) = (refn(0), refn(1), refn(5));
    assert_eq!(r1[2].get("xMaskedCardNumber"), Some("3xxxxxxxxxx0005"));
    assert_eq!(r1[2].get("xCardType"), Some("Amex"));
    let amex_token = r1[2].get("xToken").unwrap().to_owned();
    assert_eq!(r1[3].get("xMaskedAccountNumber"), Some("xxxxx6789"));
    assert_eq!(
        r1[0].get("xToken"),
        r1[4].get("xToken"),
        "stable token per card"
    );

    env.submit(
        2,
        &[
            txn("cc:capture", &[("xRefNum", &auth), ("xAmount", "100.01")]),
            txn("cc:capture", &[("xRefNum", &auth), ("xAmount", "60.00")]),
            txn("cc:capture", &[("xRefNum", &auth)]),
            txn("cc:refund", &[("xRefNum", &sale_mc), ("xAmount", "40.01")]),
            txn("cc:refund", &[("xRefNum", &sale_mc), ("xAmount", "15.00")]),
            txn("cc:refund", &[("xRefNum", &auth), ("xAmount", "60.00")]),
            txn("cc:void", &[("xRefNum", &sale_visa)]),
            txn("cc:void", &[("xRefNum", &sale_visa)]),
            txn("cc:refund", &[("xRefNum", &sale_visa)]),
            txn("cc:void", &[("xRefNum", "1")]),
            txn("cc:sale", &[("xToken", &amex_token), ("xAmount", "2.00")]),
            txn(
                "cc:sale",
                &[
                    ("xCardNum", VISA),
                    ("xExp", "1230"),
                    ("xAmount", "8.00"),
                    ("xKey", MK2),
                ],
            ),
            txn("cc:capture", &[("xRefNum", &auth), ("xKey", MK2)]),
            txn("cc:postauth", &[("xRefNum", &auth)]),
        ],
    )
    .await;
    sim.run_once().await.unwrap();
    let r2 = env.response_by_index(2).await;
    let got: Vec<(&str, &str)> = r2
        .iter()
        .map(|l| (l.get("xResult").unwrap(), l.get("xErrorCode").unwrap()))
        .collect();
    #[rustfmt::skip]
    let want = [
        ("E", "00012"), ("A", "00000"), ("E", "00011"), ("E", "00013"), ("A", "00000"),
        ("A", "00000"), ("A", "00000"), ("E", "00010"), ("E", "00010"), ("E", "00009"),
        ("A", "00000"), ("A", "00000"), ("E", "00009"), ("E", "00004"),
    ];
    assert_eq!(got, want);
    assert_eq!(r2[1].get("xAuthAmount"), Some("60.00"));
    assert_eq!(r2[10].get("xMaskedCardNumber"), Some("3xxxxxxxxxx0005"));
}

async fn duplicate_rule(env: Env) {
    let sim = env.sim(Knobs::default());
    env.submit(1, &[sale("30.00", "D-1")]).await;
    sim.run_once().await.unwrap();
    env.clock.advance(Duration::from_secs(9 * 60 + 59));
    let mut allowed = sale("30.00", "D-1");
    allowed.push(("xAllowDuplicate".into(), "True".into()));
    env.submit(2, &[sale("30.00", "D-1"), allowed, sale("30.00", "D-2")])
        .await;
    sim.run_once().await.unwrap();
    let r = env.response_by_index(2).await;
    assert_eq!(r[0].result(), XResult::Declined);
    assert_eq!(r[0].get("xError"), Some("Duplicate Transaction"));
    assert_eq!(r[1].result(), XResult::Approved);
    assert_eq!(r[2].result(), XResult::Approved);
    env.clock.advance(Duration::from_secs(10 * 60));
    env.submit(3, &[sale("30.00", "D-1")]).await;
    sim.run_once().await.unwrap();
    assert_eq!(
        env.response(3).await.unwrap()[0].result(),
        XResult::Approved
    );
}

async fn shuffled_order(env: Env) {
    let sim = env.sim(Knobs::default().with_response_order(ResponseOrder::Shuffled { seed: 42 }));
    let lines: Vec<_> = (0..25)
        .map(|i| sale(&format!("{}.00", i + 1), &format!("S-{i}")))
        .collect();
    env.submit(4, &lines).await;
    sim.run_once().await.unwrap();
    let resp = env.response(4).await.unwrap();
    let order: Vec<u64> = resp.iter().map(|l| l.index).collect();
    assert_ne!(order, (0..25).collect::<Vec<_>>(), "not shuffled");
    let set: BTreeSet<u64> = order.iter().copied().collect();
    assert_eq!(set, (0..25).collect());
    for l in &resp {
        assert_eq!(l.get("xInvoice"), Some(format!("S-{}", l.index).as_str()));
    }
}

async fn plus_for_spaces(env: Env) {
    let sim = env.sim(Knobs::default().with_spaces(SpaceEncoding::Plus));
    env.submit(1, &[sale("13.13", "Invoice with spaces")]).await;
    sim.run_once().await.unwrap();
    let raw = env.response_bytes(1).await.unwrap();
    let text = std::str::from_utf8(&raw).unwrap();
    assert!(text.contains("xInvoice=Invoice+with+spaces"), "{text}");
    assert!(!text.contains("%20"), "{text}");
    assert_eq!(
        env.response(1).await.unwrap()[0].get("xInvoice"),
        Some("Invoice with spaces")
    );
}

/// A REQUEST alone is never acted on; PROCESS files are taken in arrival order, so a lower
/// number arriving after a higher one is ignored even within one poll. Local only: S3 and
/// SFTP report modification times in whole seconds, where ties are broken by number.
#[tokio::test]
async fn arrival_order_and_request_without_process() {
    common::run(storage_backends::Scheme::Local, |env: Env| async move {
        let sim = env.sim(Knobs::default());
        let mut w = kvp_format::Writer::new(Vec::new());
        w.write_pairs([("xIndex", "0"), ("xSequenceNumber", "8")])
            .unwrap();
        env.put_request(8, w.into_inner()).await;
        assert!(sim.run_once().await.unwrap().is_idle());
        assert_eq!(env.files("Request").await, ["REQUEST_8.KVP"]);
        assert!(sim.accepted(common::ACCOUNT).await.is_none());

        env.submit(9, &[sale("1.00", "nine")]).await;
        // Make sure the later file's modification time is later on any file system clock.
        tokio::time::sleep(Duration::from_millis(20)).await;
        env.submit(8, &[sale("2.00", "eight")]).await;
        let stats = sim.run_once().await.unwrap();
        assert_eq!((stats.batches_succeeded, stats.batches_ignored), (1, 1));
        assert!(env.complete(9).await.unwrap().is_success());
        assert!(env.complete(8).await.is_none());
        assert!(env.files("Request").await.is_empty());
    })
    .await;
}
