//! A Sola account: its checked settings, its input rules, and the file drop it connects to.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use gateway_protocol::{
    Account, AccountCommon, AccountContext, AccountFactory, BatchFile, BatchLine, Env, Error,
    Exclusive, GatewayProtocol, LineRules, Masking, Result,
};
use kvp_format::{Secret, SequenceNumber};
use storage_backends::{Backend, BackendOptions, Location};

use crate::drop::SolaFileDrop;
use crate::rules::SolaRules;
use crate::settings::{GatewaySettings, SolaSettings, StorageSettings};

/// `protocol = "sola"` (the default).
pub const PROTOCOL: &str = "sola";

/// One Sola account, checked: where its drop is, how to reach it, its keys (read from the
/// environment only when it connects) and its input rules.
#[derive(Debug)]
pub struct SolaAccount {
    name: String,
    common: AccountCommon,
    settings: SolaSettings,
    location: Location,
    storage: StorageSettings,
    gateway: GatewaySettings,
    env: Arc<Env>,
    rules: SolaRules,
}

impl SolaAccount {
    /// Checks `settings` for account `name`.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the key (see [`SolaSettings::from_table`]).
    pub fn new(
        name: &str,
        common: AccountCommon,
        table: config::Value,
        storage: StorageSettings,
        gateway: GatewaySettings,
        env: Arc<Env>,
    ) -> Result<Self> {
        let (settings, location) = SolaSettings::from_table(name, table)?;
        if common.max_batch_lines == Some(0) {
            return Err(Error::Setting {
                account: name.to_owned(),
                key: "max_batch_lines".to_owned(),
                message: "must be at least 1".to_owned(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            rules: SolaRules::new(name, common.clone()),
            common,
            settings,
            location,
            storage,
            gateway,
            env,
        })
    }

    /// The drop's location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The account's keys as configured.
    pub fn settings(&self) -> &SolaSettings {
        &self.settings
    }

    /// `[gateway]`.
    pub fn gateway(&self) -> &GatewaySettings {
        &self.gateway
    }

    /// How the drop is opened: `[storage]` and the account's SFTP and S3 keys (S3 credentials
    /// read from the environment now).
    ///
    /// # Errors
    /// [`Error::Setting`] for an unset credential variable.
    pub fn backend_options(&self) -> Result<BackendOptions> {
        self.settings
            .backend_options(&self.name, &self.storage, &self.env)
    }

    /// The batch upload credential.
    ///
    /// # Errors
    /// [`Error::Setting`] when its variable is unset.
    pub fn batch_key(&self) -> Result<Secret<String>> {
        self.settings.batch_key(&self.name, &self.env)
    }

    /// The merchant key.
    ///
    /// # Errors
    /// [`Error::Setting`] when its variable is unset.
    pub fn merchant_key(&self) -> Result<Secret<String>> {
        self.settings.merchant_key(&self.name, &self.env)
    }

    /// The file drop of this account on a backend the caller opened (or wrapped).
    ///
    /// # Errors
    /// [`Error::Setting`] when a key's variable is unset.
    pub fn on_backend(&self, backend: Arc<dyn Backend>) -> Result<SolaFileDrop> {
        Ok(SolaFileDrop::new(
            &self.name,
            backend,
            self.batch_key()?,
            self.merchant_key()?,
            &self.gateway,
        ))
    }
}

#[async_trait]
impl Account for SolaAccount {
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
        // Keys first: a missing variable is reported before any connection is tried.
        self.batch_key()?;
        self.merchant_key()?;
        let options = self.backend_options()?;
        let backend = storage_backends::open(&self.location, &options)
            .await
            .map_err(|source| Error::Storage {
                account: self.name.clone(),
                path: String::new(),
                transient: source.is_transient(),
                source: Box::new(source),
            })?;
        Ok(Arc::new(self.on_backend(backend)?))
    }

    fn batch_files(
        &self,
        sequence: SequenceNumber,
        lines: &[BatchLine<'_>],
        masking: Masking,
    ) -> Result<Vec<BatchFile>> {
        let keys = match masking {
            Masking::Unmasked => Some((self.merchant_key()?, self.batch_key()?)),
            _ => None,
        };
        let keys = keys
            .as_ref()
            .map(|(m, b)| (m.expose().as_str(), b.expose().as_str()));
        Ok(crate::drop::batch_files(
            &self.gateway,
            keys,
            sequence,
            lines,
            masking,
        ))
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(&self.settings).unwrap_or_default()
    }

    fn exclusive(&self) -> Option<Exclusive> {
        Some(Exclusive {
            key: format!("sola drop {:?}", self.location.drop_key()),
            reason: format!(
                "use the same drop ({}); each account needs a drop of its own — sequence numbers are per drop, and the gateway would silently ignore one account's batches",
                self.location
            ),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Builds Sola accounts; owns the `[storage]` and `[gateway]` sections.
#[derive(Debug, Clone, Copy, Default)]
pub struct SolaFactory;

impl AccountFactory for SolaFactory {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn sections(&self) -> &'static [&'static str] {
        &["storage", "gateway"]
    }

    fn check_sections(&self, sections: &config::Map<String, config::Value>) -> Result<()> {
        StorageSettings::from_section(sections.get("storage"))?;
        GatewaySettings::from_section(sections.get("gateway"))?;
        Ok(())
    }

    fn secret_keys(&self) -> &'static [&'static str] {
        &["batch_key", "merchant_key"]
    }

    fn account(
        &self,
        name: &str,
        table: config::Value,
        context: AccountContext<'_>,
    ) -> Result<Arc<dyn Account>> {
        let storage = StorageSettings::from_section(context.sections.get("storage"))?;
        let gateway = GatewaySettings::from_section(context.sections.get("gateway"))?;
        Ok(Arc::new(SolaAccount::new(
            name,
            context.common.clone(),
            table,
            storage,
            gateway,
            context.env.clone(),
        )?))
    }
}

/// The Sola factory, for a program wiring protocols.
pub fn factory() -> Arc<dyn AccountFactory> {
    Arc::new(SolaFactory)
}
