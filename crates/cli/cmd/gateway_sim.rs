//! `paybatch gateway-sim --config FILE`: serve every account of a paybatch config as the
//! gateway would (the `gateway-sim` crate), until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use aps_batch::ApsAccount;
use clap::ValueEnum;
use gateway_sim::aps::{ApsKnobs, ApsSim, ApsSimHandle, ApsSimOptions, ValidationMode};
use gateway_sim::{
    AccountMode, GatewaySim, Knobs, ResponseOrder, SimAccount, SimOptions, SpaceEncoding,
};
use orchestrator::Settings;
use sola_file_drop::SolaAccount;

use super::common::{load_settings, runtime};
use super::{Global, usage_error};

/// Serve the accounts of a config as the gateway would: answer every `PROCESS_X.KVP` that
/// appears in a Sola account's `Request/` with `RESPONSE_X.KVP` and `COMPLETE_X.KVP`, and
/// serve the APS batch API for `protocol = "aps"` accounts on their `endpoint`
/// (`http://127.0.0.1:PORT` — one server per endpoint, every merchant on it).
///
/// The simulator keeps its state (last accepted sequence number per account, the journal of
/// processed transactions, approved transactions for captures/refunds/voids) in `--state-dir`,
/// so a restarted simulator never processes a batch twice. It stops cleanly between scans on
/// Ctrl-C or SIGTERM.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The paybatch config whose `[accounts.NAME]` tables give each drop and its keys.
    #[arg(long, short)]
    config: PathBuf,
    /// Where the simulator keeps its state (created if missing; one simulator at a time).
    #[arg(long, default_value = "gateway-sim-state")]
    state_dir: PathBuf,
    /// Serve only these accounts (repeatable; default: every account of the config).
    #[arg(long = "account", value_name = "NAME")]
    accounts: Vec<String>,
    /// Pause between scans of the accounts' `Request/` folders.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Extra processing time per batch.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    batch_latency: Duration,
    /// Extra processing time per transaction.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    line_latency: Duration,
    /// Write RESPONSE lines in a shuffled order (clients must join on xIndex).
    #[arg(long)]
    shuffle: bool,
    /// How spaces are encoded in RESPONSE/COMPLETE values.
    #[arg(long, value_enum, default_value_t = Spaces::Percent20)]
    spaces: Spaces,
    /// Answer every batch of this account with a gateway error (repeatable).
    #[arg(long = "fail-account", value_name = "NAME")]
    fail_accounts: Vec<String>,
}

/// `--spaces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Spaces {
    /// `%20`, as in the batch document's example.
    Percent20,
    /// `+`, as the gateway's real-time API answers.
    Plus,
}

/// Runs the simulator until a termination signal; exit code 0 after a clean stop.
pub fn run(args: Args, _global: &Global) -> Result<ExitCode> {
    let settings = load_settings(Some(&args.config))?;
    for name in args.accounts.iter().chain(&args.fail_accounts) {
        settings
            .account(name)
            .map_err(|e| usage_error(e.to_string()))?;
    }
    let selected: Vec<&String> = settings
        .accounts()
        .keys()
        .filter(|name| args.accounts.is_empty() || args.accounts.contains(name))
        .collect();
    if selected.is_empty() {
        return Err(usage_error(format!(
            "{}: no [accounts.NAME] table to serve",
            args.config.display()
        )));
    }
    let rt = runtime(&settings.limits)?;
    rt.block_on(async {
        let mut accounts = Vec::with_capacity(selected.len());
        let mut aps_endpoints: BTreeMap<SocketAddr, Vec<String>> = BTreeMap::new();
        for name in selected {
            let account = settings
                .account(name)
                .map_err(|e| usage_error(e.to_string()))?;
            if let Some(aps) = account.as_any().downcast_ref::<ApsAccount>() {
                aps_endpoints
                    .entry(loopback_addr(name, &aps.settings().endpoint)?)
                    .or_default()
                    .push(name.clone());
                continue;
            }
            let Some(sola) = account.as_any().downcast_ref::<SolaAccount>() else {
                return Err(usage_error(format!(
                    "account {name}: the simulator serves sola and aps accounts, not {}",
                    account.protocol()
                )));
            };
            let location = sola.location().clone();
            let options = sola
                .backend_options()
                .map_err(|e| usage_error(e.to_string()))?;
            let batch_key = sola.batch_key().map_err(|e| usage_error(e.to_string()))?;
            let merchant_key = sola
                .merchant_key()
                .map_err(|e| usage_error(e.to_string()))?;
            let sim_account =
                SimAccount::open(name.clone(), &location, &options, batch_key, vec![merchant_key])
                    .await
                    .with_context(|| format!("account {name}: cannot open its drop {location}"))?;
            accounts.push(sim_account.with_knobs(knobs(&args, name)));
        }
        let aps_servers = start_aps(&args, &settings, aps_endpoints).await?;
        let served = accounts.len();
        let options = SimOptions::new(&args.state_dir).with_poll_interval(args.poll_interval);
        let sim = GatewaySim::new(accounts, options).with_context(|| {
            format!("cannot open the simulator state {}", args.state_dir.display())
        })?;
        eprintln!(
            "paybatch gateway-sim: serving {served} file-drop account(s) and {} APS endpoint(s), \
             state in {}; Ctrl-C to stop",
            aps_servers.len(),
            args.state_dir.display()
        );
        let stats = sim.run(super::common::termination_signal()).await?;
        for server in aps_servers {
            server.shutdown().await;
        }
        eprintln!(
            "paybatch gateway-sim: stopped; {} batch(es) answered, {} ignored, {} transaction(s) processed",
            stats.batches_answered(),
            stats.batches_ignored,
            stats.lines
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// The socket an APS account's `endpoint` names; the simulator speaks plain HTTP on loopback
/// only.
fn loopback_addr(account: &str, endpoint: &str) -> Result<SocketAddr> {
    endpoint
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .and_then(|rest| rest.parse::<SocketAddr>().ok())
        .filter(|addr| addr.ip().is_loopback())
        .ok_or_else(|| {
            usage_error(format!(
                "accounts.{account}.endpoint: the simulator serves APS only on http://127.0.0.1:PORT, not {endpoint:?}"
            ))
        })
}

/// One APS simulator per endpoint, serving the merchants of every account configured on it;
/// its journal lives in the state directory so "processed exactly once" holds across restarts.
async fn start_aps(
    args: &Args,
    settings: &Settings,
    endpoints: BTreeMap<SocketAddr, Vec<String>>,
) -> Result<Vec<ApsSimHandle>> {
    let mut servers = Vec::with_capacity(endpoints.len());
    for (addr, names) in endpoints {
        let mut merchants = Vec::with_capacity(names.len());
        let mut validation = ValidationMode::Normal;
        // The service's behaviour follows the accounts' settings (line_number_offset,
        // file_signature, header_names, process_url); accounts on one endpoint must agree.
        let mut reading: Option<(String, ApsSimOptions)> = None;
        for name in &names {
            let account = settings
                .account(name)
                .map_err(|e| usage_error(e.to_string()))?;
            let cfg = account
                .as_any()
                .downcast_ref::<ApsAccount>()
                .ok_or_else(|| usage_error(format!("account {name} is not an APS account")))?
                .config()
                .map_err(|e| usage_error(e.to_string()))?;
            merchants.push(paybatch_demo::aps::sim_merchant(&cfg));
            if args.fail_accounts.contains(name) {
                validation = ValidationMode::FailAll;
            }
            let options = paybatch_demo::aps::sim_options(&cfg);
            match &reading {
                None => reading = Some((name.clone(), options)),
                Some((first, o)) => {
                    let same = o.reference == options.reference
                        && o.upload_signature == options.upload_signature
                        && o.header_names == options.header_names
                        && o.process_path == options.process_path;
                    if !same {
                        return Err(usage_error(format!(
                            "accounts {first} and {name} share the endpoint {addr} but differ in line_number_offset, file_signature, header_names or process_url; one simulator cannot serve both"
                        )));
                    }
                }
            }
        }
        let reading = reading.map(|(_, o)| o).unwrap_or_default();
        kvp_format::owner_only::create_dir_all(&args.state_dir)
            .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
        let options = ApsSimOptions {
            bind: addr,
            merchants,
            journal: Some(
                args.state_dir
                    .join(format!("aps-journal-{}.jsonl", addr.port())),
            ),
            knobs: ApsKnobs {
                latency: args.batch_latency,
                validation,
                ..ApsKnobs::default()
            },
            ..reading
        };
        let server = ApsSim::start(options)
            .await
            .with_context(|| format!("cannot start the APS simulator on {addr}"))?;
        servers.push(server);
    }
    Ok(servers)
}

fn knobs(args: &Args, account: &str) -> Knobs {
    let mut knobs = Knobs::default()
        .with_latency(args.batch_latency, args.line_latency)
        .with_spaces(match args.spaces {
            Spaces::Percent20 => SpaceEncoding::Percent20,
            Spaces::Plus => SpaceEncoding::Plus,
        });
    if args.shuffle {
        // A fixed seed: the shuffle still differs per batch (it mixes in the batch number),
        // and a run can be reproduced.
        knobs = knobs.with_response_order(ResponseOrder::Shuffled { seed: 0x5EED });
    }
    if args.fail_accounts.iter().any(|a| a == account) {
        knobs = knobs.with_mode(AccountMode::GatewayError {
            message: "Batch rejected by the simulator (--fail-account)".to_owned(),
        });
    }
    knobs
}
