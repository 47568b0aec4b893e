//! Helpers for protocols reading their `[accounts.NAME]` tables: secrets given inline or as
//! the name of an environment variable, durations as text, masked display.

use std::time::Duration;

use kvp_format::Secret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serializer};

use crate::account::Env;
use crate::error::{Error, Result};

/// Deserializes an account's table into `T` (with `#[serde(deny_unknown_fields)]`, an unknown
/// key is named in the error). Values are read as leniently as the configuration crate reads
/// them (an environment override `12345` is a fine string).
///
/// # Errors
/// [`Error::Setting`] with the message naming the key.
pub fn from_table<T: DeserializeOwned>(account: &str, table: config::Value) -> Result<T> {
    table.try_deserialize().map_err(|e| Error::Setting {
        account: account.to_owned(),
        key: "*".to_owned(),
        message: e.to_string(),
    })
}

/// An account table written as TOML (`location = "..."` lines), as a factory takes it: for
/// programs that build one account in code, and for tests.
///
/// # Errors
/// [`Error::Setting`] for text that is not TOML.
pub fn table_from_toml(account: &str, text: &str) -> Result<config::Value> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<config::Map<String, config::Value>>())
        .map(config::Value::from)
        .map_err(|e| Error::Setting {
            account: account.to_owned(),
            key: "*".to_owned(),
            message: e.to_string(),
        })
}

/// Checks a secret given inline (`key`) or by variable (`key_env`): exactly one of them.
///
/// # Errors
/// [`Error::Setting`] naming `key` when both or neither are set.
pub fn check_secret(account: &str, key: &str, inline: bool, var: bool) -> Result<()> {
    let message = match (inline, var) {
        (true, true) => format!("set either {key} or {key}_env, not both"),
        (false, false) => format!("account {account} needs {key} or {key}_env"),
        _ => return Ok(()),
    };
    Err(Error::Setting {
        account: account.to_owned(),
        key: key.to_owned(),
        message,
    })
}

/// The secret `key` of `account`: inline, or read from `env` through the variable `var`.
///
/// # Errors
/// [`Error::Setting`] naming `{key}_env` when the variable is unset or empty, or `key` when
/// neither is given.
pub fn resolve_secret(
    account: &str,
    key: &str,
    inline: Option<&Secret<String>>,
    var: Option<&str>,
    env: &Env,
) -> Result<Secret<String>> {
    if let Some(secret) = inline {
        return Ok(secret.clone());
    }
    let Some(var) = var else {
        return Err(Error::Setting {
            account: account.to_owned(),
            key: key.to_owned(),
            message: format!("account {account} has no {key}"),
        });
    };
    match env.get(var) {
        Some(v) if !v.is_empty() => Ok(Secret::new(v.clone())),
        _ => Err(Error::Setting {
            account: account.to_owned(),
            key: format!("{key}_env"),
            message: format!(
                "environment variable {} is not set (account {account})",
                kvp_format::shown_env_name(var)
            ),
        }),
    }
}

/// `serialize_with` for an optional secret: `"[REDACTED]"` when set.
///
/// # Errors
/// The serializer's.
pub fn masked<S: Serializer>(value: &Option<Secret<String>>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str(kvp_format::REDACTED),
        None => s.serialize_none(),
    }
}

/// `deserialize_with` for a duration written as text (`"30s"`, `"2h"`).
///
/// # Errors
/// Text humantime cannot read.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e}")))
}

/// `deserialize_with` for an optional duration written as text.
///
/// # Errors
/// As [`duration`].
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// `serialize_with` for a duration: humantime's text (`"30s"`).
///
/// # Errors
/// The serializer's.
pub fn duration_text<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*value).to_string())
}

/// `serialize_with` for an optional duration.
///
/// # Errors
/// The serializer's.
pub fn opt_duration_text<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => duration_text(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_inline_or_from_the_given_environment() {
        let env: Env = [
            ("SET".to_owned(), "v".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]
        .into_iter()
        .collect();
        let inline = Secret::new("i".to_owned());
        let got = |i: Option<&Secret<String>>, v: Option<&str>| {
            resolve_secret("a", "batch_key", i, v, &env).map(|s| s.expose().clone())
        };
        assert_eq!(got(Some(&inline), None).unwrap(), "i");
        assert_eq!(got(None, Some("SET")).unwrap(), "v");
        for (var, needle) in [
            (Some("EMPTY"), "EMPTY is not set"),
            (Some("UNSET"), "UNSET is not set"),
            (None, "has no batch_key"),
        ] {
            let e = got(None, var).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        // The secret pasted where its variable's name belongs is not printed back.
        let e = got(None, Some("bk-8f3a.secret")).unwrap_err().to_string();
        assert!(!e.contains("bk-8f3a") && e.contains("not set"), "{e}");
        assert!(check_secret("a", "k", true, true).is_err());
        assert!(check_secret("a", "k", false, false).is_err());
        assert!(check_secret("a", "k", false, true).is_ok());
    }
}
