//! The shutdown signal a program passes into the engine: every account stops at its next safe
//! point (between steps; the ledger has what was done).

use std::time::Duration;

use tokio::sync::watch;

use crate::error::{Error, Result};

/// The shutdown signal passed into the driver: when it fires, every account stops at its next
/// safe point (between steps; the ledger has what was done) and `submit` returns
/// [`Error::Shutdown`]. Re-running resumes.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Asks every holder of the signal to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// A signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A signal that never fires.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive for ever so `changed()` never reports a closed channel.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Whether the signal fired.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.is_triggered() {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Runs `step` unless the signal fires first: then `step` is dropped at its current await
    /// and this returns [`Error::Shutdown`]. Only for steps that are safe to abandon midway
    /// ([`gateway_protocol::GatewayProtocol::trigger_is_cancel_safe`]).
    pub(crate) async fn until<T>(&self, step: impl Future<Output = Result<T>>) -> Result<T> {
        let mut rx = self.0.clone();
        tokio::select! {
            biased;
            out = step => out,
            _ = rx.wait_for(|v| *v) => Err(Error::Shutdown),
        }
    }

    /// Sleeps `d`, or returns [`Error::Shutdown`] as soon as the signal fires.
    pub(crate) async fn sleep(&self, d: Duration) -> Result<()> {
        self.until(async {
            tokio::time::sleep(d).await;
            self.check()
        })
        .await
    }
}
