//! What a demo world holds: the accounts, their keys and config, and a realistic generated
//! input (mostly approved card sales, a few declines and gateway errors).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use kvp_format::owner_only;
use orchestrator::Format;

use crate::error::{Error, Result};

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
    /// [`Error::Io`]; [`Error::Invalid`] for a format this generator does not write.
    pub fn write_input(&self, path: &Path, format: Format) -> Result<()> {
        if !matches!(format, Format::Kvp | Format::Jsonl | Format::Csv) {
            return Err(Error::Invalid(format!("cannot generate {format:?} input")));
        }
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
                // CSV (any other format was refused above).
                _ => {
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
