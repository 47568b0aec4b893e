//! The ledger's tables, created and migrated by paybatch itself: numbered steps, each applied
//! once in one transaction with its row in `paybatch_schema`, under an advisory lock so that
//! processes starting together migrate once.

use sequence_ledger::{Error, Result};
use tokio_postgres::Client;

use crate::error::db;

/// One step of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number: steps run in order, each once.
    pub version: i32,
    /// What it does.
    pub description: &'static str,
    /// Its SQL (several statements).
    pub sql: &'static str,
}

/// Every step, in order. Append only: a released step never changes.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "accounts, batches (record, lines blob, results blob), leases",
    sql: r#"
CREATE TABLE paybatch_accounts (
    account     text PRIMARY KEY,
    high_water  bigint,           -- highest number reserved
    floor       bigint,           -- the operator's floor
    triggered   bigint            -- highest number triggered
);
CREATE TABLE paybatch_batches (
    account     text    NOT NULL,
    seq         bigint  NOT NULL,
    state       text    NOT NULL, -- the record's state, for operators' queries
    final       boolean NOT NULL, -- Cleaned, Abandoned or MarkedUnknown
    record      jsonb   NOT NULL, -- sequence_ledger::BatchRecord
    refs        bytea   NOT NULL, -- the batch's references and content digests (format 2 blob)
    results     bytea,            -- its per-line results once collected (format 2 blob)
    PRIMARY KEY (account, seq)
);
CREATE INDEX paybatch_batches_open ON paybatch_batches (account, seq) WHERE NOT final;
CREATE TABLE paybatch_leases (
    account     text        PRIMARY KEY,
    owner_host  text        NOT NULL,
    owner_pid   integer     NOT NULL,
    owner_id    text        NOT NULL,
    epoch       bigint      NOT NULL, -- the fencing number: grows with every new holder
    expires_at  timestamptz NOT NULL, -- by the database's clock
    acquired_at timestamptz NOT NULL
);
"#,
}];

/// The version this code reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Arbitrary key of the advisory lock migrations hold.
const LOCK_KEY: i64 = 0x7061_7962_6174_6368; // "paybatch"

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS paybatch_schema (
    version     integer     PRIMARY KEY,
    description text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)";

/// The database's schema version (0: none yet).
///
/// # Errors
/// Backend errors.
pub async fn current_version(client: &Client) -> Result<i32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('paybatch_schema') IS NOT NULL", &[])
        .await
        .map_err(db("reading the schema version"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM paybatch_schema", &[])
        .await
        .map_err(db("reading the schema version"))?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// The steps not applied yet.
///
/// # Errors
/// Backend errors; [`Error::UnsupportedFormat`] for a schema newer than this code.
pub async fn pending(client: &Client, describe: &str) -> Result<Vec<Migration>> {
    let current = current_version(client).await?;
    check_not_newer(current, describe)?;
    Ok(MIGRATIONS
        .iter()
        .filter(|m| m.version > current)
        .copied()
        .collect())
}

fn check_not_newer(found: i32, describe: &str) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(Error::UnsupportedFormat {
            path: describe.into(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: u32::try_from(SCHEMA_VERSION).unwrap_or(0),
        });
    }
    Ok(())
}

/// Applies every pending step, each in its own transaction with its bookkeeping row, under
/// an advisory lock (a second process waits, then finds nothing to do). Returns the steps
/// applied.
///
/// # Errors
/// Backend errors (a failed step is rolled back whole); [`Error::UnsupportedFormat`].
pub async fn migrate(client: &mut Client, describe: &str) -> Result<Vec<Migration>> {
    let mut applied = Vec::new();
    loop {
        let tx = client
            .transaction()
            .await
            .map_err(db("starting a migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(db("locking for a migration"))?;
        tx.batch_execute(BOOKKEEPING)
            .await
            .map_err(db("creating paybatch_schema"))?;
        let current: Option<i32> = tx
            .query_one("SELECT max(version) FROM paybatch_schema", &[])
            .await
            .map_err(db("reading the schema version"))?
            .get(0);
        let current = current.unwrap_or(0);
        check_not_newer(current, describe)?;
        let Some(step) = MIGRATIONS.iter().find(|m| m.version > current) else {
            tx.commit().await.map_err(db("finishing a migration"))?;
            return Ok(applied);
        };
        tx.batch_execute(step.sql)
            .await
            .map_err(db("applying a schema migration"))?;
        tx.execute(
            "INSERT INTO paybatch_schema (version, description) VALUES ($1, $2)",
            &[&step.version, &step.description],
        )
        .await
        .map_err(db("recording a schema migration"))?;
        tx.commit()
            .await
            .map_err(db("committing a schema migration"))?;
        tracing::info!(
            version = step.version,
            description = step.description,
            "ledger schema migrated"
        );
        applied.push(*step);
    }
}
