//! Webhook endpoints as their owners manage them (create, change, rotate the secret, delete,
//! read the delivery log, ask for a redelivery), and the store side of delivering to them: the
//! lease that lets one node at a time deliver to an endpoint (so its events go in order), the
//! queue of events after its cursor, and each attempt recorded with what it moves. The HTTP
//! side is `pos_api::webhook_delivery`.

use super::accounts::{entry, Actor};
use super::{Engine, EngineError};
use crate::domain::accounts::KeyOwner;
use crate::domain::events::{Event, EventError, EventId, TypeFilter};
use crate::domain::webhooks::{
    self, Attempt, Endpoint, EndpointId, Owner, Progress, WebhookError, DEFAULT_GRACE_SECS,
    MAX_DESCRIPTION, MAX_GRACE_SECS,
};
use crate::store::InsertError;
use chrono::{DateTime, Utc};
use url::Url;

/// Longest wait for the resolution of a target's name when it is saved.
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Why a management request is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookAdminError {
    #[error(transparent)]
    Bad(#[from] WebhookError),
    #[error(transparent)]
    Types(#[from] EventError),
    /// Also another owner's endpoint, so ids cannot be probed.
    #[error("Webhook endpoint not found")]
    NotFound,
    /// The event to redeliver is not one this endpoint receives.
    #[error("Event not found for this endpoint")]
    EventNotFound,
    #[error("only the installation's credentials can create an endpoint for another owner")]
    OwnerForbidden,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for WebhookAdminError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Engine(e.into())
    }
}

/// What an owner changes; absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub types: Option<TypeFilter>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

fn description(d: &str) -> Result<String, WebhookError> {
    let d = d.trim();
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(WebhookError::LongDescription);
    }
    Ok(d.to_string())
}

/// The audit target of an endpoint, and its merchant.
fn audit(
    actor: &Actor,
    at: DateTime<Utc>,
    action: &str,
    e: &Endpoint,
    detail: serde_json::Value,
) -> crate::domain::accounts::AuditEntry {
    crate::domain::accounts::AuditEntry {
        merchant_id: match &e.owner {
            Owner::Merchant(m) => Some(m.clone()),
            _ => None,
        },
        detail: detail.to_string(),
        ..entry(actor, at, action, e.id.as_str())
    }
}

impl Engine {
    /// Checks a target: a well-formed http(s) URL and, where the operator refuses private
    /// targets (`--production` without `--webhook-allow-private`), one whose host is no
    /// loopback, private or link-local address and resolves to none (the delivery checks
    /// again, at connect time).
    pub async fn check_webhook_target(&self, url: &str) -> Result<Url, WebhookError> {
        let url = webhooks::parse_url(url)?;
        if !self.settings().refuse_private_webhooks {
            return Ok(url);
        }
        let refused = || WebhookError::PrivateTarget(url.host_str().unwrap_or("").to_string());
        match url.host() {
            Some(url::Host::Ipv4(ip)) if webhooks::is_private(ip.into()) => return Err(refused()),
            Some(url::Host::Ipv6(ip)) if webhooks::is_private(ip.into()) => return Err(refused()),
            Some(url::Host::Domain(name)) => {
                // A name that does not resolve (yet) is taken: each delivery checks again.
                let port = url.port_or_known_default().unwrap_or(443);
                let lookup = tokio::net::lookup_host((name, port));
                if let Ok(Ok(addrs)) = tokio::time::timeout(DNS_TIMEOUT, lookup).await {
                    if addrs.into_iter().any(|a| webhooks::is_private(a.ip())) {
                        return Err(refused());
                    }
                }
            }
            _ => {}
        }
        Ok(url)
    }

    /// Creates an endpoint for `owner` (only the installation's credentials may name another
    /// owner than their own). It receives events logged from now on.
    pub async fn create_webhook(
        &self,
        manager: &KeyOwner,
        owner: Owner,
        url: &str,
        types: TypeFilter,
        about: &str,
        actor: &Actor,
    ) -> Result<Endpoint, WebhookAdminError> {
        if !owner.managed_by(manager) {
            return Err(WebhookAdminError::OwnerForbidden);
        }
        let url = self.check_webhook_target(url).await?;
        let now = self.now();
        let endpoint = Endpoint {
            id: EndpointId::new(),
            owner,
            url,
            types,
            description: description(about)?,
            secret: webhooks::generate_secret(),
            previous_secret: None,
            enabled: true,
            disabled_reason: None,
            created_at: now,
            cursor: self.store().log_head().await?,
            attempts: 0,
            failing_since: None,
            next_attempt_at: now,
        };
        let audit = audit(
            actor,
            now,
            "webhook.created",
            &endpoint,
            serde_json::json!({"url": endpoint.url.as_str(), "eventTypes": endpoint.types.names()}),
        );
        match self.store().insert_webhook(&endpoint, &audit).await {
            Ok(()) => Ok(endpoint),
            Err(InsertError::Store(e)) => Err(e.into()),
            // A fresh random id: cannot collide.
            Err(e) => {
                Err(EngineError::Store(crate::store::StoreError::Corrupt(e.to_string())).into())
            }
        }
    }

    /// The endpoints `manager` sees.
    pub async fn webhooks_of(
        &self,
        manager: &KeyOwner,
    ) -> Result<Vec<Endpoint>, WebhookAdminError> {
        Ok(self
            .store()
            .webhooks()
            .await?
            .into_iter()
            .filter(|e| e.owner.managed_by(manager))
            .collect())
    }

    /// One endpoint `manager` sees.
    pub async fn webhook_of(
        &self,
        manager: &KeyOwner,
        id: &EndpointId,
    ) -> Result<Endpoint, WebhookAdminError> {
        self.store()
            .webhook(id)
            .await?
            .filter(|e| e.owner.managed_by(manager))
            .ok_or(WebhookAdminError::NotFound)
    }

    /// Applies a change; re-enabling an endpoint the cloud disabled clears its failures (it
    /// goes on from where it stopped).
    pub async fn change_webhook(
        &self,
        manager: &KeyOwner,
        id: &EndpointId,
        change: WebhookChange,
        actor: &Actor,
    ) -> Result<Endpoint, WebhookAdminError> {
        let mut e = self.webhook_of(manager, id).await?;
        if let Some(url) = &change.url {
            e.url = self.check_webhook_target(url).await?;
        }
        if let Some(types) = change.types.clone() {
            e.types = types;
        }
        if let Some(d) = &change.description {
            e.description = description(d)?;
        }
        if let Some(enabled) = change.enabled {
            if enabled && !e.enabled {
                e.attempts = 0;
                e.failing_since = None;
            }
            e.enabled = enabled;
            e.disabled_reason = None;
        }
        let audit = audit(
            actor,
            self.now(),
            "webhook.changed",
            &e,
            serde_json::json!({
                "url": e.url.as_str(),
                "eventTypes": e.types.names(),
                "enabled": e.enabled,
            }),
        );
        if !self.store().update_webhook(&e, &audit).await? {
            return Err(WebhookAdminError::NotFound);
        }
        if e.enabled {
            self.events_logged_here();
        }
        Ok(e)
    }

    /// Replaces the signing secret; the old one still signs (beside the new) for
    /// `grace_secs` (default a day), so receivers can switch without losing a delivery.
    pub async fn rotate_webhook_secret(
        &self,
        manager: &KeyOwner,
        id: &EndpointId,
        grace_secs: Option<i64>,
        actor: &Actor,
    ) -> Result<Endpoint, WebhookAdminError> {
        let grace = grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
        if !(0..=MAX_GRACE_SECS).contains(&grace) {
            return Err(WebhookError::BadGrace.into());
        }
        let mut e = self.webhook_of(manager, id).await?;
        let now = self.now();
        let old = std::mem::replace(&mut e.secret, webhooks::generate_secret());
        e.previous_secret = (grace > 0).then(|| (old, now + chrono::Duration::seconds(grace)));
        let audit = audit(
            actor,
            now,
            "webhook.secret_rotated",
            &e,
            serde_json::json!({"graceSeconds": grace}),
        );
        if !self.store().update_webhook(&e, &audit).await? {
            return Err(WebhookAdminError::NotFound);
        }
        Ok(e)
    }

    /// Deletes an endpoint with its delivery log.
    pub async fn delete_webhook(
        &self,
        manager: &KeyOwner,
        id: &EndpointId,
        actor: &Actor,
    ) -> Result<(), WebhookAdminError> {
        let e = self.webhook_of(manager, id).await?;
        let audit = audit(
            actor,
            self.now(),
            "webhook.deleted",
            &e,
            serde_json::json!({}),
        );
        if !self.store().delete_webhook(id, &audit).await? {
            return Err(WebhookAdminError::NotFound);
        }
        Ok(())
    }

    /// The endpoint's newest attempts, newest first.
    pub async fn webhook_log(
        &self,
        manager: &KeyOwner,
        id: &EndpointId,
        limit: u32,
    ) -> Result<Vec<Attempt>, WebhookAdminError> {
        self.webhook_of(manager, id).await?;
        Ok(self.store().webhook_deliveries(id, limit).await?)
    }

    /// Asks for an event the endpoint receives to be delivered again, ahead of its queue.
    pub async fn redeliver_webhook(
        &self,
        manager: &KeyOwner,
        id: &EndpointId,
        event: &EventId,
    ) -> Result<(), WebhookAdminError> {
        let e = self.webhook_of(manager, id).await?;
        let logged = self
            .store()
            .logged_event(event)
            .await?
            .filter(|l| e.owner.audience().sees(&l.event) && e.types.matches(l.event.kind))
            .ok_or(WebhookAdminError::EventNotFound)?;
        if !self
            .store()
            .queue_redelivery(id, &logged.event.id, self.now())
            .await?
        {
            return Err(WebhookAdminError::NotFound);
        }
        self.events_logged_here();
        Ok(())
    }

    // The dispatcher's side.

    /// Every enabled endpoint (the dispatcher picks those due, and when the next is).
    pub async fn enabled_webhooks(&self) -> Result<Vec<Endpoint>, EngineError> {
        Ok(self
            .store()
            .webhooks()
            .await?
            .into_iter()
            .filter(|e| e.enabled)
            .collect())
    }

    /// Leases the endpoint to `holder` until `until`, if it is due and nobody else holds it.
    pub async fn lease_webhook(
        &self,
        id: &EndpointId,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, EngineError> {
        Ok(self
            .store()
            .lease_webhook(id, holder, self.now(), until)
            .await?)
    }

    /// The redeliveries asked for, as events (one no longer kept comes back as its id only).
    pub async fn webhook_redeliveries(
        &self,
        e: &Endpoint,
    ) -> Result<Vec<Result<Event, EventId>>, EngineError> {
        let mut out = Vec::new();
        for id in self.store().redeliveries(&e.id).await? {
            out.push(self.store().logged_event(&id).await?.ok_or(id));
        }
        Ok(out)
    }

    /// Whether the endpoint has something to deliver: a redelivery asked for, or an event
    /// after its cursor.
    pub async fn webhook_has_work(&self, e: &Endpoint) -> Result<bool, EngineError> {
        Ok(!self.webhook_queue(e, 1).await?.is_empty()
            || !self.store().redeliveries(&e.id).await?.is_empty())
    }

    /// The next events of the endpoint's queue, after its cursor.
    pub async fn webhook_queue(&self, e: &Endpoint, limit: u32) -> Result<Vec<Event>, EngineError> {
        let types = if e.types.is_all() {
            Vec::new()
        } else {
            e.types.types()
        };
        Ok(self
            .store()
            .log_after(&e.cursor, &e.owner.audience(), &types, limit)
            .await?)
    }

    /// Records an attempt and what it moves; false if `holder` lost the lease (stop then).
    /// A failure that disables the endpoint leaves an audit entry, the notice its owner sees
    /// beside `disabledReason`.
    pub async fn record_webhook(
        &self,
        e: &Endpoint,
        holder: &str,
        attempt: &Attempt,
        progress: &Progress,
        until: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        let notice = match progress {
            Progress::Failed(f) => f.disable.as_ref().map(|reason| {
                tracing::warn!(endpoint = %e.id, url = %e.url, reason = %reason, "webhook endpoint disabled");
                audit(
                    &Actor {
                        name: "eftcloud".into(),
                        source: None,
                    },
                    attempt.at,
                    "webhook.disabled",
                    e,
                    serde_json::json!({"reason": reason, "url": e.url.as_str()}),
                )
            }),
            _ => None,
        };
        Ok(self
            .store()
            .record_webhook_attempt(&e.id, holder, attempt, progress, until, notice.as_ref())
            .await?)
    }

    /// Gives the lease up.
    pub async fn release_webhook(&self, id: &EndpointId, holder: &str) -> Result<(), EngineError> {
        Ok(self.store().release_webhook(id, holder).await?)
    }
}
