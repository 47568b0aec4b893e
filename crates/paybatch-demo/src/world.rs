//! A generated world on disk (config, input, ledger, gateway state, one drop per account) and
//! the gateway simulator that serves it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvp_format::owner_only;
use orchestrator::Format;

use crate::aps::{ApsDemoAccount, demo_config_toml, write_mixed_input};
use crate::error::{Error, Result};
use crate::spec::DemoSpec;

/// A generated world: config, input, ledger and gateway state under one root directory, and
/// one drop per account (local folders under `root/drops/`, or given SFTP/S3 targets).
#[derive(Debug, Clone)]
pub struct World {
    /// The root directory.
    pub root: PathBuf,
    /// What was generated.
    pub spec: DemoSpec,
    /// The config file.
    pub config: PathBuf,
    /// The input file.
    pub input: PathBuf,
    /// The ledger directory.
    pub ledger: PathBuf,
    /// The gateway simulator's state directory (its journal is `journal.jsonl` there).
    pub gateway_state: PathBuf,
    /// Each account's drop and how to reach it.
    pub targets: Vec<(storage_backends::Location, storage_backends::BackendOptions)>,
}

/// The former name of [`World`] (local drops).
pub type LocalWorld = World;

impl World {
    /// A world whose drops are local folders `root/drops/ACCOUNT`. Folders created here are
    /// 0700 and files 0600 (the input holds card numbers, the config keys).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn create(root: &Path, spec: DemoSpec, format: Format) -> Result<Self> {
        owner_only::create_dir_all(&root.join("drops")).map_err(|e| Error::io(root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
        let mut targets = Vec::with_capacity(spec.accounts);
        for i in 0..spec.accounts {
            let dir = root.join("drops").join(spec.account_name(i));
            owner_only::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let location = storage_backends::Location::parse(&format!("file://{}", dir.display()))
                .map_err(|e| Error::Invalid(format!("drop of {}: {e}", spec.account_name(i))))?;
            targets.push((location, storage_backends::BackendOptions::default()));
        }
        Self::with_targets(&root, spec, format, targets)
    }

    /// A world over the given drops (one per account, e.g. from `storage_backends::test_env`).
    /// SFTP key and known_hosts paths go into the config.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn with_targets(
        root: &Path,
        spec: DemoSpec,
        format: Format,
        targets: Vec<(storage_backends::Location, storage_backends::BackendOptions)>,
    ) -> Result<Self> {
        // The workspace holds card numbers (the input) and keys (the config): created
        // owner-only, like every file written here (a folder the caller made is left as it is).
        owner_only::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
        let world = Self {
            config: root.join("paybatch.toml"),
            input: root.join(format!("input.{}", format.extension())),
            ledger: root.join("ledger"),
            gateway_state: root.join("gateway-state"),
            root,
            spec,
            targets,
        };
        let mut toml = world.spec.config_toml(&world.ledger, |i| {
            world
                .targets
                .get(i)
                .map(|(l, _)| l.to_string())
                .unwrap_or_default()
        });
        for (i, (_, options)) in world.targets.iter().enumerate() {
            let mut extra = String::new();
            if let Some(storage_backends::SftpAuth::KeyFile { path, .. }) = &options.sftp.auth {
                extra.push_str(&format!(
                    "ssh_key = {}\n",
                    serde_json::to_string(&path.to_string_lossy()).unwrap_or_default()
                ));
            }
            if let Some(storage_backends::HostKeyCheck::KnownHosts(path)) = &options.sftp.host_key {
                extra.push_str(&format!(
                    "known_hosts = {}\n",
                    serde_json::to_string(&path.to_string_lossy()).unwrap_or_default()
                ));
            }
            if !extra.is_empty() {
                let header = format!("[accounts.{}]\n", world.spec.account_name(i));
                toml = toml.replace(&header, &format!("{header}{extra}"));
            }
        }
        owner_only::write(&world.config, toml).map_err(|e| Error::io(&world.config, e))?;
        world.spec.write_input(&world.input, format)?;
        Ok(world)
    }

    /// Adds APS accounts served at `endpoint` to this world: appends their `[accounts.NAME]`
    /// tables (batches of at most `max_batch_lines`) to the config and writes `mixed.kvp`, the
    /// Sola input with `per_account` APS lines of each account interleaved (see
    /// [`write_mixed_input`]). Returns the mixed input's path.
    ///
    /// Only a KVP world can be mixed: the Sola input is read line by line.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the world's input is not KVP; [`Error::Io`].
    pub fn add_aps(
        &self,
        endpoint: &str,
        accounts: &[ApsDemoAccount],
        per_account: usize,
        max_batch_lines: usize,
    ) -> Result<PathBuf> {
        if Format::from_path(&self.input) != Some(Format::Kvp) {
            return Err(Error::Invalid(format!(
                "a mixed input needs a KVP Sola input, not {}",
                self.input.display()
            )));
        }
        let mut config =
            std::fs::read_to_string(&self.config).map_err(|e| Error::io(&self.config, e))?;
        config.push_str(&demo_config_toml(accounts, endpoint, max_batch_lines));
        owner_only::write(&self.config, config).map_err(|e| Error::io(&self.config, e))?;
        let mixed = self.root.join("mixed.kvp");
        write_mixed_input(&self.input, &mixed, accounts, per_account, self.spec.seed)?;
        Ok(mixed)
    }

    /// Account `i`'s drop folder, for local worlds.
    pub fn drop_dir(&self, i: usize) -> PathBuf {
        self.root.join("drops").join(self.spec.account_name(i))
    }

    /// Opens account `i`'s drop.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an account the world does not have; [`Error::Storage`].
    pub async fn backend(&self, i: usize) -> Result<Arc<dyn storage_backends::Backend>> {
        let (location, options) = self
            .targets
            .get(i)
            .ok_or_else(|| Error::Invalid(format!("no account {i}")))?;
        storage_backends::open(location, options)
            .await
            .map_err(|source| Error::Storage {
                account: self.spec.account_name(i),
                source,
            })
    }

    /// A gateway simulator over the drops (`shuffled`: RESPONSE lines shuffled and spaces as `+`).
    ///
    /// # Errors
    /// [`Error::Storage`] opening a drop; [`Error::Simulator`] when the simulator's state
    /// directory cannot be used.
    pub async fn gateway(&self, shuffled: bool) -> Result<gateway_sim::GatewaySim> {
        let mut backends = Vec::with_capacity(self.spec.accounts);
        for i in 0..self.spec.accounts {
            backends.push(self.backend(i).await?);
        }
        Ok(gateway_sim::GatewaySim::new(
            self.spec.sim_accounts(backends, shuffled),
            gateway_sim::SimOptions::new(&self.gateway_state)
                .with_poll_interval(std::time::Duration::from_millis(10)),
        )?)
    }
}

/// Runs `sim` in the background until the returned sender is dropped or sent to.
pub fn spawn_gateway(
    sim: gateway_sim::GatewaySim,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<gateway_sim::RunStats>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        sim.run(async {
            let _ = rx.await;
        })
        .await
        .map_err(Error::from)
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DemoSpec {
        DemoSpec {
            accounts: 2,
            transactions: 10,
            max_batch_lines: 4,
            failing_accounts: 0,
            seed: 3,
        }
    }

    #[test]
    fn add_aps_appends_accounts_and_writes_a_mixed_input() {
        let dir = tempfile::tempdir().unwrap();
        let world = World::create(dir.path(), spec(), Format::Kvp).unwrap();
        let accounts = crate::aps::demo_accounts(2);
        let mixed = world
            .add_aps("http://127.0.0.1:9", &accounts, 3, 5)
            .unwrap();
        let settings =
            orchestrator::Settings::load_with_env(Some(&world.config), [], &crate::protocols())
                .unwrap();
        let kinds: Vec<(String, &str)> = settings
            .accounts()
            .iter()
            .map(|(n, a)| (n.clone(), a.protocol()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("acct-001".to_owned(), "sola"),
                ("acct-002".to_owned(), "sola"),
                ("aps-1".to_owned(), "aps"),
                ("aps-2".to_owned(), "aps"),
            ]
        );
        assert_eq!(settings.max_batch_lines("aps-1"), 5);
        let text = std::fs::read_to_string(&mixed).unwrap();
        assert_eq!(text.lines().count(), 10 + 2 * 3);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("account=aps-"))
                .count(),
            6
        );
    }

    #[test]
    fn add_aps_refuses_a_csv_world() {
        let dir = tempfile::tempdir().unwrap();
        let world = World::create(dir.path(), spec(), Format::Csv).unwrap();
        let err = world
            .add_aps("http://127.0.0.1:9", &crate::aps::demo_accounts(1), 1, 5)
            .unwrap_err();
        assert!(err.to_string().contains("KVP"), "{err}");
    }
}
