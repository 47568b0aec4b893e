//! Test helpers (feature `test-support`): a fresh database per test on the test server.
//!
//! `tests/support/servers.sh start` runs a PostgreSQL cluster and exports
//! `PAYBATCH_TEST_PG_URL`. Without it a test skips with a message, unless
//! `PAYBATCH_REQUIRE_SERVERS=1` (CI), where a missing server is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{PgLedger, PgOptions};

/// The test server's URL, or `None` (after saying how to start it) when the test should skip.
///
/// # Panics
/// When `PAYBATCH_REQUIRE_SERVERS=1` and no server is configured.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var("PAYBATCH_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("PAYBATCH_REQUIRE_SERVERS").as_deref() == Ok("1") {
                panic!(
                    "{test}: PAYBATCH_TEST_PG_URL is not set and PAYBATCH_REQUIRE_SERVERS=1: \
                     run `bash tests/support/servers.sh start && source target/test-servers/env`"
                );
            }
            eprintln!(
                "{test}: skipped: no PostgreSQL test server (run `bash tests/support/install.sh && \
                 bash tests/support/servers.sh start && source target/test-servers/env`)"
            );
            None
        }
    }
}

/// Creates an empty database with a unique name on the test server and returns the options
/// for it (the database stays: the test server is thrown away with its cluster).
///
/// # Panics
/// When the server refuses.
pub async fn fresh_database(url: &str, label: &str) -> PgOptions {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t_{}_{}_{}",
        label
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>()
            .to_lowercase(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let admin = PgOptions::new(url).unwrap();
    let (client, conn) = admin
        .config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connecting to the PostgreSQL test server");
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("creating a test database");
    drop(client);
    let _ = task.await;
    admin.with_database(&name)
}

/// [`fresh_database`] as a URL (for a child process's environment).
///
/// # Panics
/// When the server refuses or `url` is not of the `postgres://` form.
pub async fn fresh_database_url(url: &str, label: &str) -> String {
    let options = fresh_database(url, label).await;
    let mut u = url::Url::parse(url).expect("a postgres:// URL");
    u.set_path(&format!("/{}", options.database()));
    u.to_string()
}

/// A connected, migrated ledger on a fresh database.
///
/// # Panics
/// When the server refuses.
pub async fn fresh_ledger(url: &str, label: &str) -> PgLedger {
    PgLedger::connect(fresh_database(url, label).await)
        .await
        .expect("connecting to a fresh test database")
}

/// A plain SQL connection to the database of `options` (for tests that play the database's
/// part: moving its clock past a lease, looking at rows).
///
/// # Panics
/// When the server refuses.
pub async fn sql(options: &PgOptions) -> tokio_postgres::Client {
    let (client, conn) = options
        .config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connecting to the test database");
    tokio::spawn(conn);
    client
}
