//! Outcomes are promises (PROTOCOL.md decisions 4, 4a-4d and 11), tried through the real
//! binary as an operator would meet each failure: a line bound to a batch that was or may have
//! been triggered is `unknown` with its batch number whatever failed; a torn COMPLETE is not a
//! verdict; answer files this ledger did not ask for stop the account; one drop belongs to one
//! account; a Completed batch without a usable RESPONSE has a way out; a rotated key does not
//! block a resumed batch. The stand-in "gateway" here is the test itself writing the drop's
//! `Response/` files, so that each failure can be staged exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

mod common;
use common::{paybatch_cmd, read_records, run, s, text};

const CARD: &str = "4111111111111111";

/// One account (`acme`) on a local drop, with its ledger and input, in a temporary folder.
struct Drop {
    dir: tempfile::TempDir,
}

impl Drop {
    fn new(lines: usize) -> Self {
        let d = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(d.drop_dir()).unwrap();
        d.write_config("mk-one", "batch_key = \"bk-secret\"");
        d.write_input("in.kvp", lines, 0);
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn drop_dir(&self) -> PathBuf {
        self.path("drop")
    }

    fn config(&self) -> PathBuf {
        self.path("paybatch.toml")
    }

    /// The config with merchant key `merchant` and the batch key given by `batch_key` (a
    /// `batch_key = ...` or `batch_key_env = ...` line).
    fn write_config(&self, merchant: &str, batch_key: &str) {
        let text = format!(
            "[ledger]\npath = {ledger:?}\n\n[poll]\ninterval = \"20ms\"\nmax_interval = \"50ms\"\ntimeout = \"2m\"\n\n\
             [accounts.acme]\nlocation = \"file://{drop}\"\n{batch_key}\nmerchant_key = \"{merchant}\"\n",
            ledger = s(&self.path("ledger")),
            drop = s(&self.drop_dir()),
        );
        std::fs::write(self.config(), text).unwrap();
    }

    /// `lines` sales for `acme`, refs `r{first}`, `r{first+1}`, ...
    fn write_input(&self, name: &str, lines: usize, first: usize) -> PathBuf {
        let mut text = String::new();
        for i in first..first + lines {
            text.push_str(&format!(
                "account=acme&ref=r{i}&xCommand=cc%3Asale&xAmount={i}.00&xCardNum={CARD}&xExp=1230&xInvoice=inv-{i}\n"
            ));
        }
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn drop_file(&self, rel: &str) -> PathBuf {
        self.drop_dir().join(rel)
    }

    fn names(&self, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.drop_file(folder))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn submit_args(&self, input: &Path, out: &Path, wait: bool) -> Vec<String> {
        let mut args = vec![
            "submit".to_owned(),
            "--config".to_owned(),
            s(&self.config()),
            s(input),
            "--output".to_owned(),
            s(out),
        ];
        if wait {
            args.push("--wait".to_owned());
        }
        args
    }

    async fn paybatch(&self, args: Vec<String>, env: &[(&str, &str)]) -> Output {
        let mut cmd = paybatch_cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd).await
    }

    /// Submits `in.kvp` without waiting: batch 1 is triggered (REQUEST_1 and PROCESS_1 in the
    /// drop, `Response/` there for an answer written by hand). Returns the input and output.
    async fn triggered(&self) -> (PathBuf, PathBuf) {
        let input = self.path("in.kvp");
        let out = self.path("out.kvp");
        let o = self
            .paybatch(self.submit_args(&input, &out, false), &[])
            .await;
        assert_eq!(
            self.names("Request"),
            ["PROCESS_1.KVP", "REQUEST_1.KVP"],
            "{}",
            text(&o)
        );
        std::fs::create_dir_all(self.drop_file("Response")).unwrap();
        (input, out)
    }

    /// Runs `submit` (not waiting) on `in.kvp` until it is killed at crash point `point`.
    /// Returns the input and output.
    async fn crashed_at(&self, point: &str) -> (PathBuf, PathBuf) {
        let input = self.path("in.kvp");
        let out = self.path("out.kvp");
        let mut crash = paybatch_cmd(self.submit_args(&input, &out, false));
        crash.env("PAYBATCH_CRASH_AT", point);
        let crashed = run(crash).await;
        assert!(crashed.status.code().is_none(), "{}", text(&crashed));
        (input, out)
    }

    /// The run `o` refused [`FOREIGN_REQUEST`] under number 1: exit 1, said so, nothing
    /// triggered, the file as it was.
    fn assert_foreign_request_kept(&self, o: &Output) {
        assert_eq!(o.status.code(), Some(1), "{}", text(o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not written by this ledger"),
            "{}",
            text(o)
        );
        assert_eq!(self.names("Request"), ["REQUEST_1.KVP"], "not triggered");
        assert_eq!(
            std::fs::read_to_string(self.drop_file("Request/REQUEST_1.KVP")).unwrap(),
            FOREIGN_REQUEST
        );
    }

    /// Writes `Response/RESPONSE_n` approving every line and a whole `COMPLETE_n`.
    fn answer(&self, n: u32, lines: usize) {
        let mut response = String::new();
        for i in 0..lines {
            response.push_str(&format!(
                "xIndex={i}&xSequenceNumber={n}&xResult=A&xStatus=Approved&xRefNum=90{i}&xAuthAmount=1.00\n"
            ));
        }
        std::fs::create_dir_all(self.drop_file("Response")).unwrap();
        std::fs::write(
            self.drop_file(&format!("Response/RESPONSE_{n}.KVP")),
            response,
        )
        .unwrap();
        std::fs::write(
            self.drop_file(&format!("Response/COMPLETE_{n}.KVP")),
            complete(n, lines),
        )
        .unwrap();
    }
}

/// A REQUEST under number 1 that this ledger did not write (another key, another amount).
const FOREIGN_REQUEST: &str =
    "xIndex=0&xSequenceNumber=1&xKey=someone-else&xCommand=cc%3Asale&xAmount=5.00\n";

fn complete(n: u32, lines: usize) -> String {
    format!(
        "xResult=S&xStatus=Success&xError=&xProcessedCount={lines}&xSubmittedCount={lines}&xFormat=KVP&xSequenceNumber={n}\n"
    )
}

fn by_ref(rows: &[HashMap<String, String>]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["ref"].clone(),
                r["outcome"].clone(),
                r["xSequenceNumber"].clone(),
            )
        })
        .collect()
}

fn row(r: &str, outcome: &str, seq: &str) -> (String, String, String) {
    (r.to_owned(), outcome.to_owned(), seq.to_owned())
}

fn assert_no_card(o: &Output, files: &[&Path]) {
    let all = text(o);
    assert!(!all.contains(CARD), "{all}");
    for f in files {
        let body = std::fs::read_to_string(f).unwrap_or_default();
        assert!(!body.contains(CARD), "{}", f.display());
    }
}

/// Decision 11: `submit` without `--wait` triggers batch 1; `collect` then fails in every way an
/// operator can meet — the batch key variable unset, the drop unreachable, a line removed from
/// the input, a line edited — and each time the triggered lines are `unknown` with their batch
/// number and index, never `not_processed`, and the exit status is not 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_of_a_triggered_batch_stay_unknown_whatever_fails() {
    let d = Drop::new(2);
    d.write_config("mk-one", "batch_key_env = \"HONEST_TEST_BATCH_KEY\"");
    let input = d.path("in.kvp");
    let out = d.path("out.kvp");
    // A short Stuck deadline: collect polls the unanswered batch only briefly.
    let short = ("PAYBATCH__POLL__TIMEOUT", "300ms");
    let env = [("HONEST_TEST_BATCH_KEY", "bk-secret"), short];
    let submitted = d.paybatch(d.submit_args(&input, &out, false), &env).await;
    assert_eq!(submitted.status.code(), Some(0), "{}", text(&submitted));
    assert_eq!(d.names("Request"), ["PROCESS_1.KVP", "REQUEST_1.KVP"]);

    let collect = |input: PathBuf| {
        vec![
            "collect".to_owned(),
            "--config".to_owned(),
            s(&d.config()),
            s(&input),
            "--output".to_owned(),
            s(&out),
        ]
    };
    let triggered = [row("r0", "unknown", "1"), row("r1", "unknown", "1")];

    // 1. The batch key variable is unset.
    let o = d.paybatch(collect(input.clone()), &[short]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = read_records(&out, None);
    assert_eq!(by_ref(&rows), triggered, "{}", text(&o));
    assert_eq!(
        (rows[0]["xIndex"].as_str(), rows[1]["xIndex"].as_str()),
        ("0", "1")
    );
    assert!(
        rows[0]["xError"].contains("HONEST_TEST_BATCH_KEY"),
        "{rows:?}"
    );

    // 2. The drop is unreachable (its folder is gone).
    let moved = d.path("drop-away");
    std::fs::rename(d.drop_dir(), &moved).unwrap();
    std::fs::write(d.drop_dir(), "not a folder").unwrap();
    let o = d.paybatch(collect(input.clone()), &env).await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(by_ref(&read_records(&out, None)), triggered, "{}", text(&o));
    std::fs::remove_file(d.drop_dir()).unwrap();
    std::fs::rename(&moved, d.drop_dir()).unwrap();

    // 3. A line was removed from the input; the batch it is in was triggered, so collect
    // polls it (no answer: Stuck).
    let shorter = d.write_input("shorter.kvp", 1, 1);
    let o = d.paybatch(collect(shorter), &env).await;
    assert_eq!(
        by_ref(&read_records(&out, None)),
        [row("r1", "unknown", "1")]
    );
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));

    // 4. A line was edited (its ref is bound to other content).
    let edited = d.path("edited.kvp");
    let body = std::fs::read_to_string(&input)
        .unwrap()
        .replace("xAmount=1.00", "xAmount=9.99");
    std::fs::write(&edited, body).unwrap();
    let o = d.paybatch(collect(edited), &env).await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_records(&out, None);
    assert_eq!(by_ref(&rows), triggered, "{}", text(&o));
    assert!(rows[1]["xError"].contains("different content"), "{rows:?}");
    assert_no_card(&o, &[&out]);

    // The status lists the batch as pending; once the gateway answers, collect finishes it.
    d.answer(1, 2);
    let o = d.paybatch(collect(input.clone()), &env).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        by_ref(&read_records(&out, None)),
        [row("r0", "approved", "1"), row("r1", "approved", "1")]
    );
}

/// Decision 4a: a gateway that writes COMPLETE in place, in steps (empty, then a torn prefix,
/// then whole), is not read as a verdict until it is whole: nothing is recorded or deleted on
/// the way, and every line comes out with the gateway's real answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_written_in_steps_is_read_only_when_whole() {
    let d = Drop::new(3);
    let input = d.path("in.kvp");
    let out = d.path("out.kvp");
    let drop_dir = d.drop_dir();
    let gateway = tokio::spawn(async move {
        let process = drop_dir.join("Request/PROCESS_1.KVP");
        for _ in 0..3000 {
            if process.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(process.exists(), "no PROCESS_1");
        let response: String = (0..3)
            .map(|i| {
                format!("xIndex={i}&xSequenceNumber=1&xResult=A&xStatus=Approved&xRefNum=7{i}\n")
            })
            .collect();
        std::fs::create_dir_all(drop_dir.join("Response")).unwrap();
        std::fs::write(drop_dir.join("Response/RESPONSE_1.KVP"), response).unwrap();
        let whole = complete(1, 3);
        let path = drop_dir.join("Response/COMPLETE_1.KVP");
        // Each stage stays for many poll intervals (20-50 ms), and RESPONSE must stay put.
        for stage in ["", &whole[..30], &whole[..whole.len() - 20]] {
            std::fs::write(&path, stage).unwrap();
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert!(
                drop_dir.join("Response/RESPONSE_1.KVP").exists(),
                "RESPONSE deleted while COMPLETE was {stage:?}"
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        std::fs::write(&path, &whole).unwrap();
    });
    let o = d.paybatch(d.submit_args(&input, &out, true), &[]).await;
    gateway.await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        by_ref(&read_records(&out, None)),
        [
            row("r0", "approved", "1"),
            row("r1", "approved", "1"),
            row("r2", "approved", "1")
        ]
    );
    assert!(d.names("Response").is_empty(), "the answer is cleaned up");
}

/// Decision 4b: a fresh ledger on a drop that already holds another client's answer refuses
/// the account — nothing uploaded, nothing deleted, the number and the way out named — and
/// `ledger set-floor` is that way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_this_ledger_did_not_ask_for_stop_the_account() {
    let d = Drop::new(2);
    d.answer(1, 2);
    let input = d.path("in.kvp");
    let out = d.path("out.kvp");
    let o = d.paybatch(d.submit_args(&input, &out, true), &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("COMPLETE_1") && stderr.contains("paybatch ledger set-floor"),
        "{stderr}"
    );
    assert!(d.names("Request").is_empty(), "nothing uploaded");
    assert_eq!(d.names("Response"), ["COMPLETE_1.KVP", "RESPONSE_1.KVP"]);
    let rows = read_records(&out, None);
    assert_eq!(
        by_ref(&rows),
        [
            row("r0", "not_processed", ""),
            row("r1", "not_processed", "")
        ]
    );

    let floor = d
        .paybatch(
            vec![
                "ledger".into(),
                "set-floor".into(),
                "--config".into(),
                s(&d.config()),
                "--account".into(),
                "acme".into(),
                "1".into(),
            ],
            &[],
        )
        .await;
    assert_eq!(floor.status.code(), Some(0), "{}", text(&floor));
    let o = d.paybatch(d.submit_args(&input, &out, false), &[]).await;
    assert_eq!(
        d.names("Request"),
        ["PROCESS_2.KVP", "REQUEST_2.KVP"],
        "{}",
        text(&o)
    );
    assert_eq!(d.names("Response"), ["COMPLETE_1.KVP", "RESPONSE_1.KVP"]);
}

/// Decision 4b, the other way in: a REQUEST under our number that we did not write is neither
/// overwritten nor triggered, and `ledger set-floor` warns about a batch reserved below the
/// new floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_this_ledger_did_not_write_is_never_overwritten() {
    let d = Drop::new(2);
    let (input, out) = d.crashed_at("orchestrator.after_reserve").await;
    std::fs::create_dir_all(d.drop_file("Request")).unwrap();
    std::fs::write(d.drop_file("Request/REQUEST_1.KVP"), FOREIGN_REQUEST).unwrap();
    let o = d.paybatch(d.submit_args(&input, &out, false), &[]).await;
    d.assert_foreign_request_kept(&o);
    let floor = d
        .paybatch(
            vec![
                "ledger".into(),
                "set-floor".into(),
                "--config".into(),
                s(&d.config()),
                "--account".into(),
                "acme".into(),
                "1".into(),
            ],
            &[],
        )
        .await;
    assert_eq!(floor.status.code(), Some(0), "{}", text(&floor));
    let stderr = String::from_utf8_lossy(&floor.stderr);
    assert!(
        stderr.contains("batch 1") && stderr.contains("Reserved") && stderr.contains("--abandon"),
        "{stderr}"
    );
}

/// The same, for a batch recorded as uploaded whose run stopped before its PROCESS: the REQUEST
/// under its number was replaced meanwhile, so the resumed run does not trigger it, and its
/// lines stay `unknown` (it may have been triggered before the stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_request_is_not_triggered_when_its_batch_resumes() {
    let d = Drop::new(2);
    // The first durable state change of a batch is RequestUploaded: stop right after it.
    let (input, out) = d.crashed_at("transition.after_flush").await;
    assert_eq!(d.names("Request"), ["REQUEST_1.KVP"]);
    std::fs::write(d.drop_file("Request/REQUEST_1.KVP"), FOREIGN_REQUEST).unwrap();
    let o = d.paybatch(d.submit_args(&input, &out, true), &[]).await;
    d.assert_foreign_request_kept(&o);
    assert_eq!(
        by_ref(&read_records(&out, None)),
        [row("r0", "unknown", "1"), row("r1", "unknown", "1")]
    );
}

/// A batch abandoned before its trigger (an operator's `resolve --abandon`): its REQUEST, this
/// ledger's, is withdrawn from the drop (its lines hold card data, and nothing will send it);
/// a REQUEST under that number that is not this ledger's is left where it is, and so is one
/// whose PROCESS is there (the gateway may be processing it: the abandon only warns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_batch_s_own_request_is_withdrawn_and_no_other() {
    for (foreign, triggered) in [(false, false), (true, false), (false, true)] {
        let d = Drop::new(2);
        let (_input, _out) = d.crashed_at("orchestrator.after_uploaded").await;
        assert_eq!(d.names("Request"), ["REQUEST_1.KVP"]);
        if foreign {
            std::fs::write(d.drop_file("Request/REQUEST_1.KVP"), FOREIGN_REQUEST).unwrap();
        }
        if triggered {
            std::fs::write(d.drop_file("Request/PROCESS_1.KVP"), "\n").unwrap();
        }
        let args = [
            "resolve",
            "--config",
            &s(&d.config()),
            "--account",
            "acme",
            "--seq",
            "1",
            "--abandon",
            "--reason",
            "the gateway confirmed it never saw batch 1",
        ]
        .map(str::to_owned)
        .to_vec();
        let o = d.paybatch(args, &[]).await;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let all = text(&o);
        if foreign {
            assert_eq!(d.names("Request"), ["REQUEST_1.KVP"]);
            assert_eq!(
                std::fs::read_to_string(d.drop_file("Request/REQUEST_1.KVP")).unwrap(),
                FOREIGN_REQUEST
            );
            assert!(all.contains("not this ledger's"), "{all}");
        } else if triggered {
            assert_eq!(
                d.names("Request"),
                ["PROCESS_1.KVP", "REQUEST_1.KVP"],
                "{all}"
            );
            assert!(all.contains("was asked to process"), "{all}");
        } else {
            assert!(d.names("Request").is_empty(), "{all}");
            assert!(all.contains("removed its request"), "{all}");
        }
    }
}

/// Decision 4c: two accounts on one drop (spelled differently) are a configuration error
/// naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_on_one_drop_are_refused() {
    let d = Drop::new(1);
    for (a, b) in [
        ("file:///srv/drop/acme", "file:///srv/drop/acme/"),
        ("file:///srv/drop%20x/acme", "file:///srv/drop x/acme"),
        (
            "sftp://pay@Gateway.Example:22/drop",
            "sftp://pay@gateway.example/drop/",
        ),
    ] {
        let config = format!(
            "[accounts.first]\nlocation = \"{a}\"\nbatch_key = \"b1\"\nmerchant_key = \"m1\"\n\n\
             [accounts.second]\nlocation = \"{b}\"\nbatch_key = \"b2\"\nmerchant_key = \"m2\"\n"
        );
        std::fs::write(d.config(), config).unwrap();
        let o = d
            .paybatch(
                vec![
                    "config".into(),
                    "show".into(),
                    "--config".into(),
                    s(&d.config()),
                ],
                &[],
            )
            .await;
        assert_eq!(o.status.code(), Some(2), "{a} {b}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("first") && stderr.contains("second") && stderr.contains("same drop"),
            "{stderr}"
        );
    }
    // Two logins on one server are two drops (each is usually jailed in its own home).
    let config = "[accounts.first]\nlocation = \"sftp://a@h/drop\"\nbatch_key = \"b1\"\nmerchant_key = \"m1\"\n\n\
                  [accounts.second]\nlocation = \"sftp://b@h/drop\"\nbatch_key = \"b2\"\nmerchant_key = \"m2\"\n";
    std::fs::write(d.config(), config).unwrap();
    let o = d
        .paybatch(
            vec![
                "config".into(),
                "show".into(),
                "--config".into(),
                s(&d.config()),
            ],
            &[],
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A COMPLETE that says Success with no usable RESPONSE must not block the account for ever:
/// the message names `resolve --mark-unknown`, which closes the batch with its lines `unknown`
/// (never re-sent), and the account's next batch goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_batch_without_its_response_can_be_marked_unknown() {
    let d = Drop::new(2);
    let (input, out) = d.triggered().await;
    std::fs::write(d.drop_file("Response/COMPLETE_1.KVP"), complete(1, 2)).unwrap();
    let o = d.paybatch(d.submit_args(&input, &out, true), &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("--mark-unknown"), "{stderr}");
    assert_eq!(
        by_ref(&read_records(&out, None)),
        [row("r0", "unknown", "1"), row("r1", "unknown", "1")]
    );
    // Abandoning it is refused: the gateway answered.
    let resolve = |action: &str| {
        vec![
            "resolve".to_owned(),
            "--config".to_owned(),
            s(&d.config()),
            "--account".to_owned(),
            "acme".to_owned(),
            "--seq".to_owned(),
            "1".to_owned(),
            action.to_owned(),
            "--reason".to_owned(),
            "gateway lost RESPONSE_1".to_owned(),
        ]
    };
    let o = d.paybatch(resolve("--abandon"), &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("COMPLETE_1.KVP"),
        "{}",
        text(&o)
    );
    let o = d.paybatch(resolve("--mark-unknown"), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Completed -> MarkedUnknown"));

    // The same input: its lines stay unknown and nothing is sent again.
    let o = d.paybatch(d.submit_args(&input, &out, true), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_records(&out, None);
    assert_eq!(
        by_ref(&rows),
        [row("r0", "unknown", "1"), row("r1", "unknown", "1")]
    );
    assert!(
        rows[0]["xError"].contains("gateway lost RESPONSE_1"),
        "{rows:?}"
    );
    // The account moves on: a new input gets batch 2.
    let next = d.write_input("next.kvp", 1, 10);
    let o = d.paybatch(d.submit_args(&next, &out, false), &[]).await;
    assert_eq!(
        d.names("Request"),
        [
            "PROCESS_1.KVP",
            "PROCESS_2.KVP",
            "REQUEST_1.KVP",
            "REQUEST_2.KVP"
        ],
        "{}",
        text(&o)
    );
}

/// Decision 4d: a crash right after a batch was reserved, then a rotated merchant key: the
/// batch is finished with the new key instead of being blocked as "changed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_finishes_a_reserved_batch_with_the_new_key() {
    let d = Drop::new(2);
    let input = d.path("in.kvp");
    let out = d.path("out.kvp");
    for point in ["orchestrator.after_reserve", "orchestrator.after_request"] {
        let d = Drop::new(2);
        let mut crash = paybatch_cmd(d.submit_args(&input_of(&d), &out_of(&d), false));
        crash.env("PAYBATCH_CRASH_AT", point);
        let crashed = run(crash).await;
        assert!(
            crashed.status.code().is_none(),
            "{point}: {}",
            text(&crashed)
        );
        d.write_config("mk-two", "batch_key = \"bk-secret\"");
        let o = d
            .paybatch(d.submit_args(&input_of(&d), &out_of(&d), false), &[])
            .await;
        assert_eq!(
            d.names("Request"),
            ["PROCESS_1.KVP", "REQUEST_1.KVP"],
            "{point}: {}",
            text(&o)
        );
        let request = std::fs::read_to_string(d.drop_file("Request/REQUEST_1.KVP")).unwrap();
        assert!(
            request.lines().all(|l| l.contains("xKey=mk-two")),
            "{point}: {request}"
        );
    }
    // And with the key unchanged, a resumed batch whose input lost a line is still refused.
    let mut crash = paybatch_cmd(d.submit_args(&input, &out, false));
    crash.env("PAYBATCH_CRASH_AT", "orchestrator.after_reserve");
    assert!(run(crash).await.status.code().is_none());
    let shorter = d.write_input("shorter.kvp", 1, 0);
    let o = d.paybatch(d.submit_args(&shorter, &out, false), &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no longer holds exactly"),
        "{}",
        text(&o)
    );
    assert!(d.names("Request").is_empty());
}

fn input_of(d: &Drop) -> PathBuf {
    d.path("in.kvp")
}

fn out_of(d: &Drop) -> PathBuf {
    d.path("out.kvp")
}

/// Batch 1 (two lines) answered with `response` and a COMPLETE that says the gateway processed
/// nothing (`xProcessedCount=0`): the output is `expected`, with `why` in line `why_line`'s
/// `xError`, and stays so under `--resubmit-rejected`, which sends nothing again.
async fn processed_zero_answered_with(
    response: &str,
    expected: [(String, String, String); 2],
    why_line: usize,
    why: &str,
) {
    let d = Drop::new(2);
    let (input, out) = d.triggered().await;
    std::fs::write(d.drop_file("Response/RESPONSE_1.KVP"), response).unwrap();
    std::fs::write(
        d.drop_file("Response/COMPLETE_1.KVP"),
        "xResult=E&xStatus=Error&xError=rejected&xProcessedCount=0&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=1\n",
    )
    .unwrap();
    let o = d.paybatch(d.submit_args(&input, &out, true), &[]).await;
    let rows = read_records(&out, None);
    assert_eq!(by_ref(&rows), expected, "{}", text(&o));
    assert!(rows[why_line]["xError"].contains(why), "{rows:?}");
    let mut again = d.submit_args(&input, &out, true);
    again.push("--resubmit-rejected".to_owned());
    let o = d.paybatch(again, &[]).await;
    assert_eq!(by_ref(&read_records(&out, None)), expected, "{}", text(&o));
    assert!(
        !d.names("Request").iter().any(|n| n.contains("_2.")),
        "nothing sent again: {:?}",
        d.names("Request")
    );
}

/// Decision 4: "processed 0" proves nothing was processed only when no per-line answer says
/// otherwise. A rejected batch whose RESPONSE cannot be read (one bad line) may hold an
/// `xResult=A` line: its lines are `unknown`, and `--resubmit-rejected` sends none of them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_zero_with_an_unreadable_answer_proves_nothing() {
    // Line 0 approved, then line 0 again: the file is unreadable as a whole.
    processed_zero_answered_with(
        "xIndex=0&xSequenceNumber=1&xResult=A&xStatus=Approved\nxIndex=0&xSequenceNumber=1&xResult=E&xStatus=Error\n",
        [row("r0", "unknown", "1"), row("r1", "unknown", "1")],
        0,
        "could not be read",
    )
    .await;
}

/// Decision 4, the answer against its own count: a rejected batch with `xProcessedCount=0`
/// whose RESPONSE approves a line was processed after all. The approved line is `approved`;
/// the line the RESPONSE does not mention is `unknown` (it may have been processed too), and
/// `--resubmit-rejected` sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_zero_with_an_approved_line_proves_nothing_for_the_others() {
    processed_zero_answered_with(
        "xIndex=0&xSequenceNumber=1&xResult=A&xStatus=Approved&xRefNum=77\n",
        [row("r0", "approved", "1"), row("r1", "unknown", "1")],
        1,
        "contradicts",
    )
    .await;
}
