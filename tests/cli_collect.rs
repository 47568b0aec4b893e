//! `paybatch collect` with the submitted input writes the output in the input's format, like
//! `submit` ("same format as the input unless --output-format"): the output file's extension
//! does not decide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use orchestrator::{Format, InputReader, InputRecord, RecordSource};
use paybatch_demo::{DemoSpec, World, spawn_gateway};

mod common;
use common::{paybatch_ok, s, submit_args};

fn count_records(path: &Path, format: Format) -> usize {
    let mut reader = InputReader::open(path, Some(format)).unwrap();
    let mut rec = InputRecord::default();
    let mut n = 0;
    while reader.read_record(&mut rec).unwrap() {
        assert!(rec.get("outcome").is_some(), "{rec:?}");
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_output_format_is_the_inputs_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 2,
        transactions: 40,
        max_batch_lines: 30,
        failing_accounts: 0,
        seed: 5,
    };
    let world = World::create(dir.path(), spec, Format::Csv).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    paybatch_ok(submit_args(&world.config, &world.input)).await;
    // (output name, --output-format, expected format); every batch is final after the first.
    for (name, explicit, format) in [
        ("out.jsonl", None, Format::Csv),
        ("out.csv", Some("kvp"), Format::Kvp),
    ] {
        let out = world.root.join(name);
        let mut args = vec![
            "collect".into(),
            "--config".into(),
            s(&world.config),
            s(&world.input),
            "--output".into(),
            s(&out),
        ];
        if let Some(f) = explicit {
            args.extend(["--output-format".into(), f.into()]);
        }
        paybatch_ok(args).await;
        let text = std::fs::read_to_string(&out).unwrap();
        let first = text.lines().next().unwrap();
        match format {
            Format::Csv => assert!(first.starts_with("ref,account,outcome"), "{name}: {first}"),
            _ => assert!(
                first.starts_with("ref=") && first.contains("&outcome="),
                "{name}: {first}"
            ),
        }
        assert_eq!(count_records(&out, format), 40, "{name}");
    }
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}
