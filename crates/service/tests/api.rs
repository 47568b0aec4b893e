//! The HTTP API through a real server on ephemeral ports, against the gateway simulator on
//! local drops: auth, 422, idempotency, results in every format, resolve, metrics, health,
//! the body limit, the OpenAPI document, TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orchestrator::{Format, InputReader, InputRecord, Orchestrator, RecordSource, Settings};
use paybatch_demo::{DemoSpec, LocalWorld, spawn_gateway};
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "test-token-7d1f";

/// A world (local drops, gateway-sim in-process) and a running service over it.
struct Harness {
    _dir: tempfile::TempDir,
    world: LocalWorld,
    running: Option<paybatch_service::Running>,
    client: reqwest::Client,
    api: String,
    admin: String,
    stop_gateway: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Harness {
    /// `accounts` served by the simulator, plus `idle` (a drop nobody answers) when asked;
    /// `env` overrides settings (`PAYBATCH__…`).
    async fn start(spec: DemoSpec, idle: bool, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let world = LocalWorld::create(dir.path(), spec, Format::Kvp).unwrap();
        if idle {
            let drop = dir.path().join("idle-drop");
            std::fs::create_dir_all(&drop).unwrap();
            let mut config = std::fs::read_to_string(&world.config).unwrap();
            config.push_str(&format!(
                "[accounts.idle]\nlocation = \"file://{}\"\nbatch_key = \"idle-bk\"\nmerchant_key = \"idle-mk\"\n",
                drop.display()
            ));
            std::fs::write(&world.config, config).unwrap();
        }
        let (stop, _gateway) = spawn_gateway(world.gateway(false).await.unwrap());
        let data = dir.path().join("serve-data");
        let mut vars: Vec<(String, String)> = vec![
            ("PAYBATCH__SERVE__LISTEN".into(), "127.0.0.1:0".into()),
            ("PAYBATCH__SERVE__ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
            (
                "PAYBATCH__SERVE__DATA_DIR".into(),
                data.display().to_string(),
            ),
            (
                "PAYBATCH_SERVE_TOKENS".into(),
                format!("other-token, {TOKEN}"),
            ),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let settings = Arc::new(
            Settings::load_with_env(
                Some(&world.config),
                vars.clone(),
                &paybatch_demo::protocols(),
            )
            .unwrap(),
        );
        let lookup: HashMap<String, String> = vars.into_iter().collect();
        let config =
            paybatch_service::ServeConfig::from_settings(&settings, |k| lookup.get(k).cloned())
                .unwrap();
        let tls = config.tls.is_some();
        let engine = Orchestrator::builder(settings.clone()).build().unwrap();
        let running = paybatch_service::start(settings, config, engine)
            .await
            .unwrap();
        let scheme = if tls { "https" } else { "http" };
        let (api, admin) = (
            format!("{scheme}://{}", running.api_addr()),
            format!("{scheme}://{}", running.admin_addr()),
        );
        Self {
            _dir: dir,
            world,
            running: Some(running),
            client: reqwest::Client::new(),
            api,
            admin,
            stop_gateway: Some(stop),
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.api))
            .bearer_auth(TOKEN)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.api))
            .bearer_auth(TOKEN)
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.get(path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }

    /// Submits `body` as KVP; the answer's status and JSON.
    async fn submit(&self, body: Vec<u8>, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.post("/v1/jobs?format=kvp").body(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    /// Polls the job until its run ended (bounded: a hang fails the test).
    async fn finished(&self, id: &str) -> Value {
        for _ in 0..1200 {
            let job = self.json(&format!("/v1/jobs/{id}")).await;
            if matches!(job["state"].as_str(), Some("complete" | "failed")) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish");
    }

    fn input(&self) -> Vec<u8> {
        std::fs::read(&self.world.input).unwrap()
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
        let _ = self.stop_gateway.take().unwrap().send(());
    }
}

fn spec(accounts: usize, transactions: usize) -> DemoSpec {
    DemoSpec {
        accounts,
        transactions,
        max_batch_lines: 10,
        failing_accounts: 0,
        seed: 21,
    }
}

fn records(text: &[u8], format: Format) -> Vec<HashMap<String, String>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("r.{}", format.extension()));
    std::fs::write(&path, text).unwrap();
    let mut reader = InputReader::open(&path, Some(format)).unwrap();
    let mut rec = InputRecord::default();
    let mut out = Vec::new();
    while reader.read_record(&mut rec).unwrap() {
        out.push(rec.fields.iter().cloned().collect());
    }
    out
}

fn journal(world: &LocalWorld) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let path = world.gateway_state.join("journal.jsonl");
    if !Path::new(&path).exists() {
        return seen;
    }
    for e in gateway_sim::Journal::read(path).unwrap() {
        *seen.entry(e.invoice.unwrap_or_default()).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_bearer_token() {
    let h = Harness::start(spec(1, 5), false, &[]).await;
    let routes = [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs?format=kvp"),
        ("GET", "/v1/jobs/018bcfe56800-00000000"),
        ("GET", "/v1/jobs/018bcfe56800-00000000/results"),
        ("POST", "/v1/jobs/018bcfe56800-00000000/retry"),
        ("GET", "/v1/accounts"),
        ("POST", "/v1/accounts/acct-001/batches/1/resolve"),
        ("GET", "/v1/openapi.json"),
    ];
    for (method, path) in routes {
        let url = format!("{}{path}", h.api);
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic dGVzdA=="),
            Some(TOKEN),
        ] {
            let mut req = match method {
                "GET" => h.client.get(&url),
                _ => h.client.post(&url),
            };
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}"
            );
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
        }
        let mut req = match method {
            "GET" => h.client.get(&url),
            _ => h.client.post(&url),
        };
        req = req.bearer_auth(TOKEN);
        let r = req.send().await.unwrap();
        assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // The other configured token works too (tokens rotate).
    let r = h
        .client
        .get(format!("{}/v1/jobs", h.api))
        .bearer_auth("other-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The admin listener needs none.
    for path in ["/livez", "/readyz", "/metrics", "/"] {
        let r = h
            .client
            .get(format!("{}{path}", h.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_complete_and_its_results_come_in_every_format() {
    let h = Harness::start(spec(3, 60), false, &[]).await;
    let input = h.input();
    let (status, accepted) = h.submit(input.clone(), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["state"], "accepted");
    let id = accepted["id"].as_str().unwrap().to_owned();

    let job = h.finished(&id).await;
    assert_eq!(job["state"], "complete", "{job}");
    assert_eq!(job["transactions"], 60);
    let totals = job["totals"].as_object().unwrap();
    let counted: u64 = totals.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(counted, 60, "{job}");
    assert!(totals.contains_key("approved"), "{job}");
    assert!(job["created"].as_str().unwrap().ends_with('Z'));
    assert!(job["finished"].as_str().unwrap().ends_with('Z'));
    assert_eq!(job["accounts"].as_array().unwrap().len(), 3);

    let inputs = records(&input, Format::Kvp);
    let seen = journal(&h.world);
    for (format, content_type) in [
        (Format::Kvp, "text/plain"),
        (Format::Csv, "text/csv"),
        (Format::Jsonl, "application/x-ndjson"),
    ] {
        let r = h
            .get(&format!(
                "/v1/jobs/{id}/results?format={}",
                format.extension()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{format:?}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        let body = r.bytes().await.unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("4111111111111111"),
            "a card number in the results"
        );
        let rows = records(&body, format);
        assert_eq!(rows.len(), 60, "{format:?}");
        for (i, o) in inputs.iter().zip(&rows) {
            assert_eq!(i["ref"], o["ref"], "input order");
            assert!(
                matches!(o["outcome"].as_str(), "approved" | "declined" | "error"),
                "{o:?}"
            );
            assert_eq!(seen.get(&i["xInvoice"]), Some(&1), "processed exactly once");
        }
    }
    // The job's input format is the default.
    let r = h
        .get(&format!("/v1/jobs/{id}/results"))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let list = h.json("/v1/jobs").await;
    assert_eq!(list["jobs"][0]["id"], id.as_str());
    let r = h
        .get("/v1/jobs/018bcfe56800-00000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = h.get("/v1/jobs/..%2F..%2Fetc").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_input_is_422_with_every_problem_masked_and_nothing_kept() {
    let h = Harness::start(spec(1, 5), false, &[]).await;
    let body = "account=acct-001&ref=ok-1&xCommand=cc:sale&xCardNum=4111111111111111&xExp=1230&xAmount=1.00\n\
account=nobody&ref=r2&xCommand=cc:sale&xCardNum=4111111111111111&xExp=1230&xAmount=1.00\n\
account=acct-001&ref=4111111111111111&xCommand=cc:sale&xToken=t&xAmount=1.00\n";
    let (status, answer) = h.submit(body.as_bytes().to_vec(), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let problems = answer["problems"].as_array().unwrap();
    let lines: BTreeSet<u64> = problems
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, BTreeSet::from([2, 3]), "{answer}");
    let text = answer.to_string();
    assert!(!text.contains("4111111111111111"), "{text}");
    assert!(text.contains("411111******1111"), "{text}");
    // Nothing was kept, nothing reserved.
    assert_eq!(h.json("/v1/jobs").await["jobs"], serde_json::json!([]));
    let accounts = h.json("/v1/accounts").await;
    assert_eq!(
        accounts["accounts"][0]["last_sequence"],
        Value::Null,
        "{accounts}"
    );
    // No records, an unknown format, no format.
    let (status, answer) = h.submit(Vec::new(), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    for query in ["?format=xml", ""] {
        let r = h
            .post(&format!("/v1/jobs{query}"))
            .body("a=b\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_job_and_refuses_another_body() {
    let h = Harness::start(spec(2, 20), false, &[]).await;
    let input = h.input();
    let (s1, a) = h.submit(input.clone(), Some("order-batch-42")).await;
    let (s2, b) = h.submit(input.clone(), Some("order-batch-42")).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(a["id"], b["id"], "same key and body: same job");
    let mut other = input.clone();
    other.truncate(input.iter().position(|b| *b == b'\n').unwrap() + 1);
    let (s3, c) = h.submit(other, Some("order-batch-42")).await;
    assert_eq!(s3, StatusCode::CONFLICT, "{c}");
    // A key is kept and listed: a card number is refused, and not echoed.
    let (s5, e) = h.submit(input.clone(), Some("4111111111111111")).await;
    assert_eq!(s5, StatusCode::BAD_REQUEST, "{e}");
    assert!(!e.to_string().contains("4111111111111111"), "{e}");
    // Without a key the same body is a new job (its transactions are already bound: the engine
    // finishes it from the ledger and sends nothing twice).
    let (s4, d) = h.submit(input.clone(), None).await;
    assert_eq!(s4, StatusCode::ACCEPTED);
    assert_ne!(a["id"], d["id"]);
    for id in [&a["id"], &d["id"]] {
        let job = h.finished(id.as_str().unwrap()).await;
        assert_eq!(job["state"], "complete", "{job}");
    }
    assert_eq!(
        h.json("/v1/jobs").await["jobs"].as_array().unwrap().len(),
        2
    );
    let seen = journal(&h.world);
    assert_eq!(seen.len(), 20);
    assert!(seen.values().all(|n| *n == 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_is_413_and_keeps_nothing() {
    // Bodies above the limit are read to their end (up to 1 MiB past it) and answered 413.
    let h = Harness::start(spec(1, 30), false, &[("PAYBATCH__SERVE__MAX_BODY", "4096")]).await;
    let input = h.input();
    assert!(input.len() > 4096);
    let (status, answer) = h.submit(input, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    // Streamed without a length: cut at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..6).map(|_| Ok(vec![b'a'; 1000])).collect();
    let r = h
        .post("/v1/jobs?format=kvp")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.json("/v1/jobs").await["jobs"], serde_json::json!([]));
    let incoming = h._dir.path().join("serve-data/incoming");
    assert_eq!(
        std::fs::read_dir(incoming).unwrap().count(),
        0,
        "no body kept"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_batch_fails_the_job_shows_in_accounts_metrics_and_page_and_is_resolved() {
    let h = Harness::start(spec(1, 10), true, &[("PAYBATCH__POLL__TIMEOUT", "1s")]).await;
    let mut body = h.input();
    for n in 0..5 {
        body.extend_from_slice(
            format!("account=idle&ref=idle-{n}&xCommand=cc:sale&xToken=tok{n}&xAmount=2.00&xInvoice=IDLE-{n}\n").as_bytes(),
        );
    }
    let (status, accepted) = h.submit(body, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let job = h.finished(&id).await;
    assert_eq!(job["state"], "failed", "{job}");
    let idle = job["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == "idle")
        .unwrap()
        .clone();
    assert_eq!(idle["stuck"], serde_json::json!([1]), "{job}");
    assert_eq!(job["totals"]["unknown"], 5, "{job}");
    // Results are there (honest outcomes), in input order.
    let r = h
        .get(&format!("/v1/jobs/{id}/results"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rows = records(&r.bytes().await.unwrap(), Format::Kvp);
    assert_eq!(rows.len(), 15);
    assert!(
        rows.iter()
            .filter(|r| r["account"] == "idle")
            .all(|r| r["outcome"] == "unknown")
    );

    let accounts = h.json("/v1/accounts").await;
    let idle = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == "idle")
        .unwrap()
        .clone();
    assert_eq!(idle["stuck"], serde_json::json!([1]), "{accounts}");
    assert_eq!(idle["protocol"], "sola");

    let metrics = h
        .client
        .get(format!("{}/metrics", h.admin))
        .send()
        .await
        .unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let metrics = metrics.text().await.unwrap();
    for line in [
        "paybatch_batches{account=\"idle\",state=\"Stuck\"} 1",
        "paybatch_jobs{state=\"failed\"} 1",
        "paybatch_jobs{state=\"complete\"} 0",
        "paybatch_transactions_total{account=\"idle\",outcome=\"unknown\"} 5",
        "# TYPE paybatch_batch_seconds histogram",
        "paybatch_batch_seconds_count 1",
        "# TYPE paybatch_storage_errors_total counter",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        metrics.contains("paybatch_transactions_total{account=\"acct-001\",outcome="),
        "{metrics}"
    );
    let page = h
        .client
        .get(format!("{}/", h.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Stuck batch 1") && page.contains("idle"),
        "{page}"
    );

    // The operator: a batch that does not exist, a finished one, an unknown action.
    let resolve = |account: &str, seq: u32, body: Value| {
        h.post(&format!("/v1/accounts/{account}/batches/{seq}/resolve"))
            .json(&body)
    };
    let reason =
        serde_json::json!({"action": "abandon", "reason": "gateway confirmed it never ran"});
    let r = resolve("idle", 7, reason.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // An account that is not configured (any text, a card number too): refused before
    // anything is written for it, and not echoed.
    let r = resolve("4111111111111111", 1, reason.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("no account") && !body.contains("4111111111111111"),
        "{body}"
    );
    let r = resolve(
        "acct-001",
        1,
        serde_json::json!({"action": "mark-unknown", "reason": "x"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "a Cleaned batch is final");
    let r = resolve(
        "idle",
        1,
        serde_json::json!({"action": "forget", "reason": "x"}),
    )
    .send()
    .await
    .unwrap();
    assert!(r.status().is_client_error());
    // Abandon: the drop is inspected (PROCESS_1 is there: a warning) and the batch released.
    let r = resolve("idle", 1, reason).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let resolved: Value = r.json().await.unwrap();
    assert_eq!(
        (resolved["from"].as_str(), resolved["to"].as_str()),
        (Some("Stuck"), Some("Abandoned"))
    );
    assert!(
        resolved["notes"].to_string().contains("PROCESS_1"),
        "{resolved}"
    );
    let accounts = h.json("/v1/accounts").await;
    assert!(
        accounts.to_string().contains("\"Abandoned\":1"),
        "{accounts}"
    );

    // A retry re-runs only a failed job; a complete one is 409.
    let r = h
        .post(&format!("/v1/jobs/{id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let again = h.finished(&id).await;
    assert_eq!(again["runs"], 2, "{again}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_the_openapi_document_and_stopping() {
    let h = Harness::start(spec(1, 5), false, &[]).await;
    let live = h
        .client
        .get(format!("{}/livez", h.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = h
        .client
        .get(format!("{}/readyz", h.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let doc = h.json("/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/results",
            "/v1/jobs/{id}/retry",
            "/v1/accounts",
            "/v1/accounts/{account}/batches/{seq}/resolve",
            "/v1/openapi.json",
        ])
    );
    assert!(doc["paths"]["/v1/jobs"]["post"]["responses"]["422"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_both_listeners_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    );
    let mut h = Harness::start(
        spec(1, 5),
        false,
        &[
            ("PAYBATCH__SERVE__TLS_CERT", &c),
            ("PAYBATCH__SERVE__TLS_KEY", &k),
        ],
    )
    .await;
    assert!(h.api.starts_with("https://"));
    h.client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let r = h.get("/v1/jobs").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = h
        .client
        .get(format!("{}/livez", h.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(h.api.replace("https://", "http://") + "/v1/jobs")
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    h.stop().await;
}
