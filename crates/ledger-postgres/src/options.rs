//! How [`crate::PgLedger::connect`] reaches the database.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use kvp_format::mask_url_password;
use sequence_ledger::Result;

use crate::error::config;

/// Where the ledger's database is and how to use it. Build with [`PgOptions::new`] from a
/// `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]` URL
/// (also the `key=value` form of libpq). The URL may hold the password: keep it out of
/// committed files (`[ledger] url_env` names the variable that holds the URL). `Debug` and
/// [`PgOptions::describe`] never show it.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgOptions {
    pub(crate) config: tokio_postgres::Config,
    /// Connections kept open at most (default 16).
    pub pool_size: usize,
    /// How long a call keeps retrying while the database is unreachable or restarting
    /// (default 60 s); a write whose commit was cut off is checked before it is retried, so
    /// it is applied once.
    pub retry_for: Duration,
    /// How long one connection attempt may take (default 10 s).
    pub connect_timeout: Duration,
    /// A PEM file of certificate authorities to trust for the server's certificate, beside
    /// the system's (a private CA). `None`: the system's only.
    pub ca_file: Option<std::path::PathBuf>,
}

impl PgOptions {
    /// Options for the database at `url`.
    ///
    /// # Errors
    /// [`sequence_ledger::Error::Backend`] for a URL that is not a PostgreSQL URL or names
    /// no host (the message never quotes the password).
    pub fn new(url: &str) -> Result<PgOptions> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            config(format!(
                "not a PostgreSQL URL ({}): {e}",
                mask_url_password(url)
            ))
        })?;
        if config.get_hosts().is_empty() {
            return Err(self::config(format!(
                "the URL {} names no host",
                mask_url_password(url)
            )));
        }
        if config.get_application_name().is_none() {
            config.application_name("paybatch");
        }
        // A process stopped inside a transaction (SIGSTOP, a frozen VM) would keep its row
        // locks — the lease row's `FOR SHARE` among them — and make another process's takeover
        // wait inside its query for as long as it stays stopped. The server ends such a
        // session after this long, which rolls its transaction back and frees the locks
        // (paybatch's transactions are short and never wait on anything outside the database).
        if config.get_options().is_none() {
            config.options("-c idle_in_transaction_session_timeout=10s");
        }
        let connect_timeout = Duration::from_secs(10);
        config.connect_timeout(connect_timeout);
        Ok(PgOptions {
            config,
            pool_size: 16,
            retry_for: Duration::from_secs(60),
            connect_timeout,
            ca_file: None,
        })
    }

    /// These options with at most `n` open connections.
    #[must_use]
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// These options retrying an unreachable database for `d`.
    #[must_use]
    pub fn retry_for(mut self, d: Duration) -> Self {
        self.retry_for = d;
        self
    }

    /// These options trusting the certificate authorities in the PEM file `path` too.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// `host:port/database` (never the user's password), for messages.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "?".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self.config.get_dbname().unwrap_or("postgres");
        format!("{host}:{port}/{db}")
    }

    /// The database name the URL names (`postgres` when none).
    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// These options on another database of the same server (tests, `ledger copy`).
    #[must_use]
    pub fn with_database(mut self, name: &str) -> Self {
        self.config.dbname(name);
        self
    }
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("database", &self.describe())
            .field("user", &self.config.get_user())
            .field("password", &self.has_password().then_some("[REDACTED]"))
            .field("pool_size", &self.pool_size)
            .field("retry_for", &self.retry_for)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvp_format::url_has_password;

    #[test]
    fn passwords_never_show() {
        let o = PgOptions::new("postgres://pb:s3cret@db.example:6543/ledger").unwrap();
        assert!(o.has_password());
        assert_eq!(o.describe(), "db.example:6543/ledger");
        assert!(!format!("{o:?}").contains("s3cret"));
        assert_eq!(
            mask_url_password("postgres://pb:s3cret@db.example/ledger"),
            "postgres://pb:***@db.example/ledger"
        );
        assert!(url_has_password("postgres://pb:s3cret@db.example/ledger"));
        assert!(url_has_password(
            "postgres://pb@db.example/ledger?password=x"
        ));
        assert!(!url_has_password("postgres://pb@db.example/ledger"));
        assert!(url_has_password("host=db user=pb password=x"));
        let e = PgOptions::new("postgres://pb:s3cret@/ledger?port=notaport").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        // A password with an unescaped `/` (base64) connects as written, so it is masked whole,
        // in the options and in the error of a URL that does not parse.
        let o = PgOptions::new("postgres://pb:Zx9/kQ@db.example:5432/ledger").unwrap();
        assert!(o.has_password());
        assert!(!format!("{o:?}").contains("Zx9"));
        let e = PgOptions::new("postgres://pb:ab/cd@db:54x2/l").unwrap_err();
        assert!(!e.to_string().contains("ab/cd"), "{e}");
        let e = PgOptions::new("host=db password = 's3 cret' port=x").unwrap_err();
        assert!(!e.to_string().contains("s3"), "{e}");
    }
}
