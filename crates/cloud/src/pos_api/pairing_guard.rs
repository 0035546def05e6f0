//! Brute-force protection for `PUT /POS/Pairing/{code}`. A pairing code is 8 digits, so an
//! attacker who could guess freely would find a live code quickly. Failed attempts are counted
//! per source address and across all sources in a fixed window (a minute by default); once a
//! budget is spent, attempts get 429 with `Retry-After` until that window ends.
//!
//! Every attempt counts as a failure from the moment it starts and is refunded when it
//! succeeds, so concurrent guesses from one source cannot slip past the budget while the first
//! ones are still being answered. In memory: a restart forgets the counts, which only hands an
//! attacker one more window.
//!
//! The same guard, under other names, is every other per-source budget of the cloud (one
//! limiter, several budgets): self-enrollment from the virtual terminal page, failed device
//! `hello`s, wrong admin tokens (per source address), and `pairing_code_request`s (per device).

use super::ApiState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use protocol::DeviceId;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources tracked at once; beyond it expired entries are swept and, if the table is still
/// full, new sources are only held to the global budget. Bounds memory whatever the traffic.
const MAX_SOURCES: usize = 10_000;

/// Settings of the pairing guard.
#[derive(Debug, Clone)]
pub struct PairingGuardSettings {
    /// Failed attempts allowed from one source per window (zero: no per-source limit).
    pub failures_per_source: u32,
    /// Failed attempts allowed from all sources together per window (zero: no global limit).
    pub failures_global: u32,
    /// The counting window.
    pub window: Duration,
    /// Take the source from the last `X-Forwarded-For` entry (only behind a trusted proxy that
    /// sets it; otherwise a client could pick its own source at will).
    pub trust_forwarded_for: bool,
}

impl Default for PairingGuardSettings {
    fn default() -> Self {
        Self {
            failures_per_source: 10,
            failures_global: 300,
            window: Duration::from_secs(60),
            trust_forwarded_for: false,
        }
    }
}

/// Failures counted in one window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            failures: 0,
        }
    }

    /// Starts a new window if this one is over.
    fn roll(&mut self, now: Instant, window: Duration) {
        if now.saturating_duration_since(self.start) >= window {
            *self = Window::new(now);
        }
    }

    fn retry_after(&self, now: Instant, window: Duration) -> Duration {
        (self.start + window).saturating_duration_since(now)
    }
}

/// What a guard counts by.
pub trait GuardKey: Clone + Eq + Hash + fmt::Display + Send + 'static {
    /// The key an attempt is counted under (several addresses may be one source).
    fn counted_as(self) -> Self {
        self
    }
}

impl GuardKey for IpAddr {
    fn counted_as(self) -> Self {
        source_key(self)
    }
}

impl GuardKey for DeviceId {}

#[derive(Debug)]
struct Counts<K> {
    sources: HashMap<K, Window>,
    global: Window,
}

/// Counts failed attempts per source (an address by default); see the module documentation.
#[derive(Debug)]
pub struct PairingGuard<K = IpAddr> {
    /// What is counted, for the log (`pairing`, `device hello`, ...).
    what: &'static str,
    settings: PairingGuardSettings,
    counts: Mutex<Counts<K>>,
}

/// An attempt in progress, counted as a failure unless [`PairingGuard::succeeded`] refunds it.
#[derive(Debug)]
#[must_use = "an attempt counts as failed unless it is refunded"]
pub struct Attempt<K = IpAddr> {
    source: Option<K>,
    at: Instant,
    /// Failures counted for its source in this window, this one included (0: not tracked).
    failures: u32,
}

impl<K> Attempt<K> {
    /// Failures counted for the source in the current window, this attempt included; 1 for
    /// the first of a burst (worth a log line when the rest are not). 0 when not tracked.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Why an attempt was refused: which budget is spent, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
    pub global: bool,
}

impl Refused {
    /// `Retry-After` in whole seconds, at least one.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

impl PairingGuard {
    /// The pairing guard, with these settings.
    pub fn new(settings: PairingGuardSettings) -> Self {
        Self::named("pairing", settings)
    }
}

impl<K: GuardKey> PairingGuard<K> {
    /// A guard counting `what` (named in its log lines) with these settings.
    pub fn named(what: &'static str, settings: PairingGuardSettings) -> Self {
        let now = Instant::now();
        Self {
            what,
            settings,
            counts: Mutex::new(Counts {
                sources: HashMap::new(),
                global: Window::new(now),
            }),
        }
    }

    /// Starts an attempt from `source` at `now`, counting it as failed until refunded;
    /// `Err` when the source's or the global budget is spent.
    pub fn begin(&self, source: Option<K>, now: Instant) -> Result<Attempt<K>, Refused> {
        let s = &self.settings;
        let source = source.map(GuardKey::counted_as);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.global.roll(now, s.window);
        if s.failures_global > 0 && counts.global.failures >= s.failures_global {
            return Err(Refused {
                retry_after: counts.global.retry_after(now, s.window),
                global: true,
            });
        }
        let mut failures = 0;
        if let (Some(ip), true) = (source.clone(), s.failures_per_source > 0) {
            if !counts.sources.contains_key(&ip) && counts.sources.len() >= MAX_SOURCES {
                let window = s.window;
                counts
                    .sources
                    .retain(|_, w| now.saturating_duration_since(w.start) < window);
            }
            let tracked = counts.sources.len() < MAX_SOURCES || counts.sources.contains_key(&ip);
            if tracked {
                let w = counts
                    .sources
                    .entry(ip.clone())
                    .or_insert_with(|| Window::new(now));
                w.roll(now, s.window);
                if w.failures >= s.failures_per_source {
                    return Err(Refused {
                        retry_after: w.retry_after(now, s.window),
                        global: false,
                    });
                }
                w.failures += 1;
                failures = w.failures;
                if w.failures == s.failures_per_source {
                    tracing::warn!(
                        limit = self.what,
                        source = %ip,
                        failures = w.failures,
                        window_secs = s.window.as_secs(),
                        "too many attempts from one source; refusing it until the window ends"
                    );
                }
            }
        }
        counts.global.failures += 1;
        if counts.global.failures == s.failures_global {
            tracing::warn!(
                limit = self.what,
                source = %source.as_ref().map(ToString::to_string).unwrap_or_default(),
                failures = counts.global.failures,
                window_secs = s.window.as_secs(),
                "global failure budget spent; refusing every source until the window ends"
            );
        }
        Ok(Attempt {
            source,
            at: now,
            failures,
        })
    }

    /// Counts a failure that has already happened (no attempt to refund): the source's failure
    /// count in this window, or `Err` when its budget was already spent.
    pub fn failed(&self, source: Option<K>, now: Instant) -> Result<u32, Refused> {
        self.begin(source, now).map(|a| a.failures)
    }

    /// Whether an attempt from `source` at `now` would be refused, without counting one: for
    /// checks that count only failures, so that many concurrent successes never trip them.
    pub fn refusal(&self, source: Option<&K>, now: Instant) -> Option<Refused> {
        let s = &self.settings;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.global.roll(now, s.window);
        if s.failures_global > 0 && counts.global.failures >= s.failures_global {
            return Some(Refused {
                retry_after: counts.global.retry_after(now, s.window),
                global: true,
            });
        }
        let key = source.cloned().map(GuardKey::counted_as)?;
        if s.failures_per_source == 0 {
            return None;
        }
        let w = counts.sources.get_mut(&key)?;
        w.roll(now, s.window);
        (w.failures >= s.failures_per_source).then(|| Refused {
            retry_after: w.retry_after(now, s.window),
            global: false,
        })
    }

    /// Refunds an attempt that did not fail (the code paired, or the store failed).
    pub fn succeeded(&self, attempt: Attempt<K>) {
        let window = self.settings.window;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        // Only refund into the window the attempt was counted in.
        let same_window = |w: &Window| attempt.at >= w.start && attempt.at < w.start + window;
        if same_window(&counts.global) {
            counts.global.failures = counts.global.failures.saturating_sub(1);
        }
        if let Some(w) = attempt
            .source
            .as_ref()
            .and_then(|ip| counts.sources.get_mut(ip))
        {
            if same_window(w) {
                w.failures = w.failures.saturating_sub(1);
            }
        }
    }

    /// Sources currently tracked (tests).
    pub fn tracked_sources(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sources
            .len()
    }
}

/// The key a source is counted under: IPv4 addresses as they are, IPv6 by their /64 prefix
/// (one subscriber usually holds a whole /64), IPv4-mapped IPv6 as IPv4.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The address a request came from: the TCP peer, or with `trust_forwarded_for` the last
/// `X-Forwarded-For` entry (the one the trusted proxy added). `None` when neither is known.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// A router state that knows whether to believe `X-Forwarded-For` (`--trust-forwarded-for`).
pub trait ForwardedFor {
    /// Whether the last `X-Forwarded-For` entry is the client's address.
    fn trust_forwarded_for(&self) -> bool;
}

impl ForwardedFor for ApiState {
    fn trust_forwarded_for(&self) -> bool {
        self.settings.limits.pairing.trust_forwarded_for
    }
}

impl<S: ForwardedFor + Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        if state.trust_forwarded_for() {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return Ok(ClientAddr(forwarded));
            }
        }
        Ok(ClientAddr(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(per_source: u32, global: u32) -> PairingGuard {
        PairingGuard::new(PairingGuardSettings {
            failures_per_source: per_source,
            failures_global: global,
            window: Duration::from_secs(60),
            trust_forwarded_for: false,
        })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn a_source_is_refused_after_its_budget_until_the_window_ends() {
        let g = guard(3, 1000);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(g.begin(ip("10.0.0.1"), t).is_ok());
        }
        let refused = g.begin(ip("10.0.0.1"), t + Duration::from_secs(20));
        assert_eq!(
            refused.map(|_| ()),
            Err(Refused {
                retry_after: Duration::from_secs(40),
                global: false
            })
        );
        // Another source is unaffected.
        assert!(g.begin(ip("10.0.0.2"), t).is_ok());
        // The window ends.
        assert!(g.begin(ip("10.0.0.1"), t + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn successes_are_refunded() {
        let g = guard(2, 1000);
        let t = Instant::now();
        for _ in 0..10 {
            let a = g.begin(ip("10.0.0.1"), t);
            let Ok(a) = a else { panic!("allowed") };
            g.succeeded(a);
        }
        assert!(g.begin(ip("10.0.0.1"), t).is_ok());
    }

    #[test]
    fn the_global_budget_stops_distributed_guessing() {
        let g = guard(10, 5);
        let t = Instant::now();
        for i in 0..5 {
            assert!(g.begin(ip(&format!("10.0.1.{i}")), t).is_ok());
        }
        let r = g.begin(ip("10.0.2.1"), t + Duration::from_millis(500));
        let Err(r) = r else { panic!("refused") };
        assert!(r.global);
        assert_eq!(r.retry_after_secs(), 60);
        assert!(g.begin(None, t + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let g = guard(2, 1000);
        let t = Instant::now();
        assert!(g.begin(ip("2001:db8::1"), t).is_ok());
        assert!(g.begin(ip("2001:db8::ffff:2"), t).is_ok());
        assert!(g.begin(ip("2001:db8::3"), t).is_err());
        assert!(g.begin(ip("2001:db8:0:1::1"), t).is_ok());
        assert!(g.begin(ip("10.9.9.9"), t).is_ok());
        assert!(g.begin(ip("::ffff:10.9.9.9"), t).is_ok());
        assert!(g.begin(ip("10.9.9.9"), t).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let g = guard(5, 0);
        let t = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 500) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            assert!(g.begin(Some(IpAddr::V4(a)), t).is_ok());
        }
        assert_eq!(g.tracked_sources(), MAX_SOURCES);
        // Once the old windows are over, the table is swept and new sources are tracked.
        let later = t + Duration::from_secs(61);
        assert!(g.begin(ip("192.168.0.1"), later).is_ok());
        assert_eq!(g.tracked_sources(), 1);
    }

    #[test]
    fn counting_only_failures_never_refuses_concurrent_successes() {
        let g = guard(2, 0);
        let t = Instant::now();
        let src = ip("10.0.0.1");
        // Checks alone count nothing.
        for _ in 0..100 {
            assert_eq!(g.refusal(src.as_ref(), t), None);
        }
        assert_eq!(g.failed(src, t), Ok(1));
        assert_eq!(g.refusal(src.as_ref(), t), None);
        assert_eq!(g.failed(src, t), Ok(2));
        let refused = g.refusal(src.as_ref(), t + Duration::from_secs(15));
        assert_eq!(
            refused,
            Some(Refused {
                retry_after: Duration::from_secs(45),
                global: false
            })
        );
        assert!(g.failed(src, t).is_err());
        // Unknown sources are never refused by the per-source budget.
        assert_eq!(g.refusal(None, t), None);
        assert_eq!(g.refusal(ip("10.0.0.2").as_ref(), t), None);
        assert_eq!(g.refusal(src.as_ref(), t + Duration::from_secs(60)), None);
    }

    #[test]
    fn devices_can_be_the_source() {
        let g: PairingGuard<DeviceId> = PairingGuard::named(
            "pairing code request",
            PairingGuardSettings {
                failures_per_source: 2,
                failures_global: 0,
                window: Duration::from_secs(60),
                trust_forwarded_for: false,
            },
        );
        let t = Instant::now();
        let d = |s: &str| DeviceId::parse(s).ok();
        assert_eq!(g.begin(d("a"), t).map(|a| a.failures()).ok(), Some(1));
        assert_eq!(g.begin(d("a"), t).map(|a| a.failures()).ok(), Some(2));
        assert!(g.begin(d("a"), t).is_err());
        assert!(g.begin(d("b"), t).is_ok());
    }

    #[test]
    fn zero_disables() {
        let g = guard(0, 0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert!(g.begin(ip("10.0.0.1"), t).is_ok());
        }
    }
}
