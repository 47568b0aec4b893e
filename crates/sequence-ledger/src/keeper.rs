//! [`LeaseKeeper`]: a held lease, renewed in the background until it is released or lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Lease, SequenceLedger};

/// Holds a [`Lease`] and renews it every third of its time to live on a tokio task. When a
/// renewal is refused ([`crate::Error::LeaseLost`]), or — on a shared ledger
/// ([`SequenceLedger::is_shared`]) — no renewal succeeded for a whole time to live (the
/// ledger unreachable: by the ledger's clock the lease may have expired), the lease is lost: [`LeaseKeeper::is_lost`] turns true and [`LeaseKeeper::lost`] returns. A
/// holder stops working on the account then; its writes would be refused anyway.
///
/// Dropping the keeper stops the renewals (the lease then expires on its own);
/// [`LeaseKeeper::release`] gives the account up at once.
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: Lease,
    ledger: Arc<dyn SequenceLedger>,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Starts renewing `lease` (just acquired, for `ttl`). Needs a tokio runtime.
    pub fn start(ledger: Arc<dyn SequenceLedger>, lease: Lease, ttl: Duration) -> LeaseKeeper {
        let (tx, lost) = watch::channel(false);
        let task = tokio::spawn(renew(ledger.clone(), lease.clone(), ttl, tx));
        LeaseKeeper {
            lease,
            ledger,
            lost,
            task,
        }
    }

    /// The lease, as granted: every write for the account takes it.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether the lease is lost (refused at renewal, or not renewed for a whole time to live).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Returns once the lease is lost (never while it is held).
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        // An error means the renewing task ended without losing the lease: wait for ever.
        if rx.wait_for(|lost| *lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops renewing and gives the account up (its lease expires now).
    ///
    /// # Errors
    /// Backend errors of the release (the lease then expires on its own).
    pub async fn release(self) -> crate::Result<()> {
        self.task.abort();
        self.ledger.release_lease(&self.lease).await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn renew(
    ledger: Arc<dyn SequenceLedger>,
    lease: Lease,
    ttl: Duration,
    lost: watch::Sender<bool>,
) {
    let every = (ttl / 3).max(Duration::from_millis(10));
    // Only a shared ledger can lose a lease to time alone (another process takes it once it
    // expired by the database's clock). A ledger only this process opens refuses a renewal
    // only when this process gave the lease to another owner; judging by our own (possibly
    // paused, in tests) clock would only invent losses.
    let timed = ledger.is_shared();
    // When the lease surely ends by the ledger's clock, judged from our own: the ledger set
    // its expiry after we sent the request.
    let mut valid_until = Instant::now() + ttl;
    loop {
        let next = if timed {
            (Instant::now() + every).min(valid_until)
        } else {
            Instant::now() + every
        };
        tokio::time::sleep_until(next).await;
        if timed && Instant::now() >= valid_until {
            tracing::warn!(account = %lease.account, epoch = lease.epoch, "lease not renewed in time: lost");
            let _ = lost.send(true);
            return;
        }
        let sent = Instant::now();
        match ledger.renew_lease(&lease, ttl).await {
            Ok(_) => valid_until = sent + ttl,
            Err(e) if e.is_transient() => {
                tracing::warn!(account = %lease.account, error = %e, "lease renewal failed; retrying");
            }
            Err(e) => {
                tracing::warn!(account = %lease.account, epoch = lease.epoch, error = %e, "lease lost");
                let _ = lost.send(true);
                return;
            }
        }
    }
}
