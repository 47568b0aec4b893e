//! Test targets for the three backends, from the variables `tests/support/servers.sh` writes to
//! `target/test-servers/env`. Every call gives a fresh, unique sub-folder, so tests can run in
//! parallel against the shared servers.
//!
//! When a server's variables are missing: with `PAYBATCH_REQUIRE_SERVERS=1` (set by `.ci/run`)
//! that is an error the test must turn into a failure; without it the functions print how to
//! start the servers and return `Ok(None)`, and the test returns early.
//!
//! ```no_run
//! # async fn t() -> storage_backends::Result<()> {
//! let Some(target) = storage_backends::test_env::sftp()? else { return Ok(()) };
//! let backend = storage_backends::open(&target.location, &target.options).await?;
//! # Ok(()) }
//! ```

use std::path::PathBuf;

use crate::error::{Error, ErrorKind, Result};
use crate::location::{Location, Scheme};
use crate::options::{BackendOptions, HostKeyCheck, SftpAuth};

/// `sftp://USER@127.0.0.1:PORT/ABS/BASE/DIR` of the test sshd.
pub const SFTP_URL: &str = "PAYBATCH_TEST_SFTP_URL";
/// Private key file for the test sshd's user.
pub const SFTP_KEY: &str = "PAYBATCH_TEST_SFTP_KEY";
/// known_hosts file holding the test sshd's host key as `[127.0.0.1]:PORT`.
pub const SFTP_KNOWN_HOSTS: &str = "PAYBATCH_TEST_SFTP_KNOWN_HOSTS";
/// `s3://BUCKET` on the test S3 server (the bucket exists); the endpoint and credentials are
/// the standard `AWS_*` variables.
pub const S3_URL: &str = "PAYBATCH_TEST_S3_URL";
/// Set to `1` in CI: a missing server is an error, never a skip.
pub const REQUIRE_SERVERS: &str = "PAYBATCH_REQUIRE_SERVERS";

/// How to start the servers, printed when they are missing.
pub const HOW_TO_START: &str = "bash tests/support/install.sh && bash tests/support/servers.sh \
                                start && source target/test-servers/env";

/// A location to test against, its options, and the guard of its temporary directory.
#[derive(Debug)]
pub struct TestTarget {
    /// A unique, empty sub-folder on the server (or in a temporary directory).
    pub location: Location,
    /// Options that connect to it (auth, host key, endpoint).
    pub options: BackendOptions,
    /// Keeps a local target's temporary directory alive; removed on drop.
    pub tempdir: Option<tempfile::TempDir>,
}

impl TestTarget {
    /// `(location, options)`, for callers that do not need the guard (remote targets).
    pub fn parts(&self) -> (Location, BackendOptions) {
        (self.location.clone(), self.options.clone())
    }
}

/// Whether `PAYBATCH_REQUIRE_SERVERS=1`.
pub fn servers_required() -> bool {
    std::env::var(REQUIRE_SERVERS).is_ok_and(|v| v == "1")
}

/// A local target in a new temporary directory.
///
/// # Errors
/// If the temporary directory cannot be created.
pub fn local() -> Result<TestTarget> {
    let dir = tempfile::Builder::new()
        .prefix("paybatch-test-")
        .tempdir()
        .map_err(|e| Error::from_io("file:///tmp", "create temporary directory", e))?;
    let location = Location::parse(&format!("file://{}/drop", dir.path().display()))?;
    Ok(TestTarget {
        location,
        options: BackendOptions::default(),
        tempdir: Some(dir),
    })
}

/// A unique folder on the test SFTP server, key auth and known_hosts from the environment.
///
/// # Errors
/// `Config` when the variables are missing and servers are required, or malformed.
pub fn sftp() -> Result<Option<TestTarget>> {
    let Some(vars) = vars("SFTP", &[SFTP_URL, SFTP_KEY, SFTP_KNOWN_HOSTS])? else {
        return Ok(None);
    };
    let base = Location::parse(&vars[0])?;
    if base.scheme() != Scheme::Sftp {
        return Err(Error::config(
            &vars[0],
            format!("{SFTP_URL} is not an sftp:// URL"),
        ));
    }
    let mut options = BackendOptions::default();
    options.sftp.auth = Some(SftpAuth::KeyFile {
        path: PathBuf::from(&vars[1]),
        passphrase_env: None,
    });
    options.sftp.host_key = Some(HostKeyCheck::KnownHosts(PathBuf::from(&vars[2])));
    Ok(Some(TestTarget {
        location: base.child(&unique_name())?,
        options,
        tempdir: None,
    }))
}

/// A unique prefix in the test bucket; endpoint and credentials from the `AWS_*` variables.
///
/// # Errors
/// `Config` when the variables are missing and servers are required, or malformed.
pub fn s3() -> Result<Option<TestTarget>> {
    let Some(vars) = vars("S3", &[S3_URL, "AWS_ENDPOINT_URL"])? else {
        return Ok(None);
    };
    let base = Location::parse(&vars[0])?;
    if base.scheme() != Scheme::S3 {
        return Err(Error::config(
            &vars[0],
            format!("{S3_URL} is not an s3:// URL"),
        ));
    }
    Ok(Some(TestTarget {
        location: base.child(&unique_name())?,
        options: BackendOptions::default(),
        tempdir: None,
    }))
}

/// A target by scheme: `local()` wrapped in `Some`, `sftp()` or `s3()`.
///
/// # Errors
/// As the function for that scheme.
pub fn target(scheme: Scheme) -> Result<Option<TestTarget>> {
    match scheme {
        Scheme::Local => local().map(Some),
        Scheme::Sftp => sftp(),
        Scheme::S3 => s3(),
    }
}

/// A folder name unique across processes and calls: `t-<pid>-<counter>-<random>`.
pub fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "t-{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

fn vars(server: &str, names: &[&str]) -> Result<Option<Vec<String>>> {
    let values: Vec<Option<String>> = names
        .iter()
        .map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        .collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return Ok(Some(values.into_iter().flatten().collect()));
    }
    let message = format!(
        "the {server} test server is not configured ({} unset); start it with: {HOW_TO_START}",
        missing.join(", ")
    );
    if servers_required() {
        return Err(Error::new(
            ErrorKind::Config,
            "test environment",
            message,
            None,
        ));
    }
    eprintln!("skipping: {message}");
    Ok(None)
}
