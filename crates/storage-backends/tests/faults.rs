//! Fault tests against real servers: an SFTP server stopped and restarted in the middle of a
//! run of puts, wrong host keys, wrong credentials, an unreachable S3 endpoint. The restart
//! test runs its own sshd (via `tests/support/servers.sh sshd ...`) so the shared one other
//! tests use is never disturbed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use storage_backends::{
    Backend, BackendOptions, ErrorKind, HostKeyCheck, Location, RetryPolicy, SftpAuth, Target,
    open, test_env,
};

fn servers_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/servers.sh")
}

fn sh(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(servers_sh())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "servers.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The shared server's target plus the folder holding its keys.
fn sftp_target() -> Option<(test_env::TestTarget, PathBuf)> {
    let target = test_env::sftp().expect("SFTP test server required")?;
    let key = std::env::var(test_env::SFTP_KEY).unwrap();
    let ssh_dir = Path::new(&key).parent().unwrap().to_path_buf();
    Some((target, ssh_dir))
}

fn sftp_parts(loc: &Location) -> (String, String, u16, String) {
    match loc.target() {
        Target::Sftp {
            user,
            host,
            port,
            root,
        } => (user.clone(), host.clone(), *port, root.clone()),
        other => panic!("not sftp: {other:?}"),
    }
}

/// A known_hosts file holding `host_pub` (an OpenSSH public key file) for 127.0.0.1:`port`.
fn known_hosts_for(dir: &Path, port: u16, host_pub: &Path) -> PathBuf {
    let key = std::fs::read_to_string(host_pub).unwrap();
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    let file = dir.join(format!("known_hosts.{port}.{}", test_env::unique_name()));
    std::fs::write(&file, format!("[127.0.0.1]:{port} {}\n", key.join(" "))).unwrap();
    file
}

/// The log of the extra sshd `name` (servers.sh keeps it beside the keys' folder).
fn sshd_log(ssh_dir: &Path, name: &str) -> PathBuf {
    ssh_dir.parent().unwrap().join(format!("sshd.x-{name}.log"))
}

/// How many logins the sshd logged.
fn logins(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("Accepted publickey"))
        .count()
}

/// Stops the extra sshd when the test ends, even on failure.
struct ExtraSshd(String);

impl Drop for ExtraSshd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(servers_sh())
            .args(["sshd", "stop", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_restart_mid_run_loses_and_duplicates_nothing() {
    let Some((shared, ssh_dir)) = sftp_target() else {
        return;
    };
    let name = format!("fault-{}", std::process::id());
    let port: u16 = sh(&["sshd", "start", &name]).trim().parse().unwrap();
    let _guard = ExtraSshd(name.clone());

    let (user, _, _, root) = sftp_parts(&shared.location);
    let location = Location::parse(&format!("sftp://{user}@127.0.0.1:{port}{root}")).unwrap();
    let mut options = shared.options.clone();
    options.sftp.host_key = Some(HostKeyCheck::KnownHosts(known_hosts_for(
        &ssh_dir,
        port,
        &ssh_dir.join("host_ed25519_key.pub"),
    )));
    options.retry = RetryPolicy {
        max_attempts: 40,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        multiplier: 2.0,
    };
    options.connect_timeout = Duration::from_secs(5);
    options.operation_timeout = Duration::from_secs(5);
    let backend = open(&location, &options).await.unwrap();
    // A second account on the same server and login shares the one SSH connection.
    let other_account = open(&location.child("other-account").unwrap(), &options)
        .await
        .unwrap();
    other_account
        .put("Request/REQUEST_1.KVP", Bytes::from_static(b"b"))
        .await
        .unwrap();
    backend
        .put("probe", Bytes::from_static(b"a"))
        .await
        .unwrap();
    let log = sshd_log(&ssh_dir, &name);
    assert_eq!(logins(&log), 1, "two accounts, one SSH connection");

    const FILES: usize = 150;
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (backend, done) = (backend.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0..FILES {
                let data = Bytes::from(format!("xIndex={i}\n").repeat(100));
                backend
                    .put(&format!("Request/REQUEST_{i}.KVP"), data)
                    .await?;
                done.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<(), storage_backends::Error>(())
        })
    };
    while done.load(Ordering::SeqCst) < FILES / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sh(&["sshd", "stop", &name]);
    let stopped_at = done.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stalled_at = done.load(Ordering::SeqCst);
    sh(&["sshd", "start", &name, &port.to_string()]);
    writer
        .await
        .unwrap()
        .expect("the retry wrapper carries the run across the restart");
    assert!(
        stalled_at < FILES,
        "the server was down while puts were still due ({stopped_at}, {stalled_at})"
    );

    assert_eq!(logins(&log), 2, "exactly one reconnect after the restart");
    let listed = backend.list("Request").await.unwrap();
    assert_eq!(listed.len(), FILES, "nothing lost, nothing duplicated");
    for i in 0..FILES {
        let got = backend
            .get(&format!("Request/REQUEST_{i}.KVP"))
            .await
            .unwrap();
        assert_eq!(
            got,
            Bytes::from(format!("xIndex={i}\n").repeat(100)),
            "file {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_times_out_as_transient() {
    let Some((shared, ssh_dir)) = sftp_target() else {
        return;
    };
    let name = format!("hung-{}", std::process::id());
    let port: u16 = sh(&["sshd", "start", &name]).trim().parse().unwrap();
    let _guard = ExtraSshd(name.clone());
    let (user, _, _, root) = sftp_parts(&shared.location);
    let location = Location::parse(&format!("sftp://{user}@127.0.0.1:{port}{root}")).unwrap();
    let mut options = shared.options.clone();
    let host_pub = ssh_dir.join("host_ed25519_key.pub");
    options.sftp.host_key = Some(HostKeyCheck::KnownHosts(known_hosts_for(
        &ssh_dir, port, &host_pub,
    )));
    options.retry = RetryPolicy::none();
    options.connect_timeout = Duration::from_secs(2);
    options.operation_timeout = Duration::from_secs(2);
    let backend = open(&location, &options).await.unwrap();
    backend
        .put("before", Bytes::from_static(b"x"))
        .await
        .unwrap();

    sh(&["sshd", "pause", &name]);
    let guard = Duration::from_secs(60); // far above the 2 s limits: only a hang reaches it
    let err = tokio::time::timeout(guard, backend.get("before"))
        .await
        .expect("no hang")
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Transient,
        "an operation on a hung server: {err}"
    );
    // A new login (another key, so not the shared connection) hits the connect timeout.
    options.sftp.auth = Some(SftpAuth::KeyFile {
        path: ssh_dir.join("id_rsa"),
        passphrase_env: None,
    });
    let err = tokio::time::timeout(guard, open(&location, &options))
        .await
        .expect("no hang")
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Transient,
        "connecting to a hung server: {err}"
    );
    assert!(err.to_string().contains("longer than"), "{err}");
    sh(&["sshd", "resume", &name]);
}

#[tokio::test]
async fn wrong_or_unknown_host_key_is_refused_with_the_offered_fingerprint() {
    let Some((target, ssh_dir)) = sftp_target() else {
        return;
    };
    let (_, _, port, _) = sftp_parts(&target.location);
    let real_fp = ssh_keygen_fingerprint(&ssh_dir.join("host_ed25519_key.pub"));
    let other_fp = ssh_keygen_fingerprint(&ssh_dir.join("other_host_key.pub"));
    let changed = known_hosts_for(&ssh_dir, port, &ssh_dir.join("other_host_key.pub"));
    let unknown = known_hosts_for(
        &ssh_dir,
        port.wrapping_add(1),
        &ssh_dir.join("host_ed25519_key.pub"),
    );
    let cases = [
        (HostKeyCheck::KnownHosts(changed), "HOST KEY CHANGED"),
        (HostKeyCheck::KnownHosts(unknown), "unknown host key"),
        (HostKeyCheck::Fingerprint(other_fp), "host key mismatch"),
    ];
    for (check, want) in cases {
        let mut options = target.options.clone();
        options.sftp.host_key = Some(check.clone());
        let err = open(&target.location, &options).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{check:?}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(want) && msg.contains(&real_fp),
            "{check:?}: {msg}"
        );
    }
    // The fingerprint as `ssh-keygen -lf` prints it is accepted as a pin.
    let mut options = target.options.clone();
    options.sftp.host_key = Some(HostKeyCheck::Fingerprint(real_fp));
    let b = open(&target.location, &options).await.unwrap();
    b.put("pinned.txt", Bytes::from_static(b"ok"))
        .await
        .unwrap();
}

fn ssh_keygen_fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn wrong_credentials_are_permission_denied_not_a_hang() {
    let Some((target, ssh_dir)) = sftp_target() else {
        return;
    };
    let mut options = target.options.clone();
    options.sftp.auth = Some(SftpAuth::KeyFile {
        path: ssh_dir.join("wrong_id_ed25519"),
        passphrase_env: None,
    });
    let err = tokio::time::timeout(Duration::from_secs(30), open(&target.location, &options))
        .await
        .expect("a refused login answers, it does not hang")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("refused to log in user \"root\"") && msg.contains("wrong_id_ed25519"),
        "{msg}"
    );

    options.sftp.auth = Some(SftpAuth::KeyFile {
        path: ssh_dir.join("no-such-key"),
        passphrase_env: None,
    });
    let err = open(&target.location, &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("cannot load private key"), "{err}");
}

#[tokio::test]
async fn rsa_key_auth() {
    let Some((target, ssh_dir)) = sftp_target() else {
        return;
    };
    let mut options = target.options.clone();
    options.sftp.auth = Some(SftpAuth::KeyFile {
        path: ssh_dir.join("id_rsa"),
        passphrase_env: None,
    });
    let b = open(&target.location.child("rsa").unwrap(), &options)
        .await
        .unwrap();
    b.put("Request/REQUEST_1.KVP", Bytes::from_static(b"xIndex=0\n"))
        .await
        .unwrap();
    assert_eq!(b.list("Request").await.unwrap().len(), 1);
}

#[tokio::test]
async fn password_auth_from_an_environment_variable() {
    let Some((target, _)) = sftp_target() else {
        return;
    };
    // servers.sh exports these only when it runs as root (it gives the test user a fresh
    // password per start).
    const PASSWORD_VAR: &str = "PAYBATCH_TEST_SFTP_PASSWORD";
    let (Ok(url), Ok(password)) = (
        std::env::var("PAYBATCH_TEST_SFTP_PASSWORD_URL"),
        std::env::var(PASSWORD_VAR),
    ) else {
        assert!(
            !test_env::servers_required(),
            "password test user missing from the test env"
        );
        return;
    };
    let location = Location::parse(&url)
        .unwrap()
        .child(&test_env::unique_name())
        .unwrap();
    let mut options = target.options.clone();

    options.sftp.auth = Some(SftpAuth::PasswordEnv {
        var: PASSWORD_VAR.into(),
    });
    let b = open(&location, &options).await.unwrap();
    b.put("Request/REQUEST_1.KVP", Bytes::from_static(b"xIndex=0\n"))
        .await
        .unwrap();
    assert_eq!(
        b.get("Request/REQUEST_1.KVP").await.unwrap(),
        Bytes::from_static(b"xIndex=0\n")
    );

    // Any other set variable is a wrong password (tests do not set variables: edition 2024
    // makes that unsafe while other test threads read the environment).
    options.sftp.auth = Some(SftpAuth::PasswordEnv {
        var: test_env::SFTP_URL.into(),
    });
    let err = open(&location, &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("refused to log in"), "{err}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{options:?}")] {
        assert!(
            !shown.contains(&password),
            "the password never shows: {shown}"
        );
    }

    options.sftp.auth = Some(SftpAuth::PasswordEnv {
        var: "PAYBATCH_TEST_UNSET_VARIABLE".into(),
    });
    let err = open(&location, &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("PAYBATCH_TEST_UNSET_VARIABLE"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_s3_endpoint_is_transient() {
    let Some(target) = test_env::s3().expect("S3 test server required") else {
        return;
    };
    let mut options: BackendOptions = target.options.clone();
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    options.s3.endpoint = Some(format!("http://127.0.0.1:{port}"));
    options.retry = RetryPolicy::none();
    let b: Arc<dyn Backend> = open(&target.location, &options).await.unwrap();
    let err = b.get("Response/COMPLETE_1.KVP").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(
        err.location().ends_with("Response/COMPLETE_1.KVP"),
        "{}",
        err.location()
    );
}
