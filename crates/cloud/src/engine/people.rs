//! People: accounts with argon2id passwords, sign-in with lockouts counted in the store (so
//! every node counts the same guesses), and sessions stored server-side so they hold on every
//! node. A session's cookie carries a random token; the store keeps only its SHA-256.

use super::accounts::Actor;
use super::devices::{constant_time_eq, hash_secret, random_hex};
use super::Engine;
use crate::domain::accounts::{AuditEntry, MerchantId, Principal};
use crate::domain::people::{check_password, Email, PersonError, Role, SessionRecord, UserRecord};
use crate::store::{InsertError, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use rand::RngCore;
use std::sync::OnceLock;

/// Wrong passwords in a row before an account is locked.
pub const MAX_FAILED_SIGN_INS: u32 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT: chrono::Duration = chrono::Duration::minutes(15);
/// How often a session's last use is written at most.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Why a people operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error(transparent)]
    Invalid(#[from] PersonError),
    #[error("a person with the email '{0}' exists already")]
    EmailTaken(Email),
    #[error("no person with the email '{0}'")]
    NoSuchPerson(String),
    #[error("no merchant '{0}'")]
    NoMerchant(String),
    #[error("{0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a sign-in was refused. Deliberately one answer for an unknown email and a wrong
/// password, so accounts cannot be probed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong email or password")]
    Wrong,
    #[error("too many wrong passwords; try again in {retry_after_secs} s")]
    Locked { retry_after_secs: u64 },
    #[error(transparent)]
    Failed(#[from] PeopleError),
}

impl From<StoreError> for SignInError {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.into())
    }
}

/// A person to add.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub role: Role,
    pub merchant: Option<MerchantId>,
}

/// A session just started: the token goes into the cookie and is not stored.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub token: String,
    pub session: SessionRecord,
    pub user: UserRecord,
}

/// A checked session: who it is, and the CSRF token the page must echo.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub principal: Principal,
    pub user: UserRecord,
    pub session: SessionRecord,
}

/// A password for a person to change later: 24 characters of 64 (144 random bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter()
        .map(|x| char::from(ALPHABET[usize::from(x % 64)]))
        .collect()
}

/// The stored id of a session token.
pub fn session_id(token: &str) -> String {
    hash_secret(token)
}

/// argon2id with the crate's defaults (19 MiB, 2 passes: OWASP's recommendation), on the
/// blocking pool since it takes tens of milliseconds.
async fn hash_password(password: String) -> Result<String, PeopleError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PeopleError::Hashing(e.to_string()))
    })
    .await
    .map_err(|e| PeopleError::Hashing(e.to_string()))?
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash no password was given for: verified against when the email is unknown, so that
/// answer takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(random_hex(16).as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

fn audit(actor: &Actor, at: DateTime<Utc>, action: &str, user: &UserRecord) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at,
        actor: actor.name.clone(),
        source: actor.source.clone(),
        action: action.into(),
        target: user.email.to_string(),
        merchant_id: user.merchant_id.clone(),
        detail: serde_json::json!({ "role": user.role.as_str() }).to_string(),
    }
}

impl Engine {
    async fn new_user(&self, new: NewUser) -> Result<UserRecord, PeopleError> {
        let email = Email::parse(&new.email)?;
        check_password(&new.password)?;
        new.role.check_merchant(new.merchant.as_ref())?;
        if let Some(m) = &new.merchant {
            if self.store().merchant(m).await?.is_none() {
                return Err(PeopleError::NoMerchant(m.to_string()));
            }
        }
        Ok(UserRecord {
            id: uuid::Uuid::new_v4().to_string(),
            email,
            password_hash: hash_password(new.password).await?,
            role: new.role,
            merchant_id: new.merchant,
            created_at: self.now(),
            failed_sign_ins: 0,
            locked_until: None,
        })
    }

    /// Adds a person.
    pub async fn create_user(
        &self,
        new: NewUser,
        actor: &Actor,
    ) -> Result<UserRecord, PeopleError> {
        let user = self.new_user(new).await?;
        let entry = audit(actor, user.created_at, "user.added", &user);
        match self.store().create_user(&user, &entry).await {
            Ok(()) => Ok(user),
            Err(InsertError::Store(e)) => Err(e.into()),
            Err(_) => Err(PeopleError::EmailTaken(user.email)),
        }
    }

    /// Adds the first owner, only while nobody has an account (the setup link); `None` if
    /// someone was first.
    pub async fn create_first_owner(
        &self,
        email: &str,
        password: &str,
        actor: &Actor,
    ) -> Result<Option<UserRecord>, PeopleError> {
        let user = self
            .new_user(NewUser {
                email: email.into(),
                password: password.into(),
                role: Role::Owner,
                merchant: None,
            })
            .await?;
        let entry = audit(actor, user.created_at, "user.added", &user);
        Ok(self
            .store()
            .create_first_user(&user, &entry)
            .await?
            .then_some(user))
    }

    /// Whether anyone has an account yet.
    pub async fn has_users(&self) -> Result<bool, StoreError> {
        Ok(!self.store().users(None).await?.is_empty())
    }

    /// The people `principal` may see (its merchant's, or all), by email.
    pub async fn users(&self, principal: &Principal) -> Result<Vec<UserRecord>, StoreError> {
        self.store().users(principal.merchant()).await
    }

    /// Removes a person (their sessions end with them).
    pub async fn remove_user(&self, email: &str, actor: &Actor) -> Result<UserRecord, PeopleError> {
        let user = self.person(email).await?;
        let entry = audit(actor, self.now(), "user.removed", &user);
        if !self.store().delete_user(&user.id, &entry).await? {
            return Err(PeopleError::NoSuchPerson(email.into()));
        }
        Ok(user)
    }

    /// Sets a new password; the person's sessions end.
    pub async fn reset_password(
        &self,
        email: &str,
        password: &str,
        actor: &Actor,
    ) -> Result<UserRecord, PeopleError> {
        check_password(password)?;
        let user = self.person(email).await?;
        let hash = hash_password(password.into()).await?;
        let entry = audit(actor, self.now(), "user.password_reset", &user);
        if !self.store().set_password(&user.id, &hash, &entry).await? {
            return Err(PeopleError::NoSuchPerson(email.into()));
        }
        Ok(user)
    }

    async fn person(&self, email: &str) -> Result<UserRecord, PeopleError> {
        let parsed = Email::parse(email)?;
        self.store()
            .user_by_email(&parsed)
            .await?
            .ok_or_else(|| PeopleError::NoSuchPerson(email.into()))
    }

    /// Checks a password and starts a session. An unknown email and a wrong password get
    /// the same answer in about the same time; [`MAX_FAILED_SIGN_INS`] wrong passwords in a
    /// row lock the account for [`LOCKOUT`] on every node.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        actor: &Actor,
    ) -> Result<SignedIn, SignInError> {
        let now = self.now();
        let user = match Email::parse(email) {
            Ok(e) => self.store().user_by_email(&e).await?,
            Err(_) => None,
        };
        let Some(user) = user else {
            verify_password(password.into(), decoy_hash().to_string()).await;
            return Err(SignInError::Wrong);
        };
        if let Some(until) = user.locked_until.filter(|u| *u > now) {
            let secs = (until - now).num_seconds().max(1);
            return Err(SignInError::Locked {
                retry_after_secs: u64::try_from(secs).unwrap_or(1),
            });
        }
        if !verify_password(password.into(), user.password_hash.clone()).await {
            let entry = audit(actor, now, "user.sign_in_failed", &user);
            self.store()
                .record_failed_sign_in(&user.id, MAX_FAILED_SIGN_INS, now + LOCKOUT, &entry)
                .await?;
            return Err(SignInError::Wrong);
        }
        let token = random_hex(32);
        let session = SessionRecord {
            id: session_id(&token),
            user_id: user.id.clone(),
            csrf_token: random_hex(32),
            created_at: now,
            last_seen_at: now,
        };
        let entry = audit(actor, now, "user.signed_in", &user);
        self.store().insert_session(&session, &entry).await?;
        Ok(SignedIn {
            token,
            session,
            user,
        })
    }

    /// The session a cookie's token opens, if it is live: idle for less than
    /// `session_idle`, younger than `session_ttl`, its person still there.
    pub async fn session(&self, token: &str) -> Result<Option<ActiveSession>, StoreError> {
        let id = session_id(token);
        let Some(session) = self.store().session(&id).await? else {
            return Ok(None);
        };
        let now = self.now();
        let settings = self.settings();
        let (idle, ttl) = (
            chrono::Duration::from_std(settings.session_idle).unwrap_or(chrono::Duration::MAX),
            chrono::Duration::from_std(settings.session_ttl).unwrap_or(chrono::Duration::MAX),
        );
        // The stored id was found by the token's digest; compared again in constant time.
        if !constant_time_eq(session.id.as_bytes(), id.as_bytes())
            || !session.is_live(now, idle, ttl)
        {
            self.store().delete_session(&id).await?;
            return Ok(None);
        }
        let Some(user) = self.store().user(&session.user_id).await? else {
            return Ok(None);
        };
        if now - session.last_seen_at >= TOUCH_EVERY {
            self.store().touch_session(&id, now).await?;
        }
        let principal = Principal::Person {
            user_id: user.id.clone(),
            email: user.email.to_string(),
            role: user.role,
            owner: user.owner(),
        };
        Ok(Some(ActiveSession {
            principal,
            user,
            session,
        }))
    }

    /// Ends a session (sign-out).
    pub async fn sign_out(&self, token: &str, actor: &Actor) -> Result<(), StoreError> {
        let id = session_id(token);
        if let Some(s) = self.store().session(&id).await? {
            if self.store().delete_session(&id).await? {
                if let Some(user) = self.store().user(&s.user_id).await? {
                    let entry = audit(actor, self.now(), "user.signed_out", &user);
                    self.store().append_audit(&entry).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let Ok(h) = hash_password("correct horse battery".into()).await else {
            panic!("hashes")
        };
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery".into(), h.clone()).await);
        assert!(!verify_password("correct horse batterz".into(), h.clone()).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
        let Ok(again) = hash_password("correct horse battery".into()).await else {
            panic!("hashes")
        };
        assert_ne!(h, again, "salted");
        assert!(decoy_hash().starts_with("$argon2id$"));
    }

    #[test]
    fn generated_passwords_are_long_enough_and_differ() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 24);
        assert!(check_password(&a).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn session_ids_are_digests_of_the_token() {
        assert_eq!(session_id("t").len(), 64);
        assert_ne!(session_id("t"), session_id("u"));
        assert_ne!(session_id("t"), "t");
    }
}
