//! The store's operations, one small trait per aggregate (devices, pairing and registers,
//! transactions, timeline, outbox, housekeeping), declared once: the same declaration generates
//! each trait and its forwarding through [`Observed`], so a new operation cannot be forgotten by
//! the metrics or the health tracking, and whether it writes is said where it is declared.

use super::observed::{Observed, Operation, StoreObserver};
use super::{CallbackJob, InsertError, PeriodQuery, Route, StoreError, TransactionQuery};
use crate::domain::accounts::{
    ApiKeyRecord, AuditEntry, AuditQuery, MerchantId, MerchantRecord, SiteId, SiteRecord,
};
use crate::domain::campaigns::{
    ArtifactRecord, CampaignDevice, CampaignRecord, CampaignState, DeviceUpdate, ReleaseKeyRecord,
    StepRecord,
};
use crate::domain::config::{DeviceConfigState, ProfileRecord, ProfileScope};
use crate::domain::events::{Audience, Cursor, Event, EventId, EventType, NewEvent};
use crate::domain::lifecycle::Phase;
use crate::domain::orders::{OrderId, OrderRecord, OrderSheet};
use crate::domain::payments::PaymentRecord;
use crate::domain::people::{Email, SessionRecord, UserRecord};
use crate::domain::receipts::{AttemptOutcome, Channels, DeliveryId, Queued, ReceiptDelivery};
use crate::domain::records::{DeviceRecord, RegisterRecord, TransactionRecord};
use crate::domain::timeline::TimelineEvent;
use crate::domain::webhooks::{Attempt, Endpoint, EndpointId, Progress};
use chrono::{DateTime, Utc};
use protocol::{DeviceId, PairingCode, RegisterKey, TransactionId};

/// `read` or `write`: whether an operation commits (one committing proves the store writable).
macro_rules! writes {
    (read) => {
        false
    };
    (write) => {
        true
    };
}

/// Declares store traits: each `read fn` / `write fn` becomes an async method of the trait and
/// a timed, observed forwarding of it on [`Observed`].
macro_rules! store_aggregates {
    ($(
        $(#[doc = $trait_doc:literal])*
        trait $trait:ident {
            $(
                $(#[doc = $doc:literal])*
                $access:ident fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
            )*
        }
    )*) => {
        $(
            $(#[doc = $trait_doc])*
            #[async_trait::async_trait]
            pub trait $trait: Send + Sync + 'static {
                $(
                    $(#[doc = $doc])*
                    async fn $name(&self $(, $arg: $ty)*) -> $ret;
                )*
            }

            #[async_trait::async_trait]
            impl<O: StoreObserver> $trait for Observed<O> {
                $(
                    async fn $name(&self $(, $arg: $ty)*) -> $ret {
                        const OPERATION: Operation =
                            Operation { name: stringify!($name), writes: writes!($access) };
                        self.observe(OPERATION, self.inner().$name($($arg),*)).await
                    }
                )*
            }
        )*

        /// Every store operation, in declaration order.
        pub const OPERATIONS: &[Operation] = &[
            $($(Operation { name: stringify!($name), writes: writes!($access) },)*)*
        ];
    };
}

store_aggregates! {
    /// Enrolled devices and where their connections are held.
    trait DeviceStore {
        /// Enrolls a device, with its audit entry (if given) in the same commit.
        write fn insert_device(&self, device: &DeviceRecord, audit: Option<&AuditEntry>) -> Result<(), InsertError>;
        /// One device.
        read fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError>;
        /// Replaces a device's secret hash (rotation, or revocation with a hash no secret has),
        /// with its audit entry (if given) in the same commit; false (and nothing recorded) if
        /// the device is not enrolled.
        write fn set_secret_hash(&self, id: &DeviceId, secret_hash: &str, audit: Option<&AuditEntry>) -> Result<bool, StoreError>;
        /// Every device, by id.
        read fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError>;
        /// Records that `node` now holds the device's connection (or, with `connected` false,
        /// that the connection `node` held closed; a newer holder is left alone), with its
        /// `device.connected` / `device.disconnected` event when it changed anything.
        write fn set_device_connection(
            &self,
            id: &DeviceId,
            node: &str,
            connected: bool,
            now: DateTime<Utc>,
        ) -> Result<(), StoreError>;
        /// Records what the device declared it can do (`capabilities` as
        /// `columns::capabilities_column` writes them) and its hardware (JSON of
        /// `protocol::device::Hardware`).
        write fn set_device_capabilities(&self, id: &DeviceId, capabilities: &str, hardware: Option<&str>) -> Result<(), StoreError>;
        /// Sets what the device's customer-facing screen shows (`display`: the cart as
        /// JSON, none to clear). The version grows only when the display changes, so a
        /// repeated request changes nothing. The version shown afterwards; none for an
        /// unknown device.
        write fn set_display(&self, id: &DeviceId, display: Option<&str>) -> Result<Option<u64>, StoreError>;
        /// What the device's screen shows: its version (0 when never set) and the cart's JSON.
        read fn display(&self, id: &DeviceId) -> Result<Option<(u64, Option<String>)>, StoreError>;
        /// Records a health report (JSON of `protocol::health::Health`) at `at`, keeping the
        /// device's newest `keep` reports and deleting older ones in the same commit.
        write fn record_health(&self, id: &DeviceId, at: DateTime<Utc>, health: &str, keep: u32) -> Result<(), StoreError>;
        /// The device's newest `limit` health reports, newest first.
        read fn health_history(&self, id: &DeviceId, limit: u32) -> Result<Vec<(DateTime<Utc>, String)>, StoreError>;
        /// Every device's latest health report, for the fleet's device list.
        read fn latest_health(&self) -> Result<Vec<(DeviceId, DateTime<Utc>, String)>, StoreError>;
        /// Marks every device held by `node` as disconnected (at startup, after a crash).
        write fn clear_connections(&self, node: &str) -> Result<(), StoreError>;
        /// Deletes self-enrolled devices not connected and not seen since `before` (never
        /// connected: enrolled before it), with their pairing codes and registers; a device
        /// with a transaction in progress is kept. Returns how many were deleted.
        write fn purge_unused_self_enrolled(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    }

    /// Pairing codes and the registers paired to devices.
    trait PairingStore {
        /// Makes `code` the device's only valid code. False if the code is taken by another
        /// device.
        write fn replace_pairing_code(
            &self,
            device: &DeviceId,
            code: &PairingCode,
            expires_at: DateTime<Utc>,
        ) -> Result<bool, StoreError>;
        /// Consumes a valid code (single use): the device it belonged to, if it was valid at
        /// `now`. With `merchant`, only a code of that merchant's devices is consumed (another
        /// merchant's code is left alone, as if it did not exist).
        write fn take_pairing_code(
            &self,
            code: &PairingCode,
            now: DateTime<Utc>,
            merchant: Option<&MerchantId>,
        ) -> Result<Option<DeviceId>, StoreError>;
        /// Pairs (or re-pairs) a register, with its `pairing.paired` event (and
        /// `pairing.unpaired` for the device it leaves); returns the device it was paired to
        /// before, if another.
        write fn pair_register(&self, register: &RegisterRecord) -> Result<Option<DeviceId>, StoreError>;
        /// The register with this identity, if paired.
        read fn register(&self, key: &RegisterKey) -> Result<Option<RegisterRecord>, StoreError>;
        /// The register with this identity, its device and whether the device is busy, in one
        /// consistent read (a POST's only read on the SQLite store).
        read fn route(&self, key: &RegisterKey) -> Result<Option<Route>, StoreError>;
        /// The registers paired to a device.
        read fn registers_of(&self, device: &DeviceId) -> Result<Vec<RegisterRecord>, StoreError>;
        /// Unpairs one register of the device, or all of them, at `at`; returns those
        /// removed. The audit entry (if given) and a `pairing.unpaired` event per register are
        /// written in the same commit when any register went.
        write fn unpair(
            &self,
            device: &DeviceId,
            register: Option<&RegisterKey>,
            audit: Option<&AuditEntry>,
            at: DateTime<Utc>,
        ) -> Result<Vec<RegisterKey>, StoreError>;
    }

    /// Transactions and their phases.
    trait TransactionStore {
        /// Stores a new transaction with its first timeline events and its catalogue events
        /// (`logged`); `DeviceBusy` if the device already has one in progress,
        /// `DuplicateReference` if the register used the reference. A completed transaction
        /// with a callback URL gets its outbox entry in the same commit.
        write fn insert_transaction(
            &self,
            tx: &TransactionRecord,
            events: &[TimelineEvent],
            logged: &[NewEvent],
        ) -> Result<(), InsertError>;
        /// The register's transaction with this POS reference.
        read fn transaction_by_reference(
            &self,
            register: &RegisterKey,
            reference: &str,
        ) -> Result<Option<TransactionRecord>, StoreError>;
        /// A payment with its follow-ups, as the insert of a follow-up checks it.
        read fn payment(&self, original: &TransactionId) -> Result<Option<PaymentRecord>, StoreError>;
        /// The merchant's transactions with this POS reference (any register), at most two:
        /// a follow-up named by reference must find exactly one.
        read fn transactions_by_merchant_reference(
            &self,
            merchant: &MerchantId,
            reference: &str,
        ) -> Result<Vec<TransactionRecord>, StoreError>;
        /// The merchant's `Card.Authorise` transactions with this `TransactionReference`, at
        /// most three (a SmartConnect `Card.Finalise` names its authorisation so).
        read fn authorisations_by_reference(
            &self,
            merchant: &MerchantId,
            reference: &str,
        ) -> Result<Vec<TransactionRecord>, StoreError>;
        /// One transaction.
        read fn transaction(&self, id: &TransactionId) -> Result<Option<TransactionRecord>, StoreError>;
        /// Moves a transaction from the phase `from` (compared by kind) to `to`, appending
        /// `events` to its timeline and `logged` to the event log in the same commit (and, to
        /// a completed phase, its outbox entry). False if it was no longer in phase `from`:
        /// someone else moved it first and the caller must re-read (nothing is written then).
        write fn transition(
            &self,
            id: &TransactionId,
            from: &Phase,
            to: &Phase,
            events: &[TimelineEvent],
            logged: &[NewEvent],
        ) -> Result<bool, StoreError>;
        /// Records the prompt the device shows (and a `prompt` event), while the transaction
        /// is the device's and not completed.
        write fn set_display_text(
            &self,
            id: &TransactionId,
            device: &DeviceId,
            text: &str,
            at: DateTime<Utc>,
        ) -> Result<(), StoreError>;
        /// Deletes completed transactions created before `before` (with their timelines);
        /// returns how many. Transactions still running are never deleted.
        write fn purge_completed_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
        /// Transactions matching `q`, newest first (the operator dashboard's search).
        read fn query_transactions(&self, q: &TransactionQuery) -> Result<Vec<TransactionRecord>, StoreError>;
        /// The device's transaction in progress (offered or started), if any.
        read fn active_transaction(&self, device: &DeviceId) -> Result<Option<TransactionRecord>, StoreError>;
        /// Offers whose accept deadline is at or before `now`.
        read fn expired_offers(&self, now: DateTime<Utc>) -> Result<Vec<TransactionId>, StoreError>;
        /// The earliest accept deadline of any offer, to know how long the deadline loop may
        /// sleep.
        read fn next_offer_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    }

    /// Each transaction's event timeline.
    trait TimelineStore {
        /// Appends timeline events.
        write fn append_events(&self, id: &TransactionId, events: &[TimelineEvent]) -> Result<(), StoreError>;
        /// The timeline, oldest first.
        read fn events(&self, id: &TransactionId) -> Result<Vec<TimelineEvent>, StoreError>;
    }

    /// The callback outbox. Entries are made by the commit that completes a transaction.
    trait OutboxStore {
        /// Callbacks due at `now`, oldest first, at most `limit`.
        read fn due_callbacks(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<CallbackJob>, StoreError>;
        /// Takes the callbacks due at `now` for delivery by this node: their next attempt moves
        /// to `lease_until`, so other nodes leave them alone meanwhile, and a node that dies
        /// mid-delivery only delays them until the lease ends.
        write fn claim_callbacks(
            &self,
            now: DateTime<Utc>,
            limit: u32,
            lease_until: DateTime<Utc>,
        ) -> Result<Vec<CallbackJob>, StoreError>;
        /// The earliest time a pending callback is due.
        read fn next_callback_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
        /// Records an attempt: delivered, retry at `retry_at`, or given up (`retry_at` none and
        /// not delivered); appends the timeline event in the same commit.
        write fn record_callback_attempt(
            &self,
            id: &TransactionId,
            delivered: bool,
            retry_at: Option<DateTime<Utc>>,
            error: &str,
            event: &TimelineEvent,
        ) -> Result<(), StoreError>;
    }

    /// Receipts sent by email or SMS at a POS's request: an outbox like the callbacks'.
    trait ReceiptStore {
        /// Queues deliveries of a transaction's receipt, each with its timeline event, in one
        /// commit. Where a delivery of the same transaction, address and copy is already
        /// pending or sent, that one is returned (`replayed`) and nothing is written for it.
        write fn queue_receipts(&self, deliveries: &[(ReceiptDelivery, TimelineEvent)]) -> Result<Vec<Queued>, StoreError>;
        /// A transaction's deliveries, oldest first.
        read fn receipt_deliveries(&self, transaction: &TransactionId) -> Result<Vec<ReceiptDelivery>, StoreError>;
        /// Takes the pending deliveries on `channels` due at `now` for delivery by this node,
        /// as `claim_callbacks` takes callbacks: their next attempt moves to `lease_until`.
        write fn claim_receipts(
            &self,
            now: DateTime<Utc>,
            limit: u32,
            lease_until: DateTime<Utc>,
            channels: Channels,
        ) -> Result<Vec<ReceiptDelivery>, StoreError>;
        /// The earliest time a pending delivery on `channels` is due.
        read fn next_receipt_at(&self, channels: Channels) -> Result<Option<DateTime<Utc>>, StoreError>;
        /// Records an attempt of a pending delivery, with its timeline event in the same
        /// commit; false (and nothing recorded) if the delivery is not pending.
        write fn record_receipt_attempt(&self, id: &DeliveryId, outcome: &AttemptOutcome, event: &TimelineEvent) -> Result<bool, StoreError>;
    }

    /// Configuration profiles, every version kept, and each device's effective settings.
    trait ConfigStore {
        /// Stores a new version of a scope's profile with its audit entry, in one commit;
        /// `AlreadyExists` when that version is taken (a concurrent change: read and retry).
        write fn insert_profile(&self, record: &ProfileRecord, audit: &AuditEntry) -> Result<(), InsertError>;
        /// The current (newest) version of a scope's profile.
        read fn profile(&self, scope: &ProfileScope) -> Result<Option<ProfileRecord>, StoreError>;
        /// A scope's versions, newest first.
        read fn profile_history(&self, scope: &ProfileScope, limit: u32) -> Result<Vec<ProfileRecord>, StoreError>;
        /// Stores a device's effective settings (JSON); their version moves only when they
        /// differ from the stored ones. The device's state after it, none for an unknown device.
        write fn set_device_config(&self, id: &DeviceId, settings: &str) -> Result<Option<DeviceConfigState>, StoreError>;
        /// A device's configuration state.
        read fn device_config(&self, id: &DeviceId) -> Result<Option<DeviceConfigState>, StoreError>;
        /// Records that the device applied `version` (never moving back, never past what was
        /// computed); whether it moved.
        write fn ack_config(&self, id: &DeviceId, version: u64, at: DateTime<Utc>) -> Result<bool, StoreError>;
    }

    /// Software updates: release keys, artifacts, campaigns and their devices' progress.
    trait UpdateStore {
        /// Registers a release key with its audit entry; `AlreadyExists` for a known key.
        write fn insert_release_key(&self, key: &ReleaseKeyRecord, audit: &AuditEntry) -> Result<(), InsertError>;
        read fn release_keys(&self) -> Result<Vec<ReleaseKeyRecord>, StoreError>;
        /// Registers an artifact with its audit entry.
        write fn insert_artifact(&self, artifact: &ArtifactRecord, audit: &AuditEntry) -> Result<(), InsertError>;
        read fn artifact(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError>;
        /// Every artifact, newest first.
        read fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError>;
        /// Stores the file of an artifact that has no URL and no file yet (checked by the
        /// caller against its size and checksum); false otherwise.
        write fn store_artifact_file(&self, id: &str, file: &[u8], audit: &AuditEntry) -> Result<bool, StoreError>;
        /// The stored file of an artifact.
        read fn artifact_file(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
        /// Stores a campaign with its devices and audit entry, in one commit.
        write fn insert_campaign(&self, campaign: &CampaignRecord, devices: &[CampaignDevice], audit: &AuditEntry) -> Result<(), InsertError>;
        read fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError>;
        /// Every campaign, newest first.
        read fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError>;
        /// A campaign's devices, in rollout order.
        read fn campaign_devices(&self, id: &str) -> Result<Vec<CampaignDevice>, StoreError>;
        /// Moves a campaign from `from` to `to` (false if it was not in `from`), with an audit
        /// entry when an operator did it. Into `rolling_back`, it also records the rollback
        /// artifact and puts every device that was offered or installed the update back to
        /// `rollback_pending`, in the same commit.
        write fn set_campaign_state(
            &self,
            id: &str,
            from: CampaignState,
            to: CampaignState,
            rollback_artifact: Option<&str>,
            audit: Option<&AuditEntry>,
        ) -> Result<bool, StoreError>;
        /// Moves one device of a campaign from `from` to `to` (a claim: false if it was not in
        /// `from`), recording the step it reported (if any) in the same commit.
        write fn move_campaign_device(
            &self,
            campaign: &str,
            device: &DeviceId,
            from: DeviceUpdate,
            to: DeviceUpdate,
            step: Option<&StepRecord>,
            at: DateTime<Utc>,
        ) -> Result<bool, StoreError>;
        /// Records a step a device reported that moves nothing.
        write fn record_update_step(&self, campaign: &str, step: &StepRecord) -> Result<(), StoreError>;
        /// A campaign's reported steps, oldest first, at most `limit` (the newest).
        read fn update_steps(&self, campaign: &str, limit: u32) -> Result<Vec<StepRecord>, StoreError>;
    }

    /// Orders paid by split tenders. A tender (a transaction with `order_id`) is checked
    /// against its order by `insert_transaction`, in its commit.
    trait OrderStore {
        /// Stores a new order; `DuplicateReference` if the merchant used its POS reference.
        write fn insert_order(&self, order: &OrderRecord) -> Result<(), InsertError>;
        /// An order with its tenders.
        read fn order(&self, id: &OrderId) -> Result<Option<OrderSheet>, StoreError>;
        /// The merchant's order with this POS reference.
        read fn order_by_reference(&self, merchant: &MerchantId, reference: &str) -> Result<Option<OrderRecord>, StoreError>;
        /// Cancels an order (no more tenders); false if it was cancelled already or is unknown.
        write fn cancel_order(&self, id: &OrderId, at: DateTime<Utc>) -> Result<bool, StoreError>;
    }

    /// Merchants, sites, API keys and the audit log. Every change made here is recorded in the
    /// audit log in the same commit, so no change exists without its entry.
    trait AccountStore {
        /// Adds a merchant; `AlreadyExists` if its name is taken.
        write fn create_merchant(&self, merchant: &MerchantRecord, audit: &AuditEntry) -> Result<(), InsertError>;
        /// Sets a merchant's default currency and tip limit, with its audit entry; false if
        /// there is no such merchant (nothing recorded then).
        write fn set_merchant_terms(
            &self,
            id: &MerchantId,
            currency: protocol::Currency,
            max_tip_percent: u32,
            audit: &AuditEntry,
        ) -> Result<bool, StoreError>;
        /// One merchant.
        read fn merchant(&self, id: &MerchantId) -> Result<Option<MerchantRecord>, StoreError>;
        /// The merchant with this name.
        read fn merchant_named(&self, name: &str) -> Result<Option<MerchantRecord>, StoreError>;
        /// Every merchant, by name.
        read fn merchants(&self) -> Result<Vec<MerchantRecord>, StoreError>;
        /// Adds a site to its merchant; `AlreadyExists` if the merchant has a site of that name.
        write fn create_site(&self, site: &SiteRecord, audit: &AuditEntry) -> Result<(), InsertError>;
        /// One site.
        read fn site(&self, id: &SiteId) -> Result<Option<SiteRecord>, StoreError>;
        /// Sets a site's time zone (an IANA name, checked by the caller), with its audit
        /// entry; false for an unknown site.
        write fn set_site_time_zone(&self, id: &SiteId, time_zone: &str, audit: &AuditEntry) -> Result<bool, StoreError>;
        /// The sites of one merchant, or of all, by merchant and name.
        read fn sites(&self, merchant: Option<&MerchantId>) -> Result<Vec<SiteRecord>, StoreError>;
        /// Stores a new API key.
        write fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> Result<(), InsertError>;
        /// One API key by its public id (a request's only read to authenticate it).
        read fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
        /// The keys of one merchant, or all keys, newest first.
        read fn api_keys(&self, merchant: Option<&MerchantId>) -> Result<Vec<ApiKeyRecord>, StoreError>;
        /// Revokes a key at `at`; false (and nothing recorded) if it does not exist or was
        /// already revoked.
        write fn revoke_api_key(&self, id: &str, at: DateTime<Utc>, audit: &AuditEntry) -> Result<bool, StoreError>;
        /// Records when a key was last used.
        write fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
        /// Appends an entry for an action recorded elsewhere (device administration).
        write fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
        /// Entries matching `q`, newest first.
        read fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    }

    /// People and their dashboard sessions.
    trait PeopleStore {
        /// Adds a person; `AlreadyExists` if the email is taken.
        write fn create_user(&self, user: &UserRecord, audit: &AuditEntry) -> Result<(), InsertError>;
        /// Adds the first person, only while there is none (the setup link); false if someone
        /// was first.
        write fn create_first_user(&self, user: &UserRecord, audit: &AuditEntry) -> Result<bool, StoreError>;
        /// One person by id.
        read fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
        /// One person by (lower-cased) email.
        read fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError>;
        /// People of one merchant, or all, by email.
        read fn users(&self, merchant: Option<&MerchantId>) -> Result<Vec<UserRecord>, StoreError>;
        /// Removes a person and their sessions; false if there was none.
        write fn delete_user(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError>;
        /// Replaces a password and ends the person's sessions; false if there was none.
        write fn set_password(&self, id: &str, password_hash: &str, audit: &AuditEntry) -> Result<bool, StoreError>;
        /// Counts a wrong password; from the `max`th in a row, sign-in is locked until
        /// `lock_until`. Recorded in the audit log in the same commit.
        write fn record_failed_sign_in(&self, id: &str, max: u32, lock_until: DateTime<Utc>, audit: &AuditEntry) -> Result<(), StoreError>;
        /// Starts a session: the failure count is reset and the sign-in recorded, in one commit.
        write fn insert_session(&self, session: &SessionRecord, audit: &AuditEntry) -> Result<(), StoreError>;
        /// One session by id (the SHA-256 of its token).
        read fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
        /// Records the session's use.
        write fn touch_session(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
        /// Ends a session; false if there was none.
        write fn delete_session(&self, id: &str) -> Result<bool, StoreError>;
        /// Deletes sessions last used before `idle_before` or created before `created_before`;
        /// returns how many.
        write fn purge_sessions(&self, idle_before: DateTime<Utc>, created_before: DateTime<Utc>) -> Result<u64, StoreError>;
    }

    /// What reports read: settlements and the transactions of a period. Read only: every
    /// report (a reconciliation, a day's totals, an export) is computed from the records when
    /// it is asked for, so none is ever stored to go stale or be lost.
    trait ReportStore {
        /// Completed `Acquirer.Settlement.Cutover` transactions matching `q`, newest first.
        read fn settlements(&self, q: &PeriodQuery) -> Result<Vec<TransactionRecord>, StoreError>;
        /// Completed transactions matching `q`, oldest first (by completion, then id).
        read fn completed_transactions(&self, q: &PeriodQuery) -> Result<Vec<TransactionRecord>, StoreError>;
        /// The follow-ups, on any device and in any state, of the transactions
        /// `completed_transactions(q)` reads, oldest first.
        read fn follow_ups_of_completed(&self, q: &PeriodQuery) -> Result<Vec<TransactionRecord>, StoreError>;
    }

    /// The store as a whole: probes and the installation's secrets.
    /// The event catalogue's log. Changes log their events in their own commits (a
    /// transaction's through its insert and transitions; a device's connection, a pairing, an
    /// unpairing, a configuration acknowledgement and an update step through theirs, built by
    /// `domain::events`): nothing here writes an event on its own.
    trait EventStore {
        /// Events after `after` that `audience` sees, of `types` (empty: every type), oldest
        /// first, at most `limit`; only events no commit still in flight can come before.
        read fn log_after(
            &self,
            after: &Cursor,
            audience: &Audience,
            types: &[EventType],
            limit: u32,
        ) -> Result<Vec<Event>, StoreError>;
        /// One event by id.
        read fn logged_event(&self, id: &EventId) -> Result<Option<Event>, StoreError>;
        /// The cursor of the newest event readers may see (`Cursor::START` for an empty log):
        /// where a new webhook endpoint starts.
        read fn log_head(&self) -> Result<Cursor, StoreError>;
        /// Deletes events created before `before` (retention, as transactions); how many.
        write fn purge_events_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    }

    /// Webhook endpoints, their delivery leases, the redeliveries asked for, and the delivery
    /// log.
    trait WebhookStore {
        /// Stores a new endpoint with its audit entry.
        write fn insert_webhook(&self, endpoint: &Endpoint, audit: &AuditEntry) -> Result<(), InsertError>;
        /// One endpoint.
        read fn webhook(&self, id: &EndpointId) -> Result<Option<Endpoint>, StoreError>;
        /// Every endpoint, oldest first.
        read fn webhooks(&self) -> Result<Vec<Endpoint>, StoreError>;
        /// Saves what its owner may change (URL, types, description, enabled, secrets,
        /// disabled reason) with the audit entry; re-enabling clears the failure state. False
        /// if it is gone.
        write fn update_webhook(&self, endpoint: &Endpoint, audit: &AuditEntry) -> Result<bool, StoreError>;
        /// Deletes an endpoint (its log and redeliveries with it); false if it was not there.
        write fn delete_webhook(&self, id: &EndpointId, audit: &AuditEntry) -> Result<bool, StoreError>;
        /// Leases an enabled endpoint due at `now` to `owner` until `until`, unless another
        /// holder's lease runs; the endpoint as leased, or none.
        write fn lease_webhook(
            &self,
            id: &EndpointId,
            owner: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<Option<Endpoint>, StoreError>;
        /// Logs an attempt and applies its progress, extending the lease to `until`, if
        /// `owner` still holds the lease (false, nothing written, if not). A failure that
        /// disables the endpoint writes `audit` (the notice) too.
        write fn record_webhook_attempt(
            &self,
            id: &EndpointId,
            owner: &str,
            attempt: &Attempt,
            progress: &Progress,
            until: DateTime<Utc>,
            audit: Option<&AuditEntry>,
        ) -> Result<bool, StoreError>;
        /// Gives up `owner`'s lease.
        write fn release_webhook(&self, id: &EndpointId, owner: &str) -> Result<(), StoreError>;
        /// The endpoint's newest `limit` attempts, newest first.
        read fn webhook_deliveries(&self, id: &EndpointId, limit: u32) -> Result<Vec<Attempt>, StoreError>;
        /// Asks for `event` to be delivered again (due at once); false if the endpoint is gone.
        write fn queue_redelivery(&self, id: &EndpointId, event: &EventId, at: DateTime<Utc>) -> Result<bool, StoreError>;
        /// The redeliveries asked for, oldest first.
        read fn redeliveries(&self, id: &EndpointId) -> Result<Vec<EventId>, StoreError>;
    }

    trait Housekeeping {
        /// Checks that the store answers (readiness probe).
        read fn ping(&self) -> Result<(), StoreError>;
        /// Commits one small real write (a row of `secrets` overwritten with the time): tells
        /// a store that can be read but not written (a full disk) from a healthy one.
        write fn probe_write(&self) -> Result<(), StoreError>;
        /// The named secret, created with `generate` the first time.
        write fn secret(
            &self,
            name: &str,
            generate: &(dyn Fn() -> String + Send + Sync),
        ) -> Result<String, StoreError>;
    }
}

/// The whole store: every aggregate's operations on one durable state. The backend is chosen
/// from the database URL at startup; the engine only ever sees `Arc<dyn Store>`.
pub trait Store:
    DeviceStore
    + PairingStore
    + TransactionStore
    + TimelineStore
    + OutboxStore
    + AccountStore
    + PeopleStore
    + OrderStore
    + ReceiptStore
    + ConfigStore
    + UpdateStore
    + EventStore
    + WebhookStore
    + ReportStore
    + Housekeeping
{
}

impl<T> Store for T where
    T: DeviceStore
        + PairingStore
        + TransactionStore
        + TimelineStore
        + OutboxStore
        + AccountStore
        + PeopleStore
        + OrderStore
        + ReceiptStore
        + ConfigStore
        + UpdateStore
        + EventStore
        + WebhookStore
        + ReportStore
        + Housekeeping
{
}
