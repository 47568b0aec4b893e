//! What an account's storage backend is opened with: the per-account S3 and SFTP keys of
//! `[accounts.NAME]`, mapped onto [`storage_backends::BackendOptions`].

use std::fmt::Write as _;

use storage_backends::{BackendOptions, HostKeyCheck, Scheme, SecretString, SftpAuth};

use super::AccountSettings;
use crate::error::{Error, Result};

/// Checks the S3 keys of account `name` (its location has scheme `scheme`): they belong to
/// `s3://` locations only, and the two credential variables come together.
pub(super) fn check_account(a: &AccountSettings, name: &str, scheme: Scheme) -> Result<()> {
    let key = |k: &str| format!("accounts.{name}.{k}");
    let s3_keys = [
        ("s3_endpoint", a.s3_endpoint.is_some()),
        ("s3_region", a.s3_region.is_some()),
        ("s3_allow_http", a.s3_allow_http.is_some()),
        (
            "s3_virtual_hosted_style",
            a.s3_virtual_hosted_style.is_some(),
        ),
        ("s3_conditional_put", a.s3_conditional_put.is_some()),
        ("s3_access_key_id_env", a.s3_access_key_id_env.is_some()),
        (
            "s3_secret_access_key_env",
            a.s3_secret_access_key_env.is_some(),
        ),
    ];
    if scheme != Scheme::S3
        && let Some((k, _)) = s3_keys.iter().find(|(_, set)| *set)
    {
        return Err(Error::setting(
            key(k),
            format!(
                "account {name} has a {} location; s3_* keys apply to s3:// locations only",
                scheme.as_str()
            ),
        ));
    }
    if a.s3_access_key_id_env.is_some() != a.s3_secret_access_key_env.is_some() {
        return Err(Error::setting(
            key("s3_access_key_id_env"),
            format!(
                "account {name}: set s3_access_key_id_env and s3_secret_access_key_env together"
            ),
        ));
    }
    Ok(())
}

/// Fills `options` from the account's keys; `env` reads an environment variable (the S3
/// credentials are read now, so a missing variable is reported naming the key and account).
pub(super) fn apply_account(
    a: &AccountSettings,
    account: &str,
    options: &mut BackendOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    if let Some(path) = &a.ssh_key {
        options.sftp.auth = Some(SftpAuth::KeyFile {
            path: path.clone(),
            passphrase_env: None,
        });
    } else if let Some(var) = &a.ssh_password_env {
        options.sftp.auth = Some(SftpAuth::PasswordEnv { var: var.clone() });
    }
    if let Some(path) = &a.known_hosts {
        options.sftp.host_key = Some(HostKeyCheck::KnownHosts(path.clone()));
    } else if let Some(fp) = &a.host_key_sha256 {
        options.sftp.host_key = Some(HostKeyCheck::Fingerprint(fp.clone()));
    }
    let s3 = &mut options.s3;
    if a.s3_endpoint.is_some() {
        s3.endpoint.clone_from(&a.s3_endpoint);
    }
    if a.s3_region.is_some() {
        s3.region.clone_from(&a.s3_region);
    }
    s3.allow_http = a.s3_allow_http.or(s3.allow_http);
    s3.virtual_hosted_style = a.s3_virtual_hosted_style.or(s3.virtual_hosted_style);
    s3.conditional_put = a.s3_conditional_put.or(s3.conditional_put);
    let read = |what: &str, var: &str| {
        env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
            Error::setting(
                format!("accounts.{account}.{what}"),
                format!("environment variable {var} is not set (account {account})"),
            )
        })
    };
    if let Some(var) = &a.s3_access_key_id_env {
        s3.access_key_id = Some(read("s3_access_key_id_env", var)?);
    }
    if let Some(var) = &a.s3_secret_access_key_env {
        s3.secret_access_key = Some(SecretString::new(read("s3_secret_access_key_env", var)?));
    }
    Ok(())
}

/// The account's S3 keys as TOML lines for `config show` (credentials appear only as the
/// names of their variables).
pub(super) fn masked_account(a: &AccountSettings, s: &mut String) {
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    for (key, v) in [
        ("s3_endpoint", &a.s3_endpoint),
        ("s3_region", &a.s3_region),
        ("s3_access_key_id_env", &a.s3_access_key_id_env),
        ("s3_secret_access_key_env", &a.s3_secret_access_key_env),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "{key} = {}", q(v));
        }
    }
    for (key, v) in [
        ("s3_allow_http", a.s3_allow_http),
        ("s3_virtual_hosted_style", a.s3_virtual_hosted_style),
        ("s3_conditional_put", a.s3_conditional_put),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "{key} = {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::*;

    const S3: &str = "[accounts.bucket]\nlocation = \"s3://pay-drop/acme\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\n";

    fn env(var: &str) -> Option<String> {
        match var {
            "ACME_S3_ID" => Some("AKIDEXAMPLE".to_owned()),
            "ACME_S3_SECRET" => Some("s3-secret-value-42".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn options(extra: &str) -> Result<BackendOptions> {
        let s = Settings::from_toml(&format!("{S3}{extra}"))?;
        let a = s.account("bucket")?;
        let mut o = BackendOptions::default();
        apply_account(a, "bucket", &mut o, &env)?;
        Ok(o)
    }

    #[test]
    fn s3_keys_map_onto_s3_options() {
        let o = options(
            "s3_endpoint = \"http://127.0.0.1:9000\"\ns3_region = \"eu-west-1\"\ns3_allow_http = true\n\
             s3_virtual_hosted_style = false\ns3_conditional_put = false\n\
             s3_access_key_id_env = \"ACME_S3_ID\"\ns3_secret_access_key_env = \"ACME_S3_SECRET\"\n",
        )
        .unwrap();
        assert_eq!(o.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(o.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(o.s3.allow_http, Some(true));
        assert_eq!(o.s3.virtual_hosted_style, Some(false));
        assert_eq!(o.s3.conditional_put, Some(false));
        assert_eq!(o.s3.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        let secret = o.s3.secret_access_key.as_ref().unwrap();
        assert_eq!(secret.expose(), "s3-secret-value-42");
        assert!(!format!("{o:?}").contains("s3-secret-value-42"));
    }

    #[test]
    fn no_s3_keys_leave_the_aws_environment_in_charge() {
        let o = options("").unwrap();
        assert!(o.s3.endpoint.is_none() && o.s3.region.is_none() && o.s3.allow_http.is_none());
        assert!(o.s3.access_key_id.is_none() && o.s3.secret_access_key.is_none());
        assert!(o.s3.conditional_put.is_none());
    }

    #[test]
    fn bad_s3_keys_are_errors_naming_the_key() {
        let both = "s3_access_key_id_env = \"ACME_S3_ID\"\ns3_secret_access_key_env";
        for (extra, needle) in [
            ("s3_access_key_id_env = \"ACME_S3_ID\"\n", "together"),
            (&format!("{both} = \"UNSET\"\n"), "UNSET is not set"),
            (&format!("{both} = \"EMPTY\"\n"), "s3_secret_access_key_env"),
            (
                "s3_secret_access_key = \"inline\"\n",
                "s3_secret_access_key",
            ),
            ("s3_regoin = \"x\"\n", "s3_regoin"),
            ("s3_allow_http = \"perhaps\"\n", "s3_allow_http"),
        ] {
            let err = options(extra).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let local = "[accounts.disk]\nlocation = \"file:///srv/d\"\nbatch_key = \"b\"\nmerchant_key = \"m\"\ns3_region = \"x\"\n";
        let err = Settings::from_toml(local).unwrap_err().to_string();
        assert!(
            err.contains("accounts.disk.s3_region") && err.contains("file"),
            "{err}"
        );
    }

    #[test]
    fn config_show_names_s3_variables_and_round_trips() {
        let text = format!(
            "{S3}s3_endpoint = \"http://127.0.0.1:9000\"\ns3_allow_http = true\n\
             s3_access_key_id_env = \"ACME_S3_ID\"\ns3_secret_access_key_env = \"ACME_S3_SECRET\"\n"
        );
        let s = Settings::from_toml(&text).unwrap();
        let shown = s.to_masked_toml();
        for line in [
            "s3_endpoint = \"http://127.0.0.1:9000\"",
            "s3_allow_http = true",
            "s3_secret_access_key_env = \"ACME_S3_SECRET\"",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} in {shown}");
        }
        let again = Settings::from_toml(&shown).unwrap();
        let mut o = BackendOptions::default();
        apply_account(again.account("bucket").unwrap(), "bucket", &mut o, &env).unwrap();
        assert_eq!(o.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(o.s3.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
    }
}
