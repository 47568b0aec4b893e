//! [`PgLedger`]: the pool, the retry loop, leases, and the per-account reference index.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Transaction};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use kvp_format::SequenceNumber;
use sequence_ledger::backend::{self, ReferenceIndex};
use sequence_ledger::{
    AccountId, AccountInfo, BatchRecord, Error, Lease, LeaseAttempt, LeaseEntry, LeaseOwner, Result,
};
use tokio_postgres::Row;

use crate::PgOptions;
use crate::error::{config, corrupt, db, pool};
use crate::schema::{self, Migration};

/// True when the ledger holds nothing: no account, batch or lease (`ledger copy`'s target).
pub(crate) const EMPTY_SQL: &str = "SELECT NOT EXISTS (SELECT 1 FROM paybatch_accounts)
    AND NOT EXISTS (SELECT 1 FROM paybatch_batches)
    AND NOT EXISTS (SELECT 1 FROM paybatch_leases)";

/// The shared ledger on PostgreSQL. Cheap to clone (one pool). See the crate docs.
#[derive(Clone)]
pub struct PgLedger {
    pub(crate) pool: Pool,
    pub(crate) options: PgOptions,
    /// The idempotency index, per account: loaded from the database on first use and
    /// forgotten whenever this process takes the account's lease (another process may have
    /// bound references meanwhile); kept up to date by this process's writes under its lease.
    pub(crate) index: Arc<ReferenceIndex>,
    /// The accounts whose lease this process took (and did not release): only their part of
    /// [`PgLedger::index`] is kept; a read about another account loads a private copy.
    /// With when the lease surely ends by this process's clock (its request was sent before
    /// the database set the expiry).
    pub(crate) held: Arc<std::sync::Mutex<HashMap<AccountId, std::time::Instant>>>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("database", &self.options.describe())
            .finish_non_exhaustive()
    }
}

/// The TLS connector: rustls with the system's root certificates (aws-lc-rs, the provider the
/// rest of paybatch uses). Used when the URL's `sslmode` asks for TLS (`prefer`, the
/// default, uses it when the server offers it; `require` insists; `disable` never does).
fn tls(ca_file: Option<&std::path::Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A certificate the store cannot take is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let bad = |e: &dyn std::fmt::Display| config(format!("CA file {}: {e}", path.display()));
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad(&"no certificate in it"));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PgLedger {
    /// Connects (a pool of up to `options.pool_size` connections) and brings the schema up to
    /// date ([`crate::schema::MIGRATIONS`], in a transaction per step).
    ///
    /// # Errors
    /// Backend errors (unreachable database, refused login, a failed migration);
    /// [`Error::UnsupportedFormat`] for a schema newer than this code.
    pub async fn connect(options: PgOptions) -> Result<PgLedger> {
        let ledger = PgLedger::connect_without_migrating(options).await?;
        ledger.migrate().await?;
        Ok(ledger)
    }

    /// Connects without touching the schema (to show what [`PgLedger::migrate`] would do).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn connect_without_migrating(options: PgOptions) -> Result<PgLedger> {
        let manager = Manager::from_config(
            options.config.clone(),
            tls(options.ca_file.as_deref())?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.retry_for))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| config(format!("building the connection pool: {e}")))?;
        let ledger = PgLedger {
            pool,
            options,
            index: Arc::new(ReferenceIndex::new()),
            held: Arc::default(),
        };
        // Fail now, not at the first write, when the database cannot be reached.
        ledger
            .retry("connecting", |_| async {
                let client = ledger.client("connecting").await?;
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(db("connecting"))?;
                Ok(())
            })
            .await?;
        Ok(ledger)
    }

    /// The options it was opened with.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// The schema steps not applied yet.
    ///
    /// # Errors
    /// Backend errors; [`Error::UnsupportedFormat`].
    pub async fn pending_migrations(&self) -> Result<Vec<Migration>> {
        let client = self.client("reading the schema").await?;
        schema::pending(&client, &self.options.describe()).await
    }

    /// The schema version of the database (0: none).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn schema_version(&self) -> Result<i32> {
        let client = self.client("reading the schema").await?;
        schema::current_version(&client).await
    }

    /// Applies the pending schema steps; returns them.
    ///
    /// # Errors
    /// Backend errors; [`Error::UnsupportedFormat`].
    pub async fn migrate(&self) -> Result<Vec<Migration>> {
        let mut client = self.client("migrating the schema").await?;
        schema::migrate(&mut client, &self.options.describe()).await
    }

    /// Whether this process's connections to the database are encrypted (TLS).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn tls_in_use(&self) -> Result<bool> {
        let client = self.client("reading the connection").await?;
        let row = client
            .query_one(
                "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .await
            .map_err(db("reading the connection"))?;
        Ok(row.get(0))
    }

    /// Whether the ledger holds nothing yet (no account, batch or lease): what `ledger copy`
    /// requires of its target.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn is_empty(&self) -> Result<bool> {
        let client = self.client("reading the ledger").await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(EMPTY_SQL)
                    .await
                    .map_err(db("preparing a statement"))?,
                &[],
            )
            .await
            .map_err(db("reading the ledger"))?;
        Ok(row.get(0))
    }

    pub(crate) async fn client(&self, context: &'static str) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool(context))
    }

    /// Runs `f` until it succeeds, fails for good, or the database stayed unreachable for
    /// `retry_for`. `f` gets the attempt number (0 first): a write retried after a transient
    /// failure checks first whether its earlier attempt committed.
    pub(crate) async fn retry<T, F, Fut>(&self, context: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.options.retry_for;
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            match f(attempt).await {
                Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, attempt, "{context}: the database is unreachable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Loads the account's part of the shared index from the database if it is not loaded.
    pub(crate) async fn ensure_index<C: GenericClient + Sync>(
        &self,
        client: &C,
        account: &AccountId,
    ) -> Result<()> {
        if self.index.is_loaded(account) {
            return Ok(());
        }
        self.load_index(client, account, &self.index).await
    }

    /// Whether this process holds the account's lease, as far as its own clock can tell
    /// (taken or renewed, not released, not surely expired).
    pub(crate) fn holds(&self, account: &AccountId) -> bool {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(account)
            .is_some_and(|until| std::time::Instant::now() < *until)
    }

    /// Records the lease as held until `until` (by this process's clock), or not held.
    pub(crate) fn set_held(&self, account: &AccountId, until: Option<std::time::Instant>) {
        let mut map = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match until {
            Some(t) => {
                map.insert(account.clone(), t);
            }
            None => {
                map.remove(account);
            }
        }
    }

    /// Loads the account into `index` from the database.
    pub(crate) async fn load_index<C: GenericClient + Sync>(
        &self,
        client: &C,
        account: &AccountId,
        index: &ReferenceIndex,
    ) -> Result<()> {
        let rows = client
            .query(&client.prepare_cached("SELECT seq, record::text, refs FROM paybatch_batches WHERE account = $1 ORDER BY seq").await.map_err(db("preparing a statement"))?,
                &[&account.as_str()],
            )
            .await
            .map_err(db("loading the reference index"))?;
        let mut records = Vec::with_capacity(rows.len());
        let mut blobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = record_of(row, 1)?;
            let refs: Vec<u8> = row.get(2);
            let seq = record.sequence;
            let blob = backend::decode_refs(Bytes::from(refs), || {
                format!("batch {seq} of account {account}")
            })?;
            records.push(record);
            blobs.push((seq, blob));
        }
        let mut outcomes: HashMap<SequenceNumber, Vec<u64>> = HashMap::new();
        for record in records.iter().filter(|r| r.is_rejected()) {
            let results = self.results_in(client, account, record.sequence).await?;
            outcomes.insert(record.sequence, results.indexes_with_outcome());
        }
        index.load(
            account,
            records.into_iter().map(Ok),
            |r| Ok(outcomes.remove(&r.sequence).unwrap_or_default()),
            blobs.into_iter().map(Ok),
        )
    }

    pub(crate) async fn results_in<C: GenericClient + Sync>(
        &self,
        client: &C,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<sequence_ledger::BatchResults> {
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT results FROM paybatch_batches WHERE account = $1 AND seq = $2",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[&account.as_str(), &i64::from(seq.get())],
            )
            .await
            .map_err(db("reading results"))?;
        match row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)) {
            Some(blob) => backend::decode_results(Bytes::from(blob), || {
                format!("batch {seq} of account {account}")
            }),
            None => Ok(sequence_ledger::BatchResults::default()),
        }
    }

    // --- leases -----------------------------------------------------------------------------

    pub(crate) async fn acquire(
        &self,
        account: &AccountId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<LeaseAttempt> {
        let client = self.client("acquiring a lease").await?;
        let sent = std::time::Instant::now();
        let granted = client
            .query_opt(
                &client
                    .prepare_cached(
                        "INSERT INTO paybatch_leases AS l
                    (account, owner_host, owner_pid, owner_id, epoch, expires_at, acquired_at)
                 VALUES ($1, $2, $3, $4, 1, clock_timestamp() + $5 * interval '1 millisecond',
                         clock_timestamp())
                 ON CONFLICT (account) DO UPDATE SET
                    owner_host = excluded.owner_host, owner_pid = excluded.owner_pid,
                    owner_id = excluded.owner_id, epoch = l.epoch + 1,
                    expires_at = excluded.expires_at, acquired_at = excluded.acquired_at
                 WHERE l.expires_at <= clock_timestamp() OR l.owner_id = excluded.owner_id
                 RETURNING epoch, expires_at",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[
                    &account.as_str(),
                    &owner.host,
                    &i32::try_from(owner.pid).unwrap_or(i32::MAX),
                    &owner.id,
                    &millis(ttl),
                ],
            )
            .await
            .map_err(db("acquiring a lease"))?;
        if let Some(row) = granted {
            // Another process may have bound references since this one last looked.
            self.index.forget(account);
            self.set_held(account, Some(sent + ttl));
            return Ok(LeaseAttempt::Acquired(Lease {
                account: account.clone(),
                owner: owner.clone(),
                epoch: epoch_of(&row, 0)?,
                expires_at: row.get(1),
            }));
        }
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT owner_host, owner_pid, owner_id, epoch, expires_at
                   FROM paybatch_leases WHERE account = $1",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[&account.as_str()],
            )
            .await
            .map_err(db("reading a lease"))?
            .ok_or_else(|| corrupt(format!("lease of {account}"), "vanished"))?;
        Ok(LeaseAttempt::Held(lease_of(account.clone(), &row, 0)?))
    }

    pub(crate) async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let client = self.client("renewing a lease").await?;
        let sent = std::time::Instant::now();
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "UPDATE paybatch_leases
                    SET expires_at = clock_timestamp() + $4 * interval '1 millisecond'
                  WHERE account = $1 AND epoch = $2 AND owner_id = $3
                    AND expires_at > clock_timestamp()
                  RETURNING expires_at",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[
                    &lease.account.as_str(),
                    &epoch_param(lease.epoch),
                    &lease.owner.id,
                    &millis(ttl),
                ],
            )
            .await
            .map_err(db("renewing a lease"))?;
        match row {
            Some(row) => {
                self.set_held(&lease.account, Some(sent + ttl));
                Ok(Lease {
                    expires_at: row.get(0),
                    ..lease.clone()
                })
            }
            None => {
                self.set_held(&lease.account, None);
                Err(lost(lease))
            }
        }
    }

    pub(crate) async fn release(&self, lease: &Lease) -> Result<()> {
        let client = self.client("releasing a lease").await?;
        let released = client
            .execute(
                &client
                    .prepare_cached(
                        "UPDATE paybatch_leases SET expires_at = clock_timestamp()
                  WHERE account = $1 AND epoch = $2 AND owner_id = $3
                    AND expires_at > clock_timestamp()",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[
                    &lease.account.as_str(),
                    &epoch_param(lease.epoch),
                    &lease.owner.id,
                ],
            )
            .await
            .map_err(db("releasing a lease"))?;
        if released > 0 {
            self.set_held(&lease.account, None);
        }
        Ok(())
    }

    pub(crate) async fn list_leases(&self) -> Result<Vec<LeaseEntry>> {
        let client = self.client("reading leases").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT owner_host, owner_pid, owner_id, epoch, expires_at,
                        expires_at > clock_timestamp(), account
                   FROM paybatch_leases ORDER BY account COLLATE \"C\"",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[],
            )
            .await
            .map_err(db("reading leases"))?;
        rows.iter()
            .map(|row| {
                let account = account_of(row, 6)?;
                Ok(LeaseEntry {
                    lease: lease_of(account, row, 0)?,
                    live: row.get(5),
                })
            })
            .collect()
    }

    /// Inside a write's transaction: the caller's lease must be the account's live one. The
    /// row is locked `FOR SHARE` until the transaction ends, so a takeover (an `UPDATE` of the
    /// row) waits for this write to commit, and every write after the takeover fails here.
    pub(crate) async fn check_lease(tx: &Transaction<'_>, lease: &Lease) -> Result<()> {
        let row = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT 1 FROM paybatch_leases
                  WHERE account = $1 AND epoch = $2 AND owner_id = $3
                    AND expires_at > clock_timestamp()
                  FOR SHARE",
                )
                .await
                .map_err(db("preparing a statement"))?,
                &[
                    &lease.account.as_str(),
                    &epoch_param(lease.epoch),
                    &lease.owner.id,
                ],
            )
            .await
            .map_err(db("checking the lease"))?;
        match row {
            Some(_) => Ok(()),
            None => Err(lost(lease)),
        }
    }

    /// The account's numbers inside a write's transaction, its row locked (created empty
    /// when missing; a write that then fails rolls it back).
    pub(crate) async fn lock_account(
        tx: &Transaction<'_>,
        account: &AccountId,
    ) -> Result<AccountInfo> {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO paybatch_accounts (account) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(db("preparing a statement"))?,
            &[&account.as_str()],
        )
        .await
        .map_err(db("locking an account"))?;
        let row = tx
            .query_one(
                &tx.prepare_cached(
                    "SELECT high_water, floor, triggered FROM paybatch_accounts
                  WHERE account = $1 FOR UPDATE",
                )
                .await
                .map_err(db("preparing a statement"))?,
                &[&account.as_str()],
            )
            .await
            .map_err(db("locking an account"))?;
        info_of(account, &row)
    }
}

fn lost(lease: &Lease) -> Error {
    Error::LeaseLost {
        account: lease.account.clone(),
        epoch: lease.epoch,
    }
}

/// A duration in milliseconds, for `$n * interval '1 millisecond'`.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn epoch_param(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

fn epoch_of(row: &Row, col: usize) -> Result<u64> {
    let e: i64 = row.get(col);
    u64::try_from(e).map_err(|_| corrupt("a lease", format!("epoch {e}")))
}

/// A lease from `owner_host, owner_pid, owner_id, epoch, expires_at` starting at `col`.
fn lease_of(account: AccountId, row: &Row, col: usize) -> Result<Lease> {
    let pid: i32 = row.get(col + 1);
    Ok(Lease {
        owner: LeaseOwner {
            host: row.get(col),
            pid: u32::try_from(pid).unwrap_or(0),
            id: row.get(col + 2),
        },
        epoch: epoch_of(row, col + 3)?,
        expires_at: row.get::<_, SystemTime>(col + 4),
        account,
    })
}

pub(crate) fn account_of(row: &Row, col: usize) -> Result<AccountId> {
    let name: String = row.get(col);
    AccountId::new(name)
}

pub(crate) fn seq_param(seq: SequenceNumber) -> i64 {
    i64::from(seq.get())
}

fn seq_of(account: &AccountId, v: Option<i64>, what: &str) -> Result<Option<SequenceNumber>> {
    v.map(|n| {
        u32::try_from(n)
            .ok()
            .and_then(|n| SequenceNumber::new(n).ok())
            .ok_or_else(|| corrupt(format!("account {account}"), format!("{what} {n}")))
    })
    .transpose()
}

/// `high_water, floor, triggered` of an account row.
pub(crate) fn info_of(account: &AccountId, row: &Row) -> Result<AccountInfo> {
    Ok(AccountInfo {
        high_water: seq_of(account, row.get(0), "high water")?,
        floor: seq_of(account, row.get(1), "floor")?,
        triggered: seq_of(account, row.get(2), "triggered")?,
    })
}

/// A batch record from a `record::text` column.
pub(crate) fn record_of(row: &Row, col: usize) -> Result<BatchRecord> {
    let text: String = row.get(col);
    backend::decode_record(text.as_bytes(), || {
        "a batch record in paybatch_batches".to_string()
    })
}
