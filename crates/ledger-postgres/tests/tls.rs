//! TLS to the database (rustls): the test server is switched to `ssl = on` with a certificate
//! from a private CA made here; a ledger that trusts that CA connects encrypted, one that does
//! not is refused. Alone in its test binary: it changes the server's settings (and restores
//! them) for everyone using it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ledger_postgres::test_support::{fresh_database_url, server_url, sql};
use ledger_postgres::{PgLedger, PgOptions};

/// The cluster's directory (servers.sh keeps it in `pg.dir`), where the server can read the
/// files we write for it.
fn cluster_dir() -> Option<PathBuf> {
    let state = std::env::var("PAYBATCH_TEST_SERVERS_DIR").ok()?;
    let dir = std::fs::read_to_string(Path::new(&state).join("pg.dir")).ok()?;
    Some(PathBuf::from(dir.trim()))
}

fn postgres_uid() -> u32 {
    let out = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Restores the server's TLS settings when dropped (also when the test fails).
struct Restore(tokio_postgres::Client);

impl Restore {
    async fn undo(&self) {
        // One statement at a time: ALTER SYSTEM refuses an (implicit) transaction block.
        for stmt in [
            "ALTER SYSTEM RESET ssl",
            "ALTER SYSTEM RESET ssl_cert_file",
            "ALTER SYSTEM RESET ssl_key_file",
            "SELECT pg_reload_conf()",
        ] {
            self.0.batch_execute(stmt).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let Some(url) = server_url("tls_with_a_private_ca") else {
        return;
    };
    let Some(dir) = cluster_dir() else {
        eprintln!("skipped: the cluster's directory is unknown (servers.sh writes pg.dir)");
        return;
    };
    // A private CA and a server certificate for 127.0.0.1 signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let (crt, key) = (dir.join("test-server.crt"), dir.join("test-server.key"));
    std::fs::write(&crt, server_cert.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    for f in [&crt, &key] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(f, Some(postgres_uid()), None).unwrap();
    }
    let local = tempfile::tempdir().unwrap();
    let ca_file = local.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();

    let db_url = fresh_database_url(&url, "tls").await;
    let admin = Restore(sql(&PgOptions::new(&url).unwrap()).await);
    for stmt in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", crt.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        admin.0.batch_execute(&stmt).await.unwrap();
    }
    let sep = if db_url.contains('?') { '&' } else { '?' };
    let require = format!("{db_url}{sep}sslmode=require");
    let ca = ca_file.clone();
    let result = async move {
        let ca_file = ca;
        // Trusting the private CA: connected, encrypted.
        let options = PgOptions::new(&require).unwrap().ca_file(&ca_file);
        let ledger = PgLedger::connect(options).await.unwrap();
        assert!(
            ledger.tls_in_use().await.unwrap(),
            "the connection is encrypted"
        );
        // Without it the server's certificate is refused: no connection, no fallback.
        let untrusted = PgOptions::new(&require)
            .unwrap()
            .retry_for(std::time::Duration::from_millis(200));
        let err = PgLedger::connect(untrusted).await.unwrap_err();
        assert!(!err.is_transient(), "a refused certificate is final: {err}");
        assert!(err.to_string().contains("certificate"), "{err}");
        // Plain connections still work where the URL asks for none.
        let plain = PgOptions::new(&format!("{db_url}{sep}sslmode=disable")).unwrap();
        let ledger = PgLedger::connect(plain).await.unwrap();
        assert!(!ledger.tls_in_use().await.unwrap());
    };
    // Restore the server whatever happened.
    let outcome = tokio::spawn(result).await;
    admin.undo().await;
    outcome.unwrap();
}
