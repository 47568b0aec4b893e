//! The APS simulator over real HTTP on 127.0.0.1, driven by a minimal hand-written HTTP/1.1
//! client so the simulator is checked without the orchestrator's client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway_sim::aps::{
    ApsKnobs, ApsMerchant, ApsSim, ApsSimHandle, ApsSimOptions, ReferenceMode, ResultsForm,
    ShaType, TamperMode, UploadSignature, ValidationMode, signature,
};
use kvp_format::Secret;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MID: &str = "MID1";
const ACCESS: &str = "ACCESS1";
const IN: &str = "REQPHRASE";
const OUT: &str = "RESPPHRASE";

fn merchant() -> ApsMerchant {
    ApsMerchant {
        merchant_identifier: MID.into(),
        access_code: Secret::new(ACCESS.into()),
        sha_request_phrase: Secret::new(IN.into()),
        sha_response_phrase: Secret::new(OUT.into()),
        sha_type: ShaType::Sha256,
    }
}

/// A simulator following PROTOCOL.md §3a (the tests written before the published reference).
async fn start(journal: Option<std::path::PathBuf>, polls: u32) -> ApsSimHandle {
    start_with(ApsSimOptions {
        journal,
        validation_polls: polls,
        processing_polls: polls,
        reference: ReferenceMode::Assumed3a,
        ..ApsSimOptions::default()
    })
    .await
}

async fn start_with(options: ApsSimOptions) -> ApsSimHandle {
    ApsSim::start(ApsSimOptions {
        merchants: vec![merchant()],
        ..options
    })
    .await
    .unwrap()
}

/// POST and return (status, body).
async fn post(sim: &ApsSimHandle, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        sim.addr(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

fn signed(fields: &[(&str, &str)], phrase: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let sig = signature(&pairs, phrase, ShaType::Sha256);
    pairs.push(("signature".into(), sig));
    pairs
}

/// Parses an answer and checks its signature with the response phrase.
fn verified(body: &[u8]) -> Map<String, Value> {
    let Value::Object(map) = serde_json::from_slice(body).unwrap() else {
        panic!("not an object")
    };
    let pairs: Vec<(String, String)> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "signature")
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    assert_eq!(
        map["signature"].as_str().unwrap(),
        signature(&pairs, OUT, ShaType::Sha256),
        "answer signature"
    );
    map
}

fn code(map: &Map<String, Value>) -> &str {
    map["response_code"].as_str().unwrap()
}

async fn upload(sim: &ApsSimHandle, reference: &str, file: &str) -> Map<String, Value> {
    upload_signed(sim, reference, file, false).await
}

/// Uploads `file`; `sign_file` adds the file's text to the signature as `file`.
async fn upload_signed(
    sim: &ApsSimHandle,
    reference: &str,
    file: &str,
    sign_file: bool,
) -> Map<String, Value> {
    let base = [
        ("service_command", "UPLOAD_BATCH_FILE"),
        ("access_code", ACCESS),
        ("merchant_identifier", MID),
        ("batch_reference", reference),
        ("language", "en"),
    ];
    let fields = if sign_file {
        let mut with_file = signed(&[base.as_slice(), &[("file", file)]].concat(), IN);
        with_file.retain(|(k, _)| k != "file");
        with_file
    } else {
        signed(&base, IN)
    };
    let mut body = Vec::new();
    for (k, v) in &fields {
        body.extend_from_slice(
            format!("--XB\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.csv\"\r\nContent-Type: text/csv\r\n\r\n");
    body.extend_from_slice(file.as_bytes());
    body.extend_from_slice(b"\r\n--XB--\r\n");
    let (status, answer) = post(
        sim,
        "/FortAPI/upload/",
        "multipart/form-data; boundary=XB",
        &body,
    )
    .await;
    assert_eq!(status, 200);
    verified(&answer)
}

async fn command(
    sim: &ApsSimHandle,
    command: &str,
    reference: &str,
    phrase: &str,
) -> (u16, Vec<u8>) {
    command_at(sim, "/FortAPI/batchApi/", command, reference, phrase, &[]).await
}

/// A command sent to `path`, with `extra` fields signed along.
async fn command_at(
    sim: &ApsSimHandle,
    path: &str,
    command: &str,
    reference: &str,
    phrase: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    let mut base = vec![
        ("service_command", command),
        ("access_code", ACCESS),
        ("merchant_identifier", MID),
        ("batch_reference", reference),
        ("language", "en"),
    ];
    base.extend_from_slice(extra);
    let fields = signed(&base, phrase);
    let object: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    post(
        sim,
        path,
        "application/json",
        &serde_json::to_vec(&object).unwrap(),
    )
    .await
}

/// (Line_Number, response_code) of a results CSV, sorted.
fn lines_of(text: &str) -> Vec<(u64, String)> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let code = headers.iter().position(|h| h == "response_code").unwrap();
    let mut got: Vec<(u64, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].parse().unwrap(), r[code].to_owned())
        })
        .collect();
    got.sort();
    got
}

async fn results(sim: &ApsSimHandle, reference: &str) -> Map<String, Value> {
    let (status, body) = command(sim, "GET_BATCH_RESULTS", reference, IN).await;
    assert_eq!(status, 200);
    verified(&body)
}

const HEADER: &str =
    "command,merchant_reference,amount,currency,token_name,customer_email,eci,fort_id\r\n";

fn file(rows: &[&str]) -> String {
    let mut f = HEADER.to_owned();
    for r in rows {
        f.push_str(r);
        f.push_str("\r\n");
    }
    f
}

#[tokio::test]
async fn upload_validate_process_results_and_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("aps.jsonl");
    let sim = start(Some(journal.clone()), 2).await;
    let rows = [
        "PURCHASE,o1,1000,USD,tok1,a@b.c,RECURRING,",
        "PURCHASE,o2,1051,USD,tok2,a@b.c,RECURRING,",
        "CAPTURE,o3,500,KWD,,,,",
        "REFUND,o4,200,USD,,,,",
        "VOID_AUTHORIZATION,o5,,,,,,",
    ];
    let up = upload(&sim, "PB1-abc", &file(&rows)).await;
    assert_eq!(code(&up), "50000");
    assert!(up.contains_key("batch_id"));
    // A second upload of the same reference: 51146.
    assert_eq!(code(&upload(&sim, "PB1-abc", &file(&rows)).await), "51146");

    // Processing before validation is over is refused.
    let (_, early) = command(&sim, "PROCESS_BATCH", "PB1-abc", IN).await;
    assert_eq!(code(&verified(&early)), "73138");
    assert_eq!(code(&results(&sim, "PB1-abc").await), "70138");
    assert_eq!(code(&results(&sim, "PB1-abc").await), "70138");
    let validated = results(&sim, "PB1-abc").await;
    assert_eq!(code(&validated), "76000");
    assert_eq!(validated["transactions_count"], Value::from(5));
    assert!(
        sim.journal().is_empty(),
        "nothing processed before PROCESS_BATCH"
    );

    let (_, accepted) = command(&sim, "PROCESS_BATCH", "PB1-abc", IN).await;
    assert_eq!(code(&verified(&accepted)), "72147");
    // Repeating PROCESS_BATCH starts nothing new.
    let (_, again) = command(&sim, "PROCESS_BATCH", "PB1-abc", IN).await;
    assert_eq!(code(&verified(&again)), "72147");
    assert_eq!(code(&results(&sim, "PB1-abc").await), "70140");
    assert_eq!(code(&results(&sim, "PB1-abc").await), "70140");
    let done = results(&sim, "PB1-abc").await;
    assert_eq!(code(&done), "70000");
    let csv_text = done["batch_results"].as_str().unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(reader.headers().unwrap().get(0), Some("Line_Number"));
    let mut got: Vec<(u64, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].parse().unwrap(), r[2].to_owned(), r[3].to_owned())
        })
        .collect();
    got.sort();
    let expected: Vec<(u64, String, String)> = [
        (1, "o1", "14000"),
        (2, "o2", "13020"),
        (3, "o3", "04000"),
        (4, "o4", "06000"),
        (5, "o5", "08000"),
    ]
    .iter()
    .map(|(n, r, c)| (*n, (*r).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(got, expected);
    assert_eq!(sim.journal().len(), 5);
    // Polling again gives the same results and processes nothing again.
    assert_eq!(code(&results(&sim, "PB1-abc").await), "70000");
    assert_eq!(sim.journal().len(), 5);
    sim.shutdown().await;

    // A restart with the same journal still knows the batch (146 on re-upload, results kept)
    // and refuses a second purchase of an order already purchased.
    let sim = start(Some(journal), 0).await;
    assert_eq!(code(&upload(&sim, "PB1-abc", &file(&rows)).await), "51146");
    assert_eq!(code(&results(&sim, "PB1-abc").await), "70000");
    assert_eq!(
        code(&upload(&sim, "PB2-abc", &file(&[rows[0]])).await),
        "50000"
    );
    assert_eq!(code(&results(&sim, "PB2-abc").await), "76000");
    let (_, _) = command(&sim, "PROCESS_BATCH", "PB2-abc", IN).await;
    let done = results(&sim, "PB2-abc").await;
    assert!(
        done["batch_results"].as_str().unwrap().contains("13007"),
        "{done:?}"
    );
    assert_eq!(sim.journal().len(), 6);
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_failures_name_lines() {
    let sim = start(None, 0).await;
    let bad = file(&[
        "CAPTURE,o1,5,USD,,,,",
        "SALE,o2,5,USD,,,,",
        "REFUND,o1,5,USD,,,,",
        "CAPTURE,o3,1.5,USD,,,,",
    ]);
    assert_eq!(code(&upload(&sim, "R1", &bad).await), "50000");
    let answer = results(&sim, "R1").await;
    assert_eq!(code(&answer), "77136");
    let text = answer["batch_results"].as_str().unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let lines: Vec<(String, String)> = reader
        .records()
        .map(|r| r.unwrap())
        .map(|r| (r[0].to_owned(), r[2].to_owned()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("2".into(), "77004".into()),
            ("3".into(), "77007".into()),
            ("4".into(), "77005".into())
        ]
    );
    let (_, refused) = command(&sim, "PROCESS_BATCH", "R1", IN).await;
    assert_eq!(code(&verified(&refused)), "73136");

    assert_eq!(
        code(&upload(&sim, "R2", "command,amount\r\nCAPTURE,5\r\n").await),
        "50000"
    );
    assert_eq!(code(&results(&sim, "R2").await), "77142");

    sim.set_knobs(ApsKnobs {
        validation: ValidationMode::FailAll,
        ..ApsKnobs::default()
    });
    assert_eq!(
        code(&upload(&sim, "R3", &file(&["CAPTURE,o1,5,USD,,,,"])).await),
        "50000"
    );
    assert_eq!(code(&results(&sim, "R3").await), "77136");
    assert!(sim.journal().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn signatures_references_and_knobs() {
    let sim = start(None, 0).await;
    // A request signed with the wrong phrase: 00008, answer still signed.
    let (_, body) = command(&sim, "GET_BATCH_RESULTS", "R1", "WRONG").await;
    assert_eq!(code(&verified(&body)), "00008");
    // Unknown reference: 71141; unknown command: 00004.
    assert_eq!(code(&results(&sim, "NOPE").await), "71141");
    let (_, body) = command(&sim, "DELETE_BATCH", "R1", IN).await;
    assert_eq!(code(&verified(&body)), "00004");
    // Invalid reference characters: 00002.
    assert_eq!(code(&results(&sim, "a b").await), "00002");

    // Transient failures: 503 without touching state, then normal.
    sim.set_knobs(ApsKnobs {
        transient_failures: 1,
        ..ApsKnobs::default()
    });
    let (status, _) = command(&sim, "GET_BATCH_RESULTS", "NOPE", IN).await;
    assert_eq!(status, 503);
    assert_eq!(code(&results(&sim, "NOPE").await), "71141");

    // Tampering only processed results.
    sim.set_knobs(ApsKnobs {
        tamper: TamperMode::ProcessedResults,
        ..ApsKnobs::default()
    });
    assert_eq!(
        code(&upload(&sim, "T1", &file(&["CAPTURE,o1,5,USD,,,,"])).await),
        "50000"
    );
    assert_eq!(code(&results(&sim, "T1").await), "76000");
    let (_, _) = command(&sim, "PROCESS_BATCH", "T1", IN).await;
    let (_, body) = command(&sim, "GET_BATCH_RESULTS", "T1", IN).await;
    let outcome = std::panic::catch_unwind(|| verified(&body));
    assert!(outcome.is_err(), "a tampered answer must not verify");
    sim.shutdown().await;
}

#[tokio::test]
async fn published_mode_answers_70000_after_validation_and_counts_the_header_as_line_1() {
    let sim = start_with(ApsSimOptions {
        validation_polls: 0,
        processing_polls: 1,
        ..ApsSimOptions::default()
    })
    .await;
    let rows = [
        "CAPTURE,o1,500,USD,,,,",
        "REFUND,o2,219,USD,,,,",
        "CAPTURE,o3,319,USD,,,,",
    ];
    assert_eq!(code(&upload(&sim, "P1", &file(&rows)).await), "50000");
    let validated = results(&sim, "P1").await;
    assert_eq!(code(&validated), "70000", "validation success is 70000");
    assert_eq!(validated["transactions_count"], Value::from(3));
    assert!(
        !validated.contains_key("batch_results"),
        "no per-line rows before PROCESS_BATCH"
    );
    assert!(sim.journal().is_empty());
    let (_, accepted) = command(&sim, "PROCESS_BATCH", "P1", IN).await;
    assert_eq!(code(&verified(&accepted)), "72147");
    assert_eq!(code(&results(&sim, "P1").await), "70140");
    let done = results(&sim, "P1").await;
    assert_eq!(code(&done), "70000");
    assert_eq!(
        lines_of(done["batch_results"].as_str().unwrap()),
        vec![
            (2, "04000".to_owned()),
            (3, "06000".to_owned()),
            (4, "04000".to_owned())
        ],
        "data rows are numbered from 2"
    );

    // Unsettled lines: amounts ending in 19 get 15/19/20/40 by line number.
    sim.set_knobs(ApsKnobs {
        unsettled_cents: Some(19),
        ..ApsKnobs::default()
    });
    assert_eq!(
        code(
            &upload(
                &sim,
                "P2",
                &file(&[
                    "CAPTURE,q1,119,USD,,,,",
                    "CAPTURE,q2,219,USD,,,,",
                    "CAPTURE,q3,300,USD,,,,",
                    "CAPTURE,q4,419,USD,,,,",
                    "CAPTURE,q5,519,USD,,,,"
                ])
            )
            .await
        ),
        "50000"
    );
    assert_eq!(code(&results(&sim, "P2").await), "70000");
    let (_, _) = command(&sim, "PROCESS_BATCH", "P2", IN).await;
    let _ = results(&sim, "P2").await;
    let done = results(&sim, "P2").await;
    let got = lines_of(done["batch_results"].as_str().unwrap());
    assert_eq!(
        got.iter()
            .map(|(_, c)| c.get(..2).unwrap())
            .collect::<Vec<_>>(),
        ["15", "19", "04", "40", "15"],
        "{got:?}"
    );
    assert!(
        done["batch_results"]
            .as_str()
            .unwrap()
            .contains("Transaction pending")
    );
    assert_eq!(
        sim.journal().len(),
        8,
        "unsettled lines are journaled: money may move"
    );

    // Validation failures are numbered the same way.
    assert_eq!(
        code(
            &upload(
                &sim,
                "P3",
                &file(&["CAPTURE,r1,5,USD,,,,", "SALE,r2,5,USD,,,,"])
            )
            .await
        ),
        "50000"
    );
    let failed = results(&sim, "P3").await;
    assert_eq!(code(&failed), "77136");
    assert_eq!(
        lines_of(failed["batch_results"].as_str().unwrap()),
        vec![(3, "77004".to_owned())]
    );

    // The validation_rows knob: a validated answer lists its lines, with the answer's code.
    sim.set_knobs(ApsKnobs {
        validation_rows: true,
        ..ApsKnobs::default()
    });
    assert_eq!(code(&upload(&sim, "P4", &file(&rows[..2])).await), "50000");
    let validated = results(&sim, "P4").await;
    assert_eq!(code(&validated), "70000");
    let text = validated["batch_results"].as_str().unwrap();
    assert_eq!(
        lines_of(text),
        vec![(2, "70000".to_owned()), (3, "70000".to_owned())]
    );
    assert!(text.contains("o1") && text.contains("o2"), "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn results_as_a_plain_csv_body() {
    let sim = start_with(ApsSimOptions {
        validation_polls: 0,
        processing_polls: 0,
        knobs: ApsKnobs {
            results_form: ResultsForm::CsvBody,
            ..ApsKnobs::default()
        },
        ..ApsSimOptions::default()
    })
    .await;
    assert_eq!(
        code(&upload(&sim, "C1", &file(&["CAPTURE,o1,5,USD,,,,"])).await),
        "50000"
    );
    // Answers without per-line results stay signed JSON.
    assert_eq!(code(&results(&sim, "C1").await), "70000");
    let (_, _) = command(&sim, "PROCESS_BATCH", "C1", IN).await;
    let (status, body) = command(&sim, "GET_BATCH_RESULTS", "C1", IN).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("Line_Number,"), "{text}");
    assert_eq!(lines_of(&text), vec![(2, "04000".to_owned())]);
    assert_eq!(sim.journal().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn batch_id_is_checked_when_sent_and_required_by_a_knob() {
    let sim = start_with(ApsSimOptions {
        validation_polls: 0,
        processing_polls: 0,
        knobs: ApsKnobs {
            require_batch_id: true,
            ..ApsKnobs::default()
        },
        ..ApsSimOptions::default()
    })
    .await;
    let up = upload(&sim, "B1", &file(&["CAPTURE,o1,5,USD,,,,"])).await;
    let id = up["batch_id"].as_str().unwrap().to_owned();
    assert!(
        id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    let api = "/FortAPI/batchApi/";
    let (_, missing) = command_at(&sim, api, "GET_BATCH_RESULTS", "B1", IN, &[]).await;
    assert_eq!(code(&verified(&missing)), "71001");
    let (_, wrong) = command_at(
        &sim,
        api,
        "GET_BATCH_RESULTS",
        "B1",
        IN,
        &[("batch_id", "12")],
    )
    .await;
    assert_eq!(code(&verified(&wrong)), "71002");
    let (_, wrong) = command_at(&sim, api, "PROCESS_BATCH", "B1", IN, &[("batch_id", "12")]).await;
    assert_eq!(code(&verified(&wrong)), "73002");
    let with = [("batch_id", id.as_str())];
    let (_, ok) = command_at(&sim, api, "GET_BATCH_RESULTS", "B1", IN, &with).await;
    assert_eq!(code(&verified(&ok)), "70000");
    let (_, ok) = command_at(&sim, api, "PROCESS_BATCH", "B1", IN, &with).await;
    assert_eq!(code(&verified(&ok)), "72147");
    let (_, done) = command_at(&sim, api, "GET_BATCH_RESULTS", "B1", IN, &with).await;
    let done = verified(&done);
    assert_eq!(code(&done), "70000");
    assert_eq!(done["batch_id"].as_str(), Some(id.as_str()));
    sim.shutdown().await;
    // The id survives a restart: it is derived from the merchant and the reference.
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.jsonl");
    let sim = start_with(ApsSimOptions {
        journal: Some(journal.clone()),
        validation_polls: 0,
        processing_polls: 0,
        ..ApsSimOptions::default()
    })
    .await;
    let id = upload(&sim, "B2", &file(&["CAPTURE,o1,5,USD,,,,"])).await["batch_id"].clone();
    let _ = results(&sim, "B2").await;
    let (_, _) = command(&sim, "PROCESS_BATCH", "B2", IN).await;
    let _ = results(&sim, "B2").await;
    sim.shutdown().await;
    let sim = start_with(ApsSimOptions {
        journal: Some(journal),
        ..ApsSimOptions::default()
    })
    .await;
    assert_eq!(results(&sim, "B2").await["batch_id"], id);
    sim.shutdown().await;
}

#[tokio::test]
async fn process_batch_on_its_own_path_signed_files_and_renamed_headers() {
    let sim = start_with(ApsSimOptions {
        validation_polls: 0,
        processing_polls: 0,
        process_path: Some("/integration-batch/batchApi/".into()),
        upload_signature: UploadSignature::Content,
        header_names: vec![("merchant_reference".into(), "Merchant_Reference".into())],
        ..ApsSimOptions::default()
    })
    .await;
    let renamed = "command,Merchant_Reference,amount,currency\r\nCAPTURE,o1,5,USD\r\n";
    // The file must take part in the signature.
    assert_eq!(code(&upload(&sim, "S1", renamed).await), "00008");
    assert_eq!(
        code(&upload_signed(&sim, "S1", renamed, true).await),
        "50000"
    );
    assert_eq!(
        code(&results(&sim, "S1").await),
        "70000",
        "renamed header accepted"
    );
    // PROCESS_BATCH is refused on the batchApi path and served on its own.
    let (_, here) = command(&sim, "PROCESS_BATCH", "S1", IN).await;
    assert_eq!(code(&verified(&here)), "00004");
    let (_, there) = command_at(
        &sim,
        "/integration-batch/batchApi/",
        "PROCESS_BATCH",
        "S1",
        IN,
        &[],
    )
    .await;
    assert_eq!(code(&verified(&there)), "72147");
    let (_, results_there) = command_at(
        &sim,
        "/integration-batch/batchApi/",
        "GET_BATCH_RESULTS",
        "S1",
        IN,
        &[],
    )
    .await;
    assert_eq!(code(&verified(&results_there)), "00004");
    assert_eq!(code(&results(&sim, "S1").await), "70000");
    assert_eq!(sim.journal().len(), 1);
    sim.shutdown().await;
}
