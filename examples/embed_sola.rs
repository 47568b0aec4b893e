//! Embed the engine in your own program, with one protocol and no simulator: transactions
//! from the program itself go to one account's Sola file drop on a local folder, and the run
//! returns as soon as the batch is triggered (`PROCESS_1.KVP` written). The gateway answers
//! later; `paybatch collect` (or `Orchestrator::collect_in_flight`) with the same config
//! picks the results up from the ledger and the drop.
//!
//! `cargo run --example embed_sola [DIR]` — the drop, the ledger and the output go to DIR (a
//! temporary directory by default, removed at the end). Nothing here talks to a network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, Settings, Shutdown, SubmitOptions,
    WaitMode,
};

/// The transactions, as the program has them (here a CSV text; any `Read`, or your own
/// `orchestrator::RecordSource`, works the same). `ref` is the program's own unique id.
const TRANSACTIONS: &str = "\
account,ref,xCommand,xCardNum,xExp,xAmount,xInvoice
acme,order-1001,cc:sale,4111111111111111,1230,12.50,INV-1001
acme,order-1002,cc:sale,5555555555554444,1230,7.25,INV-1002
acme,order-1003,cc:credit,4111111111111111,1230,3.00,INV-1003
";

/// A TOML string (JSON's quoting is valid TOML for these values).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The settings, built by the program: the compiled-in defaults plus this text, with the one
/// protocol this program speaks (the Sola file drop). In a real program the keys come from
/// your secret store (or `batch_key_env`/`merchant_key_env` name variables of the environment
/// given to `Settings::load_with_env`); these are example values.
fn settings(root: &Path) -> Result<Settings, Box<dyn std::error::Error>> {
    let drop = root.join("drop");
    let config = format!(
        "[ledger]\npath = {ledger}\n\n\
         [gateway]\nsoftware_name = \"embed-example\"\n\n\
         [accounts.acme]\nprotocol = \"sola\"\nlocation = {location}\n\
         batch_key = \"example-batch-key\"\nmerchant_key = \"example-merchant-key\"\n",
        ledger = quoted(&root.join("ledger").to_string_lossy()),
        location = quoted(&format!("file://{}", drop.display())),
    );
    Ok(Settings::from_toml(&config, &[sola_file_drop::factory()])?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temporary = tempfile::tempdir()?;
    let root: PathBuf = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => temporary.path().to_path_buf(),
    };
    std::fs::create_dir_all(root.join("drop"))?;

    let settings = Arc::new(settings(&root)?);
    // The whole input is validated before anything is reserved or uploaded.
    let mut input = InputReader::new("orders", Format::Csv, Box::new(Cursor::new(TRANSACTIONS)))?;
    let job = Job::load(
        &mut input,
        &settings,
        InvalidPolicy::RejectInput,
        &mut |problem, _| eprintln!("{problem}"),
    )?;

    // Reserve the number, write REQUEST_1, verify it, write PROCESS_1, and return.
    let orchestrator = Orchestrator::builder(settings).build()?;
    let options = SubmitOptions {
        wait: WaitMode::UntilTriggered,
        ..SubmitOptions::default()
    };
    let report = orchestrator
        .submit(Arc::new(job), &options, Shutdown::never())
        .await?;

    for (account, r) in &report.accounts {
        println!(
            "{account}: {} transactions waiting for the gateway in batches {:?}",
            r.summary.count(orchestrator::LineOutcome::Unknown),
            r.pending
        );
    }
    println!("drop: {}", root.join("drop").display());
    // The report is plain data: here as JSON (it never holds a card number or a key).
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
