//! eftcloud's additions to the POS API (a plain SmartConnect cloud does not have them): lookup
//! by the POS's own reference, cancel, register status, the event timeline.

use crate::client::PosClient;
use crate::error::PosError;
use protocol::pos_api::TransactionEnvelope;
use protocol::RegisterKey;
use serde::Deserialize;
use std::time::Duration;

/// How to find a transaction again.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// By the `PosReference` the POS sent with it.
    Reference(String),
    /// By its `transactionId`.
    Id(String),
}

/// `GET /pos/register`: the register's pairing and its device's state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterStatus {
    pub paired: bool,
    #[serde(default)]
    pub register_name: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    pub online: bool,
    pub busy: bool,
    #[serde(default)]
    pub active_transaction_id: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
}

/// One entry of a transaction's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TimelineEntry {
    pub at: String,
    pub event: String,
    pub detail: String,
}

#[derive(Deserialize)]
struct Timeline {
    events: Vec<TimelineEntry>,
}

pub(crate) fn register_query(register: &RegisterKey) -> [(&'static str, &str); 3] {
    [
        ("POSRegisterID", register.register_id.as_str()),
        ("POSBusinessName", register.business_name.as_str()),
        ("POSVendorName", register.vendor_name.as_str()),
    ]
}

/// The register triple as the start of a form body.
pub(crate) fn register_form(register: &RegisterKey) -> Vec<(&'static str, String)> {
    register_query(register)
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect()
}

impl PosClient {
    /// POSTs a job's form (the register, `fields`, the reference) to `url`, held up to `wait`
    /// for the job to complete: the follow-ups and the terminal actions.
    pub(crate) async fn post_job(
        &self,
        url: url::Url,
        register: &RegisterKey,
        fields: Vec<(&'static str, String)>,
        pos_reference: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<TransactionEnvelope, PosError> {
        let mut form = register_form(register);
        form.extend(fields);
        if let Some(r) = pos_reference {
            form.push(("PosReference", r.to_string()));
        }
        let resp = self
            .http()
            .post(url)
            .form(&form)
            .query(&wait_query(wait))
            .timeout(self.long_poll_timeout(wait))
            .send()
            .await?;
        crate::client::read_json(resp).await
    }
}

pub(crate) fn wait_query(wait: Option<Duration>) -> Vec<(&'static str, String)> {
    wait.map(|w| vec![("wait", format!("{:.3}", w.as_secs_f64()))])
        .unwrap_or_default()
}

impl PosClient {
    /// Finds a transaction of `register` again, for as long as the cloud retains it (long after
    /// the polling token expired). With `wait`, returns as soon as it completes (long-poll).
    pub async fn lookup(
        &self,
        register: &RegisterKey,
        by: &Lookup,
        wait: Option<Duration>,
    ) -> Result<TransactionEnvelope, PosError> {
        let url = self.endpoints().path(&["pos", "lookup"])?;
        let key = match by {
            Lookup::Reference(r) => ("PosReference", r.as_str()),
            Lookup::Id(id) => ("TransactionId", id.as_str()),
        };
        let resp = self
            .http()
            .get(url)
            .query(&register_query(register))
            .query(&[key])
            .query(&wait_query(wait))
            .timeout(self.long_poll_timeout(wait))
            .send()
            .await?;
        crate::client::read_json(resp).await
    }

    /// Asks the cloud to cancel a transaction the register started. Before the device started
    /// it, the answer is `CANCELLED` at once; otherwise the device decides, and with `wait` the
    /// answer holds the real outcome. A completed transaction gives a 409 [`PosError::Api`].
    pub async fn cancel(
        &self,
        register: &RegisterKey,
        transaction_id: &str,
        wait: Option<Duration>,
    ) -> Result<TransactionEnvelope, PosError> {
        let url = self
            .endpoints()
            .path(&["pos", "transaction", transaction_id, "cancel"])?;
        let resp = self
            .http()
            .post(url)
            .form(&register_query(register))
            .query(&wait_query(wait))
            .timeout(self.long_poll_timeout(wait))
            .send()
            .await?;
        crate::client::read_json(resp).await
    }

    /// Whether the register is paired, and its device online and busy.
    pub async fn register_status(
        &self,
        register: &RegisterKey,
    ) -> Result<RegisterStatus, PosError> {
        self.get_as_register(&["pos", "register"], register).await
    }

    /// `GET` of an extension route, the register triple in the query string.
    pub(crate) async fn get_as_register<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
        register: &RegisterKey,
    ) -> Result<T, PosError> {
        let url = self.endpoints().path(path)?;
        let resp = self
            .http()
            .get(url)
            .query(&register_query(register))
            .send()
            .await?;
        crate::client::read_json(resp).await
    }

    /// The event timeline of a transaction the register started.
    pub async fn events(
        &self,
        register: &RegisterKey,
        transaction_id: &str,
    ) -> Result<Vec<TimelineEntry>, PosError> {
        self.get_as_register::<Timeline>(
            &["pos", "transaction", transaction_id, "events"],
            register,
        )
        .await
        .map(|t| t.events)
    }

    /// A request holding for `wait` needs more than the ordinary timeout.
    pub(crate) fn long_poll_timeout(&self, wait: Option<Duration>) -> Duration {
        crate::client::REQUEST_TIMEOUT + wait.unwrap_or_default()
    }
}
