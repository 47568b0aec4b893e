//! `paybatch store check`: the first thing an operator runs when an account's drop does not
//! work. Connects to the location, writes a probe file, reads it back, lists, checks that a
//! taken name is refused by put-if-absent, deletes the probe, and prints what worked.
//!
//! The location comes from a URL with the SFTP/S3 settings as flags (S3 also reads the usual
//! `AWS_*` variables), or from `--config C --account A` (the account's `location`, `ssh_key`,
//! `ssh_password_env`, `known_hosts`, `host_key_sha256`, as `submit` would use them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use serde::Serialize;
use storage_backends::{
    Backend, BackendOptions, ErrorKind, HostKeyCheck, LargeUpload, Location, PutIfAbsent, Replace,
    RetryPolicy, S3Options, Scheme, SftpAuth, open,
};

use super::{Global, common, usage_error};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Probe a drop: connect, write, read, list, refuse a taken name, delete; print what
    /// worked. Exit code 0 when every step passed, 1 when one failed.
    #[command(after_help = crate::EXIT_CODES)]
    Check(CheckArgs),
}

/// Arguments of `paybatch store check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The location: file:///abs/dir, s3://bucket/prefix or sftp://user@host:port/abs/dir.
    #[arg(
        value_name = "URL",
        required_unless_present = "account",
        conflicts_with = "account"
    )]
    pub url: Option<String>,
    /// Take the location and its settings from this account of the config file.
    #[arg(long, value_name = "NAME", requires = "config")]
    pub account: Option<String>,
    /// The config file (with --account).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SFTP: private key file (ed25519 or RSA, OpenSSH format).
    #[arg(long, value_name = "FILE", conflicts_with = "ssh_password_env")]
    pub ssh_key: Option<PathBuf>,
    /// SFTP: environment variable holding the private key's passphrase.
    #[arg(long, value_name = "VAR", requires = "ssh_key")]
    pub ssh_key_passphrase_env: Option<kvp_format::EnvName>,
    /// SFTP: environment variable holding the password (never the password itself).
    #[arg(long, value_name = "VAR")]
    pub ssh_password_env: Option<kvp_format::EnvName>,
    /// SFTP: OpenSSH known_hosts file to verify the server's host key against.
    #[arg(long, value_name = "FILE", conflicts_with = "host_key_sha256")]
    pub known_hosts: Option<PathBuf>,
    /// SFTP: pinned host key fingerprint, as `ssh-keygen -lf` prints it (SHA256:...).
    #[arg(long, value_name = "FINGERPRINT")]
    pub host_key_sha256: Option<String>,
    /// S3: endpoint URL (overrides AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3: region (overrides AWS_REGION).
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// S3: allow a plain http:// endpoint (overrides AWS_ALLOW_HTTP).
    #[arg(long)]
    pub s3_allow_http: bool,
    /// S3: the server does not support conditional puts (If-None-Match).
    #[arg(long)]
    pub s3_no_conditional_put: bool,
    /// Time allowed to connect and log in [default: `storage.connect_timeout` with --config,
    /// else 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Time allowed for each request [default: `storage.operation_timeout` with --config,
    /// else 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Retry transient failures this many times (0: report the first failure as it is).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: StoreCommand, global: &Global) -> Result<ExitCode> {
    match args {
        StoreCommand::Check(args) => check(args, global),
    }
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Step {
    step: &'static str,
    ok: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    location: String,
    passed: bool,
    steps: Vec<Step>,
}

fn settings(args: &CheckArgs) -> Result<(Location, BackendOptions)> {
    let (location, mut options) = match (&args.account, &args.url) {
        (Some(account), _) => {
            let settings = common::load_settings(args.config.as_deref())?;
            let configured = settings
                .account(account)
                .map_err(|e| usage_error(e.to_string()))?;
            let Some(sola) = configured
                .as_any()
                .downcast_ref::<sola_file_drop::SolaAccount>()
            else {
                return Err(usage_error(format!(
                    "account {account} is a {} account: it has no drop to check (protocol = \"{}\"; an APS account's batches go to its HTTPS batch API)",
                    configured.protocol(),
                    configured.protocol()
                )));
            };
            let options = sola
                .backend_options()
                .map_err(|e| usage_error(e.to_string()))?;
            (sola.location().clone(), options)
        }
        (None, Some(url)) => {
            let location = Location::parse(url).map_err(|e| usage_error(e.to_string()))?;
            (location, BackendOptions::default())
        }
        (None, None) => return Err(usage_error("give a location URL or --config and --account")),
    };
    if let Some(path) = &args.ssh_key {
        options.sftp.auth = Some(SftpAuth::KeyFile {
            path: path.clone(),
            passphrase_env: args.ssh_key_passphrase_env.clone(),
        });
    } else if let Some(var) = &args.ssh_password_env {
        options.sftp.auth = Some(SftpAuth::PasswordEnv { var: var.clone() });
    }
    if let Some(path) = &args.known_hosts {
        options.sftp.host_key = Some(HostKeyCheck::KnownHosts(path.clone()));
    } else if let Some(fp) = &args.host_key_sha256 {
        options.sftp.host_key = Some(HostKeyCheck::Fingerprint(fp.clone()));
    }
    options.s3 = S3Options {
        endpoint: args.s3_endpoint.clone().or(options.s3.endpoint),
        region: args.s3_region.clone().or(options.s3.region),
        allow_http: args.s3_allow_http.then_some(true).or(options.s3.allow_http),
        conditional_put: args
            .s3_no_conditional_put
            .then_some(false)
            .or(options.s3.conditional_put),
        ..options.s3
    };
    if let Some(t) = args.connect_timeout {
        options.connect_timeout = t;
    }
    if let Some(t) = args.timeout {
        options.operation_timeout = t;
    }
    options.retry = RetryPolicy {
        max_attempts: args.retries.saturating_add(1),
        ..RetryPolicy::default()
    };
    Ok((location, options))
}

fn check(args: CheckArgs, _global: &Global) -> Result<ExitCode> {
    let (location, options) = settings(&args)?;
    let rt = common::default_runtime()?;
    let report = rt.block_on(probe(&location, &options));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("location   {}", report.location);
        for s in &report.steps {
            let status = match (&s.ok, &s.error_kind) {
                (true, _) => "ok".to_owned(),
                (false, Some(kind)) => format!("FAILED ({kind})"),
                (false, None) => "FAILED".to_owned(),
            };
            println!("{:<10} {:<28} {}", s.step, status, s.detail);
        }
        if report.passed {
            println!("result     every check passed");
        } else {
            println!("result     the drop is NOT usable: fix the first failed step");
        }
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn failed(step: &'static str, e: &storage_backends::Error) -> Step {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    // The first cause that adds something (our messages already include the backend's).
    while let Some(s) = source {
        let text = s.to_string();
        if !detail.contains(&text) {
            detail.push_str(&format!(" (caused by: {text})"));
            break;
        }
        source = s.source();
    }
    Step {
        step,
        ok: false,
        detail,
        error_kind: Some(e.kind().to_string()),
    }
}

fn passed(step: &'static str, detail: impl Into<String>) -> Step {
    Step {
        step,
        ok: true,
        detail: detail.into(),
        error_kind: None,
    }
}

async fn probe(location: &Location, options: &BackendOptions) -> Report {
    let mut steps = Vec::new();
    let backend = match open(location, options).await {
        Ok(b) => b,
        Err(e) => {
            steps.push(failed("connect", &e));
            return Report {
                location: location.to_string(),
                passed: false,
                steps,
            };
        }
    };
    let mut detail = describe(&*backend);
    if location.scheme() == Scheme::Sftp {
        match &options.sftp.host_key {
            Some(HostKeyCheck::KnownHosts(path)) => {
                detail = format!("host key found in {}; {detail}", path.display());
            }
            Some(HostKeyCheck::Fingerprint(fp)) => {
                detail = format!("host key matches the pin {fp}; {detail}");
            }
            _ => {}
        }
    }
    steps.push(passed("connect", detail));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("paybatch-probe-{}-{nanos:09}.txt", std::process::id());
    let content = Bytes::from(format!("paybatch store check probe {name}\n"));
    run_steps(&*backend, &name, content, &mut steps).await;
    let passed = steps.iter().all(|s| s.ok);
    Report {
        location: location.to_string(),
        passed,
        steps,
    }
}

fn describe(b: &dyn Backend) -> String {
    let caps = b.capabilities();
    let replace = match caps.replace {
        Replace::Atomic => "atomic replace",
        Replace::RemoveThenRename => "replace by remove+rename (no posix-rename)",
        _ => "replace: other",
    };
    let exclusive = match caps.put_if_absent {
        PutIfAbsent::Atomic => "exclusive create",
        PutIfAbsent::Unsupported => "no exclusive create",
        _ => "exclusive create: other",
    };
    let large = match caps.large_upload {
        LargeUpload::TempFileRename => "large files via temp+rename".to_owned(),
        LargeUpload::Multipart { threshold } => {
            format!("multipart above {} MiB", threshold >> 20)
        }
        _ => "large files: other".to_owned(),
    };
    format!("{replace}, {exclusive}, {large}")
}

async fn run_steps(b: &dyn Backend, name: &str, content: Bytes, steps: &mut Vec<Step>) {
    if let Err(e) = b.put(name, content.clone()).await {
        steps.push(failed("write", &e));
        return;
    }
    steps.push(passed(
        "write",
        format!("{name} ({} bytes, atomic publish)", content.len()),
    ));
    let read = match b.get(name).await {
        Ok(got) if got == content => passed("read", "content matches"),
        Ok(got) => Step {
            step: "read",
            ok: false,
            detail: format!(
                "read {} bytes that differ from the {} written",
                got.len(),
                content.len()
            ),
            error_kind: None,
        },
        Err(e) => failed("read", &e),
    };
    steps.push(read);
    let list = match b.list("").await {
        Ok(files) if files.iter().any(|m| m.path == name) => {
            let mut detail = "probe listed".to_owned();
            for folder in ["Request", "Response"] {
                match b.list(folder).await {
                    Ok(f) => detail.push_str(&format!("; {folder}/: {} files", f.len())),
                    Err(e) => detail.push_str(&format!("; {folder}/: cannot list ({e})")),
                }
            }
            passed("list", detail)
        }
        Ok(files) => Step {
            step: "list",
            ok: false,
            detail: format!(
                "the probe is missing from a listing of {} files",
                files.len()
            ),
            error_kind: None,
        },
        Err(e) => failed("list", &e),
    };
    steps.push(list);
    let exclusive = match b.put_if_absent(name, Bytes::from_static(b"second")).await {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            passed("exclusive", "put-if-absent refused the taken name")
        }
        Err(e) if e.kind() == ErrorKind::Config => passed(
            "exclusive",
            format!("not supported here (callers fall back): {}", e.message()),
        ),
        Err(e) => failed("exclusive", &e),
        Ok(()) => Step {
            step: "exclusive",
            ok: false,
            detail: "put-if-absent overwrote an existing file: the server ignores conditional \
                     puts (use --s3-no-conditional-put)"
                .to_owned(),
            error_kind: None,
        },
    };
    steps.push(exclusive);
    let delete = match b.delete(name).await {
        Ok(()) => match b.head(name).await {
            Err(e) if e.kind() == ErrorKind::NotFound => passed("delete", "probe gone"),
            Ok(_) => Step {
                step: "delete",
                ok: false,
                detail: "the probe is still there after delete".to_owned(),
                error_kind: None,
            },
            Err(e) => failed("delete", &e),
        },
        Err(e) => failed("delete", &e),
    };
    steps.push(delete);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        check: CheckArgs,
    }

    fn parse(args: &[&str]) -> Result<CheckArgs, clap::Error> {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.check)
    }

    #[test]
    fn flags_become_options() {
        let a = parse(&[
            "sftp://u@h:2222/d",
            "--ssh-password-env",
            "PW",
            "--host-key-sha256",
            "SHA256:x",
            "--retries",
            "2",
        ])
        .unwrap();
        let (loc, o) = settings(&a).unwrap();
        assert_eq!(loc.to_string(), "sftp://u@h:2222/d");
        assert_eq!(
            o.sftp.auth,
            Some(SftpAuth::PasswordEnv { var: "PW".into() })
        );
        assert_eq!(
            o.sftp.host_key,
            Some(HostKeyCheck::Fingerprint("SHA256:x".into()))
        );
        assert_eq!(o.retry.max_attempts, 3);
        let a = parse(&[
            "s3://b/p",
            "--s3-endpoint",
            "http://127.0.0.1:9",
            "--s3-allow-http",
            "--s3-no-conditional-put",
            "--timeout",
            "2s",
        ])
        .unwrap();
        let (_, o) = settings(&a).unwrap();
        assert_eq!(o.s3.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(
            (o.s3.allow_http, o.s3.conditional_put),
            (Some(true), Some(false))
        );
        assert_eq!(o.operation_timeout, Duration::from_secs(2));
    }

    #[test]
    fn argument_rules() {
        let cases: [(&[&str], bool); 5] = [
            (&["file:///x"], true),
            (&[], false),
            (&["--account", "a"], false),
            (
                &["file:///x", "--ssh-key", "k", "--ssh-password-env", "P"],
                false,
            ),
            (
                &[
                    "file:///x",
                    "--known-hosts",
                    "f",
                    "--host-key-sha256",
                    "SHA256:x",
                ],
                false,
            ),
        ];
        for (args, ok) in cases {
            assert_eq!(parse(args).is_ok(), ok, "{args:?}");
        }
    }

    #[test]
    fn describe_local() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(&format!("file://{}", dir.path().display())).unwrap();
        let rt = common::default_runtime().unwrap();
        let b: Arc<dyn Backend> = rt.block_on(open(&loc, &BackendOptions::default())).unwrap();
        let text = describe(&*b);
        assert!(
            text.contains("atomic replace") && text.contains("exclusive create"),
            "{text}"
        );
    }
}
