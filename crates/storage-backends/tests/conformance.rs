//! The conformance suite against every backend: local (a temporary directory), S3 (the test
//! S3 server) and SFTP (the test sshd) — see `tests/support/servers.sh`. Without the servers'
//! variables the remote cases print how to start them and pass; with
//! `PAYBATCH_REQUIRE_SERVERS=1` (CI) they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use storage_backends::conformance::{self, CaseResult};
use storage_backends::{Backend, BackendOptions, Replace, Scheme, SftpRename, open, test_env};

/// Opens a fresh, unique target of `scheme` (through `open`, so with the retry and limit
/// wrappers, as the orchestrator uses it), or `None` when its server is not configured.
async fn backend(scheme: Scheme) -> Option<(Arc<dyn Backend>, test_env::TestTarget)> {
    backend_with(scheme, |_| {}).await
}

/// [`backend`] with changed options.
async fn backend_with(
    scheme: Scheme,
    tweak: impl FnOnce(&mut BackendOptions),
) -> Option<(Arc<dyn Backend>, test_env::TestTarget)> {
    let mut target =
        test_env::target(scheme).expect("test server required (PAYBATCH_REQUIRE_SERVERS=1)")?;
    tweak(&mut target.options);
    let b = open(&target.location, &target.options)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", target.location));
    Some((b, target))
}

fn ok(scheme: Scheme, case: &str, outcome: CaseResult) {
    if let Err(f) = outcome {
        let mut chain = String::new();
        let mut source = std::error::Error::source(&f);
        while let Some(s) = source {
            chain.push_str(&format!("\n  caused by: {s}"));
            source = s.source();
        }
        panic!("{} backend, case {case}: {f}{chain}", scheme.as_str());
    }
}

macro_rules! suite {
    ($module:ident, $scheme:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn quick_cases() {
                let Some((b, _t)) = backend($scheme).await else {
                    return;
                };
                for (case, outcome) in conformance::run_quick(&*b).await {
                    ok($scheme, case, outcome);
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_if_absent_race() {
                let Some((b, _t)) = backend($scheme).await else {
                    return;
                };
                ok(
                    $scheme,
                    "put_if_absent_race",
                    conformance::put_if_absent_race(b).await,
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn atomic_publish() {
                let Some((b, _t)) = backend($scheme).await else {
                    return;
                };
                ok(
                    $scheme,
                    "atomic_publish",
                    conformance::atomic_publish(b).await,
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_files_10000() {
                let Some((b, _t)) = backend($scheme).await else {
                    return;
                };
                let outcome = conformance::many_files(b, conformance::MANY_FILES, 32).await;
                ok($scheme, "many_files", outcome);
            }
        }
    };
}

suite!(local, Scheme::Local);
suite!(s3, Scheme::S3);
suite!(sftp, Scheme::Sftp);

/// SFTP with the documented fallback for servers without posix-rename: remove, then rename.
mod sftp_remove_then_rename {
    use super::*;

    fn fallback(o: &mut BackendOptions) {
        o.sftp.rename = SftpRename::RemoveThenRename;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quick_cases() {
        let Some((b, _t)) = backend_with(Scheme::Sftp, fallback).await else {
            return;
        };
        assert_eq!(b.capabilities().replace, Replace::RemoveThenRename);
        for (case, outcome) in conformance::run_quick(&*b).await {
            ok(Scheme::Sftp, case, outcome);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn atomic_publish() {
        let Some((b, _t)) = backend_with(Scheme::Sftp, fallback).await else {
            return;
        };
        ok(
            Scheme::Sftp,
            "atomic_publish",
            conformance::atomic_publish(b).await,
        );
    }
}
