//! Who is who in one installation, and who may do what: merchants and their sites, API keys
//! with scopes, the principal behind a request and the audit entries admin actions leave.
//!
//! The installation (its operator) serves merchants; a merchant has sites (stores); a device
//! belongs to one merchant and optionally one of its sites; a register belongs to the merchant
//! of the device it is paired to, and so does every transaction (recorded with the merchant's
//! id when it starts). A request acts as a [`Principal`]; [`Principal::sees`] is the one rule
//! of what it may see, so "as if it did not exist" answers are made in one place.

use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A merchant's id: a UUID, also the `merchantId` SmartConnect answers carry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MerchantId(String);

impl MerchantId {
    /// A new random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Parses an id as given on a command line or in a path (any case; stored lower-case).
    pub fn parse(s: &str) -> Result<Self, AccountError> {
        uuid::Uuid::parse_str(s.trim())
            .map(|u| Self(u.to_string()))
            .map_err(|_| AccountError::InvalidMerchantId(s.to_string()))
    }

    /// Trusted: a value read back from the store.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MerchantId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A site's id (a UUID).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(String);

impl SiteId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn parse(s: &str) -> Result<Self, AccountError> {
        uuid::Uuid::parse_str(s.trim())
            .map(|u| Self(u.to_string()))
            .map_err(|_| AccountError::InvalidSiteId(s.to_string()))
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SiteId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bad input about accounts, said plainly (the edges turn it into a 400 or a CLI error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("'{0}' is not a merchant id (a UUID, as `eftcloud merchant list` shows)")]
    InvalidMerchantId(String),
    #[error("'{0}' is not a site id (a UUID, as `eftcloud site list` shows)")]
    InvalidSiteId(String),
    #[error("unknown scope '{0}'; valid scopes: {valid}", valid = Scope::ALL_NAMES)]
    UnknownScope(String),
    #[error("'{0}' is not an IANA time zone (such as Australia/Sydney or UTC)")]
    TimeZone(String),
    #[error("a name is required (1 to {MAX_NAME_LEN} characters)")]
    InvalidName,
    #[error("an API key needs at least one scope; valid scopes: {valid}", valid = Scope::ALL_NAMES)]
    NoScopes,
    #[error("a vendor key acts for POS registers: its scopes must be pos:* (got '{0}')")]
    VendorScope(Scope),
}

/// Longest merchant or site name.
pub const MAX_NAME_LEN: usize = 200;

/// A merchant or site name: trimmed, 1 to [`MAX_NAME_LEN`] characters, no control characters.
pub fn parse_name(s: &str) -> Result<String, AccountError> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > MAX_NAME_LEN || s.chars().any(char::is_control) {
        return Err(AccountError::InvalidName);
    }
    Ok(s.to_string())
}

/// A merchant: a business the installation serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantRecord {
    pub id: MerchantId,
    /// Unique in the installation; the `Merchant` the POS is told.
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The currency of a request that names none.
    pub currency: protocol::Currency,
    /// The largest tip adjustment, as a percentage of the amount asked for.
    pub max_tip_percent: u32,
}

/// A site (a store) of a merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    pub id: SiteId,
    pub merchant_id: MerchantId,
    /// Unique within the merchant.
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Its IANA time zone (`Australia/Sydney`), in which update campaigns' maintenance windows
    /// are kept; `UTC` until the operator says.
    pub time_zone: String,
}

/// Parses an IANA time zone name (`Australia/Sydney`, `UTC`).
pub fn parse_time_zone(s: &str) -> Result<chrono_tz::Tz, AccountError> {
    s.trim()
        .parse::<chrono_tz::Tz>()
        .map_err(|_| AccountError::TimeZone(s.to_string()))
}

/// What a key may do. Each route needs one scope; `admin` covers every admin route, and the
/// `pos:*` scopes are only for the POS API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Pair registers, start and cancel transactions.
    PosTransact,
    /// Poll, look up, read timelines and register status.
    PosRead,
    /// Refund by reference and void (`/refund`, `/void`, `Card.Refund` with an original).
    PosRefund,
    /// See, enroll, rotate, revoke and unpair devices.
    DevicesManage,
    /// Read transactions and reports.
    ReportsRead,
    /// Create, change, rotate and delete webhook endpoints (a vendor's key may hold it).
    WebhooksManage,
    /// Everything on the admin API: merchants, sites, keys, audit, and the two above.
    Admin,
}

impl Scope {
    /// Every scope, in the order shown to people.
    pub const ALL: [Scope; 7] = [
        Scope::PosTransact,
        Scope::PosRead,
        Scope::PosRefund,
        Scope::DevicesManage,
        Scope::ReportsRead,
        Scope::WebhooksManage,
        Scope::Admin,
    ];

    /// Every scope's name, for error messages.
    pub const ALL_NAMES: &'static str =
        "pos:transact, pos:read, pos:refund, devices:manage, reports:read, webhooks:manage, admin";

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PosTransact => "pos:transact",
            Scope::PosRead => "pos:read",
            Scope::PosRefund => "pos:refund",
            Scope::DevicesManage => "devices:manage",
            Scope::ReportsRead => "reports:read",
            Scope::WebhooksManage => "webhooks:manage",
            Scope::Admin => "admin",
        }
    }

    /// Whether this is a POS API scope (what a vendor key may hold).
    pub fn is_pos(self) -> bool {
        matches!(
            self,
            Scope::PosTransact | Scope::PosRead | Scope::PosRefund | Scope::WebhooksManage
        )
    }

    /// Whether `admin` grants it: every scope but those of the POS's own requests (managing
    /// webhooks is both: a vendor may, and so may an admin).
    pub fn granted_by_admin(self) -> bool {
        !self.is_pos() || self == Scope::WebhooksManage
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| AccountError::UnknownScope(s.to_string()))
    }
}

/// A set of scopes (stored as their names, space-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Parses names separated by spaces or commas; at least one.
    pub fn parse(s: &str) -> Result<Self, AccountError> {
        let set = s
            .split([' ', ','])
            .filter(|p| !p.trim().is_empty())
            .map(Scope::from_str)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if set.is_empty() {
            return Err(AccountError::NoScopes);
        }
        Ok(Self(set))
    }

    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().collect())
    }

    /// Whether these scopes grant `wanted`: held, or `admin` for any scope it grants.
    pub fn grants(&self, wanted: Scope) -> bool {
        self.0.contains(&wanted) || (wanted.granted_by_admin() && self.0.contains(&Scope::Admin))
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(" "))
    }
}

/// Whose a key is, which bounds what it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    /// The operator: every merchant.
    Installation,
    /// One merchant: its devices, registers and transactions only.
    Merchant(MerchantId),
    /// A POS vendor: the registers that send its `POSVendorName`, at any merchant.
    Vendor(String),
}

impl KeyOwner {
    /// Checks the scopes suit the owner: a vendor key is for the POS API only.
    pub fn check_scopes(&self, scopes: &Scopes) -> Result<(), AccountError> {
        if let KeyOwner::Vendor(_) = self {
            if let Some(s) = scopes.iter().find(|s| !s.is_pos()) {
                return Err(AccountError::VendorScope(s));
            }
        }
        Ok(())
    }
}

/// An API key's public id: the part of the key shown in lists and logs (`eftk_<id>_...`).
pub type ApiKeyId = String;

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub secret_hash: String,
    pub owner: KeyOwner,
    pub scopes: Scopes,
    /// What it is for, in the operator's words.
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Whether the key opens anything at `now`: not revoked, not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// The credential a request acts under, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credential: a SmartConnect client, identified only by its register triple (or a
    /// transaction's polling token). Allowed where the operator does not require keys.
    Keyless,
    /// An API key (or a key given on the command line, which acts as one).
    Key {
        /// The key's public id, for the audit log (`flag:<vendor>` for a command-line key).
        id: ApiKeyId,
        owner: KeyOwner,
        scopes: Scopes,
    },
    /// A person signed in to the dashboard: their role's scopes over the installation or
    /// their merchant.
    Person {
        user_id: String,
        email: String,
        role: super::people::Role,
        /// Installation, or the person's merchant (never a vendor).
        owner: KeyOwner,
    },
}

impl Principal {
    /// The installation's own credential (`--admin-token`): every scope, every merchant.
    pub fn owner_token() -> Self {
        Principal::Key {
            id: "admin-token".into(),
            owner: KeyOwner::Installation,
            scopes: Scopes::of(Scope::ALL),
        }
    }

    /// Whether this principal holds `scope`. A keyless client holds the SmartConnect
    /// functions (transact and read) and nothing else.
    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            // Where keyless registers are admitted, they may do what SmartConnect lets a
            // register do, and refund by reference (keys in force draw the line by scope).
            Principal::Keyless => {
                matches!(
                    scope,
                    Scope::PosTransact | Scope::PosRead | Scope::PosRefund
                )
            }
            Principal::Key { scopes, .. } => scopes.grants(scope),
            Principal::Person { role, .. } => role.scopes().grants(scope),
        }
    }

    /// Whether something of `merchant`, reached through a register of `vendor` (when there is
    /// one), exists for this principal. Anything else is answered as if it did not exist.
    pub fn sees(&self, merchant: &MerchantId, vendor: Option<&str>) -> bool {
        match self {
            // Keyless access is bounded by the register triple or the token, checked apart.
            Principal::Keyless => true,
            Principal::Key { owner, .. } | Principal::Person { owner, .. } => match owner {
                KeyOwner::Installation => true,
                KeyOwner::Merchant(m) => m == merchant,
                KeyOwner::Vendor(v) => vendor.is_some_and(|x| x == v),
            },
        }
    }

    /// The merchant this principal is confined to, if one.
    pub fn merchant(&self) -> Option<&MerchantId> {
        match self {
            Principal::Key {
                owner: KeyOwner::Merchant(m),
                ..
            }
            | Principal::Person {
                owner: KeyOwner::Merchant(m),
                ..
            } => Some(m),
            _ => None,
        }
    }

    /// The vendor this principal is confined to, if one.
    pub fn vendor(&self) -> Option<&str> {
        match self {
            Principal::Key {
                owner: KeyOwner::Vendor(v),
                ..
            } => Some(v),
            _ => None,
        }
    }

    /// Who acted, as the audit log records it.
    pub fn actor(&self) -> String {
        match self {
            Principal::Keyless => "keyless".into(),
            Principal::Key { id, .. } => format!("key:{id}"),
            Principal::Person { email, .. } => format!("user:{email}"),
        }
    }
}

/// Where keyless (SmartConnect) requests are still accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeylessPolicy {
    /// Keys required of every vendor (`--require-pos-keys` with no vendor).
    pub required_for_all: bool,
    /// Vendors that must send a key (`--require-pos-keys VENDOR`).
    pub required_for: BTreeSet<String>,
}

impl KeylessPolicy {
    /// Parses `--require-pos-keys` values: `all` (or `*`), or vendor names.
    pub fn parse(values: &[String]) -> Self {
        let mut policy = Self::default();
        for v in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
            match v {
                "" => {}
                "all" | "*" => policy.required_for_all = true,
                vendor => {
                    policy.required_for.insert(vendor.to_string());
                }
            }
        }
        policy
    }

    /// Whether a keyless request for a register of `vendor` (unknown: `None`) is accepted.
    pub fn accepts(&self, vendor: Option<&str>) -> bool {
        !self.required_for_all && vendor.is_none_or(|v| !self.required_for.contains(v))
    }

    /// Whether keys are required of anyone.
    pub fn requires_any(&self) -> bool {
        self.required_for_all || !self.required_for.is_empty()
    }
}

/// One admin action, as the audit log keeps it (append-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Order of recording; assigned by the store (0 before it is stored).
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// Who: `key:<id>`, `admin-token`, `cli`, `user:<email>`, `device:<id>`.
    pub actor: String,
    /// The source address, when it came over the network.
    pub source: Option<String>,
    /// What: `api_key.created`, `device.enrolled`, ...
    pub action: String,
    /// On what: a key id, a device id, a merchant id.
    pub target: String,
    /// The merchant it concerns, so a merchant's people see their own entries.
    pub merchant_id: Option<MerchantId>,
    /// The change, as JSON.
    pub detail: String,
}

/// Which audit entries to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this merchant's entries (a merchant's own view).
    pub merchant: Option<MerchantId>,
    /// Only actions starting with this (`api_key.` or `api_key.revoked`).
    pub action: Option<String>,
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only entries older than this sequence number (the next page).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(owner: KeyOwner, scopes: &[Scope]) -> Principal {
        Principal::Key {
            id: "k".into(),
            owner,
            scopes: Scopes::of(scopes.iter().copied()),
        }
    }

    #[test]
    fn scopes_parse_by_name_and_refuse_unknown_ones_listing_the_valid() {
        let Ok(s) = Scopes::parse("pos:transact, pos:read admin") else {
            panic!("parses")
        };
        assert_eq!(s.to_string(), "pos:transact pos:read admin");
        assert_eq!(Scopes::parse("POS:READ"), Ok(Scopes::of([Scope::PosRead])));
        let Err(e) = Scopes::parse("pos:read pos:write") else {
            panic!("pos:write is no scope")
        };
        assert_eq!(e, AccountError::UnknownScope("pos:write".into()));
        assert!(e.to_string().contains(Scope::ALL_NAMES));
        assert_eq!(Scopes::parse(" , "), Err(AccountError::NoScopes));
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>(), Ok(s));
            assert!(Scope::ALL_NAMES.contains(s.as_str()));
        }
    }

    #[test]
    fn stored_ids_read_back_as_they_were_and_print_so() {
        let m = MerchantId::from_stored("m-1".into());
        assert_eq!((m.as_str(), m.to_string().as_str()), ("m-1", "m-1"));
        let s = SiteId::from_stored("s-1".into());
        assert_eq!((s.as_str(), s.to_string().as_str()), ("s-1", "s-1"));
        let fresh = SiteId::new();
        assert_eq!(SiteId::parse(fresh.as_str()), Ok(fresh.clone()));
        assert_ne!(fresh, SiteId::default());
        assert_eq!(Scope::PosRefund.to_string(), "pos:refund");
        assert_eq!(Scope::Admin.to_string(), "admin");
    }

    #[test]
    fn each_principal_names_itself_in_the_audit_log() {
        assert_eq!(Principal::Keyless.actor(), "keyless");
        assert_eq!(key(KeyOwner::Installation, &[]).actor(), "key:k");
        let person = Principal::Person {
            user_id: "u".into(),
            email: "ana@example.com".into(),
            role: super::super::people::Role::Viewer,
            owner: KeyOwner::Installation,
        };
        assert_eq!(person.actor(), "user:ana@example.com");
        assert!(person.allows(Scope::ReportsRead) && !person.allows(Scope::Admin));
    }

    #[test]
    fn admin_grants_every_admin_scope_but_no_pos_scope() {
        let admin = Scopes::of([Scope::Admin]);
        assert!(admin.grants(Scope::DevicesManage));
        assert!(admin.grants(Scope::ReportsRead));
        assert!(admin.grants(Scope::Admin));
        assert!(!admin.grants(Scope::PosTransact));
        assert!(!admin.grants(Scope::PosRead));
        assert!(!admin.grants(Scope::PosRefund));
        let read = Scopes::of([Scope::PosRead]);
        assert!(read.grants(Scope::PosRead));
        assert!(!read.grants(Scope::PosTransact));
        assert!(!read.grants(Scope::Admin));
        assert!(!Scopes::of([Scope::DevicesManage]).grants(Scope::Admin));
    }

    #[test]
    fn keyless_clients_hold_the_pos_functions_only() {
        // Where keyless registers are admitted, they transact, read and refund by reference
        // as a register does; nothing of the admin side.
        let p = Principal::Keyless;
        assert!(p.allows(Scope::PosTransact));
        assert!(p.allows(Scope::PosRead));
        assert!(p.allows(Scope::PosRefund));
        for s in [Scope::DevicesManage, Scope::ReportsRead, Scope::Admin] {
            assert!(!p.allows(s), "{s}");
        }
        assert!(Principal::owner_token().allows(Scope::Admin));
        assert!(Principal::owner_token().allows(Scope::PosTransact));
    }

    #[test]
    fn a_key_sees_its_own_merchant_or_vendor_only() {
        let (a, b) = (MerchantId::new(), MerchantId::new());
        let of_a = key(KeyOwner::Merchant(a.clone()), &[Scope::PosRead]);
        assert!(of_a.sees(&a, Some("Till2Go")));
        assert!(of_a.sees(&a, None));
        assert!(!of_a.sees(&b, Some("Till2Go")));
        assert_eq!(of_a.merchant(), Some(&a));
        let till = key(KeyOwner::Vendor("Till2Go".into()), &[Scope::PosRead]);
        assert!(till.sees(&a, Some("Till2Go")));
        assert!(till.sees(&b, Some("Till2Go")));
        assert!(!till.sees(&a, Some("Other")));
        assert!(!till.sees(&a, None));
        assert_eq!(till.vendor(), Some("Till2Go"));
        let op = key(KeyOwner::Installation, &[Scope::Admin]);
        assert!(op.sees(&a, None) && op.sees(&b, Some("x")));
        assert_eq!(op.merchant(), None);
    }

    #[test]
    fn vendor_keys_hold_pos_scopes_only() {
        let v = KeyOwner::Vendor("Till2Go".into());
        assert_eq!(
            v.check_scopes(&Scopes::of([Scope::PosRead, Scope::Admin])),
            Err(AccountError::VendorScope(Scope::Admin))
        );
        assert_eq!(v.check_scopes(&Scopes::of([Scope::PosRead])), Ok(()));
        let m = KeyOwner::Merchant(MerchantId::new());
        assert_eq!(m.check_scopes(&Scopes::of([Scope::Admin])), Ok(()));
    }

    #[test]
    fn keys_are_live_until_revoked_or_expired() {
        let now = Utc::now();
        let mut k = ApiKeyRecord {
            id: "abc".into(),
            secret_hash: String::new(),
            owner: KeyOwner::Installation,
            scopes: Scopes::of([Scope::Admin]),
            label: String::new(),
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        assert!(k.is_live(now));
        k.expires_at = Some(now + chrono::Duration::seconds(1));
        assert!(k.is_live(now));
        assert!(!k.is_live(now + chrono::Duration::seconds(1)));
        k.expires_at = None;
        k.revoked_at = Some(now);
        assert!(!k.is_live(now));
    }

    #[test]
    fn keyless_policy_by_vendor_or_for_all() {
        let open = KeylessPolicy::parse(&[]);
        assert!(open.accepts(Some("Till2Go")) && open.accepts(None));
        assert!(!open.requires_any());
        let some = KeylessPolicy::parse(&["Till2Go, Other".into()]);
        assert!(!some.accepts(Some("Till2Go")));
        assert!(!some.accepts(Some("Other")));
        assert!(some.accepts(Some("Third")));
        assert!(some.accepts(None));
        assert!(some.requires_any());
        let all = KeylessPolicy::parse(&["all".into()]);
        assert!(!all.accepts(Some("Third")) && !all.accepts(None));
    }

    #[test]
    fn names_and_ids_are_checked() {
        assert_eq!(parse_name("  Toys Shop "), Ok("Toys Shop".into()));
        assert_eq!(parse_name(" "), Err(AccountError::InvalidName));
        assert_eq!(parse_name("a\u{7}b"), Err(AccountError::InvalidName));
        assert_eq!(
            parse_name(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(AccountError::InvalidName)
        );
        assert_eq!(
            parse_name(&"x".repeat(MAX_NAME_LEN)).map(|n| n.len()),
            Ok(MAX_NAME_LEN)
        );
        let id = MerchantId::new();
        assert_eq!(
            MerchantId::parse(&id.as_str().to_uppercase()).ok(),
            Some(id)
        );
        assert!(MerchantId::parse("shop").is_err());
        assert!(SiteId::parse("").is_err());
    }
}
