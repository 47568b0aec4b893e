//! A realistic generated workload and a local gateway world, shared by `paybatch demo`, the
//! end-to-end tests and the benchmark.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use kvp_format::owner_only;

use crate::error::{Error, Result};
use crate::input::Format;

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// Number of batch accounts (`acct-001`, ...).
    pub accounts: usize,
    /// Number of transactions.
    pub transactions: usize,
    /// Lines per batch.
    pub max_batch_lines: usize,
    /// How many accounts (the last ones) have a gateway that rejects every batch.
    pub failing_accounts: usize,
    /// Seed of the generator (same seed, same input).
    pub seed: u64,
}

impl Default for DemoSpec {
    fn default() -> Self {
        Self {
            accounts: 25,
            transactions: 20_000,
            max_batch_lines: 500,
            failing_accounts: 1,
            seed: 7,
        }
    }
}

impl DemoSpec {
    /// The name of account `i` (0-based).
    pub fn account_name(&self, i: usize) -> String {
        format!("acct-{:03}", i + 1)
    }

    /// Whether account `i` gets a gateway that rejects its batches.
    pub fn is_failing(&self, i: usize) -> bool {
        i + self.failing_accounts >= self.accounts
    }

    /// The batch key of account `i` (demo values, not secrets of anyone).
    pub fn batch_key(&self, i: usize) -> String {
        format!("demo-batch-key-{}", i + 1)
    }

    /// The merchant key of account `i`.
    pub fn merchant_key(&self, i: usize) -> String {
        format!("demo-merchant-key-{}", i + 1)
    }

    /// A config file for this world: account `i`'s drop is `location(i)`.
    pub fn config_toml(&self, ledger: &Path, location: impl Fn(usize) -> String) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut s = format!(
            "[ledger]\npath = {}\n\n[poll]\ninterval = \"20ms\"\nmax_interval = \"200ms\"\ntimeout = \"2m\"\n\n[limits]\nmax_concurrent_accounts = 32\nmax_batch_lines = {}\n\n",
            q(&ledger.to_string_lossy()),
            self.max_batch_lines
        );
        for i in 0..self.accounts {
            s.push_str(&format!(
                "[accounts.{}]\nlocation = {}\nbatch_key = {}\nmerchant_key = {}\n\n",
                self.account_name(i),
                q(&location(i)),
                q(&self.batch_key(i)),
                q(&self.merchant_key(i))
            ));
        }
        s
    }

    /// Writes the generated input to `path` in `format`, streaming.
    ///
    /// Mostly approved card sales with unique invoices; a few declines (test cards, amount
    /// 13.13), gateway errors (card 4000000000000119), credits, tokens; names with Unicode and
    /// reserved characters.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn write_input(&self, path: &Path, format: Format) -> Result<()> {
        let file = owner_only::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let columns = [
            "account",
            "ref",
            "xCommand",
            "xCardNum",
            "xExp",
            "xAmount",
            "xName",
            "xInvoice",
            "xCustom01",
        ];
        if format == Format::Csv {
            writeln!(out, "{}", columns.join(",")).map_err(|e| Error::io(path, e))?;
        }
        let names = [
            "Ada Lovelace",
            "José Müller & Søn",
            "李 小龍",
            "O'Brien+Co",
            "Zoë 100% = ok",
            "Jean-Luc Picard",
        ];
        let mut buf = Vec::with_capacity(512);
        for n in 0..self.transactions {
            let account = self.account_name(rng.usize(..self.accounts.max(1)));
            let roll = rng.u32(..1000);
            let (command, card, amount) = match roll {
                0..=14 => ("cc:sale", "4000000000000002", random_amount(&mut rng)),
                15..=24 => ("cc:sale", "4111111111111111", "13.13".to_owned()),
                25..=39 => ("cc:sale", "4000000000000119", random_amount(&mut rng)),
                40..=89 => ("cc:credit", "5555555555554444", random_amount(&mut rng)),
                _ => (
                    "cc:sale",
                    [
                        "4111111111111111",
                        "5555555555554444",
                        "378282246310005",
                        "6011111111111117",
                    ][rng.usize(..4)],
                    random_amount(&mut rng),
                ),
            };
            let reference = format!("T{n:08}");
            let invoice = format!("INV-{n:08}");
            let custom = format!("order {n} a+b=c&d%");
            let values = [
                account.as_str(),
                &reference,
                command,
                card,
                "1230",
                &amount,
                names[rng.usize(..names.len())],
                &invoice,
                &custom,
            ];
            buf.clear();
            match format {
                Format::Kvp => {
                    for (i, (k, v)) in columns.iter().zip(values).enumerate() {
                        if i > 0 {
                            buf.push(b'&');
                        }
                        kvp_format::encode_pair(k, v, &mut buf);
                    }
                }
                Format::Jsonl => {
                    let map: serde_json::Map<String, serde_json::Value> = columns
                        .iter()
                        .zip(values)
                        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.to_owned())))
                        .collect();
                    serde_json::to_writer(&mut buf, &map)
                        .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
                }
                Format::Csv => {
                    let cells: Vec<String> = values
                        .iter()
                        .map(|v| {
                            if v.contains([',', '"']) {
                                format!("\"{}\"", v.replace('"', "\"\""))
                            } else {
                                (*v).to_owned()
                            }
                        })
                        .collect();
                    buf.extend_from_slice(cells.join(",").as_bytes());
                }
            }
            buf.push(b'\n');
            out.write_all(&buf).map_err(|e| Error::io(path, e))?;
        }
        out.flush().map_err(|e| Error::io(path, e))
    }

    /// The simulator accounts of this world, over the given backends (one per account).
    pub fn sim_accounts(
        &self,
        backends: Vec<Arc<dyn storage_backends::Backend>>,
        shuffled: bool,
    ) -> Vec<gateway_sim::SimAccount> {
        backends
            .into_iter()
            .enumerate()
            .map(|(i, backend)| {
                let mut knobs = gateway_sim::Knobs::default();
                if shuffled {
                    knobs = knobs
                        .with_response_order(gateway_sim::ResponseOrder::Shuffled {
                            seed: self.seed + i as u64,
                        })
                        .with_spaces(gateway_sim::SpaceEncoding::Plus);
                }
                if self.is_failing(i) {
                    knobs = knobs.with_mode(gateway_sim::AccountMode::GatewayError {
                        message: "Batch processing is not enabled for this account".into(),
                    });
                }
                gateway_sim::SimAccount::new(
                    self.account_name(i),
                    backend,
                    self.batch_key(i),
                    [self.merchant_key(i)],
                )
                .with_knobs(knobs)
            })
            .collect()
    }
}

fn random_amount(rng: &mut fastrand::Rng) -> String {
    loop {
        let cents = rng.u32(100..50_000);
        let text = format!("{}.{:02}", cents / 100, cents % 100);
        if !matches!(text.as_str(), "13.13" | "14.14" | "15.15") {
            return text;
        }
    }
}

/// A generated world: config, input, ledger and gateway state under one root directory, and
/// one drop per account (local folders under `root/drops/`, or given SFTP/S3 targets).
#[derive(Debug, Clone)]
pub struct World {
    /// The root directory.
    pub root: std::path::PathBuf,
    /// What was generated.
    pub spec: DemoSpec,
    /// The config file.
    pub config: std::path::PathBuf,
    /// The input file.
    pub input: std::path::PathBuf,
    /// The ledger directory.
    pub ledger: std::path::PathBuf,
    /// The gateway simulator's state directory (its journal is `journal.jsonl` there).
    pub gateway_state: std::path::PathBuf,
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
                .map_err(|e| Error::setting("demo", e.to_string()))?;
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
    /// [`crate::aps::write_mixed_input`]). Returns the mixed input's path.
    ///
    /// Only a KVP world can be mixed: the Sola input is read line by line.
    ///
    /// # Errors
    /// [`Error::Setting`] when the world's input is not KVP; [`Error::Io`].
    pub fn add_aps(
        &self,
        endpoint: &str,
        accounts: &[crate::aps::ApsDemoAccount],
        per_account: usize,
        max_batch_lines: usize,
    ) -> Result<std::path::PathBuf> {
        if Format::from_path(&self.input) != Some(Format::Kvp) {
            return Err(Error::setting(
                "demo",
                format!(
                    "a mixed input needs a KVP Sola input, not {}",
                    self.input.display()
                ),
            ));
        }
        let mut config =
            std::fs::read_to_string(&self.config).map_err(|e| Error::io(&self.config, e))?;
        config.push_str(&crate::aps::demo_config_toml(
            accounts,
            endpoint,
            max_batch_lines,
        ));
        owner_only::write(&self.config, config).map_err(|e| Error::io(&self.config, e))?;
        let mixed = self.root.join("mixed.kvp");
        crate::aps::write_mixed_input(&self.input, &mixed, accounts, per_account, self.spec.seed)?;
        Ok(mixed)
    }

    /// Account `i`'s drop folder, for local worlds.
    pub fn drop_dir(&self, i: usize) -> std::path::PathBuf {
        self.root.join("drops").join(self.spec.account_name(i))
    }

    /// Opens account `i`'s drop.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn backend(&self, i: usize) -> Result<Arc<dyn storage_backends::Backend>> {
        let (location, options) = self
            .targets
            .get(i)
            .ok_or_else(|| Error::setting("demo", format!("no account {i}")))?;
        storage_backends::open(location, options)
            .await
            .map_err(|source| Error::Storage {
                account: self.spec.account_name(i),
                path: String::new(),
                source,
            })
    }

    /// A gateway simulator over the drops (`shuffled`: RESPONSE lines shuffled and spaces as `+`).
    ///
    /// # Errors
    /// Storage or simulator state errors.
    pub async fn gateway(&self, shuffled: bool) -> Result<gateway_sim::GatewaySim> {
        let mut backends = Vec::with_capacity(self.spec.accounts);
        for i in 0..self.spec.accounts {
            backends.push(self.backend(i).await?);
        }
        gateway_sim::GatewaySim::new(
            self.spec.sim_accounts(backends, shuffled),
            gateway_sim::SimOptions::new(&self.gateway_state)
                .with_poll_interval(std::time::Duration::from_millis(10)),
        )
        .map_err(|e| Error::setting("gateway-sim", e.to_string()))
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
        .map_err(|e| Error::setting("gateway-sim", e.to_string()))
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
        let settings = crate::Settings::load_with_env(Some(&world.config), []).unwrap();
        let kinds: Vec<(String, crate::ProtocolKind)> = settings
            .accounts
            .iter()
            .map(|(n, a)| (n.clone(), a.protocol))
            .collect();
        assert_eq!(
            kinds,
            [
                ("acct-001".to_owned(), crate::ProtocolKind::Sola),
                ("acct-002".to_owned(), crate::ProtocolKind::Sola),
                ("aps-1".to_owned(), crate::ProtocolKind::Aps),
                ("aps-2".to_owned(), crate::ProtocolKind::Aps),
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
