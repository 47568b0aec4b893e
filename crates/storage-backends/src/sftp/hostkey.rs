//! Host-key verification for SFTP connections: against an OpenSSH `known_hosts` file or a
//! pinned SHA-256 fingerprint. There is no "accept anything" mode.

use std::path::Path;
use std::sync::{Arc, Mutex};

use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::options::HostKeyCheck;

/// Why a host key was refused, kept for the error message after the handshake failed.
pub(crate) type Rejection = Arc<Mutex<Option<String>>>;

/// The `russh` client handler: verifies the server's key and remembers why it refused one.
#[derive(Debug)]
pub(crate) struct Verifier {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) check: HostKeyCheck,
    pub(crate) rejection: Rejection,
}

/// `SHA256:base64` of a key, as `ssh-keygen -lf` prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn normalise_fingerprint(fp: &str) -> &str {
    let fp = fp.trim();
    fp.strip_prefix("SHA256:")
        .unwrap_or(fp)
        .trim_end_matches('=')
}

/// `host` or `[host]:port` as known_hosts writes it.
fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Decides on `key`; `Err(reason)` names the offered fingerprint and what was expected.
pub(crate) fn verify(
    host: &str,
    port: u16,
    check: &HostKeyCheck,
    key: &PublicKey,
) -> Result<(), String> {
    let offered = fingerprint(key);
    let algorithm = key.algorithm().to_string();
    let shown = host_pattern(host, port);
    match check {
        HostKeyCheck::Fingerprint(pinned) => {
            if normalise_fingerprint(pinned) == normalise_fingerprint(&offered) {
                Ok(())
            } else {
                Err(format!(
                    "host key mismatch for {shown}: the server offered {algorithm} {offered}, \
                     the pinned fingerprint is SHA256:{}",
                    normalise_fingerprint(pinned)
                ))
            }
        }
        HostKeyCheck::KnownHosts(path) => check_known_hosts(host, port, path, key)
            .map_err(|why| format!("{why}; the server {shown} offered {algorithm} {offered}")),
    }
}

fn check_known_hosts(host: &str, port: u16, path: &Path, key: &PublicKey) -> Result<(), String> {
    // russh treats an unreadable file as "no entry"; say what is really wrong.
    if let Err(e) = std::fs::metadata(path) {
        return Err(format!(
            "cannot read known_hosts file {}: {e}",
            path.display()
        ));
    }
    match russh::keys::check_known_hosts_path(host, port, key, path) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "unknown host key: {} has no {} key for {}",
            path.display(),
            key.algorithm(),
            host_pattern(host, port)
        )),
        Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
            "HOST KEY CHANGED: {} line {line} holds a different key for {} (possible \
             man-in-the-middle, or the server was reinstalled)",
            path.display(),
            host_pattern(host, port)
        )),
        Err(e) => Err(format!(
            "cannot check known_hosts file {}: {e}",
            path.display()
        )),
    }
}

impl russh::client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = key.public_key();
        match verify(&self.host, self.port, &self.check, &key) {
            Ok(()) => Ok(true),
            Err(reason) => {
                tracing::error!(host = %self.host, port = self.port, "{reason}");
                if let Ok(mut slot) = self.rejection.lock() {
                    *slot = Some(reason);
                }
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINqyB0i6NxRJBrQhWnWGY7MKRhOko2sU+3TGeLkSKlS6";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL3gnBYwe5iU50ftPRLlFMxZ7dNiY4KSxFFIsCwAKXO5";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn fingerprint_pinning() {
        let a = key(KEY_A);
        let fp = fingerprint(&a);
        assert!(fp.starts_with("SHA256:"), "{fp}");
        let bare = fp.trim_start_matches("SHA256:").to_owned();
        let cases = [
            (fp.clone(), true),
            (bare, true),
            (fingerprint(&key(KEY_B)), false),
        ];
        for (pinned, ok) in cases {
            let r = verify("h", 22, &HostKeyCheck::Fingerprint(pinned.clone()), &a);
            assert_eq!(r.is_ok(), ok, "{pinned}: {r:?}");
            if let Err(msg) = r {
                assert!(msg.contains(&fp), "names the offered fingerprint: {msg}");
            }
        }
    }

    #[test]
    fn known_hosts_cases() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(
            &file,
            format!("[127.0.0.1]:2222 {KEY_A}\nother.example {KEY_B}\n"),
        )
        .unwrap();
        let check = HostKeyCheck::KnownHosts(file.clone());
        let a = key(KEY_A);
        let b = key(KEY_B);
        assert!(verify("127.0.0.1", 2222, &check, &a).is_ok());
        let changed = verify("127.0.0.1", 2222, &check, &b).unwrap_err();
        assert!(
            changed.contains("HOST KEY CHANGED") && changed.contains(&fingerprint(&b)),
            "{changed}"
        );
        let unknown = verify("127.0.0.1", 2223, &check, &a).unwrap_err();
        assert!(
            unknown.contains("unknown host key") && unknown.contains("[127.0.0.1]:2223"),
            "{unknown}"
        );
        let missing = HostKeyCheck::KnownHosts(dir.path().join("nope"));
        let err = verify("127.0.0.1", 2222, &missing, &a).unwrap_err();
        assert!(err.contains("cannot read known_hosts"), "{err}");
    }
}
