#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The APS client and [`ApsBatchApi`] against the APS simulator on 127.0.0.1: the whole
//! protocol through the trait steps, crash/resume, validation failure, tampered signatures,
//! transient failures. The simulator has its own signature code, so these tests also check
//! the two implementations against each other. Every test that talks to the simulator runs in
//! both of its modes ([`ReferenceMode`]: the published reference, and section 3a's
//! assumptions), the client configured with the matching `line_number_offset`.

use std::sync::Arc;
use std::time::Duration;

use gateway_sim::aps::{
    ApsKnobs, ApsMerchant, ApsSim, ApsSimHandle, ApsSimOptions, ReferenceMode, ShaType as SimSha,
    TamperMode, ValidationMode,
};
use kvp_format::{Secret, SequenceNumber};

use aps_batch::*;
use gateway_protocol::{
    AnswerFile, BatchLine, BatchRef, Error as GatewayError, GatewayProtocol, GatewayVerdict,
    LineFields, LineResult, PollResult,
};
use orchestrator::{AccountSummary, LineOutcome};
use paybatch_demo::aps::demo_records;

fn merchant(sha: SimSha) -> ApsMerchant {
    ApsMerchant {
        merchant_identifier: "MID-ACME".into(),
        access_code: Secret::new("access-acme".into()),
        sha_request_phrase: Secret::new("in-phrase".into()),
        sha_response_phrase: Secret::new("out-phrase".into()),
        sha_type: sha,
    }
}

/// Runs `$test(mode)` as one test per simulator mode.
macro_rules! both_modes {
    ($test:ident) => {
        mod $test {
            use gateway_sim::aps::ReferenceMode;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn assumed_3a() {
                super::$test(ReferenceMode::Assumed3a).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn published() {
                super::$test(ReferenceMode::Published).await;
            }
        }
    };
}

async fn sim(
    mode: ReferenceMode,
    sha: SimSha,
    journal: Option<std::path::PathBuf>,
) -> ApsSimHandle {
    ApsSim::start(ApsSimOptions {
        merchants: vec![merchant(sha)],
        reference: mode,
        journal,
        validation_polls: 2,
        processing_polls: 2,
        ..ApsSimOptions::default()
    })
    .await
    .unwrap()
}

fn config(mode: ReferenceMode, endpoint: &str, sha: ShaType) -> ApsAccountConfig {
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
    cfg.line_number_offset = mode.line_number_offset();
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

/// `api.encode_request` of `fields`, one line each.
fn encode(
    api: &ApsBatchApi,
    sequence: SequenceNumber,
    fields: &[Vec<(String, String)>],
) -> gateway_protocol::Result<bytes::Bytes> {
    let encoded: Vec<Vec<u8>> = fields
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            LineFields::encode(f, &mut out);
            out
        })
        .collect();
    let lines: Vec<BatchLine<'_>> = encoded
        .iter()
        .enumerate()
        .map(|(i, f)| BatchLine {
            index: i as u64,
            fields: LineFields::from_canonical(f),
        })
        .collect();
    api.encode_request(sequence, &lines)
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

async fn poll_until_done(api: &ApsBatchApi, batch: &BatchRef) -> GatewayVerdict {
    for _ in 0..50 {
        if let PollResult::Done(v) = api.poll(batch).await.unwrap() {
            return v;
        }
    }
    panic!("batch never finished");
}

async fn full_run(mode: ReferenceMode, sha: SimSha, client_sha: ShaType) {
    let sim = sim(mode, sha, None).await;
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), client_sha)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let f = mixed();
    let payload = encode(&api, seq, &f).unwrap();
    assert_eq!(payload, encode(&api, seq, &f).unwrap(), "deterministic");
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
            let get = |k: &str| r.fields.get(k).unwrap_or_default().to_owned();
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
    let mut summary = AccountSummary::default();
    for r in &results {
        let outcome = LineOutcome::from_x_result(r.fields.get("xResult"));
        summary.add(outcome, &r.fields.iter().collect::<Vec<_>>());
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

async fn whole_protocol_sha256(mode: ReferenceMode) {
    full_run(mode, SimSha::Sha256, ShaType::Sha256).await;
}
both_modes!(whole_protocol_sha256);

async fn whole_protocol_sha512(mode: ReferenceMode) {
    full_run(mode, SimSha::Sha512, ShaType::Sha512).await;
}
both_modes!(whole_protocol_sha512);

async fn wrong_sha_type_is_refused_both_ways(mode: ReferenceMode) {
    let sim = sim(mode, SimSha::Sha512, None).await;
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let payload = encode(&api, seq, &mixed()).unwrap();
    // The simulator refuses our SHA-256 request (00008, signed with SHA-512), and we refuse
    // its SHA-512 answer: nothing is believed.
    let err = api.upload(seq, payload).await.unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    assert_eq!(sim.batch_count(), 0);
    sim.shutdown().await;
}
both_modes!(wrong_sha_type_is_refused_both_ways);

async fn crash_after_upload_resumes_with_146_and_processes_once(mode: ReferenceMode) {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("aps.jsonl");
    let sim = sim(mode, SimSha::Sha256, Some(journal.clone())).await;
    let seq = SequenceNumber::new(7).unwrap();
    let f = mixed();
    {
        // First run: uploads, then "crashes" (the api is dropped before the ledger mark).
        let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
        api.upload(seq, encode(&api, seq, &f).unwrap())
            .await
            .unwrap();
    }
    // Second run: repeats every step from upload; 146 counts as uploaded.
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    api.upload(seq, encode(&api, seq, &f).unwrap())
        .await
        .unwrap();
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    // Crash after PROCESS_BATCH, before the ledger mark: trigger again is harmless.
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    assert!(poll_until_done(&api, &BatchRef::new(seq)).await.success);
    // A simulator restart with the same journal: results still there, nothing processed twice.
    sim.shutdown().await;
    let sim = self::sim(mode, SimSha::Sha256, Some(journal)).await;
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    api.upload(seq, encode(&api, seq, &f).unwrap())
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
both_modes!(crash_after_upload_resumes_with_146_and_processes_once);

async fn reused_reference_with_other_content_is_refused(mode: ReferenceMode) {
    let sim = sim(mode, SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let f = mixed();
    api.upload(seq, encode(&api, seq, &f).unwrap())
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
        .upload(seq, encode(&api, seq, &other).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reference_prefix"), "{err}");
    sim.shutdown().await;
}
both_modes!(reused_reference_with_other_content_is_refused);

async fn failed_validation_processes_nothing_and_names_lines(mode: ReferenceMode) {
    let sim = sim(mode, SimSha::Sha256, None).await;
    sim.set_knobs(ApsKnobs {
        validation: ValidationMode::FailAll,
        ..ApsKnobs::default()
    });
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(3).unwrap();
    api.upload(seq, encode(&api, seq, &mixed()).unwrap())
        .await
        .unwrap();
    api.trigger(&BatchRef::new(seq), 5).await.unwrap();
    let verdict = poll_until_done(&api, &BatchRef::new(seq)).await;
    assert!(!verdict.success);
    assert_eq!(verdict.status, "77136");
    assert_eq!(verdict.processed_count, Some(0));
    let error = verdict.error.unwrap();
    // The service's own numbering of the first data row.
    let first = format!("line {}: 77006", mode.line_number_offset());
    assert!(error.contains(&first), "{error}");
    assert!(
        api.fetch_results(&BatchRef::new(seq), 5).await.is_err(),
        "no results of an unprocessed batch"
    );
    assert!(sim.journal().is_empty());
    sim.shutdown().await;
}
both_modes!(failed_validation_processes_nothing_and_names_lines);

async fn failed_validation_gives_each_flagged_line_its_own_reason(mode: ReferenceMode) {
    let sim = sim(mode, SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
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
    let answer = api
        .fetch_rejected_results(&BatchRef::new(seq), 24)
        .await
        .unwrap();
    assert_eq!(answer.answer, AnswerFile::Read);
    let got: Vec<(u64, String, String)> = answer
        .lines
        .iter()
        .map(|l| {
            let get = |k: &str| l.fields.get(k).unwrap_or_default().to_owned();
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
    // Reasons for lines outside the batch are not dropped quietly any more (issue 15.2): the
    // join fails loudly, the batch stays Completed, nothing is put on a neighbour.
    let err = api
        .fetch_rejected_results(&BatchRef::new(seq), 3)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unexpected"), "{err}");
    assert!(sim.journal().is_empty());
    sim.shutdown().await;
}
both_modes!(failed_validation_gives_each_flagged_line_its_own_reason);

async fn tampered_results_are_refused(mode: ReferenceMode) {
    let sim = sim(mode, SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    api.upload(seq, encode(&api, seq, &mixed()).unwrap())
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
        matches!(
            &err,
            GatewayError::Gateway {
                transient: false,
                ..
            }
        ),
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
both_modes!(tampered_results_are_refused);

async fn transient_failures_are_retried(mode: ReferenceMode) {
    let sim = sim(mode, SimSha::Sha256, None).await;
    sim.set_knobs(ApsKnobs {
        transient_failures: 2,
        ..ApsKnobs::default()
    });
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    api.upload(seq, encode(&api, seq, &mixed()).unwrap())
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
both_modes!(transient_failures_are_retried);

async fn bad_input_is_refused_before_upload(mode: ReferenceMode) {
    let api = ApsBatchApi::new(config(mode, "http://127.0.0.1:9", ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let bad = fields(&[&[
        ("command", "CAPTURE"),
        ("merchant_reference", "o1"),
        ("amount", "1.005"),
    ]]);
    let err = encode(&api, seq, &bad).unwrap_err();
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
    assert!(encode(&api, seq, &dup).is_err());
    assert!(api.check_fields(&bad[0]).is_err());
    let _ = Arc::new(api);
}
both_modes!(bad_input_is_refused_before_upload);

async fn secrets_never_in_debug_or_errors(mode: ReferenceMode) {
    let sim = sim(mode, SimSha::Sha256, None).await;
    let mut cfg = config(mode, &sim.endpoint(), ShaType::Sha256);
    // Wrong credentials so the run produces errors to inspect.
    cfg.access_code = Secret::new("zz-access-secret".into());
    cfg.sha_request_phrase = Secret::new("zz-request-secret".into());
    cfg.sha_response_phrase = Secret::new("zz-response-secret".into());
    let api = ApsBatchApi::new(cfg.clone()).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let payload = encode(&api, seq, &mixed()).unwrap();
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
both_modes!(secrets_never_in_debug_or_errors);

async fn large_batch_round_trip(mode: ReferenceMode) {
    let sim = sim(mode, SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let records = demo_records("big", 20_000, 5);
    let started = std::time::Instant::now();
    let payload = encode(&api, seq, &records).unwrap();
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
both_modes!(large_batch_round_trip);

async fn lost_answers_are_retried_without_double_processing(mode: ReferenceMode) {
    use gateway_sim::aps::LostAnswer;
    let sim = sim(mode, SimSha::Sha256, None).await;
    let api = ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap();
    let seq = SequenceNumber::new(2).unwrap();
    let lose = |what| ApsKnobs {
        lose_answer: Some(what),
        ..ApsKnobs::default()
    };
    sim.set_knobs(lose(LostAnswer::Upload));
    api.upload(seq, encode(&api, seq, &mixed()).unwrap())
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
both_modes!(lost_answers_are_retried_without_double_processing);

// ---- The published reference (issue 15) and foreign references (issue 10.8) ----

/// Simulator options for the tests below: one poll each of validating and processing.
fn options() -> ApsSimOptions {
    ApsSimOptions {
        validation_polls: 1,
        processing_polls: 1,
        ..ApsSimOptions::default()
    }
}

async fn sim_with(mode: ReferenceMode, options: ApsSimOptions) -> ApsSimHandle {
    ApsSim::start(ApsSimOptions {
        merchants: vec![merchant(SimSha::Sha256)],
        reference: mode,
        ..options
    })
    .await
    .unwrap()
}

fn api_for(mode: ReferenceMode, sim: &ApsSimHandle) -> ApsBatchApi {
    ApsBatchApi::new(config(mode, &sim.endpoint(), ShaType::Sha256)).unwrap()
}

/// `n` refunds, `merchant_reference` `{prefix}-{i}`, amounts from `amounts` (cycled).
fn refunds(prefix: &str, n: usize, amounts: &[&str]) -> Vec<Vec<(String, String)>> {
    (0..n)
        .map(|i| {
            vec![
                ("command".to_owned(), "REFUND".to_owned()),
                ("merchant_reference".to_owned(), format!("{prefix}-{i}")),
                ("amount".to_owned(), amounts[i % amounts.len()].to_owned()),
            ]
        })
        .collect()
}

fn field<'a>(r: &'a LineResult, key: &str) -> &'a str {
    r.fields.get(key).unwrap_or_default()
}

/// Upload, trigger, poll to the verdict; returns the batch as the ledger would hold it.
async fn run_batch(
    api: &ApsBatchApi,
    seq: SequenceNumber,
    f: &[Vec<(String, String)>],
) -> BatchRef {
    let id = api.upload(seq, encode(api, seq, f).unwrap()).await.unwrap();
    let batch = BatchRef::new(seq).with_gateway_batch_id(id);
    api.trigger(&batch, f.len() as u64).await.unwrap();
    assert!(poll_until_done(api, &batch).await.success);
    batch
}

async fn a_validated_batch_is_never_read_as_processed(mode: ReferenceMode) {
    let sim = sim_with(
        mode,
        ApsSimOptions {
            knobs: ApsKnobs {
                validation_rows: true,
                ..ApsKnobs::default()
            },
            ..options()
        },
    )
    .await;
    let api = api_for(mode, &sim);
    let seq = SequenceNumber::new(1).unwrap();
    let f = mixed();
    let id = api
        .upload(seq, encode(&api, seq, &f).unwrap())
        .await
        .unwrap();
    let batch = BatchRef::new(seq).with_gateway_batch_id(id);
    // Published: validated is 70000, here with a row per line but no transaction status. No
    // look at the batch before PROCESS_BATCH may take that for a verdict. (3a answers 76000,
    // on which a poll asks for processing again: that is tested elsewhere.)
    if mode == ReferenceMode::Published {
        for _ in 0..4 {
            assert_eq!(api.poll(&batch).await.unwrap(), PollResult::Pending);
        }
        assert!(
            api.fetch_results(&batch, 5).await.is_err(),
            "no results before processing"
        );
    }
    assert!(sim.journal().is_empty(), "nothing processed");
    // trigger sends PROCESS_BATCH (published: after reading 70000 as validated).
    api.trigger(&batch, 5).await.unwrap();
    assert!(poll_until_done(&api, &batch).await.success);
    let results = api.fetch_results(&batch, 5).await.unwrap();
    let refs: Vec<&str> = results
        .iter()
        .map(|r| field(r, "merchant_reference"))
        .collect();
    assert_eq!(refs, ["sub-1", "sub-2", "ord-7", "ord-8", "ord-9"]);
    assert_eq!(sim.journal().len(), 5);
    sim.shutdown().await;
}
both_modes!(a_validated_batch_is_never_read_as_processed);

/// The simulator numbers lines one way, the client is configured the other: every join fails
/// loudly, nothing is recorded, no reason lands on a neighbour.
async fn line_numbers_that_do_not_fit_fail_loudly(mode: ReferenceMode) {
    let sim = sim_with(mode, options()).await;
    let mut cfg = config(mode, &sim.endpoint(), ShaType::Sha256);
    cfg.line_number_offset = 3 - mode.line_number_offset();
    let api = ApsBatchApi::new(cfg).unwrap();
    let seq = SequenceNumber::new(1).unwrap();
    let batch = run_batch(&api, seq, &mixed()).await;
    let err = api.fetch_results(&batch, 5).await.unwrap_err().to_string();
    assert!(
        err.contains("line_number_offset") && err.contains("unexpected"),
        "{err}"
    );
    // Validation reasons: a hand-written file whose 2nd and 4th lines the service refuses.
    let seq = SequenceNumber::new(2).unwrap();
    let file = "command,merchant_reference,amount,currency\r\nCAPTURE,o1,100,USD\r\nCAPTURE,o2,100,usd\r\nCAPTURE,o3,100,USD\r\nCAPTURE,o4,100,usd\r\n";
    api.upload(seq, bytes::Bytes::from(file)).await.unwrap();
    let batch = BatchRef::new(seq);
    api.trigger(&batch, 4).await.unwrap();
    assert!(!poll_until_done(&api, &batch).await.success);
    let err = api
        .fetch_rejected_results(&batch, 4)
        .await
        .unwrap_err()
        .to_string();
    // Published rows 3 and 5 read with offset 1: 5 is outside the file. 3a rows 2 and 4 read
    // with offset 2: line 2 is "o2" on data row 0, which holds "o1".
    assert!(
        err.contains("unexpected 5") || err.contains("another merchant_reference"),
        "{err}"
    );
    // Configured right, the same answer joins: o2 and o4, each with its own reason.
    let right = api_for(mode, &sim);
    right.upload(seq, bytes::Bytes::from(file)).await.unwrap();
    let answer = right.fetch_rejected_results(&batch, 4).await.unwrap();
    let got: Vec<(u64, &str)> = answer
        .lines
        .iter()
        .map(|l| (l.index, field(l, "merchant_reference")))
        .collect();
    assert_eq!(got, [(1, "o2"), (3, "o4")]);
    sim.shutdown().await;
}
both_modes!(line_numbers_that_do_not_fit_fail_loudly);

async fn unsettled_lines_are_unknown_with_the_gateway_s_status(mode: ReferenceMode) {
    let sim = sim_with(
        mode,
        ApsSimOptions {
            knobs: ApsKnobs {
                unsettled_cents: Some(19),
                ..ApsKnobs::default()
            },
            ..options()
        },
    )
    .await;
    let api = api_for(mode, &sim);
    let seq = SequenceNumber::new(1).unwrap();
    // Data rows 1..=5: 15 uncertain, 19 pending, approved, 40 in review, 15 uncertain.
    let f = refunds("u", 5, &["1.19", "2.19", "3.00", "4.19", "5.19"]);
    let batch = run_batch(&api, seq, &f).await;
    let results = api.fetch_results(&batch, 5).await.unwrap();
    let got: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (field(r, "xResult"), field(r, "status")))
        .collect();
    assert_eq!(
        got,
        [
            ("U", "15"),
            ("U", "19"),
            ("A", "06"),
            ("U", "40"),
            ("U", "15")
        ]
    );
    assert!(
        field(&results[1], "xError").contains("status 19 (pending): Transaction pending"),
        "{:?}",
        results[1]
    );
    let mut summary = AccountSummary::default();
    for r in &results {
        let outcome = LineOutcome::from_x_result(Some(field(r, "xResult")));
        summary.add(outcome, &r.fields.iter().collect::<Vec<_>>());
    }
    assert_eq!(summary.count(LineOutcome::Unknown), 4);
    assert_eq!(summary.count(LineOutcome::Error), 0);
    assert_eq!(summary.approved.get("USD"), Some(&300));
    assert_eq!(sim.journal().len(), 5);
    sim.shutdown().await;
}
both_modes!(unsettled_lines_are_unknown_with_the_gateway_s_status);

async fn results_in_a_csv_body_are_read_like_the_json_ones(mode: ReferenceMode) {
    let sim = sim_with(
        mode,
        ApsSimOptions {
            knobs: ApsKnobs {
                results_form: gateway_sim::aps::ResultsForm::CsvBody,
                ..ApsKnobs::default()
            },
            ..options()
        },
    )
    .await;
    let api = api_for(mode, &sim);
    let seq = SequenceNumber::new(1).unwrap();
    let batch = run_batch(&api, seq, &mixed()).await;
    let results = api.fetch_results(&batch, 5).await.unwrap();
    let got: Vec<(u64, &str, &str)> = results
        .iter()
        .map(|r| (r.index, field(r, "xResult"), field(r, "merchant_reference")))
        .collect();
    assert_eq!(
        got,
        [
            (0, "A", "sub-1"),
            (1, "D", "sub-2"),
            (2, "A", "ord-7"),
            (3, "A", "ord-8"),
            (4, "A", "ord-9")
        ]
    );
    assert_eq!(sim.journal().len(), 5);
    sim.shutdown().await;
}
both_modes!(results_in_a_csv_body_are_read_like_the_json_ones);

async fn batch_id_is_sent_on_every_later_step(mode: ReferenceMode) {
    let sim = sim_with(
        mode,
        ApsSimOptions {
            knobs: ApsKnobs {
                require_batch_id: true,
                ..ApsKnobs::default()
            },
            ..options()
        },
    )
    .await;
    let api = api_for(mode, &sim);
    let seq = SequenceNumber::new(1).unwrap();
    let id = api
        .upload(seq, encode(&api, seq, &mixed()).unwrap())
        .await
        .unwrap();
    assert!(id.is_some());
    // Without the id the service refuses to answer about the batch.
    let err = api.trigger(&BatchRef::new(seq), 5).await.unwrap_err();
    assert!(err.to_string().contains("71001"), "{err}");
    let batch = BatchRef::new(seq).with_gateway_batch_id(id);
    api.trigger(&batch, 5).await.unwrap();
    assert!(poll_until_done(&api, &batch).await.success);
    assert_eq!(api.fetch_results(&batch, 5).await.unwrap().len(), 5);
    // A repeated upload (51146) gives the id back too.
    assert_eq!(
        api.upload(seq, encode(&api, seq, &mixed()).unwrap())
            .await
            .unwrap(),
        batch.gateway_batch_id
    );
    sim.shutdown().await;
}
both_modes!(batch_id_is_sent_on_every_later_step);

async fn process_url_signed_file_and_renamed_headers(mode: ReferenceMode) {
    let sim = sim_with(
        mode,
        ApsSimOptions {
            process_path: Some("/integration-batch/batchApi/".into()),
            upload_signature: gateway_sim::aps::UploadSignature::Content,
            header_names: vec![("merchant_reference".into(), "Merchant_Reference".into())],
            ..options()
        },
    )
    .await;
    let seq = SequenceNumber::new(1).unwrap();
    let f = mixed();
    // The defaults (file not signed, today's header, PROCESS_BATCH on the batchApi URL) do not
    // fit this service.
    let plain = api_for(mode, &sim);
    let err = plain
        .upload(seq, encode(&plain, seq, &f).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("00008"), "{err}");
    let mut cfg = config(mode, &sim.endpoint(), ShaType::Sha256);
    cfg.file_signature = FileSignature::Content;
    cfg.header_names = HeaderNames::new([("merchant_reference", "Merchant_Reference")]).unwrap();
    let api = ApsBatchApi::new(cfg.clone()).unwrap();
    let payload = encode(&api, seq, &f).unwrap();
    assert!(payload.starts_with(b"command,Merchant_Reference,"));
    let id = api.upload(seq, payload).await.unwrap();
    let batch = BatchRef::new(seq).with_gateway_batch_id(id);
    let err = api.trigger(&batch, 5).await.unwrap_err();
    assert!(err.to_string().contains("00004"), "{err}");
    cfg.process_url = Some(format!("{}/integration-batch/batchApi/", sim.endpoint()));
    let api = ApsBatchApi::new(cfg).unwrap();
    encode(&api, seq, &f).unwrap();
    api.trigger(&batch, 5).await.unwrap();
    assert!(poll_until_done(&api, &batch).await.success);
    assert_eq!(api.fetch_results(&batch, 5).await.unwrap().len(), 5);
    assert_eq!(sim.journal().len(), 5);
    sim.shutdown().await;
}
both_modes!(process_url_signed_file_and_renamed_headers);

/// A recreated ledger hands out numbers again: a `51146` is ours only if the service's count
/// (which must be given) and every `merchant_reference` it names match; otherwise the upload
/// fails, nothing is triggered, and the message (masked) says to set a new reference_prefix.
async fn a_reference_the_service_holds_for_other_orders_is_refused(mode: ReferenceMode) {
    let sim = sim_with(
        mode,
        ApsSimOptions {
            validation_polls: 0,
            ..options()
        },
    )
    .await;
    let old = api_for(mode, &sim);
    // The old ledger's batch 1 was processed; 2 was only validated; 3 too.
    let s1 = SequenceNumber::new(1).unwrap();
    run_batch(&old, s1, &refunds("4111111111111111-old", 3, &["1"])).await;
    let s2 = SequenceNumber::new(2).unwrap();
    old.upload(s2, encode(&old, s2, &refunds("old2", 3, &["1"])).unwrap())
        .await
        .unwrap();
    let s3 = SequenceNumber::new(3).unwrap();
    old.upload(s3, encode(&old, s3, &refunds("old3", 3, &["1"])).unwrap())
        .await
        .unwrap();
    let processed = sim.journal().len();
    let new = api_for(mode, &sim);
    let ours = refunds("new", 3, &["2"]);
    // Processed results name other orders.
    let err = new
        .upload(s1, encode(&new, s1, &ours).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other transactions") && err.contains("reference_prefix"),
        "{err}"
    );
    assert!(!err.contains("4111111111111111"), "masked: {err}");
    // Validation rows name other orders.
    sim.set_knobs(ApsKnobs {
        validation_rows: true,
        ..ApsKnobs::default()
    });
    let err = new
        .upload(s2, encode(&new, s2, &ours).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("other transactions"), "{err}");
    // No count: cannot tell.
    sim.set_knobs(ApsKnobs {
        omit_transactions_count: true,
        ..ApsKnobs::default()
    });
    let err = new
        .upload(s3, encode(&new, s3, &ours).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no transactions_count"), "{err}");
    // Nothing was triggered or processed by any of it.
    sim.set_knobs(ApsKnobs::default());
    assert_eq!(sim.journal().len(), processed);
    for s in [s2, s3] {
        assert_eq!(
            new.poll(&BatchRef::new(s)).await.unwrap(),
            PollResult::Pending
        );
    }
    // The same transactions again (a crash after the upload) are ours.
    let again = old
        .upload(s2, encode(&old, s2, &refunds("old2", 3, &["1"])).unwrap())
        .await;
    assert!(again.is_ok(), "{again:?}");
    sim.shutdown().await;
}
both_modes!(a_reference_the_service_holds_for_other_orders_is_refused);

/// When nothing could be compared at the upload (validated, no rows), the results still are:
/// rows about other orders are refused, not recorded as this batch's.
async fn results_about_other_orders_are_refused(mode: ReferenceMode) {
    let sim = sim_with(mode, options()).await;
    let old = api_for(mode, &sim);
    let seq = SequenceNumber::new(4).unwrap();
    old.upload(seq, encode(&old, seq, &refunds("old", 2, &["1"])).unwrap())
        .await
        .unwrap();
    let new = api_for(mode, &sim);
    let batch = run_batch(&new, seq, &refunds("new", 2, &["1"])).await;
    let err = new.fetch_results(&batch, 2).await.unwrap_err().to_string();
    assert!(err.contains("another merchant_reference"), "{err}");
    sim.shutdown().await;
}
both_modes!(results_about_other_orders_are_refused);

/// `inspect` asks the service what it holds of a batch: unknown before the upload, uploaded and
/// not triggered before `PROCESS_BATCH`, triggered and answered once processed — what a
/// takeover and `resolve --abandon` decide on.
async fn inspect_says_what_the_service_holds(mode: ReferenceMode) {
    let sim = sim_with(mode, options()).await;
    let api = api_for(mode, &sim);
    let seq = SequenceNumber::new(1).unwrap();
    let i = api.inspect(seq).await.unwrap();
    assert_eq!(
        (i.uploaded, i.triggered, i.answered),
        (Some(false), None, None),
        "unknown reference: never uploaded, or expired: {i:?}"
    );
    let f = refunds("insp", 2, &["1.00"]);
    let id = api
        .upload(seq, encode(&api, seq, &f).unwrap())
        .await
        .unwrap();
    let i = api.inspect(seq).await.unwrap();
    assert_eq!(i.uploaded, Some(true), "{i:?}");
    // Validating, or validated: 76000 says not started; the published reference's 70000
    // without rows cannot say.
    let expected = if i.found[0].contains("(70000)") {
        (None, None)
    } else {
        (Some(false), Some(false))
    };
    assert_eq!((i.triggered, i.answered), expected, "{i:?}");
    let batch = BatchRef::new(seq).with_gateway_batch_id(id);
    api.trigger(&batch, 2).await.unwrap();
    assert!(poll_until_done(&api, &batch).await.success);
    let i = api.inspect(seq).await.unwrap();
    assert_eq!(
        (i.uploaded, i.triggered, i.answered),
        (Some(true), Some(true), Some(true)),
        "{i:?}"
    );
    assert!(i.found[0].contains("processed"), "{i:?}");
    sim.shutdown().await;
}
both_modes!(inspect_says_what_the_service_holds);
