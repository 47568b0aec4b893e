//! An APS account: its checked settings, its input rules and batch limits, and the HTTPS
//! batch API it connects to.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use gateway_protocol::money::Currency;
use gateway_protocol::{
    Account, AccountCommon, AccountContext, AccountFactory, BatchFile, BatchLine, ChunkItem,
    ChunkLimits, Chunker, Env, Error, GatewayProtocol, LineRules, Masking, Result,
};
use kvp_format::SequenceNumber;
use sha2::{Digest, Sha256};

use crate::batch_file::{ApsTransaction, COLUMNS, header_size, row_size_bound};
use crate::config::ApsAccountConfig;
use crate::gateway::ApsBatchApi;
use crate::settings::ApsSettings;

/// `protocol = "aps"`.
pub const PROTOCOL: &str = "aps";

/// One APS merchant account, checked (its secrets are read from the environment only when it
/// connects).
#[derive(Debug)]
pub struct ApsAccount {
    name: String,
    common: AccountCommon,
    settings: ApsSettings,
    env: Arc<Env>,
    rules: ApsRules,
}

impl ApsAccount {
    /// Checks account `name`'s table.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the key: unknown keys, no endpoint or merchant identifier, an
    /// unknown currency, `max_batch_lines = 0`.
    pub fn new(
        name: &str,
        common: AccountCommon,
        table: config::Value,
        env: Arc<Env>,
    ) -> Result<Self> {
        let settings: ApsSettings = gateway_protocol::settings::from_table(name, table)?;
        let setting = |key: &str, message: String| Error::Setting {
            account: name.to_owned(),
            key: key.to_owned(),
            message,
        };
        if settings.endpoint.is_empty() || settings.merchant_identifier.is_empty() {
            return Err(setting(
                "endpoint",
                format!("APS account {name} needs endpoint and merchant_identifier"),
            ));
        }
        let currency = match &settings.currency {
            Some(code) => {
                Some(Currency::new(code).map_err(|e| setting("currency", e.to_string()))?)
            }
            None => None,
        };
        if common.max_batch_lines == Some(0) {
            return Err(setting("max_batch_lines", "must be at least 1".to_owned()));
        }
        let max_file_bytes = settings
            .max_file_bytes
            .unwrap_or(ApsAccountConfig::MAX_FILE_BYTES) as u64;
        Ok(Self {
            name: name.to_owned(),
            rules: ApsRules {
                account: name.to_owned(),
                common: common.clone(),
                currency,
                max_file_bytes,
            },
            common,
            settings,
            env,
        })
    }

    /// The account's keys as configured.
    pub fn settings(&self) -> &ApsSettings {
        &self.settings
    }

    /// The client configuration, secrets read from the environment.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the key: a secret's variable unset, a bad endpoint, language
    /// or prefix.
    pub fn config(&self) -> Result<ApsAccountConfig> {
        self.settings
            .resolve(&self.name, &self.env)
            .map_err(|e| Error::Setting {
                account: self.name.clone(),
                key: "*".to_owned(),
                message: e.to_string(),
            })
    }
}

#[async_trait]
impl Account for ApsAccount {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn common(&self) -> &AccountCommon {
        &self.common
    }

    fn rules(&self) -> &dyn LineRules {
        &self.rules
    }

    async fn connect(&self) -> Result<Arc<dyn GatewayProtocol>> {
        Ok(Arc::new(ApsBatchApi::new(self.config()?)?))
    }

    fn batch_files(
        &self,
        sequence: SequenceNumber,
        lines: &[BatchLine<'_>],
        masking: Masking,
    ) -> Result<Vec<BatchFile>> {
        // The client makes no request until a step is called.
        ApsBatchApi::new(self.config()?)?.batch_files(sequence, lines, masking)
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(&self.settings).unwrap_or_default()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What an APS input line must be (exactly what the batch file writer will accept, within the
/// account's file limit and allowed commands), and how its batches are cut: no
/// `merchant_reference` twice in one file, and the file under `max_file_bytes`.
#[derive(Debug, Clone)]
pub struct ApsRules {
    account: String,
    common: AccountCommon,
    currency: Option<Currency>,
    max_file_bytes: u64,
}

impl LineRules for ApsRules {
    fn check(&self, fields: &[(&str, &str)]) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = ApsTransaction::from_fields(fields.iter().copied(), self.currency) {
            problems.push(e.to_string());
        }
        if header_size() + row_size_bound(fields) > self.max_file_bytes {
            problems.push(format!(
                "line could be larger than the APS batch file limit of {} bytes",
                self.max_file_bytes
            ));
        }
        // A missing `command` is already reported by the batch file writer.
        if let Some((_, command)) = fields
            .iter()
            .find(|(k, v)| *k == "command" && !v.is_empty())
            && !self.common.allows(command)
        {
            problems.push(format!(
                "command {command:?} is not allowed for account {}",
                self.account
            ));
        }
        problems
    }

    fn chunker(&self) -> Box<dyn Chunker> {
        Box::new(ApsChunker {
            max_file_bytes: self.max_file_bytes,
            extra_columns: HashSet::new(),
        })
    }
}

/// Cuts an APS account's batches: each line's `merchant_reference` (hashed) as its key, its
/// row's size bound, and one empty cell per extra column any line of the account brings.
#[derive(Debug)]
struct ApsChunker {
    max_file_bytes: u64,
    extra_columns: HashSet<String>,
}

impl Chunker for ApsChunker {
    fn item(&mut self, fields: &[(&str, &str)]) -> ChunkItem {
        for (k, _) in fields {
            if !COLUMNS.contains(k) && !self.extra_columns.contains(*k) {
                self.extra_columns.insert((*k).to_owned());
            }
        }
        let reference = fields
            .iter()
            .find(|(k, _)| *k == "merchant_reference")
            .map_or("", |(_, v)| v.trim());
        let digest = Sha256::digest(reference.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        ChunkItem {
            key: Some(u64::from_le_bytes(bytes).max(1)),
            size: row_size_bound(fields),
        }
    }

    fn limits(&self, max_lines: usize) -> ChunkLimits {
        ChunkLimits {
            max_lines,
            max_bytes: Some(self.max_file_bytes),
            overhead: header_size(),
            per_line: self.extra_columns.len() as u64,
        }
    }
}

/// Builds APS accounts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApsFactory;

impl AccountFactory for ApsFactory {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn secret_keys(&self) -> &'static [&'static str] {
        &["access_code", "sha_request_phrase", "sha_response_phrase"]
    }

    fn account(
        &self,
        name: &str,
        table: config::Value,
        context: AccountContext<'_>,
    ) -> Result<Arc<dyn gateway_protocol::Account>> {
        Ok(Arc::new(ApsAccount::new(
            name,
            context.common.clone(),
            table,
            context.env.clone(),
        )?))
    }
}

/// The APS factory, for a program wiring protocols.
pub fn factory() -> Arc<dyn AccountFactory> {
    Arc::new(ApsFactory)
}
