//! The warning ssh gives about a private key others can read, for a config file that holds a
//! secret value (`batch_key = "…"`, not `batch_key_env = "VAR"`).

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kvp_format::owner_only;

/// A config file that others may read while it holds secret values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharedSecrets {
    /// The file's permission bits.
    pub mode: u32,
    /// The dotted keys holding a secret value (`accounts.acme.batch_key`), sorted.
    pub keys: Vec<String>,
}

impl SharedSecrets {
    /// What to tell the operator: the file, its mode and the keys, never a value.
    pub fn message(&self, file: &Path) -> String {
        format!(
            "config file {} is readable by group or others (mode {:04o}) and holds credentials inline: {}; \
             make it owner-only (chmod 600) or name environment variables instead (`*_env` keys)",
            file.display(),
            self.mode,
            self.keys.join(", ")
        )
    }
}

/// `Some` when `file` holds secret values and its group or others have any permission on it.
/// A file that cannot be read or parsed gives `None` (loading it reports that).
pub(crate) fn shared_secrets(file: &Path, secret_keys: &[&str]) -> Option<SharedSecrets> {
    if !owner_only::is_shared(file).ok()? {
        return None;
    }
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    let keys = secret_values_in(file, secret_keys);
    (!keys.is_empty()).then_some(SharedSecrets { mode, keys })
}

/// The dotted keys of `file` (TOML, read on its own) that hold a secret value.
fn secret_values_in(file: &Path, secret_keys: &[&str]) -> Vec<String> {
    let Ok(built) = config::Config::builder()
        .add_source(config::File::from(file).format(config::FileFormat::Toml))
        .build()
    else {
        return Vec::new();
    };
    let Ok(accounts) = built.get_table("accounts") else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for (name, table) in accounts {
        let Ok(table) = table.into_table() else {
            continue;
        };
        for key in table.keys() {
            if secret_keys.iter().any(|s| s.eq_ignore_ascii_case(key)) {
                keys.push(format!("accounts.{name}.{key}"));
            }
        }
    }
    keys.sort();
    keys
}

/// Logs [`SharedSecrets::message`] as a warning, once per file in this process.
pub(crate) fn warn_if_shared(file: &Path, secret_keys: &[&str]) {
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let Some(found) = shared_secrets(file, secret_keys) else {
        return;
    };
    let key = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let first = WARNED
        .lock()
        .map(|mut seen| seen.get_or_insert_with(HashSet::new).insert(key))
        .unwrap_or(true);
    if first {
        tracing::warn!("{}", found.message(file));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    #[test]
    fn a_readable_file_with_secret_values_is_found_and_named_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        };
        let inline = "[accounts.acme]\nlocation = \"file:///x\"\nbatch_key = \"bk-value\"\nmerchant_key_env = \"MK\"\n\
                      [accounts.shop]\nprotocol = \"aps\"\naccess_code = \"ac-value\"\nsha_request_phrase_env = \"IN\"\n";
        let by_env = "[accounts.acme]\nlocation = \"file:///x\"\nbatch_key_env = \"BK\"\nmerchant_key_env = \"MK\"\n";
        #[rustfmt::skip]
        let cases: &[(&str, u32, Option<&[&str]>)] = &[
            (inline, 0o644, Some(&["accounts.acme.batch_key", "accounts.shop.access_code"])),
            (inline, 0o640, Some(&["accounts.acme.batch_key", "accounts.shop.access_code"])),
            (inline, 0o604, Some(&["accounts.acme.batch_key", "accounts.shop.access_code"])),
            (inline, 0o600, None),
            (inline, 0o400, None),
            (by_env, 0o644, None),
            ("not toml [", 0o644, None),
        ];
        for (text, mode, want) in cases {
            write(text, *mode);
            let keys = [
                "batch_key",
                "merchant_key",
                "access_code",
                "sha_request_phrase",
            ];
            let got = shared_secrets(&path, &keys);
            let keys = got
                .as_ref()
                .map(|g| g.keys.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(keys.as_deref(), *want, "{mode:o} {text}");
            if let Some(g) = got {
                assert_eq!(g.mode, *mode);
                let message = g.message(&path);
                assert!(
                    message.contains(&format!("(mode 0{mode:o})"))
                        && message.contains("accounts.acme.batch_key")
                        && !message.contains("bk-value")
                        && !message.contains("ac-value"),
                    "{message}"
                );
            }
        }
    }
}
