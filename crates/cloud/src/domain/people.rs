//! The people who sign in to the dashboard: their roles, what each role may do, and their
//! sessions. Passwords are hashed at the edge of the engine (argon2id); nothing here sees one.

use super::accounts::{AccountError, KeyOwner, MerchantId, Scope, Scopes};
use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, people included.
    Owner,
    /// Every merchant: devices, transactions, keys, audit; not the owners.
    Operator,
    /// One merchant, everything about it.
    MerchantAdmin,
    /// Read only: one merchant, or all.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Owner,
        Role::Operator,
        Role::MerchantAdmin,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Operator => "operator",
            Role::MerchantAdmin => "merchant-admin",
            Role::Viewer => "viewer",
        }
    }

    /// The scopes the role holds.
    pub fn scopes(self) -> Scopes {
        match self {
            Role::Owner | Role::Operator | Role::MerchantAdmin => Scopes::of([Scope::Admin]),
            Role::Viewer => Scopes::of([Scope::ReportsRead]),
        }
    }

    /// Checks the merchant suits the role: a merchant-admin has one, an owner or operator
    /// none, a viewer either.
    pub fn check_merchant(self, merchant: Option<&MerchantId>) -> Result<(), PersonError> {
        match (self, merchant) {
            (Role::MerchantAdmin, None) => Err(PersonError::MerchantRequired),
            (Role::Owner | Role::Operator, Some(_)) => Err(PersonError::NoMerchantFor(self)),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PersonError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| PersonError::UnknownRole(s.to_string()))
    }
}

/// Bad input about people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonError {
    #[error("unknown role '{0}'; valid roles: owner, operator, merchant-admin, viewer")]
    UnknownRole(String),
    #[error("'{0}' is not an email address")]
    InvalidEmail(String),
    #[error(
        "a password needs at least {MIN_PASSWORD_LEN} characters (and at most {MAX_PASSWORD_LEN})"
    )]
    WeakPassword,
    #[error("a merchant-admin belongs to a merchant: give --merchant")]
    MerchantRequired,
    #[error("an {0} acts for every merchant: give no merchant")]
    NoMerchantFor(Role),
    #[error(transparent)]
    Account(#[from] AccountError),
}

/// Shortest password accepted (NIST SP 800-63B asks at least 8; a dashboard that opens
/// payments asks more).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest: argon2 takes any length, but a megabyte "password" is a way to burn CPU.
pub const MAX_PASSWORD_LEN: usize = 256;

/// Checks a new password's length (counted in characters).
pub fn check_password(p: &str) -> Result<(), PersonError> {
    let n = p.chars().count();
    if (MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        Ok(())
    } else {
        Err(PersonError::WeakPassword)
    }
}

/// An email address, trimmed and lower-cased (so one person has one account).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@` with something on each side, a dot in the domain, no spaces
    /// or control characters, at most 254 characters. Deliverability is not our business.
    pub fn parse(s: &str) -> Result<Self, PersonError> {
        let e = s.trim().to_lowercase();
        let bad = || PersonError::InvalidEmail(s.to_string());
        let (local, domain) = e.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || e.len() > 254
            || e.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        Ok(Self(e))
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// A UUID.
    pub id: String,
    pub email: Email,
    /// argon2id in PHC string form.
    pub password_hash: String,
    pub role: Role,
    /// The merchant a merchant-admin (or a merchant's viewer) belongs to.
    pub merchant_id: Option<MerchantId>,
    pub created_at: DateTime<Utc>,
    /// Wrong passwords since the last sign-in.
    pub failed_sign_ins: u32,
    /// Sign-in refused until then, after too many wrong passwords.
    pub locked_until: Option<DateTime<Utc>>,
}

impl UserRecord {
    /// What the person's sessions may see.
    pub fn owner(&self) -> KeyOwner {
        match &self.merchant_id {
            Some(m) => KeyOwner::Merchant(m.clone()),
            None => KeyOwner::Installation,
        }
    }
}

/// A signed-in session, stored so that it holds on every node. Its id is the SHA-256 of the
/// cookie's token, so the store never holds a usable token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    /// Sent back in `X-CSRF-Token` by the page with every change it asks for.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl SessionRecord {
    /// Whether the session still holds at `now`: used within `idle`, and younger than
    /// `absolute`.
    pub fn is_live(
        &self,
        now: DateTime<Utc>,
        idle: chrono::Duration,
        absolute: chrono::Duration,
    ) -> bool {
        now < self.last_seen_at + idle && now < self.created_at + absolute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_hold_their_scopes() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!(matches!(
            "admin".parse::<Role>(),
            Err(PersonError::UnknownRole(_))
        ));
        assert!(Role::Owner.scopes().grants(Scope::Admin));
        assert!(Role::MerchantAdmin.scopes().grants(Scope::DevicesManage));
        assert!(Role::Viewer.scopes().grants(Scope::ReportsRead));
        assert!(!Role::Viewer.scopes().grants(Scope::DevicesManage));
        assert!(!Role::Viewer.scopes().grants(Scope::Admin));
    }

    #[test]
    fn each_role_has_the_merchant_it_needs() {
        let m = MerchantId::new();
        assert_eq!(
            Role::MerchantAdmin.check_merchant(None),
            Err(PersonError::MerchantRequired)
        );
        assert_eq!(Role::MerchantAdmin.check_merchant(Some(&m)), Ok(()));
        assert!(Role::Owner.check_merchant(Some(&m)).is_err());
        assert!(Role::Operator.check_merchant(Some(&m)).is_err());
        assert_eq!(Role::Owner.check_merchant(None), Ok(()));
        assert_eq!(Role::Viewer.check_merchant(None), Ok(()));
        assert_eq!(Role::Viewer.check_merchant(Some(&m)), Ok(()));
    }

    #[test]
    fn emails_and_roles_print_as_stored() {
        let longest = format!("{}@example.com", "a".repeat(254 - "@example.com".len()));
        let Ok(e) = Email::parse(&longest) else {
            panic!("254 characters is the most, and allowed")
        };
        assert_eq!(e.as_str(), longest);
        assert!(Email::parse(&format!("a{longest}")).is_err(), "255");
        assert_eq!(Email::from_stored("x@y.z".into()).to_string(), "x@y.z");
        assert_eq!(Role::MerchantAdmin.to_string(), "merchant-admin");
    }

    #[test]
    fn emails_are_checked_and_folded() {
        assert_eq!(
            Email::parse(" Ana@Example.COM ").map(|e| e.to_string()),
            Ok("ana@example.com".into())
        );
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "ana@localhost",
            "ana@@example.com",
            "a na@example.com",
            "ana@example.",
            "ana@.example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_need_a_length() {
        assert_eq!(check_password("short"), Err(PersonError::WeakPassword));
        assert_eq!(check_password(&"x".repeat(MIN_PASSWORD_LEN)), Ok(()));
        assert_eq!(check_password(&"é".repeat(MIN_PASSWORD_LEN)), Ok(()));
        assert!(check_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }

    #[test]
    fn sessions_end_when_idle_or_old() {
        let t0 = Utc::now();
        let s = SessionRecord {
            id: "i".into(),
            user_id: "u".into(),
            csrf_token: "c".into(),
            created_at: t0,
            last_seen_at: t0,
        };
        let (idle, absolute) = (chrono::Duration::hours(1), chrono::Duration::hours(8));
        assert!(s.is_live(t0, idle, absolute));
        assert!(s.is_live(t0 + chrono::Duration::minutes(59), idle, absolute));
        assert!(!s.is_live(t0 + idle, idle, absolute));
        let busy = SessionRecord {
            last_seen_at: t0 + chrono::Duration::hours(7) + chrono::Duration::minutes(59),
            ..s.clone()
        };
        assert!(busy.is_live(
            t0 + chrono::Duration::hours(7) + chrono::Duration::minutes(59),
            idle,
            absolute
        ));
        assert!(!busy.is_live(t0 + absolute, idle, absolute));
    }
}
