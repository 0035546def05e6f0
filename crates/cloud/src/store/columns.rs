//! What both SQL backends share: times as milliseconds, the columns a phase occupies, the
//! transaction columns, and one decoding of every record by column name ([`Columns`] is the
//! little each backend's row type has to offer), so the two cannot drift apart. A value that
//! cannot be what the schema says (a missing deadline, a time out of range, a negative count)
//! is a corruption error, never a silent default.

use super::{CallbackJob, StoreError};
use crate::domain::accounts::{
    ApiKeyRecord, AuditEntry, KeyOwner, MerchantId, MerchantRecord, Scopes, SiteId, SiteRecord,
};
use crate::domain::lifecycle::{Completion, Phase};
use crate::domain::people::{Email, Role, SessionRecord, UserRecord};
use crate::domain::{DeviceRecord, RegisterRecord, TransactionRecord};
use chrono::{DateTime, Utc};
use protocol::{DeviceId, RegisterInfo, RegisterKey, TransactionId, TransactionRequest};
use std::str::FromStr;

/// A row, read by column name.
pub(super) trait Columns {
    /// A text column that is never null.
    fn text(&self, name: &'static str) -> Result<String, StoreError>;
    /// A text column that may be null.
    fn opt_text(&self, name: &'static str) -> Result<Option<String>, StoreError>;
    /// A 64-bit integer column that is never null.
    fn int(&self, name: &'static str) -> Result<i64, StoreError>;
    /// A 64-bit integer column that may be null.
    fn opt_int(&self, name: &'static str) -> Result<Option<i64>, StoreError>;
    /// A boolean column (an integer 0/1 in SQLite).
    fn flag(&self, name: &'static str) -> Result<bool, StoreError>;
    /// A count column (`INTEGER`: 64 bits in SQLite, 32 in PostgreSQL), never negative.
    fn count(&self, name: &'static str) -> Result<u32, StoreError>;
}

/// A stored time column.
fn time(row: &impl Columns, name: &'static str) -> Result<DateTime<Utc>, StoreError> {
    from_ms(row.int(name)?)
}

/// A time column that may be null.
fn opt_time(row: &impl Columns, name: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.opt_int(name)?.map(from_ms).transpose()
}

/// A time column that the row's state requires.
fn required_time(
    row: &impl Columns,
    name: &'static str,
    id: &TransactionId,
) -> Result<DateTime<Utc>, StoreError> {
    match row.opt_int(name)? {
        Some(v) => from_ms(v),
        None => Err(StoreError::Corrupt(format!(
            "transaction {id} has no {name}"
        ))),
    }
}

/// A stored count that must fit.
pub(super) fn count_of(v: i64, name: &'static str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{name} {v} out of range")))
}

/// A merchant row.
pub(super) fn merchant(row: &impl Columns) -> Result<MerchantRecord, StoreError> {
    Ok(MerchantRecord {
        id: MerchantId::from_stored(row.text("id")?),
        name: row.text("name")?,
        created_at: time(row, "created_at")?,
        currency: protocol::Currency::parse(&row.text("currency")?)
            .map_err(|e| StoreError::Corrupt(format!("merchant currency: {e}")))?,
        max_tip_percent: row.count("max_tip_percent")?,
    })
}

/// An order row.
pub(super) fn order(row: &impl Columns) -> Result<crate::domain::orders::OrderRecord, StoreError> {
    let total = row.int("amount_total")?;
    Ok(crate::domain::orders::OrderRecord {
        id: crate::domain::orders::OrderId::from_stored(row.text("id")?),
        merchant_id: MerchantId::from_stored(row.text("merchant_id")?),
        amount_total: u64::try_from(total)
            .map_err(|_| StoreError::Corrupt(format!("order amount {total}")))?,
        currency: route_currency(&row.text("currency")?)?,
        pos_reference: row.opt_text("pos_reference")?,
        cancelled: row.text("state")? == "cancelled",
        created_at: time(row, "created_at")?,
    })
}

/// A site row.
pub(super) fn site(row: &impl Columns) -> Result<SiteRecord, StoreError> {
    Ok(SiteRecord {
        id: SiteId::from_stored(row.text("id")?),
        merchant_id: MerchantId::from_stored(row.text("merchant_id")?),
        name: row.text("name")?,
        created_at: time(row, "created_at")?,
        time_zone: row.text("time_zone")?,
    })
}

/// How a key's owner is stored: the `owner` column and the one of `merchant_id` / `vendor`
/// it uses.
pub(super) fn key_owner_columns(owner: &KeyOwner) -> (&'static str, Option<&str>, Option<&str>) {
    match owner {
        KeyOwner::Installation => ("installation", None, None),
        KeyOwner::Merchant(m) => ("merchant", Some(m.as_str()), None),
        KeyOwner::Vendor(v) => ("vendor", None, Some(v.as_str())),
    }
}

/// An API key row.
pub(super) fn api_key(row: &impl Columns) -> Result<ApiKeyRecord, StoreError> {
    let id = row.text("id")?;
    let owner = match (
        row.text("owner")?.as_str(),
        row.opt_text("merchant_id")?,
        row.opt_text("vendor")?,
    ) {
        ("installation", _, _) => KeyOwner::Installation,
        ("merchant", Some(m), _) => KeyOwner::Merchant(MerchantId::from_stored(m)),
        ("vendor", _, Some(v)) => KeyOwner::Vendor(v),
        (other, _, _) => {
            return Err(StoreError::Corrupt(format!(
                "API key {id} has owner '{other}' without what it names"
            )))
        }
    };
    let scopes = Scopes::parse(&row.text("scopes")?)
        .map_err(|e| StoreError::Corrupt(format!("API key {id}: {e}")))?;
    Ok(ApiKeyRecord {
        secret_hash: row.text("secret_hash")?,
        owner,
        scopes,
        label: row.text("label")?,
        created_at: time(row, "created_at")?,
        expires_at: opt_time(row, "expires_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
        last_used_at: opt_time(row, "last_used_at")?,
        id,
    })
}

/// An audit log row.
pub(super) fn audit_entry(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.int("seq")?,
        at: time(row, "at")?,
        actor: row.text("actor")?,
        source: row.opt_text("source")?,
        action: row.text("action")?,
        target: row.text("target")?,
        merchant_id: row.opt_text("merchant_id")?.map(MerchantId::from_stored),
        detail: row.text("detail")?,
    })
}

/// A user row.
pub(super) fn user(row: &impl Columns) -> Result<UserRecord, StoreError> {
    let id = row.text("id")?;
    let role = row
        .text("role")?
        .parse::<Role>()
        .map_err(|e| StoreError::Corrupt(format!("user {id}: {e}")))?;
    Ok(UserRecord {
        email: Email::from_stored(row.text("email")?),
        password_hash: row.text("password_hash")?,
        role,
        merchant_id: row.opt_text("merchant_id")?.map(MerchantId::from_stored),
        created_at: time(row, "created_at")?,
        failed_sign_ins: row.count("failed_sign_ins")?,
        locked_until: opt_time(row, "locked_until")?,
        id,
    })
}

/// A session row.
pub(super) fn session(row: &impl Columns) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.text("id")?,
        user_id: row.text("user_id")?,
        csrf_token: row.text("csrf_token")?,
        created_at: time(row, "created_at")?,
        last_seen_at: time(row, "last_seen_at")?,
    })
}

/// A device row.
pub(super) fn device(row: &impl Columns) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        id: parse_device_id(row.text("id")?)?,
        secret_hash: row.text("secret_hash")?,
        vendor: row.text("vendor")?,
        model: row.text("model")?,
        merchant: row.text("merchant")?,
        merchant_id: MerchantId::from_stored(row.text("merchant_id")?),
        site_id: row.opt_text("site_id")?.map(SiteId::from_stored),
        created_at: time(row, "created_at")?,
        connected_at: opt_time(row, "connected_at")?,
        last_seen_at: opt_time(row, "last_seen_at")?,
        self_enrolled: row.flag("self_enrolled")?,
        capabilities: capabilities_of(&row.text("capabilities")?),
        // Declared by the device, so a stored value that no longer parses is dropped rather
        // than making the device unreadable.
        hardware: row
            .opt_text("hardware")?
            .and_then(|h| serde_json::from_str(&h).ok()),
    })
}

/// A merchant's currency as a route reads it.
pub(super) fn route_currency(stored: &str) -> Result<protocol::Currency, StoreError> {
    protocol::Currency::parse(stored)
        .map_err(|e| StoreError::Corrupt(format!("merchant currency: {e}")))
}

/// The `capabilities` column: names separated by spaces.
pub(super) fn capabilities_of(stored: &str) -> Vec<String> {
    let mut out: Vec<String> = stored.split_whitespace().map(str::to_string).collect();
    out.sort();
    out.dedup();
    out
}

/// The `capabilities` column of a declared list: known-shaped names only (letters, digits,
/// `.`, `_`, `-`), sorted, at most 64 of at most 64 characters, so a device cannot fill a
/// row with junk.
pub fn capabilities_column(declared: &[String]) -> String {
    let mut names: Vec<&str> = declared
        .iter()
        .map(|c| c.trim())
        .filter(|c| {
            !c.is_empty()
                && c.len() <= 64
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names.truncate(64);
    names.join(" ")
}

/// The register key of a row (registers and transactions both have one).
pub(super) fn register_key(row: &impl Columns) -> Result<RegisterKey, StoreError> {
    Ok(RegisterKey {
        register_id: row.text("register_id")?,
        business_name: row.text("business_name")?,
        vendor_name: row.text("vendor_name")?,
    })
}

/// A register row.
pub(super) fn register(row: &impl Columns) -> Result<RegisterRecord, StoreError> {
    let contact = row.text("contact")?;
    Ok(RegisterRecord {
        info: RegisterInfo {
            key: register_key(row)?,
            register_name: row.text("register_name")?,
        },
        device_id: parse_device_id(row.text("device_id")?)?,
        contact: serde_json::from_str(&contact)
            .map_err(|e| StoreError::Corrupt(format!("register contact: {e}")))?,
        paired_at: time(row, "paired_at")?,
    })
}

/// A stored transaction id.
pub(super) fn parse_transaction_id(s: &str) -> Result<TransactionId, StoreError> {
    TransactionId::from_str(s).map_err(|e| StoreError::Corrupt(format!("transaction id {s}: {e}")))
}

/// A transaction row (the columns of [`tx_columns`]).
pub(super) fn transaction(row: &impl Columns) -> Result<TransactionRecord, StoreError> {
    let id = parse_transaction_id(&row.text("id")?)?;
    let request: TransactionRequest = serde_json::from_str(&row.text("request")?)
        .map_err(|e| StoreError::Corrupt(format!("transaction {id} request: {e}")))?;
    let phase =
        match row.text("state")?.as_str() {
            "offered" => Phase::Offered {
                accept_deadline: required_time(row, "accept_deadline", &id)?,
            },
            "started" => Phase::Started {
                started_at: required_time(row, "started_at", &id)?,
            },
            "completed" => {
                let c = row.opt_text("completion")?.ok_or_else(|| {
                    StoreError::Corrupt(format!("transaction {id} has no completion"))
                })?;
                Phase::Completed(serde_json::from_str::<Completion>(&c).map_err(|e| {
                    StoreError::Corrupt(format!("transaction {id} completion: {e}"))
                })?)
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "transaction {id} state {other}"
                )))
            }
        };
    Ok(TransactionRecord {
        id,
        device_id: parse_device_id(row.text("device_id")?)?,
        register: RegisterInfo {
            key: register_key(row)?,
            register_name: row.text("register_name")?,
        },
        merchant_id: MerchantId::from_stored(row.text("merchant_id")?),
        merchant: row.text("merchant")?,
        request,
        sale_data: row.opt_text("sale_data")?,
        callback_url: row.opt_text("callback_url")?,
        pos_reference: row.opt_text("pos_reference")?,
        fingerprint: row.text("fingerprint")?,
        token: row.text("token")?,
        token_expires_at: time(row, "token_expires_at")?,
        created_at: time(row, "created_at")?,
        phase,
        display_text: row.opt_text("display_text")?,
    })
}

/// A callback outbox row (`transaction_id`, `url`, `attempts`).
pub(super) fn callback_job(row: &impl Columns) -> Result<CallbackJob, StoreError> {
    Ok(CallbackJob {
        transaction_id: parse_transaction_id(&row.text("transaction_id")?)?,
        url: row.text("url")?,
        attempts: row.count("attempts")?,
    })
}

/// A time as stored: milliseconds since the epoch.
pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored time; one out of range is corrupt.
/// A count or version as a signed 64-bit column (saturating: no real value comes near).
pub(super) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("time {v} ms out of range")))
}

/// A stored device id, checked again on the way out.
pub(super) fn parse_device_id(s: String) -> Result<DeviceId, StoreError> {
    DeviceId::parse(&s).map_err(|e| StoreError::Corrupt(format!("device id {s}: {e}")))
}

/// The columns a phase occupies: (state, accept_deadline, started_at, completed_at, completion).
pub(super) type PhaseColumns = (
    &'static str,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

pub(super) fn phase_columns(p: &Phase) -> Result<PhaseColumns, StoreError> {
    Ok(match p {
        Phase::Offered { accept_deadline } => {
            ("offered", Some(ms(*accept_deadline)), None, None, None)
        }
        Phase::Started { started_at } => ("started", None, Some(ms(*started_at)), None, None),
        Phase::Completed(c) => (
            "completed",
            None,
            None,
            Some(ms(c.completed_at)),
            Some(serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?),
        ),
    })
}

/// The outbox status after an attempt: delivered, retried later, or given up.
pub(super) fn callback_status(delivered: bool, retry: bool) -> &'static str {
    match (delivered, retry) {
        (true, _) => "delivered",
        (false, true) => "pending",
        (false, false) => "failed",
    }
}

pub(super) fn phase_kind(p: &Phase) -> &'static str {
    match p {
        Phase::Offered { .. } => "offered",
        Phase::Started { .. } => "started",
        Phase::Completed(_) => "completed",
    }
}

/// The transaction columns, as a literal so that SQL text can be built with `concat!` once at
/// compile time rather than with `format!` on every call.
macro_rules! tx_columns {
    () => {
        "id, device_id, register_id, business_name, vendor_name, register_name, \
         merchant_id, merchant, request, sale_data, callback_url, token, token_expires_at, \
         created_at, state, accept_deadline, started_at, completed_at, completion, display_text, \
         pos_reference, fingerprint, original_id, order_id, function, \
         transaction_reference"
    };
}
pub(super) use tx_columns;

pub(super) const TX_COLUMNS: &str = tx_columns!();

/// A row of `config_profiles`.
pub(super) fn profile_record(
    row: &impl Columns,
) -> Result<crate::domain::config::ProfileRecord, StoreError> {
    let level = row.text("level")?;
    let target = row.text("target")?;
    let scope = crate::domain::config::ProfileScope::from_stored(&level, target.clone())
        .ok_or_else(|| StoreError::Corrupt(format!("profile scope '{level}:{target}'")))?;
    let version = row.int("version")?;
    let profile = serde_json::from_str(&row.text("profile")?)
        .map_err(|e| StoreError::Corrupt(format!("profile {scope} v{version}: {e}")))?;
    Ok(crate::domain::config::ProfileRecord {
        scope,
        version: u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("profile version {version}")))?,
        profile,
        set_at: time(row, "set_at")?,
        actor: row.text("actor")?,
    })
}

/// The configuration columns of a `devices` row.
pub(super) fn device_config_state(
    row: &impl Columns,
) -> Result<crate::domain::config::DeviceConfigState, StoreError> {
    let version = |name| {
        row.int(name).and_then(|v| {
            u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{name} {v} out of range")))
        })
    };
    Ok(crate::domain::config::DeviceConfigState {
        version: version("config_version")?,
        settings: row.opt_text("config")?,
        acked: version("config_acked")?,
        acked_at: opt_time(row, "config_acked_at")?,
    })
}

fn unsigned(row: &impl Columns, name: &'static str) -> Result<u64, StoreError> {
    let v = row.int(name)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{name} {v} out of range")))
}

fn small(row: &impl Columns, name: &'static str) -> Result<u32, StoreError> {
    let v = row.int(name)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{name} {v} out of range")))
}

/// A row of `release_keys`.
pub(super) fn release_key(
    row: &impl Columns,
) -> Result<crate::domain::campaigns::ReleaseKeyRecord, StoreError> {
    Ok(crate::domain::campaigns::ReleaseKeyRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        public_key: row.text("public_key")?,
        created_at: time(row, "created_at")?,
    })
}

/// A row of `artifacts` (selected with `has_file`, not the file).
pub(super) fn artifact(
    row: &impl Columns,
) -> Result<crate::domain::campaigns::ArtifactRecord, StoreError> {
    Ok(crate::domain::campaigns::ArtifactRecord {
        id: row.text("id")?,
        version: row.text("version")?,
        url: row.opt_text("url")?,
        size: unsigned(row, "size")?,
        sha256: row.text("sha256")?,
        signature: row.text("signature")?,
        key_id: row.text("key_id")?,
        has_file: row.flag("has_file")?,
        created_at: time(row, "created_at")?,
    })
}

/// A row of `campaigns`.
pub(super) fn campaign(
    row: &impl Columns,
) -> Result<crate::domain::campaigns::CampaignRecord, StoreError> {
    use crate::domain::campaigns::Window;
    let state = row.text("state")?;
    let window = match (row.opt_int("window_start")?, row.opt_int("window_end")?) {
        (Some(s), Some(e)) => Some(
            Window::new(
                u16::try_from(s).unwrap_or(u16::MAX),
                u16::try_from(e).unwrap_or(u16::MAX),
            )
            .map_err(StoreError::Corrupt)?,
        ),
        _ => None,
    };
    Ok(crate::domain::campaigns::CampaignRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        artifact_id: row.text("artifact_id")?,
        rollback_artifact_id: row.opt_text("rollback_artifact_id")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        canary: small(row, "canary")?,
        wave_size: small(row, "wave_size")?,
        failure_threshold: small(row, "failure_threshold")?,
        window,
        created_at: time(row, "created_at")?,
        created_by: row.text("created_by")?,
    })
}

/// A row of `campaign_devices`.
pub(super) fn campaign_device(
    row: &impl Columns,
) -> Result<crate::domain::campaigns::CampaignDevice, StoreError> {
    let step = row.opt_text("step")?;
    Ok(crate::domain::campaigns::CampaignDevice {
        campaign_id: row.text("campaign_id")?,
        device_id: parse_device_id(row.text("device_id")?)?,
        wave: small(row, "wave")?,
        position: small(row, "position")?,
        state: row.text("state")?.parse().map_err(StoreError::Corrupt)?,
        step: step
            .as_deref()
            .map(|s| {
                crate::domain::campaigns::parse_step(s)
                    .ok_or_else(|| StoreError::Corrupt(format!("update step '{s}'")))
            })
            .transpose()?,
        reason: row.opt_text("reason")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A row of `update_steps`.
pub(super) fn update_step(
    row: &impl Columns,
) -> Result<crate::domain::campaigns::StepRecord, StoreError> {
    let step = row.text("step")?;
    Ok(crate::domain::campaigns::StepRecord {
        device_id: parse_device_id(row.text("device_id")?)?,
        at: time(row, "at")?,
        version: row.text("version")?,
        step: crate::domain::campaigns::parse_step(&step)
            .ok_or_else(|| StoreError::Corrupt(format!("update step '{step}'")))?,
        reason: row.opt_text("reason")?,
    })
}

/// A stored count kept as a 64-bit column in both backends.
fn wide_count(row: &impl Columns, name: &'static str) -> Result<u32, StoreError> {
    count_of(row.int(name)?, name)
}

/// A cursor column pair; negative values are corrupt.
fn cursor(
    row: &impl Columns,
    epoch: &'static str,
    seq: &'static str,
) -> Result<crate::domain::events::Cursor, StoreError> {
    let unsigned = |name: &'static str| {
        let v = row.int(name)?;
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{name} {v} is negative")))
    };
    Ok(crate::domain::events::Cursor {
        epoch: unsigned(epoch)?,
        seq: unsigned(seq)?,
    })
}

/// An `events` row (with its `epoch`: 0 on SQLite).
pub(super) fn logged_event(row: &impl Columns) -> Result<crate::domain::events::Event, StoreError> {
    use crate::domain::events::{Event, EventId, EventType, NewEvent};
    let kind = row.text("type")?;
    let data = row.text("data")?;
    Ok(Event {
        cursor: cursor(row, "epoch", "seq")?,
        schema_version: wide_count(row, "schema_version")?,
        event: NewEvent {
            id: EventId::from_stored(row.text("id")?),
            kind: EventType::from_str(&kind)
                .map_err(|_| StoreError::Corrupt(format!("event type {kind}")))?,
            at: time(row, "created_at")?,
            merchant_id: row.opt_text("merchant_id")?.map(MerchantId::from_stored),
            vendor: row.opt_text("vendor")?,
            device_id: row
                .opt_text("device_id")?
                .map(parse_device_id)
                .transpose()?,
            data: serde_json::from_str(&data)
                .map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?,
        },
    })
}

/// A `webhook_endpoints` row.
pub(super) fn webhook_endpoint(
    row: &impl Columns,
) -> Result<crate::domain::webhooks::Endpoint, StoreError> {
    use crate::domain::events::TypeFilter;
    use crate::domain::webhooks::{Endpoint, EndpointId, Owner};
    let id = row.text("id")?;
    let owner = match (row.opt_text("merchant_id")?, row.opt_text("vendor")?) {
        (Some(m), _) => Owner::Merchant(MerchantId::from_stored(m)),
        (None, Some(v)) => Owner::Vendor(v),
        (None, None) => Owner::Installation,
    };
    let url = row.text("url")?;
    let types = row.text("event_types")?;
    let previous = match (
        row.opt_text("previous_secret")?,
        opt_time(row, "previous_secret_until")?,
    ) {
        (Some(s), Some(until)) => Some((s, until)),
        _ => None,
    };
    Ok(Endpoint {
        owner,
        url: url::Url::parse(&url)
            .map_err(|e| StoreError::Corrupt(format!("webhook {id} url: {e}")))?,
        types: TypeFilter::parse_list(&types)
            .map_err(|e| StoreError::Corrupt(format!("webhook {id} types: {e}")))?,
        description: row.text("description")?,
        secret: row.text("secret")?,
        previous_secret: previous,
        enabled: row.flag("enabled")?,
        disabled_reason: row.opt_text("disabled_reason")?,
        created_at: time(row, "created_at")?,
        cursor: cursor(row, "cursor_epoch", "cursor_seq")?,
        attempts: wide_count(row, "attempts")?,
        failing_since: opt_time(row, "failing_since")?,
        next_attempt_at: time(row, "next_attempt_at")?,
        id: EndpointId::from_stored(id),
    })
}

/// The stored form of an endpoint's type filter: names, comma-separated (empty: every type).
pub(super) fn event_types_column(types: &crate::domain::events::TypeFilter) -> String {
    if types.is_all() {
        String::new()
    } else {
        types.names().join(",")
    }
}

/// The owner columns of an endpoint: (merchant_id, vendor).
pub(super) fn webhook_owner_columns(
    owner: &crate::domain::webhooks::Owner,
) -> (Option<&str>, Option<&str>) {
    use crate::domain::webhooks::Owner;
    match owner {
        Owner::Installation => (None, None),
        Owner::Merchant(m) => (Some(m.as_str()), None),
        Owner::Vendor(v) => (None, Some(v.as_str())),
    }
}

/// A `webhook_deliveries` row.
pub(super) fn webhook_attempt(
    row: &impl Columns,
) -> Result<crate::domain::webhooks::Attempt, StoreError> {
    let code = row.opt_int("response_code")?;
    Ok(crate::domain::webhooks::Attempt {
        event_id: crate::domain::events::EventId::from_stored(row.text("event_id")?),
        event_type: row.text("event_type")?,
        attempt: wide_count(row, "attempt")?,
        delivered: row.flag("delivered")?,
        response_code: code.and_then(|c| u16::try_from(c).ok()),
        error: row.opt_text("error")?,
        at: time(row, "at")?,
    })
}

/// The types column of a log query: `,a,b,` (empty: every type), matched with
/// `instr`/`position` of `,<type>,` so one statement serves any filter.
pub(super) fn types_param(types: &[crate::domain::events::EventType]) -> String {
    if types.is_empty() {
        return String::new();
    }
    let mut s = String::from(",");
    for t in types {
        s.push_str(t.as_str());
        s.push(',');
    }
    s
}

/// The audience columns of a log query: (merchant, vendor); both none for everything.
pub(super) fn audience_params(
    audience: &crate::domain::events::Audience,
) -> (Option<String>, Option<String>) {
    use crate::domain::events::Audience;
    match audience {
        Audience::Everything => (None, None),
        Audience::Merchant(m) => (Some(m.as_str().to_string()), None),
        Audience::Vendor(v) => (None, Some(v.clone())),
    }
}
