//! Named kill points for crash tests.
//!
//! A crash test re-executes its own test binary as a child with
//! `PAYBATCH_CRASH_AT=<name>` (or `<name>#<n>`: the n-th time that point is reached, 1-based),
//! lets it run, and checks the invariants after the child died. Production code calls
//! [`crash_point`] at the interesting places; without the variable it is one environment lookup.
//!
//! How the process dies, honestly: `std::process::exit` runs no destructors either, but it is a
//! clean exit (stdio flushed, exit code 0-ish); `abort` raises SIGABRT. A real `kill -9` is what
//! the ledger must survive, and the workspace forbids `unsafe` (so no `libc::kill`), so the
//! point runs the system's `kill -s KILL <own pid>` and waits: the kernel delivers SIGKILL to
//! every thread while we sleep, and nothing of ours runs after the point. Only if `kill` cannot
//! be run at all does it fall back to `std::process::abort()` (equally abrupt for the ledger:
//! no destructor, no flush), and it says so on stderr.

use std::sync::Mutex;
use std::time::Duration;

/// The environment variable read by [`crash_point`].
pub const CRASH_ENV: &str = "PAYBATCH_CRASH_AT";

/// Names of the kill points inside the ledger, in the order a batch reaches them.
pub const LEDGER_CRASH_POINTS: &[&str] = &[
    "reserve.after_write",
    "reserve.after_flush",
    "transition.after_write",
    "transition.after_flush",
    "results.after_write",
    "results.after_flush",
    "floor.after_write",
    "floor.after_flush",
    "deferred.after_write",
    "prune.after_write",
    "prune.after_flush",
];

/// Kill points inside the migration of an older ledger on open, in order.
pub const MIGRATION_CRASH_POINTS: &[&str] = &[
    "migrate.after_write",
    "migrate.after_version",
    "migrate.after_drop",
];

static HITS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Kills this process with SIGKILL if `PAYBATCH_CRASH_AT` names this point (see the module
/// docs). Returns immediately otherwise. Public for the crash tests of other crates.
#[doc(hidden)]
pub fn crash_point(name: &str) {
    let Some(target) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let Some(target) = target.to_str() else {
        return;
    };
    let (point, nth) = match target.split_once('#') {
        Some((p, n)) => (p, n.parse::<u64>().unwrap_or(1)),
        None => (target, 1),
    };
    if point != name {
        return;
    }
    let hit = {
        let mut hits = HITS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match hits.iter_mut().find(|(n, _)| n == name) {
            Some((_, count)) => {
                *count += 1;
                *count
            }
            None => {
                hits.push((name.to_string(), 1));
                1
            }
        }
    };
    if hit == nth {
        kill_self(name);
    }
}

fn kill_self(name: &str) -> ! {
    let pid = std::process::id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-s", "KILL", &pid])
        .status()
        .is_ok_and(|s| s.success());
    if sent {
        // SIGKILL is pending or already being delivered; it cannot be caught.
        std::thread::sleep(Duration::from_secs(30));
    }
    eprintln!("crash point {name}: `kill -s KILL` did not kill us; aborting instead");
    std::process::abort()
}
