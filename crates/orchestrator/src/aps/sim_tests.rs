//! The APS client and [`ApsBatchApi`] against the APS simulator on 127.0.0.1: the whole
//! protocol through the trait steps, crash/resume, validation failure, tampered signatures,
//! transient failures. The simulator has its own signature code, so these tests also check
//! the two implementations against each other.

use std::sync::Arc;
use std::time::Duration;

use gateway_sim::aps::{
    ApsKnobs, ApsMerchant, ApsSim, ApsSimHandle, ApsSimOptions, ShaType as SimSha, TamperMode,
    ValidationMode,
};
use kvp_format::{Secret, SequenceNumber};

use super::*;
use crate::error::Error as OrchError;
use crate::protocol::{BatchRef, GatewayProtocol, PollResult, RequestLine};

fn merchant(sha: SimSha) -> ApsMerchant {
    ApsMerchant {
        merchant_identifier: "MID-ACME".into(),
        access_code: Secret::new("access-acme".into()),
        sha_request_phrase: Secret::new("in-phrase".into()),
        sha_response_phrase: Secret::new("out-phrase".into()),
        sha_type: sha,
    }
}

async fn sim(sha: SimSha, journal: Option<std::path::PathBuf>) -> ApsSimHandle {
    ApsSim::start(ApsSimOptions {
        merchants: vec![merchant(sha)],
        journal,
        validation_polls: 2,
        processing_polls: 2,
        ..ApsSimOptions::default()
    })
    .await
    .unwrap()
}

fn config(endpoint: &str, sha: ShaType) -> ApsAccountConfig {
    let mut cfg = ApsAccountConfig::new(
        "acme-aps",
        endpoint,
        "MID-ACME",
        Secret::new("access-acme".into()),
        Secret::new("in-phrase".into()),
        Secret::new("out-phrase".into()),
    )
    .unwrap();
    cfg.sha_type = sha;
    cfg.currency = Currency::new("USD").ok();
    cfg.poll_interval = Duration::from_millis(1);
    cfg.max_poll_interval = Duration::from_millis(5);
    cfg.retries = 2;
    cfg
}

fn fields(rows: &[&[(&str, &str)]]) -> Vec<Vec<(String, String)>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        })
        .collect()
}

fn lines(fields: &[Vec<(String, String)>]) -> Vec<RequestLine<'_>> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| RequestLine {
            index: i as u64,
            fields: f,
        })
        .collect()
}

fn mixed() -> Vec<Vec<(String, String)>> {
    fields(&[
        &[
            ("command", "PURCHASE"),
            ("merchant_reference", "sub-1"),
            ("amount", "10.00"),
            ("token_name", "tok1"),
            ("customer_email", "a@example.com"),
        ],
        &[
            ("command", "PURCHASE"),
            ("merchant_reference", "sub-2"),
            ("amount", "10.51"),
            ("token_name", "tok2"),
            ("customer_email", "b@example.com"),
        ],
        &[
            ("command", "CAPTURE"),
            ("merchant_reference", "ord-7"),
            ("amount", "1.234"),
            ("currency", "KWD"),
        ],
        &[
            ("command", "REFUND"),
            ("merchant_reference", "ord-8"),
            ("amount", "3"),
        ],
        &[
            ("command", "VOID_AUTHORIZATION"),
            ("merchant_reference", "ord-9"),
            ("fort_id", "169000000000000042"),
        ],
    ])
}

async fn poll_until_done(api: &ApsBatchApi, batch: &BatchRef) -> crate::protocol::BatchVerdict {
    for _ in 0..50 {
        if let PollResult::Done(v) = api.poll(batch).await.unwrap() {
            return v;
        }
    }
    panic!("batch never finished");
}

async fn full_run(sha: SimSha, client_sha: ShaType) {
    let sim = sim(sha, None).await;
    let api = ApsBatchApi::new(config(&sim.endpoint(), client_sha)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let f = mixed();
    let payload = api.encode_request(seq, &lines(&f)).unwrap();
    assert_eq!(
        payload,
        api.encode_request(seq, &lines(&f)).unwrap(),
        "deterministic"
    );
    let batch_id = api.upload(seq, payload).await.unwrap();
    assert!(
        batch_id.is_some(),
        "the upload answer's batch_id is returned"
    );
    let batch = BatchRef::new(seq).with_gateway_batch_id(batch_id);
    assert!(sim.journal().is_empty());
    api.trigger(&batch, 5).await.unwrap();
    let verdict = poll_until_done(&api, &batch).await;
    assert!(verdict.success, "{verdict:?}");
    assert_eq!(verdict.processed_count, Some(5));
    let results = api.fetch_results(&batch, 5).await.unwrap();
    let got: Vec<(u64, String, String)> = results
        .iter()
        .map(|r| {
            let get = |k: &str| {
                r.fields
                    .iter()
                    .find(|(f, _)| f == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (r.index, get("xResult"), get("merchant_reference"))
        })
        .collect();
    let expected: Vec<(u64, String, String)> = [
        (0, "A", "sub-1"),
        (1, "D", "sub-2"),
        (2, "A", "ord-7"),
        (3, "A", "ord-8"),
        (4, "A", "ord-9"),
    ]
    .iter()
    .map(|(i, x, r)| (*i, (*x).to_owned(), (*r).to_owned()))
    .collect();
    assert_eq!(got, expected);
    // The summary sums approved amounts per currency: 1.234 KWD stays three-decimal exact.
    let mut summary = crate::AccountSummary::default();
    for r in &results {
        let letter = r.fields.iter().find(|(k, _)| k == "xResult");
        let outcome = crate::Outcome::from_x_result(letter.map(|(_, v)| v.as_str()));
        summary.add(outcome, &r.fields);
    }
    let approved: Vec<(&str, i64)> = summary
        .approved
        .iter()
        .map(|(c, m)| (c.as_str(), *m))
        .collect();
    // USD: the 10.00 purchase and the 3.00 refund; the void moves no amount.
    assert_eq!(approved, [("KWD", 1234), ("USD", 1300)]);
    assert_eq!(summary.approved_unreadable, 0);
    let journal = sim.journal();
    assert_eq!(journal.len(), 5);
    let kwd = journal
        .iter()
        .find(|e| e.merchant_reference == "ord-7")
        .unwrap();
    assert_eq!(
        (kwd.amount, kwd.currency.as_deref()),
        (Some(1234), Some("KWD"))
    );
    api.cleanup(&batch).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn whole_protocol_sha256() {
    full_run(SimSha::Sha256, ShaType::Sha256).await;
}

#[tokio::test]
async fn whole_protocol_sha512() {
    full_run(SimSha::Sha512, ShaType::Sha512).await;
}

#[tokio::test]
async fn wrong_sha_type_is_refused_both_ways() {
    let sim = sim(SimSha::Sha512, None).await;
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let payload = api.encode_request(seq, &lines(&mixed())).unwrap();
    // The simulator refuses our SHA-256 request (00008, signed with SHA-512), and we refuse
    // its SHA-512 answer: nothing is believed.
    let err = api.upload(seq, payload).await.unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    assert_eq!(sim.batch_count(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn crash_after_upload_resumes_with_146_and_processes_once() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("aps.jsonl");
    let sim = sim(SimSha::Sha256, Some(journal.clone())).await;
    let seq = SequenceNumber::new(7).unwrap();
    let f = mixed();
    {
        // First run: uploads, then "crashes" (the api is dropped before the ledger mark).
        let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
        api.upload(seq, api.encode_request(seq, &lines(&f)).unwrap())
            .await
            .unwrap();
    }
    // Second run: repeats every step from upload; 146 counts as uploaded.
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    api.upload(seq, api.encode_request(seq, &lines(&f)).unwrap())
        .await
        .unwrap();
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    // Crash after PROCESS_BATCH, before the ledger mark: trigger again is harmless.
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    assert!(poll_until_done(&api, &BatchRef::new(seq)).await.success);
    // A simulator restart with the same journal: results still there, nothing processed twice.
    sim.shutdown().await;
    let sim = self::sim(SimSha::Sha256, Some(journal)).await;
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    api.upload(seq, api.encode_request(seq, &lines(&f)).unwrap())
        .await
        .unwrap();
    assert!(poll_until_done(&api, &BatchRef::new(seq)).await.success);
    assert_eq!(
        api.fetch_results(&BatchRef::new(seq), 5)
            .await
            .unwrap()
            .len(),
        5
    );
    let journal = sim.journal();
    assert_eq!(journal.len(), 5, "each line processed exactly once");
    sim.shutdown().await;
}

#[tokio::test]
async fn reused_reference_with_other_content_is_refused() {
    let sim = sim(SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let f = mixed();
    api.upload(seq, api.encode_request(seq, &lines(&f)).unwrap())
        .await
        .unwrap();
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    // A recreated ledger hands out number 1 again for two other transactions.
    let other = fields(&[
        &[
            ("command", "REFUND"),
            ("merchant_reference", "x-1"),
            ("amount", "1"),
        ],
        &[
            ("command", "REFUND"),
            ("merchant_reference", "x-2"),
            ("amount", "1"),
        ],
    ]);
    let err = api
        .upload(seq, api.encode_request(seq, &lines(&other)).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reference_prefix"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_validation_processes_nothing_and_names_lines() {
    let sim = sim(SimSha::Sha256, None).await;
    sim.set_knobs(ApsKnobs {
        validation: ValidationMode::FailAll,
        ..ApsKnobs::default()
    });
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(3).unwrap();
    api.upload(seq, api.encode_request(seq, &lines(&mixed())).unwrap())
        .await
        .unwrap();
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    let verdict = poll_until_done(&api, &BatchRef::new(seq)).await;
    assert!(!verdict.success);
    assert_eq!(verdict.status, "77136");
    assert_eq!(verdict.processed_count, Some(0));
    let error = verdict.error.unwrap();
    assert!(error.contains("line 1: 77006"), "{error}");
    assert!(
        api.fetch_results(&BatchRef::new(seq), 5).await.is_err(),
        "no results of an unprocessed batch"
    );
    assert!(sim.journal().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_validation_gives_each_flagged_line_its_own_reason() {
    let sim = sim(SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(4).unwrap();
    // 24 lines, every second one broken in a way the service checks and we do not expect
    // (a hand-written file: our writer would not produce these).
    let mut file = String::from(
        "command,merchant_reference,amount,currency,token_name,customer_email,eci,fort_id\r\n",
    );
    for i in 1..=24 {
        let row = match i % 4 {
            0 => format!("CAPTURE,o{i},100,usd,,,,\r\n"),
            2 => format!("PURCHASE,o{i},100,USD,tok,a@b.c,MOTO,\r\n"),
            _ => format!("CAPTURE,o{i},100,USD,,,,\r\n"),
        };
        file.push_str(&row);
    }
    api.upload(seq, bytes::Bytes::from(file)).await.unwrap();
    api.trigger(&BatchRef::new(seq), 24).await.unwrap();
    let verdict = poll_until_done(&api, &BatchRef::new(seq)).await;
    assert_eq!(verdict.status, "77136");
    assert!(
        verdict.error.unwrap().contains("(+"),
        "the summary names at most 10"
    );
    let lines = api
        .fetch_rejected_results(&BatchRef::new(seq), 24)
        .await
        .unwrap();
    let got: Vec<(u64, String, String)> = lines
        .iter()
        .map(|l| {
            let get = |k: &str| {
                l.fields
                    .iter()
                    .find(|(f, _)| f == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (l.index, get("xStatus"), get("xError"))
        })
        .collect();
    let expected: Vec<u64> = (1..=24u64).filter(|i| i % 2 == 0).map(|i| i - 1).collect();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        expected,
        "{got:?}"
    );
    for (index, status, error) in &got {
        let (code, text) = if (index + 1) % 4 == 0 {
            ("77013", "currency")
        } else {
            ("77002", "eci")
        };
        assert_eq!(status, code, "line {}", index + 1);
        assert!(error.contains(text), "line {}: {error}", index + 1);
    }
    // Only lines of the batch: a shorter count leaves the rest out.
    assert_eq!(
        api.fetch_rejected_results(&BatchRef::new(seq), 3)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(sim.journal().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn tampered_results_are_refused() {
    let sim = sim(SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    api.upload(seq, api.encode_request(seq, &lines(&mixed())).unwrap())
        .await
        .unwrap();
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    sim.set_knobs(ApsKnobs {
        tamper: TamperMode::ProcessedResults,
        ..ApsKnobs::default()
    });
    let mut refused = None;
    for _ in 0..10 {
        match api.poll(&BatchRef::new(seq)).await {
            Ok(PollResult::Pending) => {}
            Ok(PollResult::Done(v)) => panic!("a tampered answer was believed: {v:?}"),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("the tampered answer must be refused");
    assert!(
        matches!(&err, OrchError::Protocol { sequence: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
    // Once the answers are genuine again, the same batch is collected normally.
    sim.set_knobs(ApsKnobs::default());
    assert!(poll_until_done(&api, &BatchRef::new(seq)).await.success);
    assert_eq!(
        api.fetch_results(&BatchRef::new(seq), 5)
            .await
            .unwrap()
            .len(),
        5
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let sim = sim(SimSha::Sha256, None).await;
    sim.set_knobs(ApsKnobs {
        transient_failures: 2,
        ..ApsKnobs::default()
    });
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    api.upload(seq, api.encode_request(seq, &lines(&mixed())).unwrap())
        .await
        .unwrap();
    assert_eq!(sim.batch_count(), 1);
    // More failures than retries: an HTTP error, and polling just stays pending.
    sim.set_knobs(ApsKnobs {
        transient_failures: 10,
        ..ApsKnobs::default()
    });
    assert!(matches!(
        api.poll(&BatchRef::new(seq)).await,
        Ok(PollResult::Pending)
    ));
    let err = api.trigger(&BatchRef::new(seq), 5).await.unwrap_err();
    assert!(err.to_string().contains("HTTP"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_before_upload() {
    let api = ApsBatchApi::new(config("http://127.0.0.1:9", ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let bad = fields(&[&[
        ("command", "CAPTURE"),
        ("merchant_reference", "o1"),
        ("amount", "1.005"),
    ]]);
    let err = api.encode_request(seq, &lines(&bad)).unwrap_err();
    assert!(
        err.to_string().contains("line 0") && err.to_string().contains("amount"),
        "{err}"
    );
    let dup = fields(&[
        &[
            ("command", "CAPTURE"),
            ("merchant_reference", "o1"),
            ("amount", "1"),
        ],
        &[
            ("command", "REFUND"),
            ("merchant_reference", "o1"),
            ("amount", "1"),
        ],
    ]);
    assert!(api.encode_request(seq, &lines(&dup)).is_err());
    assert!(api.check_fields(&bad[0]).is_err());
    let _ = Arc::new(api);
}

#[tokio::test]
async fn secrets_never_in_debug_or_errors() {
    let sim = sim(SimSha::Sha256, None).await;
    let mut cfg = config(&sim.endpoint(), ShaType::Sha256);
    // Wrong credentials so the run produces errors to inspect.
    cfg.access_code = Secret::new("zz-access-secret".into());
    cfg.sha_request_phrase = Secret::new("zz-request-secret".into());
    cfg.sha_response_phrase = Secret::new("zz-response-secret".into());
    let api = ApsBatchApi::new(cfg.clone()).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let payload = api.encode_request(seq, &lines(&mixed())).unwrap();
    let mut texts = vec![
        format!("{api:?}"),
        format!("{cfg:?}"),
        format!("{:?}", merchant(SimSha::Sha256)),
    ];
    let err = api.upload(seq, payload).await.unwrap_err();
    texts.push(format!("{err} {err:?}"));
    let err = api.poll(&BatchRef::new(seq)).await.unwrap_err();
    texts.push(format!("{err} {err:?}"));
    for text in &texts {
        for secret in [
            "zz-access-secret",
            "zz-request-secret",
            "zz-response-secret",
            "access-acme",
            "in-phrase",
            "out-phrase",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batch_round_trip() {
    let sim = sim(SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let records = demo_records("big", 20_000, 5);
    let started = std::time::Instant::now();
    let payload = api.encode_request(seq, &lines(&records)).unwrap();
    let encoded = started.elapsed();
    let size = payload.len();
    api.upload(seq, payload).await.unwrap();
    api.trigger(&BatchRef::new(seq), 20_000).await.unwrap();
    assert!(poll_until_done(&api, &BatchRef::new(seq)).await.success);
    let results = api
        .fetch_results(&BatchRef::new(seq), 20_000)
        .await
        .unwrap();
    assert_eq!(results.len(), 20_000);
    assert!(results.iter().enumerate().all(|(i, r)| r.index == i as u64));
    assert_eq!(sim.journal().len(), 20_000);
    // Informational only (`--nocapture`); nothing asserts on time.
    println!(
        "APS 20000 lines: {size} bytes, encode {encoded:?}, whole round trip {:?}",
        started.elapsed()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn lost_answers_are_retried_without_double_processing() {
    use gateway_sim::aps::LostAnswer;
    let sim = sim(SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(&sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(2).unwrap();
    let lose = |what| ApsKnobs {
        lose_answer: Some(what),
        ..ApsKnobs::default()
    };
    sim.set_knobs(lose(LostAnswer::Upload));
    api.upload(seq, api.encode_request(seq, &lines(&mixed())).unwrap())
        .await
        .unwrap();
    assert_eq!(sim.batch_count(), 1);
    assert_eq!(
        sim.knobs().lose_answer,
        None,
        "the upload answer was lost and retried"
    );
    sim.set_knobs(lose(LostAnswer::ProcessBatch));
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    assert_eq!(
        sim.knobs().lose_answer,
        None,
        "the PROCESS_BATCH answer was lost and retried"
    );
    sim.set_knobs(lose(LostAnswer::Processed));
    assert!(poll_until_done(&api, &BatchRef::new(seq)).await.success);
    assert_eq!(sim.knobs().lose_answer, None);
    assert_eq!(
        api.fetch_results(&BatchRef::new(seq), 5)
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(sim.journal().len(), 5, "processed exactly once");
    sim.shutdown().await;
}
