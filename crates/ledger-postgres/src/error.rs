//! PostgreSQL and pool errors as the ledger's [`Error::Backend`], classified transient or not.

use sequence_ledger::Error;

/// Whether a database error may go away by itself: the connection broke or was refused, the
/// server is shutting down or starting, or a serialization failure / deadlock (retrying the
/// transaction is the documented answer).
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300"
            );
    }
    // No SQLSTATE: an I/O error, a timeout, a connection that could not be made.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || e.to_string().contains("connection")
        || e.to_string().contains("timed out")
}

/// A database error while doing `context`.
pub(crate) fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::Backend {
        context: context.to_string(),
        message: match e.as_db_error() {
            Some(d) => format!("{} ({})", d.message(), d.code().code()),
            None => e.to_string(),
        },
        transient: is_transient(&e),
        source: Some(Box::new(e)),
    }
}

/// A pool error (no connection could be had) while doing `context`.
pub(crate) fn pool(context: &'static str) -> impl FnOnce(deadpool_postgres::PoolError) -> Error {
    move |e| {
        use deadpool_postgres::PoolError;
        let transient = match &e {
            PoolError::Backend(b) => is_transient(b),
            PoolError::Timeout(_) => true,
            _ => false,
        };
        Error::Backend {
            context: context.to_string(),
            message: e.to_string(),
            transient,
            source: Some(Box::new(e)),
        }
    }
}

/// A value in the database this code cannot read.
pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

/// A setting or URL that cannot be used (never transient).
pub(crate) fn config(message: impl Into<String>) -> Error {
    Error::Backend {
        context: "configuring the PostgreSQL ledger".to_string(),
        message: message.into(),
        transient: false,
        source: None,
    }
}
