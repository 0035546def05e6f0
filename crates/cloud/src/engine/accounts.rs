//! Merchants, sites and API keys: creating them, authenticating keys, and the audit log every
//! such change writes in the same commit.
//!
//! A key reads `eftk_<id>_<secret>`: the id (12 hex digits) is public, shown in lists and the
//! audit log so a key can be recognised; the secret is 256 random bits, of which only the
//! SHA-256 is stored (a slow hash adds nothing at that entropy). Every request with a key
//! reads its row, so a revocation holds at once on every node sharing the store.

use super::devices::{constant_time_eq, hash_secret, random_hex};
use super::Engine;
use crate::domain::accounts::{
    AccountError, ApiKeyRecord, AuditEntry, AuditQuery, KeyOwner, MerchantId, MerchantRecord,
    Principal, Scopes, SiteId, SiteRecord,
};
use crate::store::{InsertError, StoreError};
use chrono::{DateTime, Utc};

/// What every key starts with, so a leaked one is recognised (secret scanners, logs).
pub const KEY_PREFIX: &str = "eftk_";
/// How often a key's last-used time is written at most: a read per request, not a write.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Who did an admin action, and from where, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `key:<id>`, `admin-token`, `cli`.
    pub name: String,
    pub source: Option<String>,
}

impl Actor {
    /// The command line on the machine itself.
    pub fn cli() -> Self {
        Self {
            name: "cli".into(),
            source: None,
        }
    }

    /// A principal over the network from `source`.
    pub fn of(principal: &Principal, source: Option<std::net::IpAddr>) -> Self {
        let name = match principal {
            Principal::Key { id, .. } if id == "admin-token" => "admin-token".into(),
            p => p.actor(),
        };
        Self {
            name,
            source: source.map(|s| s.to_string()),
        }
    }
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Invalid(#[from] AccountError),
    #[error("a merchant named '{0}' already exists")]
    MerchantExists(String),
    #[error("merchant '{0}' has a site named '{1}' already")]
    SiteExists(String, String),
    #[error("no merchant '{0}'")]
    NoMerchant(String),
    #[error("no site '{0}' of this merchant")]
    NoSite(String),
    #[error("no API key '{0}' (or it is revoked already)")]
    NoKey(String),
    #[error("an expiry must be in the future")]
    ExpiryPassed,
    #[error("a maximum tip is a percentage from 0 to 100")]
    TipPercentOutOfRange,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a presented key opens nothing. One answer to the client whichever it is.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefused {
    #[error("not an eftcloud API key (eftk_<id>_<secret>)")]
    Malformed,
    #[error("unknown, revoked or expired API key")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub owner: KeyOwner,
    pub scopes: Scopes,
    pub label: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key just created: its record and the key itself, which is shown this once.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

/// Splits a presented key into its id and secret.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hexdigits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexdigits(id, 12) && hexdigits(secret, 64)).then_some((id, secret))
}

pub(crate) fn entry(actor: &Actor, at: DateTime<Utc>, action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at,
        actor: actor.name.clone(),
        source: actor.source.clone(),
        action: action.into(),
        target: target.into(),
        merchant_id: None,
        detail: "{}".into(),
    }
}

impl Engine {
    /// Adds a merchant.
    pub async fn create_merchant(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<MerchantRecord, AccountsError> {
        let name = crate::domain::accounts::parse_name(name)?;
        let now = self.now();
        let merchant = MerchantRecord {
            id: MerchantId::new(),
            name: name.clone(),
            created_at: now,
            currency: protocol::Currency::AUD,
            max_tip_percent: crate::domain::payments::DEFAULT_MAX_TIP_PERCENT,
        };
        let audit = AuditEntry {
            merchant_id: Some(merchant.id.clone()),
            detail: serde_json::json!({ "name": name }).to_string(),
            ..entry(actor, now, "merchant.created", merchant.id.as_str())
        };
        match self.store().create_merchant(&merchant, &audit).await {
            Ok(()) => Ok(merchant),
            Err(InsertError::Store(e)) => Err(e.into()),
            Err(_) => Err(AccountsError::MerchantExists(name)),
        }
    }

    /// Sets a merchant's default currency (of requests that name none) and its tip limit
    /// (of tip adjustments, a percentage of the amount asked for); what is not given stays.
    pub async fn set_merchant_terms(
        &self,
        merchant: &MerchantRecord,
        currency: Option<protocol::Currency>,
        max_tip_percent: Option<u32>,
        actor: &Actor,
    ) -> Result<MerchantRecord, AccountsError> {
        let currency = currency.unwrap_or(merchant.currency);
        let max_tip_percent = max_tip_percent.unwrap_or(merchant.max_tip_percent);
        if max_tip_percent > 100 {
            return Err(AccountsError::TipPercentOutOfRange);
        }
        let audit = AuditEntry {
            merchant_id: Some(merchant.id.clone()),
            detail: serde_json::json!({
                "currency": currency.code(), "maxTipPercent": max_tip_percent,
            })
            .to_string(),
            ..entry(
                actor,
                self.now(),
                "merchant.terms_set",
                merchant.id.as_str(),
            )
        };
        if !self
            .store()
            .set_merchant_terms(&merchant.id, currency, max_tip_percent, &audit)
            .await?
        {
            return Err(AccountsError::NoMerchant(merchant.id.to_string()));
        }
        Ok(MerchantRecord {
            currency,
            max_tip_percent,
            ..merchant.clone()
        })
    }

    /// The merchant a command names by id or by name.
    pub async fn find_merchant(&self, id_or_name: &str) -> Result<MerchantRecord, AccountsError> {
        if let Ok(id) = MerchantId::parse(id_or_name) {
            if let Some(m) = self.store().merchant(&id).await? {
                return Ok(m);
            }
        }
        self.store()
            .merchant_named(id_or_name.trim())
            .await?
            .ok_or_else(|| AccountsError::NoMerchant(id_or_name.to_string()))
    }

    /// The merchant named so, created if there is none (enrolling a device names its merchant,
    /// as before merchants existed).
    pub async fn merchant_for_device(
        &self,
        id_or_name: &str,
        actor: &Actor,
    ) -> Result<MerchantRecord, AccountsError> {
        let name = if id_or_name.trim().is_empty() {
            "Unnamed merchant"
        } else {
            id_or_name
        };
        match self.find_merchant(name).await {
            Err(AccountsError::NoMerchant(_)) => match self.create_merchant(name, actor).await {
                // Another enrollment created it meanwhile.
                Err(AccountsError::MerchantExists(_)) => self.find_merchant(name).await,
                other => other,
            },
            other => other,
        }
    }

    /// One merchant.
    pub async fn merchant(&self, id: &MerchantId) -> Result<Option<MerchantRecord>, StoreError> {
        self.store().merchant(id).await
    }

    /// Every merchant, by name.
    pub async fn merchants(&self) -> Result<Vec<MerchantRecord>, StoreError> {
        self.store().merchants().await
    }

    /// Adds a site to a merchant.
    pub async fn create_site(
        &self,
        merchant: &MerchantRecord,
        name: &str,
        actor: &Actor,
    ) -> Result<SiteRecord, AccountsError> {
        let name = crate::domain::accounts::parse_name(name)?;
        let now = self.now();
        let site = SiteRecord {
            id: SiteId::new(),
            merchant_id: merchant.id.clone(),
            name: name.clone(),
            created_at: now,
            time_zone: "UTC".into(),
        };
        let audit = AuditEntry {
            merchant_id: Some(merchant.id.clone()),
            detail: serde_json::json!({ "name": name }).to_string(),
            ..entry(actor, now, "site.created", site.id.as_str())
        };
        match self.store().create_site(&site, &audit).await {
            Ok(()) => Ok(site),
            Err(InsertError::Store(e)) => Err(e.into()),
            Err(_) => Err(AccountsError::SiteExists(merchant.name.clone(), name)),
        }
    }

    /// A site by id.
    pub async fn site(&self, id: &SiteId) -> Result<Option<SiteRecord>, AccountsError> {
        Ok(self.store().site(id).await?)
    }

    /// Sets a site's time zone (for update campaigns' maintenance windows).
    pub async fn set_site_time_zone(
        &self,
        site: &SiteRecord,
        time_zone: &str,
        actor: &Actor,
    ) -> Result<SiteRecord, AccountsError> {
        let tz = crate::domain::accounts::parse_time_zone(time_zone)?;
        let name = tz.name().to_string();
        let audit = AuditEntry {
            merchant_id: Some(site.merchant_id.clone()),
            detail: serde_json::json!({ "timeZone": name }).to_string(),
            ..entry(actor, self.now(), "site.time_zone_set", site.id.as_str())
        };
        if !self
            .store()
            .set_site_time_zone(&site.id, &name, &audit)
            .await?
        {
            return Err(AccountsError::NoSite(site.id.to_string()));
        }
        Ok(SiteRecord {
            time_zone: name,
            ..site.clone()
        })
    }

    /// The site of `merchant` a command names by id or by name.
    pub async fn find_site(
        &self,
        merchant: &MerchantId,
        id_or_name: &str,
    ) -> Result<SiteRecord, AccountsError> {
        let sites = self.store().sites(Some(merchant)).await?;
        let by_id = SiteId::parse(id_or_name).ok();
        sites
            .into_iter()
            .find(|s| Some(&s.id) == by_id.as_ref() || s.name == id_or_name.trim())
            .ok_or_else(|| AccountsError::NoSite(id_or_name.to_string()))
    }

    /// The sites of one merchant or all.
    pub async fn sites(
        &self,
        merchant: Option<&MerchantId>,
    ) -> Result<Vec<SiteRecord>, StoreError> {
        self.store().sites(merchant).await
    }

    /// Creates an API key; the key itself is in the answer and nowhere else.
    pub async fn create_api_key(
        &self,
        new: NewApiKey,
        actor: &Actor,
    ) -> Result<CreatedKey, AccountsError> {
        new.owner.check_scopes(&new.scopes)?;
        let now = self.now();
        if new.expires_at.is_some_and(|e| e <= now) {
            return Err(AccountsError::ExpiryPassed);
        }
        if let KeyOwner::Merchant(m) = &new.owner {
            if self.store().merchant(m).await?.is_none() {
                return Err(AccountsError::NoMerchant(m.to_string()));
            }
        }
        let id = random_hex(6);
        let secret = random_hex(32);
        let record = ApiKeyRecord {
            id: id.clone(),
            secret_hash: hash_secret(&secret),
            owner: new.owner,
            scopes: new.scopes,
            label: new.label,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let audit = AuditEntry {
            merchant_id: record_merchant(&record).cloned(),
            detail: key_detail(&record).to_string(),
            ..entry(actor, now, "api_key.created", &id)
        };
        match self.store().insert_api_key(&record, &audit).await {
            Ok(()) => Ok(CreatedKey {
                record,
                key: format!("{KEY_PREFIX}{id}_{secret}"),
            }),
            Err(InsertError::Store(e)) => Err(e.into()),
            // 48 random bits collide about never; the operator may simply try again.
            Err(_) => Err(StoreError::Corrupt(format!("API key id {id} exists already")).into()),
        }
    }

    /// The keys `principal` may see (a merchant's own, or all), newest first.
    pub async fn api_keys(&self, principal: &Principal) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.store().api_keys(principal.merchant()).await
    }

    /// Revokes a key `principal` may see; effective at once on every node.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        principal: &Principal,
        actor: &Actor,
    ) -> Result<ApiKeyRecord, AccountsError> {
        let not_found = || AccountsError::NoKey(id.to_string());
        let record = self.store().api_key(id).await?.ok_or_else(not_found)?;
        if principal.merchant().is_some() && principal.merchant() != record_merchant(&record) {
            return Err(not_found());
        }
        let now = self.now();
        let audit = AuditEntry {
            merchant_id: record_merchant(&record).cloned(),
            detail: key_detail(&record).to_string(),
            ..entry(actor, now, "api_key.revoked", id)
        };
        if !self.store().revoke_api_key(id, now, &audit).await? {
            return Err(not_found());
        }
        Ok(ApiKeyRecord {
            revoked_at: Some(now),
            ..record
        })
    }

    /// The principal a presented key stands for. One store read; the last-used time is written
    /// at most once a minute per key.
    pub async fn authenticate_key(&self, presented: &str) -> Result<Principal, KeyRefused> {
        let (id, secret) = parse_key(presented).ok_or(KeyRefused::Malformed)?;
        let record = self.store().api_key(id).await?.ok_or(KeyRefused::Invalid)?;
        let now = self.now();
        if !constant_time_eq(
            hash_secret(secret).as_bytes(),
            record.secret_hash.as_bytes(),
        ) || !record.is_live(now)
        {
            return Err(KeyRefused::Invalid);
        }
        if record.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY) {
            // A lost last-used time is not worth refusing the request for.
            if let Err(e) = self.store().touch_api_key(id, now).await {
                tracing::debug!(key = id, error = %e, "could not record the key's use");
            }
        }
        Ok(Principal::Key {
            id: record.id,
            owner: record.owner,
            scopes: record.scopes,
        })
    }

    /// Audit entries, newest first; a merchant's principal sees its merchant's only.
    pub async fn audit_log(
        &self,
        principal: &Principal,
        mut q: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        if let Some(m) = principal.merchant() {
            q.merchant = Some(m.clone());
        }
        self.store().audit(&q).await
    }
}

fn record_merchant(k: &ApiKeyRecord) -> Option<&MerchantId> {
    match &k.owner {
        KeyOwner::Merchant(m) => Some(m),
        _ => None,
    }
}

/// What the audit log says of a key (never its secret or hash).
fn key_detail(k: &ApiKeyRecord) -> serde_json::Value {
    serde_json::json!({
        "owner": owner_label(&k.owner),
        "scopes": k.scopes.to_string(),
        "label": k.label,
        "expiresAt": k.expires_at.map(|t| t.to_rfc3339()),
    })
}

/// `installation`, `merchant:<id>`, `vendor:<name>`.
pub fn owner_label(owner: &KeyOwner) -> String {
    match owner {
        KeyOwner::Installation => "installation".into(),
        KeyOwner::Merchant(m) => format!("merchant:{m}"),
        KeyOwner::Vendor(v) => format!("vendor:{v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_only_in_their_own_shape() {
        let id = "0123456789ab";
        let secret = "f".repeat(64);
        let key = format!("{KEY_PREFIX}{id}_{secret}");
        assert_eq!(parse_key(&key), Some((id, secret.as_str())));
        for bad in [
            "",
            "eftk_",
            "0123456789abcdef",
            &format!("eftk_{id}{secret}"),
            &format!("eftk_{id}_{}", &secret[1..]),
            &format!("eftk_0123456789a_{secret}0"),
            &format!("eftk_{id}_{}", "g".repeat(64)),
            &format!("EFTK_{id}_{secret}"),
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }
}
