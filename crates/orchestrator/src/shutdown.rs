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

    /// Resolves once the signal fired (at once if it already did); never for
    /// [`Shutdown::never`].
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger was dropped without firing: then it never fires.
        if rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_resolves_once_the_signal_fires() {
        let (trigger, shutdown) = Shutdown::new();
        let waiting = tokio::spawn({
            let s = shutdown.clone();
            async move { s.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        trigger.trigger();
        waiting.await.unwrap();
        shutdown.wait().await; // already fired: at once
        let never = Shutdown::never();
        let r = tokio::time::timeout(Duration::from_millis(20), never.wait()).await;
        assert!(r.is_err(), "never fires");
    }
}
