//! A custom input source: implement `RecordSource` to feed the orchestrator from anywhere (a
//! database cursor, a queue), here an in-memory list built by the program.
//!
//! `cargo run --example custom_source`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use orchestrator::{
    Format, InputRecord, InvalidPolicy, Job, Orchestrator, RecordSource, Settings, Shutdown,
    SubmitOptions,
};
use paybatch_demo::{DemoSpec, World, spawn_gateway};

/// Rows from "somewhere": account, ref, amount.
struct Rows {
    rows: std::vec::IntoIter<(&'static str, String, String)>,
    line: u64,
}

impl RecordSource for Rows {
    fn read_record(&mut self, rec: &mut InputRecord) -> orchestrator::Result<bool> {
        rec.fields.clear();
        let Some((account, reference, amount)) = self.rows.next() else {
            return Ok(false);
        };
        self.line += 1;
        rec.line = self.line;
        rec.fields.extend([
            ("account".to_owned(), account.to_owned()),
            ("ref".to_owned(), reference.clone()),
            ("xCommand".to_owned(), "cc:sale".to_owned()),
            ("xCardNum".to_owned(), "4111111111111111".to_owned()),
            ("xExp".to_owned(), "1230".to_owned()),
            ("xAmount".to_owned(), amount),
            ("xInvoice".to_owned(), format!("INV-{reference}")),
        ]);
        Ok(true)
    }

    fn name(&self) -> &str {
        "orders-table"
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let spec = DemoSpec {
        accounts: 2,
        transactions: 0,
        failing_accounts: 0,
        ..DemoSpec::default()
    };
    let world = World::create(dir.path(), spec, Format::Kvp)?;
    let (stop, gateway) = spawn_gateway(world.gateway(false).await?);

    let settings = Arc::new(Settings::load(
        Some(&world.config),
        &paybatch_demo::protocols(),
    )?);
    let rows: Vec<_> = (0..40)
        .map(|n| {
            (
                if n % 2 == 0 { "acct-001" } else { "acct-002" },
                format!("order-{n}"),
                format!("{}.{:02}", 10 + n, n),
            )
        })
        .collect();
    let mut source = Rows {
        rows: rows.into_iter(),
        line: 0,
    };
    let job = Job::load(
        &mut source,
        &settings,
        InvalidPolicy::RejectInput,
        &mut |p, _| eprintln!("{p}"),
    )?;
    let orchestrator = Orchestrator::builder(settings).build()?;
    let report = orchestrator
        .submit(Arc::new(job), &SubmitOptions::default(), Shutdown::never())
        .await?;
    let totals = report.totals();
    println!(
        "approved {} of {}",
        totals.count(orchestrator::LineOutcome::Approved),
        report.transactions
    );
    let _ = stop.send(());
    gateway.await??;
    Ok(())
}
