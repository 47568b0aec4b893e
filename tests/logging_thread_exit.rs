//! A `log` record emitted from a thread-local destructor (as sled does from crossbeam-epoch
//! when a worker thread exits) must not abort the process once the binary's logging is set up.
//! The test re-runs its own binary as a child, because an abort would take the harness down.
//! The binary's logging module is compiled into this test as it is (the binary has no library
//! to import it from).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[path = "../crates/cli/logging.rs"]
mod logging;

const CHILD: &str = "PAYBATCH_LOGGING_CHILD";

struct LogsOnDrop;

impl Drop for LogsOnDrop {
    fn drop(&mut self) {
        log::trace!(target: "sled::pagecache::iobuf", "deferred write finished");
    }
}

thread_local! {
    static GUARD: LogsOnDrop = const { LogsOnDrop };
}

fn child() {
    logging::init_logging("trace", logging::LogFormat::Json).unwrap();
    std::thread::spawn(|| {
        // The guard's destructor is registered first, the format buffer's (by the event)
        // after it, so the buffer is destroyed first when the thread exits, as with sled.
        GUARD.with(|_| {});
        tracing::info!("an event on this thread");
        log::info!(target: "russh::client", "a bridged record on this thread");
    })
    .join()
    .unwrap();
    println!("child finished");
}

#[test]
fn a_log_record_from_a_thread_local_destructor_does_not_abort() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_log_record_from_a_thread_local_destructor_does_not_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed ({:?}): {stderr}",
        out.status
    );
    assert!(stdout.contains("child finished"), "{stdout}");
    // Bridged `log` records of other crates still arrive, as JSON lines.
    assert!(
        stderr.contains("a bridged record on this thread"),
        "{stderr}"
    );
}
