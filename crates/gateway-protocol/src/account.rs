//! An account as the engine sees it: the rules its input lines follow, how its batches are
//! cut, and how to connect to its gateway — built from its `[accounts.NAME]` table by the
//! factory of its protocol.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use kvp_format::SequenceNumber;

use crate::error::Result;
use crate::protocol::GatewayProtocol;
use crate::request::{BatchFile, BatchLine, Masking};

/// The environment an account's secrets are read from: the variables given when the settings
/// were loaded (not necessarily the process's).
pub type Env = BTreeMap<String, String>;

/// The keys of `[accounts.NAME]` every account has, whatever its protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountCommon {
    /// Per-account override of the engine's lines per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_lines: Option<usize>,
    /// Commands this account may send (ASCII case-insensitive); absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_commands: Option<Vec<String>>,
}

impl AccountCommon {
    /// Whether `command` is allowed.
    pub fn allows(&self, command: &str) -> bool {
        self.allowed_commands
            .as_ref()
            .is_none_or(|list| list.iter().any(|c| c.eq_ignore_ascii_case(command)))
    }
}

/// What an account's factory is given besides its own table.
#[derive(Debug, Clone, Copy)]
pub struct AccountContext<'a> {
    /// The keys every account has.
    pub common: &'a AccountCommon,
    /// The top-level sections of the configuration that protocols own (Sola: `[storage]`,
    /// `[gateway]`), by name.
    pub sections: &'a config::Map<String, config::Value>,
    /// Where secrets named by `*_env` keys are read, when the account connects.
    pub env: &'a Arc<Env>,
}

/// Builds the accounts of one protocol (`protocol = "..."` in `[accounts.NAME]`).
pub trait AccountFactory: Send + Sync + std::fmt::Debug {
    /// The `protocol` value this factory serves (`sola`, `aps`).
    fn protocol(&self) -> &'static str;

    /// The top-level configuration sections this protocol owns (Sola: `storage`, `gateway`);
    /// a section no factory and not the engine claims is a configuration error.
    fn sections(&self) -> &'static [&'static str] {
        &[]
    }

    /// Checks the sections this protocol owns ([`AccountFactory::sections`]), whether or not an
    /// account uses them: an unknown or bad key there is an error even in a configuration
    /// without accounts.
    ///
    /// # Errors
    /// [`crate::Error::Setting`] naming the key.
    fn check_sections(&self, sections: &config::Map<String, config::Value>) -> Result<()> {
        let _ = sections;
        Ok(())
    }

    /// The keys of this protocol's account tables whose value is itself a secret (each has a
    /// `*_env` twin naming a variable instead): a config file holding one inline should be
    /// owner-only, and the loader warns when it is not.
    fn secret_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Checks one account's table (its keys without `protocol`, `max_batch_lines` and
    /// `allowed_commands`) and returns the account. Nothing is connected and no secret is read
    /// yet: a missing secret fails that account when it connects, not the whole configuration.
    ///
    /// # Errors
    /// [`crate::Error::Setting`] naming the key for an unknown key, a missing or bad value.
    fn account(
        &self,
        name: &str,
        table: config::Value,
        context: AccountContext<'_>,
    ) -> Result<Arc<dyn Account>>;
}

/// One configured account: its input rules (no secrets, no I/O) and the way to its gateway.
#[async_trait]
pub trait Account: Send + Sync + std::fmt::Debug {
    /// The account's name.
    fn name(&self) -> &str;

    /// Its protocol's name (`sola`, `aps`).
    fn protocol(&self) -> &'static str;

    /// The keys every account has.
    fn common(&self) -> &AccountCommon;

    /// The rules its input lines follow and how its batches are cut.
    fn rules(&self) -> &dyn LineRules;

    /// Reads the account's secrets and opens its transport: the protocol the engine drives.
    ///
    /// # Errors
    /// [`crate::Error::Setting`] for a secret whose variable is unset; storage or transport
    /// failures opening the connection.
    async fn connect(&self) -> Result<Arc<dyn GatewayProtocol>>;

    /// The files batch `sequence` of `lines` would put at the gateway, built from the
    /// settings alone — nothing connected, nothing sent (a dry run): Sola `Request/REQUEST_X.KVP`
    /// and `Request/PROCESS_X.KVP`, APS the CSV named after its `batch_reference`. With
    /// [`Masking::Masked`] card data and keys are masked, including the credentials the
    /// protocol adds itself.
    ///
    /// # Errors
    /// A line that cannot be encoded for this gateway; a secret whose variable is unset (when
    /// the files need it).
    fn batch_files(
        &self,
        sequence: SequenceNumber,
        lines: &[BatchLine<'_>],
        masking: Masking,
    ) -> Result<Vec<BatchFile>>;

    /// The account's settings as the configuration would spell them (without the common
    /// keys), every secret value masked: for `paybatch config show`.
    fn settings(&self) -> serde_json::Value;

    /// What this account may not share with any other configured account (Sola: its drop,
    /// PROTOCOL.md decision 4c), or `None` when it shares freely. The engine refuses two
    /// accounts whose [`Exclusive::key`]s are equal, naming both (one hash lookup per account,
    /// so ten thousand accounts cost no pairwise comparison).
    fn exclusive(&self) -> Option<Exclusive> {
        None
    }

    /// The concrete account, for programs that know the protocol (a protocol's own commands).
    fn as_any(&self) -> &dyn Any;
}

/// The checks an input line of an account must pass before anything is reserved, and how the
/// account's batches are cut. Pure: no I/O, no secrets.
pub trait LineRules: Send + Sync + std::fmt::Debug {
    /// Every problem of one input line's transaction fields (the routing fields `account` and
    /// `ref` already removed), as messages naming the field; empty when the line is valid.
    /// Messages never quote a sensitive field's value.
    fn check(&self, fields: &[(&str, &str)]) -> Vec<String>;

    /// A new planner for one job's lines of this account.
    fn chunker(&self) -> Box<dyn Chunker>;
}

/// Sees every valid line of one account in input order, then says how large its batches may
/// grow.
pub trait Chunker: Send + Sync + std::fmt::Debug {
    /// What the planner must know of this line.
    fn item(&mut self, fields: &[(&str, &str)]) -> ChunkItem;

    /// The limits of a new batch once every line was seen.
    fn limits(&self, max_lines: usize) -> ChunkLimits;
}

/// Lines only: no key, no size ([`ChunkLimits::lines`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LineCountChunker;

impl Chunker for LineCountChunker {
    fn item(&mut self, _fields: &[(&str, &str)]) -> ChunkItem {
        ChunkItem::default()
    }
    fn limits(&self, max_lines: usize) -> ChunkLimits {
        ChunkLimits::lines(max_lines)
    }
}

/// What the planner must know of a fresh transaction to place it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkItem {
    /// Two transactions with the same key never share a new batch (APS: a hash of
    /// `merchant_reference`; a collision only closes a batch early). `None`: no constraint.
    pub key: Option<u64>,
    /// An upper bound of the bytes the transaction adds to its batch's file (0: not counted).
    pub size: u64,
}

/// How large a new batch may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// At most this many lines (at least 1).
    pub max_lines: usize,
    /// At most this many bytes: `overhead` plus every line's [`ChunkItem::size`] and
    /// `per_line`. `None`: no limit. A single line over the limit still gets a batch of its
    /// own (validation refuses such lines before planning).
    pub max_bytes: Option<u64>,
    /// The fixed part of every batch file (its header).
    pub overhead: u64,
    /// Bytes every line adds besides its own size (APS: an empty cell for each column some
    /// other line of the account brings).
    pub per_line: u64,
}

impl ChunkLimits {
    /// A line-count limit only.
    pub fn lines(max_lines: usize) -> Self {
        Self {
            max_lines,
            max_bytes: None,
            overhead: 0,
            per_line: 0,
        }
    }
}

/// Something an account may not share with another ([`Account::exclusive`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exclusive {
    /// Equal for two accounts exactly when they conflict (a protocol prefixes its own keys, so
    /// two protocols' keys never meet by accident).
    pub key: String,
    /// What sharing means, completing "accounts A and B …" (e.g. "use the same drop (…); each
    /// account needs a drop of its own").
    pub reason: String,
}
