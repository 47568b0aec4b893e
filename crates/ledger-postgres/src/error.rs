//! PostgreSQL and pool errors as the ledger's [`Error::Backend`], classified transient or not.

use sequence_ledger::Error;

/// Whether a database error may go away by itself: the connection broke or was refused, the
/// server is shutting down or starting, or a serialization failure / deadlock (retrying the
/// transaction is the documented answer).
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if refused_by_tls(e) {
        return false;
    }
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

/// Whether TLS refused the server (its certificate, the handshake's terms): retrying will
/// not change that.
fn refused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// `e` and its causes, joined with ": " (the pool's and the driver's messages alone do not
/// say why a connection failed).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}

/// A database error while doing `context`.
pub(crate) fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::Backend {
        context: context.to_string(),
        message: match e.as_db_error() {
            Some(d) => format!("{} ({})", d.message(), d.code().code()),
            None => with_causes(&e),
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
            _ if refused_by_tls(&e) => false,
            PoolError::Timeout(_) => true,
            _ => false,
        };
        Error::Backend {
            context: context.to_string(),
            message: with_causes(&e),
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
