//! The APS simulator over real HTTP on 127.0.0.1, driven by a minimal hand-written HTTP/1.1
//! client so the simulator is checked without the orchestrator's client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway_sim::aps::{
    ApsKnobs, ApsMerchant, ApsSim, ApsSimHandle, ApsSimOptions, ShaType, TamperMode,
    ValidationMode, signature,
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

async fn start(journal: Option<std::path::PathBuf>, polls: u32) -> ApsSimHandle {
    ApsSim::start(ApsSimOptions {
        merchants: vec![merchant()],
        journal,
        validation_polls: polls,
        processing_polls: polls,
        ..ApsSimOptions::default()
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
    let fields = signed(
        &[
            ("service_command", "UPLOAD_BATCH_FILE"),
            ("access_code", ACCESS),
            ("merchant_identifier", MID),
            ("batch_reference", reference),
            ("language", "en"),
        ],
        IN,
    );
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
    let fields = signed(
        &[
            ("service_command", command),
            ("access_code", ACCESS),
            ("merchant_identifier", MID),
            ("batch_reference", reference),
            ("language", "en"),
        ],
        phrase,
    );
    let object: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    post(
        sim,
        "/FortAPI/batchApi/",
        "application/json",
        &serde_json::to_vec(&object).unwrap(),
    )
    .await
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
