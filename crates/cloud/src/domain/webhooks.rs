//! Webhook endpoints: where a merchant, a vendor or the operator wants the event log pushed.
//! Each endpoint takes the log in order from its own cursor, one event at a time, retried with
//! backoff until it answers 2xx, and is disabled (with a notice) after failing for days. Pure:
//! the records, the owner's rules, the signature header, the backoff, and which addresses a
//! production cloud refuses to call (SSRF).

use super::accounts::{KeyOwner, MerchantId};
use super::events::{Audience, Cursor, EventId, TypeFilter};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use std::fmt;
use std::net::IpAddr;
use url::Url;

/// An endpoint's id, `we_` and a UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(String);

impl EndpointId {
    const PREFIX: &'static str = "we_";

    pub fn new() -> Self {
        Self(format!("{}{}", Self::PREFIX, uuid::Uuid::new_v4().simple()))
    }

    pub fn parse(s: &str) -> Result<Self, WebhookError> {
        let u = s
            .strip_prefix(Self::PREFIX)
            .and_then(|rest| uuid::Uuid::try_parse(rest).ok())
            .ok_or_else(|| WebhookError::BadId(s.chars().take(64).collect()))?;
        Ok(Self(format!("{}{}", Self::PREFIX, u.simple())))
    }

    /// Trusted: a value read back from the store.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for EndpointId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Input refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("Malformed webhook endpoint id '{0}'")]
    BadId(String),
    #[error("Invalid webhook URL '{0}': expected an absolute http:// or https:// URL")]
    BadUrl(String),
    #[error("Webhook URL '{0}' must not carry credentials; authenticate with the signature")]
    Credentials(String),
    #[error("Webhook URL {0} points at a loopback, private or link-local address, which this cloud does not call (--webhook-allow-private allows it)")]
    PrivateTarget(String),
    #[error("description is longer than {MAX_DESCRIPTION} characters")]
    LongDescription,
    #[error("graceSeconds must be between 0 and {MAX_GRACE_SECS}")]
    BadGrace,
}

/// Longest description kept.
pub const MAX_DESCRIPTION: usize = 200;
/// Longest grace period of a rotated secret: a week.
pub const MAX_GRACE_SECS: i64 = 7 * 24 * 3600;
/// The default grace period of a rotated secret: a day.
pub const DEFAULT_GRACE_SECS: i64 = 24 * 3600;

/// Parses a target URL: absolute http(s), no credentials in it.
pub fn parse_url(s: &str) -> Result<Url, WebhookError> {
    let s = s.trim();
    let url = Url::parse(s).map_err(|_| WebhookError::BadUrl(s.chars().take(200).collect()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(WebhookError::BadUrl(s.chars().take(200).collect()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::Credentials(
            url.host_str().unwrap_or("").into(),
        ));
    }
    Ok(url)
}

/// Whether an address is one a cloud on the internet must not be made to call for a customer
/// (loopback, private, link-local, unique-local, unspecified, shared CGNAT, multicast, and the
/// cloud metadata address 169.254.169.254 among them).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // 100.64.0.0/10, shared address space (carrier-grade NAT).
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// A generated signing secret, `whsec_` and 256 random bits.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    format!("whsec_{}", hex::encode(bytes))
}

/// `Eftcloud-Signature` for `body` sent at `t` (unix seconds): one `v1` per secret (the
/// current one first, then the one a rotation replaced, while its grace period runs).
pub fn signature_header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

/// Who an endpoint belongs to, and so whose events it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Installation,
    Merchant(MerchantId),
    Vendor(String),
}

impl Owner {
    /// The owner a key creates endpoints for.
    pub fn of(owner: &KeyOwner) -> Self {
        match owner {
            KeyOwner::Installation => Owner::Installation,
            KeyOwner::Merchant(m) => Owner::Merchant(m.clone()),
            KeyOwner::Vendor(v) => Owner::Vendor(v.clone()),
        }
    }

    /// Whose events it receives.
    pub fn audience(&self) -> Audience {
        match self {
            Owner::Installation => Audience::Everything,
            Owner::Merchant(m) => Audience::Merchant(m.clone()),
            Owner::Vendor(v) => Audience::Vendor(v.clone()),
        }
    }

    /// Whether a key of `key` may see and manage this endpoint: the installation's keys every
    /// endpoint, others their own.
    pub fn managed_by(&self, key: &KeyOwner) -> bool {
        match key {
            KeyOwner::Installation => true,
            k => Owner::of(k) == *self,
        }
    }
}

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub owner: Owner,
    pub url: Url,
    pub types: TypeFilter,
    pub description: String,
    pub secret: String,
    /// The secret a rotation replaced, still signed with until the time given.
    pub previous_secret: Option<(String, DateTime<Utc>)>,
    pub enabled: bool,
    /// Why it was disabled by the cloud (none: enabled, or disabled by its owner).
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last event of the log it took (delivered, or not for it).
    pub cursor: Cursor,
    /// Attempts at its queue's head so far.
    pub attempts: u32,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
}

impl Endpoint {
    /// The secrets a delivery at `now` is signed with.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some((old, until)) = &self.previous_secret {
            if *until > now {
                secrets.push(old.as_str());
            }
        }
        secrets
    }
}

/// Delivery rules.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// First retry delay; doubles each attempt.
    pub retry_min: std::time::Duration,
    /// Longest retry delay.
    pub retry_max: std::time::Duration,
    /// An endpoint failing this long without a success is disabled.
    pub disable_after: std::time::Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            retry_min: std::time::Duration::from_secs(5),
            retry_max: std::time::Duration::from_secs(3600),
            disable_after: std::time::Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// What a failed attempt leaves on the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub attempts: u32,
    pub failing_since: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// Set when the endpoint is disabled now: the notice.
    pub disable: Option<String>,
}

impl DeliveryPolicy {
    /// The endpoint's state after its `attempts`-th failure in a row (counting this one) at
    /// `now`, failing since `since` (none: this is the first).
    pub fn after_failure(
        &self,
        attempts: u32,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Failure {
        let failing_since = since.unwrap_or(now);
        let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(31));
        let delay = self.retry_min.saturating_mul(doubling).min(self.retry_max);
        let delay = Duration::from_std(delay).unwrap_or(Duration::hours(1));
        let failing_for = (now - failing_since).to_std().unwrap_or_default();
        let disable = (failing_for >= self.disable_after).then(|| {
            format!(
                "disabled after failing for {} without a success ({attempts} attempts)",
                span(failing_for.as_secs())
            )
        });
        Failure {
            attempts,
            failing_since,
            next_attempt_at: now + delay,
            disable,
        }
    }
}

/// A span as a notice says it: whole days, else hours, else minutes.
fn span(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        s if s >= 86_400 => plural(s / 86_400, "day"),
        s if s >= 3_600 => plural(s / 3_600, "hour"),
        s => plural(s / 60, "minute"),
    }
}

/// One attempt, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub event_id: EventId,
    pub event_type: String,
    /// Which attempt at this event (1 for the first).
    pub attempt: u32,
    pub delivered: bool,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// What an attempt moves on the endpoint, in the commit that logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The head of the queue was delivered (or skipped): the cursor moves to it.
    Advance(Cursor),
    /// A redelivery asked for was delivered: it leaves the redelivery queue.
    Redelivered(EventId),
    /// It failed: try again later, or disable.
    Failed(Failure),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http_without_credentials() {
        assert!(parse_url("https://hooks.example.com/eft").is_ok());
        assert!(parse_url(" http://10.0.0.1:8080/x ").is_ok());
        for bad in [
            "",
            "hooks.example.com",
            "ftp://x/y",
            "file:///etc/passwd",
            "https://",
        ] {
            assert!(
                matches!(parse_url(bad), Err(WebhookError::BadUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_url("https://u:p@example.com/"),
            Err(WebhookError::Credentials(_))
        ));
    }

    #[test]
    fn private_addresses_are_told_from_public_ones() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "ff02::1",
        ] {
            let ip: IpAddr = private.parse().unwrap_or_else(|_| unreachable!());
            assert!(is_private(ip), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
        ] {
            let ip: IpAddr = public.parse().unwrap_or_else(|_| unreachable!());
            assert!(!is_private(ip), "{public}");
        }
    }

    #[test]
    fn the_signature_carries_one_v1_per_secret_over_t_and_body() {
        let h = signature_header(&["whsec_a"], 1_700_000_000, b"{}");
        let parts: Vec<&str> = h.split(',').collect();
        assert_eq!(parts[0], "t=1700000000");
        assert_eq!(parts.len(), 2);
        // The same HMAC the completion callbacks use, so one verifier serves both.
        let v1 = crate::pos_api::callbacks::sign("whsec_a", 1_700_000_000, b"{}");
        assert_eq!(parts[1], format!("v1={v1}"));
        let both = signature_header(&["whsec_new", "whsec_old"], 5, b"x");
        assert_eq!(both.matches("v1=").count(), 2);
        assert!(both.starts_with("t=5,v1="));
        assert_ne!(h, signature_header(&["whsec_a"], 1_700_000_001, b"{}"));
    }

    #[test]
    fn a_rotated_secret_signs_until_its_grace_runs_out() {
        let now = Utc::now();
        let mut e = endpoint(now);
        assert_eq!(e.signing_secrets(now), vec!["whsec_new"]);
        e.previous_secret = Some(("whsec_old".into(), now + Duration::seconds(10)));
        assert_eq!(e.signing_secrets(now), vec!["whsec_new", "whsec_old"]);
        assert_eq!(
            e.signing_secrets(now + Duration::seconds(10)),
            vec!["whsec_new"]
        );
    }

    fn endpoint(now: DateTime<Utc>) -> Endpoint {
        Endpoint {
            id: EndpointId::new(),
            owner: Owner::Installation,
            url: parse_url("https://example.com/h").unwrap_or_else(|_| unreachable!()),
            types: TypeFilter::all(),
            description: String::new(),
            secret: "whsec_new".into(),
            previous_secret: None,
            enabled: true,
            disabled_reason: None,
            created_at: now,
            cursor: Cursor::START,
            attempts: 0,
            failing_since: None,
            next_attempt_at: now,
        }
    }

    #[test]
    fn failures_back_off_doubling_to_a_cap_and_disable_after_days() {
        let policy = DeliveryPolicy::default();
        let now = Utc::now();
        let first = policy.after_failure(1, None, now);
        assert_eq!(first.failing_since, now);
        assert_eq!(first.next_attempt_at, now + Duration::seconds(5));
        assert_eq!(first.disable, None);
        let third = policy.after_failure(3, Some(now - Duration::minutes(1)), now);
        assert_eq!(third.next_attempt_at, now + Duration::seconds(20));
        assert_eq!(third.failing_since, now - Duration::minutes(1));
        let late = policy.after_failure(40, Some(now - Duration::hours(5)), now);
        assert_eq!(late.next_attempt_at, now + Duration::hours(1));
        assert_eq!(late.disable, None);
        let just_under = policy.after_failure(
            70,
            Some(now - Duration::hours(72) + Duration::seconds(1)),
            now,
        );
        assert_eq!(just_under.disable, None);
        let over = policy.after_failure(71, Some(now - Duration::hours(72)), now);
        let notice = over.disable.unwrap_or_default();
        assert!(
            notice.contains("3 days") && notice.contains("71 attempts"),
            "{notice}"
        );
    }

    #[test]
    fn owners_manage_their_own_and_the_installation_all() {
        let (a, b) = (MerchantId::new(), MerchantId::new());
        let of_a = Owner::Merchant(a.clone());
        assert!(of_a.managed_by(&KeyOwner::Merchant(a.clone())));
        assert!(!of_a.managed_by(&KeyOwner::Merchant(b)));
        assert!(!of_a.managed_by(&KeyOwner::Vendor("V".into())));
        assert!(of_a.managed_by(&KeyOwner::Installation));
        assert!(Owner::Vendor("V".into()).managed_by(&KeyOwner::Vendor("V".into())));
        assert_eq!(of_a.audience(), Audience::Merchant(a));
        assert!(EndpointId::parse(EndpointId::new().as_str()).is_ok());
        assert!(EndpointId::parse("we_x").is_err() && EndpointId::parse("evt_1").is_err());
    }
}
