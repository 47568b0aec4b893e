//! Time as the engine reads it: wall-clock milliseconds (the ledger stamps batches with them,
//! and a poll deadline counts from the stamp, so a restart does not extend it) that advance
//! with tokio's clock — so a test can pause time and advance it instead of waiting.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Milliseconds since the Unix epoch, read as the wall clock at creation plus tokio's
/// monotonic time since. In a program this is the wall clock (without its jumps); under
/// `tokio::time::pause()` it stands still until the test advances it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_ms: u64,
    base: Instant,
}

impl Clock {
    /// A clock anchored at the wall clock's now.
    pub(crate) fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            base_ms,
            base: Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn advances_with_tokio_time_only() {
        let clock = Clock::new();
        let start = clock.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            clock.now_ms(),
            start,
            "paused: the wall clock does not move it"
        );
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms(), start + 90_000);
    }
}
