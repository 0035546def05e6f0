//! The `Store` contract, one suite for every backend: SQLite always (a fresh temporary file per
//! test), PostgreSQL when `EFTCLOUD_TEST_DATABASE_URL` is set (a fresh database per test, created
//! on that server and dropped afterwards). Every contract function runs on both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use cloud::domain::accounts::{
    ApiKeyRecord, AuditEntry, AuditQuery, KeyOwner, MerchantId, MerchantRecord, Scope, Scopes,
    SiteId, SiteRecord,
};
use cloud::domain::lifecycle::{CloudReason, Completion, Phase};
use cloud::domain::people::{Email, Role, SessionRecord, UserRecord};
use cloud::domain::receipts::{
    Address, AttemptOutcome, Channels, DeliveryId, DeliveryState, EmailAddress, PhoneNumber,
    Queued, ReceiptCopy, ReceiptDelivery,
};
use cloud::domain::timeline::{EventKind, TimelineEvent};
use cloud::store::{
    CallbackJob, DeviceRecord, InsertError, RegisterRecord, Store, TransactionRecord,
};
use eftcloud_cloud as cloud;
use futures_util::future::join_all;
use protocol::{
    Cents, DeviceId, Function, PairingCode, RegisterInfo, RegisterKey, TransactionId,
    TransactionRequest,
};
use std::collections::BTreeMap;
use std::sync::Arc;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (cloud::store::open(&url).await.unwrap(), dir)
}

/// A time as the store keeps it (milliseconds).
fn ms_now() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn completed_at(at: DateTime<Utc>) -> Phase {
    Phase::Completed(Completion::by_cloud(
        Function::CardPurchase,
        CloudReason::CancelledByPos,
        at,
    ))
}

fn kinds(events: &[TimelineEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn device(id: &str) -> DeviceRecord {
    DeviceRecord {
        id: DeviceId::parse(id).unwrap(),
        secret_hash: "h".into(),
        vendor: "v".into(),
        model: "m".into(),
        merchant: "Shop".into(),
        merchant_id: MerchantId::from_stored("mid".into()),
        site_id: None,
        created_at: Utc::now(),
        connected_at: None,
        last_seen_at: None,
        self_enrolled: false,
        capabilities: Vec::new(),
        hardware: None,
    }
}

fn key(id: &str) -> RegisterKey {
    RegisterKey {
        register_id: id.into(),
        business_name: "Shop".into(),
        vendor_name: "Vendor".into(),
    }
}

fn register(id: &str, device: &str) -> RegisterRecord {
    RegisterRecord {
        info: RegisterInfo {
            key: key(id),
            register_name: "Main".into(),
        },
        device_id: DeviceId::parse(device).unwrap(),
        contact: BTreeMap::from([("Email".to_string(), "a@b.c".to_string())]),
        paired_at: Utc::now(),
    }
}

fn transaction(device: &str, phase: Phase) -> TransactionRecord {
    let now =
        chrono::DateTime::<Utc>::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    TransactionRecord {
        id: TransactionId::new(),
        device_id: DeviceId::parse(device).unwrap(),
        register: register("r1", device).info,
        merchant_id: MerchantId::from_stored("mid".into()),
        merchant: "Shop".into(),
        request: TransactionRequest {
            amount_total: Cents::new(500).ok(),
            ..TransactionRequest::of(Function::CardPurchase)
        },
        sale_data: Some("{}".into()),
        callback_url: None,
        pos_reference: None,
        fingerprint: "f".into(),
        token: "tok".into(),
        token_expires_at: now + Duration::minutes(15),
        created_at: now,
        phase,
        display_text: None,
    }
}

async fn devices_and_connections(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
    s.insert_device(&device("d1"), None).await.unwrap();
    assert!(matches!(
        s.insert_device(&device("d1"), None).await,
        Err(InsertError::AlreadyExists)
    ));
    let d = s
        .device(&DeviceId::parse("d1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.merchant, "Shop");
    assert!(s
        .device(&DeviceId::parse("nope").unwrap())
        .await
        .unwrap()
        .is_none());
    let id = d.id.clone();
    s.set_device_connection(&id, "node-a", true, Utc::now())
        .await
        .unwrap();
    assert!(s.device(&id).await.unwrap().unwrap().connected_at.is_some());
    // Another node's disconnect does not clear this node's connection.
    s.set_device_connection(&id, "node-b", false, Utc::now())
        .await
        .unwrap();
    assert!(s.device(&id).await.unwrap().unwrap().connected_at.is_some());
    s.clear_connections("node-a").await.unwrap();
    assert!(s.device(&id).await.unwrap().unwrap().connected_at.is_none());
    assert_eq!(s.devices().await.unwrap().len(), 1);
}

async fn pairing_codes(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    s.insert_device(&device("d2"), None).await.unwrap();
    let d1 = DeviceId::parse("d1").unwrap();
    let d2 = DeviceId::parse("d2").unwrap();
    let later = Utc::now() + Duration::minutes(2);
    let a = PairingCode::parse("11111111").unwrap();
    let b = PairingCode::parse("22222222").unwrap();
    assert!(s.replace_pairing_code(&d1, &a, later).await.unwrap());
    // Taken by another device: refused.
    assert!(!s.replace_pairing_code(&d2, &a, later).await.unwrap());
    // A new code for d1 invalidates the old one.
    assert!(s.replace_pairing_code(&d1, &b, later).await.unwrap());
    assert_eq!(
        s.take_pairing_code(&a, Utc::now(), None).await.unwrap(),
        None
    );
    assert_eq!(
        s.take_pairing_code(&b, Utc::now(), None).await.unwrap(),
        Some(d1.clone())
    );
    assert_eq!(
        s.take_pairing_code(&b, Utc::now(), None).await.unwrap(),
        None,
        "single use"
    );
    // Expired.
    assert!(s
        .replace_pairing_code(&d2, &a, Utc::now() + Duration::milliseconds(50))
        .await
        .unwrap());
    assert_eq!(
        s.take_pairing_code(&a, Utc::now() + Duration::seconds(1), None)
            .await
            .unwrap(),
        None
    );
}

/// A code is consumed only for the merchant asked for: another merchant's code stays valid.
async fn pairing_codes_by_merchant(s: Arc<dyn Store>) {
    let mut other = device("d2");
    other.merchant_id = MerchantId::from_stored("other".into());
    s.insert_device(&device("d1"), None).await.unwrap();
    s.insert_device(&other, None).await.unwrap();
    let later = Utc::now() + Duration::minutes(2);
    let code = PairingCode::parse("33333333").unwrap();
    let d2 = DeviceId::parse("d2").unwrap();
    assert!(s.replace_pairing_code(&d2, &code, later).await.unwrap());
    let mid = MerchantId::from_stored("mid".into());
    assert_eq!(
        s.take_pairing_code(&code, Utc::now(), Some(&mid))
            .await
            .unwrap(),
        None
    );
    let theirs = MerchantId::from_stored("other".into());
    assert_eq!(
        s.take_pairing_code(&code, Utc::now(), Some(&theirs))
            .await
            .unwrap(),
        Some(d2),
        "still valid for its own merchant"
    );
}

fn audit(action: &str, target: &str, merchant: Option<&MerchantId>) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: ms_now(),
        actor: "cli".into(),
        source: Some("127.0.0.1".into()),
        action: action.into(),
        target: target.into(),
        merchant_id: merchant.cloned(),
        detail: r#"{"name":"x"}"#.into(),
    }
}

fn api_key(id: &str, owner: KeyOwner) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        secret_hash: "hash".into(),
        owner,
        scopes: Scopes::of([Scope::PosTransact, Scope::PosRead]),
        label: "till software".into(),
        created_at: ms_now(),
        expires_at: Some(ms_now() + Duration::days(1)),
        revoked_at: None,
        last_used_at: None,
    }
}

async fn accounts(s: Arc<dyn Store>) {
    let shop = MerchantRecord {
        id: MerchantId::new(),
        name: "Toys Shop".into(),
        created_at: ms_now(),
        currency: protocol::Currency::AUD,
        max_tip_percent: 30,
    };
    s.create_merchant(
        &shop,
        &audit("merchant.created", shop.id.as_str(), Some(&shop.id)),
    )
    .await
    .unwrap();
    let clash = MerchantRecord {
        id: MerchantId::new(),
        ..shop.clone()
    };
    assert!(matches!(
        s.create_merchant(&clash, &audit("merchant.created", "x", None))
            .await,
        Err(InsertError::AlreadyExists)
    ));
    assert_eq!(s.merchant(&shop.id).await.unwrap(), Some(shop.clone()));
    assert_eq!(
        s.merchant_named("Toys Shop").await.unwrap(),
        Some(shop.clone())
    );
    assert_eq!(s.merchant_named("toys shop").await.unwrap(), None);
    assert_eq!(s.merchants().await.unwrap(), vec![shop.clone()]);

    let site = SiteRecord {
        id: SiteId::new(),
        merchant_id: shop.id.clone(),
        name: "Main Street".into(),
        created_at: ms_now(),
        time_zone: "Pacific/Auckland".into(),
    };
    s.create_site(
        &site,
        &audit("site.created", site.id.as_str(), Some(&shop.id)),
    )
    .await
    .unwrap();
    let same_name = SiteRecord {
        id: SiteId::new(),
        ..site.clone()
    };
    assert!(matches!(
        s.create_site(&same_name, &audit("site.created", "x", None))
            .await,
        Err(InsertError::AlreadyExists)
    ));
    assert_eq!(s.site(&site.id).await.unwrap(), Some(site.clone()));
    assert_eq!(s.sites(Some(&shop.id)).await.unwrap(), vec![site.clone()]);
    assert_eq!(s.sites(Some(&MerchantId::new())).await.unwrap(), vec![]);
    assert_eq!(s.sites(None).await.unwrap().len(), 1);
    // A site's time zone changes with its audit entry.
    assert!(s
        .set_site_time_zone(
            &site.id,
            "Australia/Perth",
            &audit("site.time_zone_set", site.id.as_str(), Some(&shop.id))
        )
        .await
        .unwrap());
    assert_eq!(
        s.site(&site.id).await.unwrap().unwrap().time_zone,
        "Australia/Perth"
    );
    assert!(!s
        .set_site_time_zone(
            &SiteId::new(),
            "UTC",
            &audit("site.time_zone_set", "x", None)
        )
        .await
        .unwrap());

    // Keys of every owner kind read back as written.
    let of_shop = api_key("aaaaaaaaaaaa", KeyOwner::Merchant(shop.id.clone()));
    let of_vendor = api_key("bbbbbbbbbbbb", KeyOwner::Vendor("Till2Go".into()));
    let operator = ApiKeyRecord {
        expires_at: None,
        scopes: Scopes::of([Scope::Admin]),
        ..api_key("cccccccccccc", KeyOwner::Installation)
    };
    for k in [&of_shop, &of_vendor, &operator] {
        s.insert_api_key(k, &audit("api_key.created", &k.id, None))
            .await
            .unwrap();
        assert_eq!(s.api_key(&k.id).await.unwrap().as_ref(), Some(k));
    }
    assert!(matches!(
        s.insert_api_key(&of_shop, &audit("api_key.created", "x", None))
            .await,
        Err(InsertError::AlreadyExists)
    ));
    assert_eq!(s.api_key("dddddddddddd").await.unwrap(), None);
    assert_eq!(s.api_keys(None).await.unwrap().len(), 3);
    assert_eq!(
        s.api_keys(Some(&shop.id)).await.unwrap(),
        vec![of_shop.clone()]
    );

    let used = ms_now();
    s.touch_api_key(&of_shop.id, used).await.unwrap();
    assert_eq!(
        s.api_key(&of_shop.id).await.unwrap().unwrap().last_used_at,
        Some(used)
    );
    // Revoked once: the second revocation changes nothing and records nothing.
    let at = ms_now();
    assert!(s
        .revoke_api_key(
            &of_shop.id,
            at,
            &audit("api_key.revoked", &of_shop.id, Some(&shop.id))
        )
        .await
        .unwrap());
    assert!(!s
        .revoke_api_key(
            &of_shop.id,
            at,
            &audit("api_key.revoked", &of_shop.id, Some(&shop.id))
        )
        .await
        .unwrap());
    assert!(!s
        .revoke_api_key("nothere", at, &audit("api_key.revoked", "nothere", None))
        .await
        .unwrap());
    assert_eq!(
        s.api_key(&of_shop.id).await.unwrap().unwrap().revoked_at,
        Some(at)
    );

    // The audit log: newest first, filtered, paged; a failed change left no entry.
    s.append_audit(&audit("device.enrolled", "d1", Some(&shop.id)))
        .await
        .unwrap();
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    let all = s.audit(&q(|_| {})).await.unwrap();
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "device.enrolled",
            "api_key.revoked",
            "api_key.created",
            "api_key.created",
            "api_key.created",
            "site.time_zone_set",
            "site.created",
            "merchant.created"
        ]
    );
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
    assert_eq!(all[0].source.as_deref(), Some("127.0.0.1"));
    assert_eq!(all[0].detail, r#"{"name":"x"}"#);
    let shops = s
        .audit(&AuditQuery {
            merchant: Some(shop.id.clone()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(shops.len(), 5, "{shops:?}");
    let keys = s
        .audit(&AuditQuery {
            action: Some("api_key.".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(keys.len(), 4);
    let page = s
        .audit(&AuditQuery {
            before: Some(all[1].seq),
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page, all[2..4].to_vec());
    let by_actor = s
        .audit(&AuditQuery {
            actor: Some("someone".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(by_actor.is_empty());
}

fn user(email: &str, role: Role, merchant: Option<&MerchantId>) -> UserRecord {
    UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$stub".into(),
        role,
        merchant_id: merchant.cloned(),
        created_at: ms_now(),
        failed_sign_ins: 0,
        locked_until: None,
    }
}

fn session(id: &str, user: &UserRecord, at: DateTime<Utc>) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        user_id: user.id.clone(),
        csrf_token: "csrf".into(),
        created_at: at,
        last_seen_at: at,
    }
}

async fn people(s: Arc<dyn Store>) {
    let shop = MerchantRecord {
        id: MerchantId::new(),
        name: "Shop".into(),
        created_at: ms_now(),
        currency: protocol::Currency::AUD,
        max_tip_percent: 30,
    };
    s.create_merchant(&shop, &audit("merchant.created", "x", None))
        .await
        .unwrap();
    let owner = user("owner@example.com", Role::Owner, None);
    // The first person: only while there is nobody.
    assert!(s
        .create_first_user(&owner, &audit("user.added", "owner", None))
        .await
        .unwrap());
    let second = user("second@example.com", Role::Owner, None);
    assert!(!s
        .create_first_user(&second, &audit("user.added", "second", None))
        .await
        .unwrap());
    assert_eq!(s.user_by_email(&second.email).await.unwrap(), None);
    let admin = user("admin@example.com", Role::MerchantAdmin, Some(&shop.id));
    s.create_user(&admin, &audit("user.added", "admin", Some(&shop.id)))
        .await
        .unwrap();
    let same_email = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        ..admin.clone()
    };
    assert!(matches!(
        s.create_user(&same_email, &audit("user.added", "x", None))
            .await,
        Err(InsertError::AlreadyExists)
    ));
    assert_eq!(s.user(&owner.id).await.unwrap(), Some(owner.clone()));
    assert_eq!(
        s.user_by_email(&admin.email).await.unwrap(),
        Some(admin.clone())
    );
    assert_eq!(
        s.users(None).await.unwrap(),
        vec![admin.clone(), owner.clone()]
    );
    assert_eq!(s.users(Some(&shop.id)).await.unwrap(), vec![admin.clone()]);

    // Wrong passwords count, and the `max`th locks.
    let lock = ms_now() + Duration::minutes(15);
    for n in 1..=3u32 {
        s.record_failed_sign_in(&admin.id, 3, lock, &audit("user.sign_in_failed", "a", None))
            .await
            .unwrap();
        let u = s.user(&admin.id).await.unwrap().unwrap();
        assert_eq!(u.failed_sign_ins, n);
        assert_eq!(u.locked_until, (n == 3).then_some(lock), "after {n}");
    }
    // A session resets the count and the lock.
    let t0 = ms_now();
    s.insert_session(
        &session("s1", &admin, t0),
        &audit("user.signed_in", "a", None),
    )
    .await
    .unwrap();
    let u = s.user(&admin.id).await.unwrap().unwrap();
    assert_eq!((u.failed_sign_ins, u.locked_until), (0, None));
    assert_eq!(
        s.session("s1").await.unwrap(),
        Some(session("s1", &admin, t0))
    );
    let later = t0 + Duration::minutes(5);
    s.touch_session("s1", later).await.unwrap();
    assert_eq!(s.session("s1").await.unwrap().unwrap().last_seen_at, later);
    assert!(s.delete_session("s1").await.unwrap());
    assert!(!s.delete_session("s1").await.unwrap());

    // A new password ends the person's sessions; removing them too.
    s.insert_session(
        &session("s2", &admin, t0),
        &audit("user.signed_in", "a", None),
    )
    .await
    .unwrap();
    s.insert_session(
        &session("s3", &owner, t0),
        &audit("user.signed_in", "o", None),
    )
    .await
    .unwrap();
    assert!(s
        .set_password(
            &admin.id,
            "$argon2id$new",
            &audit("user.password_reset", "a", None)
        )
        .await
        .unwrap());
    assert_eq!(s.session("s2").await.unwrap(), None);
    assert!(s.session("s3").await.unwrap().is_some(), "others stay");
    assert_eq!(
        s.user(&admin.id).await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert!(!s
        .set_password("nobody", "h", &audit("user.password_reset", "n", None))
        .await
        .unwrap());
    assert!(s
        .delete_user(&owner.id, &audit("user.removed", "o", None))
        .await
        .unwrap());
    assert_eq!(s.session("s3").await.unwrap(), None);
    assert!(!s
        .delete_user(&owner.id, &audit("user.removed", "o", None))
        .await
        .unwrap());

    // The sweep removes sessions idle or too old, and only those.
    let now = ms_now();
    s.insert_session(
        &session("old", &admin, now - Duration::hours(10)),
        &audit("user.signed_in", "a", None),
    )
    .await
    .unwrap();
    let mut idle = session("idle", &admin, now - Duration::hours(1));
    idle.last_seen_at = now - Duration::minutes(50);
    s.insert_session(&idle, &audit("user.signed_in", "a", None))
        .await
        .unwrap();
    s.insert_session(
        &session("fresh", &admin, now),
        &audit("user.signed_in", "a", None),
    )
    .await
    .unwrap();
    let n = s
        .purge_sessions(now - Duration::minutes(30), now - Duration::hours(8))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(s.session("fresh").await.unwrap().is_some());
    assert_eq!(s.session("idle").await.unwrap(), None);

    // Every change above was recorded, failures included; none for what changed nothing.
    let log = s
        .audit(&AuditQuery {
            action: Some("user.".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let count = |a: &str| log.iter().filter(|e| e.action == a).count();
    assert_eq!(count("user.added"), 2);
    assert_eq!(count("user.sign_in_failed"), 3);
    assert_eq!(count("user.password_reset"), 1);
    assert_eq!(count("user.removed"), 1);
}

/// A device change and its audit entry commit together; a change that did nothing records
/// nothing.
async fn device_changes_carry_their_audit_entry(s: Arc<dyn Store>) {
    let d1 = DeviceId::parse("d1").unwrap();
    s.insert_device(&device("d1"), Some(&audit("device.enrolled", "d1", None)))
        .await
        .unwrap();
    assert!(matches!(
        s.insert_device(
            &device("d1"),
            Some(&audit("device.enrolled", "again", None))
        )
        .await,
        Err(InsertError::AlreadyExists)
    ));
    assert!(s
        .set_secret_hash(&d1, "h2", Some(&audit("device.secret_rotated", "d1", None)))
        .await
        .unwrap());
    let nobody = DeviceId::parse("nobody").unwrap();
    assert!(!s
        .set_secret_hash(&nobody, "h", Some(&audit("device.revoked", "nobody", None)))
        .await
        .unwrap());
    let none = s
        .unpair(
            &d1,
            None,
            Some(&audit("device.unpaired", "empty", None)),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    s.pair_register(&register("r1", "d1")).await.unwrap();
    let gone = s
        .unpair(
            &d1,
            None,
            Some(&audit("device.unpaired", "d1", None)),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(gone, vec![key("r1")]);
    let log = s
        .audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let entries: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("device.unpaired", "d1"),
            ("device.secret_rotated", "d1"),
            ("device.enrolled", "d1")
        ]
    );
}

async fn registers(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    s.insert_device(&device("d2"), None).await.unwrap();
    assert_eq!(s.pair_register(&register("r1", "d1")).await.unwrap(), None);
    assert_eq!(
        s.pair_register(&register("r1", "d1")).await.unwrap(),
        None,
        "same device again"
    );
    assert_eq!(
        s.pair_register(&register("r1", "d2")).await.unwrap(),
        Some(DeviceId::parse("d1").unwrap()),
        "moved"
    );
    s.pair_register(&register("r2", "d2")).await.unwrap();
    let got = s.register(&key("r1")).await.unwrap().unwrap();
    assert_eq!(got.device_id.as_str(), "d2");
    assert_eq!(got.contact.get("Email").map(String::as_str), Some("a@b.c"));
    let d2 = DeviceId::parse("d2").unwrap();
    assert_eq!(s.registers_of(&d2).await.unwrap().len(), 2);
    assert_eq!(
        s.unpair(&d2, Some(&key("r1")), None, chrono::Utc::now())
            .await
            .unwrap(),
        vec![key("r1")]
    );
    assert_eq!(
        s.unpair(
            &DeviceId::parse("d1").unwrap(),
            None,
            None,
            chrono::Utc::now()
        )
        .await
        .unwrap(),
        vec![]
    );
    assert_eq!(
        s.unpair(&d2, None, None, chrono::Utc::now()).await.unwrap(),
        vec![key("r2")]
    );
    assert!(s.register(&key("r2")).await.unwrap().is_none());
}

async fn routes(s: Arc<dyn Store>) {
    assert_eq!(s.route(&key("r1")).await.unwrap(), None, "not paired");
    s.insert_device(&device("d1"), None).await.unwrap();
    s.pair_register(&register("r1", "d1")).await.unwrap();
    let route = s.route(&key("r1")).await.unwrap().unwrap();
    assert_eq!(route.register.info.key, key("r1"));
    assert_eq!(
        route.register.contact.get("Email").map(String::as_str),
        Some("a@b.c")
    );
    assert_eq!(route.device.id.as_str(), "d1");
    assert_eq!(route.device.merchant_id.as_str(), "mid");
    assert!(!route.busy);
    // A transaction in progress makes the device busy; once completed it no longer does.
    let t = transaction(
        "d1",
        Phase::Started {
            started_at: ms_now(),
        },
    );
    s.insert_transaction(&t, &[], &[]).await.unwrap();
    assert!(s.route(&key("r1")).await.unwrap().unwrap().busy);
    assert!(s
        .transition(&t.id, &t.phase, &completed_at(ms_now()), &[], &[])
        .await
        .unwrap());
    assert!(!s.route(&key("r1")).await.unwrap().unwrap().busy);
    // The register follows its pairing.
    s.insert_device(&device("d2"), None).await.unwrap();
    s.pair_register(&register("r1", "d2")).await.unwrap();
    assert_eq!(
        s.route(&key("r1"))
            .await
            .unwrap()
            .unwrap()
            .device
            .id
            .as_str(),
        "d2"
    );
}

async fn transactions(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    let d1 = DeviceId::parse("d1").unwrap();
    // Times are stored with millisecond precision.
    let deadline = chrono::DateTime::<Utc>::from_timestamp_millis(
        (Utc::now() + Duration::seconds(5)).timestamp_millis(),
    )
    .unwrap();
    let offered = Phase::Offered {
        accept_deadline: deadline,
    };
    let t = transaction("d1", offered.clone());
    s.insert_transaction(&t, &[], &[]).await.unwrap();
    assert_eq!(s.transaction(&t.id).await.unwrap().unwrap(), t);
    // One active transaction per device.
    let second = transaction("d1", offered.clone());
    assert!(matches!(
        s.insert_transaction(&second, &[], &[]).await,
        Err(InsertError::DeviceBusy)
    ));
    // A completed one may be stored alongside (a cloud-answered status).
    let done = transaction(
        "d1",
        Phase::Completed(Completion::by_cloud(
            Function::TerminalGetStatus,
            CloudReason::DeviceOffline,
            Utc::now(),
        )),
    );
    s.insert_transaction(&done, &[], &[]).await.unwrap();
    assert_eq!(s.active_transaction(&d1).await.unwrap().unwrap().id, t.id);

    // Deadlines.
    assert_eq!(
        s.next_offer_deadline()
            .await
            .unwrap()
            .map(|d| d.timestamp_millis()),
        Some(deadline.timestamp_millis())
    );
    assert!(s.expired_offers(Utc::now()).await.unwrap().is_empty());
    assert_eq!(
        s.expired_offers(deadline + Duration::seconds(1))
            .await
            .unwrap(),
        vec![t.id]
    );

    // Display text: only the owning device, only while running.
    s.set_display_text(&t.id, &DeviceId::parse("other").unwrap(), "x", Utc::now())
        .await
        .unwrap();
    assert_eq!(
        s.transaction(&t.id).await.unwrap().unwrap().display_text,
        None
    );
    s.set_display_text(&t.id, &d1, "Present card", Utc::now())
        .await
        .unwrap();
    assert_eq!(
        s.transaction(&t.id)
            .await
            .unwrap()
            .unwrap()
            .display_text
            .as_deref(),
        Some("Present card")
    );

    // Compare-and-set transitions.
    let started = Phase::Started {
        started_at: Utc::now(),
    };
    assert!(s
        .transition(&t.id, &offered, &started, &[], &[])
        .await
        .unwrap());
    assert!(
        !s.transition(&t.id, &offered, &started, &[], &[])
            .await
            .unwrap(),
        "lost the race"
    );
    assert!(s.next_offer_deadline().await.unwrap().is_none());
    let completion = Completion::by_cloud(
        Function::CardPurchase,
        CloudReason::CancelledByPos,
        Utc::now(),
    );
    let completed = Phase::Completed(completion.clone());
    assert!(s
        .transition(&t.id, &started, &completed, &[], &[])
        .await
        .unwrap());
    let stored = s.transaction(&t.id).await.unwrap().unwrap();
    assert_eq!(stored.phase, completed);
    assert_eq!(stored.display_text, None, "prompt cleared on completion");
    s.set_display_text(&t.id, &d1, "late", Utc::now())
        .await
        .unwrap();
    assert_eq!(
        s.transaction(&t.id).await.unwrap().unwrap().display_text,
        None
    );
    // The device is free again.
    assert!(s.active_transaction(&d1).await.unwrap().is_none());
    s.insert_transaction(&second, &[], &[]).await.unwrap();
}

async fn references(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    s.insert_device(&device("d2"), None).await.unwrap();
    let d2 = DeviceId::parse("d2").unwrap();
    let mut a = transaction("d1", completed_at(ms_now()));
    a.pos_reference = Some("ref-1".into());
    s.insert_transaction(&a, &[], &[]).await.unwrap();
    assert_eq!(
        s.transaction_by_reference(&key("r1"), "ref-1")
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.transaction_by_reference(&key("r1"), "ref-2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.transaction_by_reference(&key("r2"), "ref-1")
            .await
            .unwrap(),
        None,
        "references belong to a register"
    );
    // The same register reusing the reference is refused, and nothing of it is stored, even
    // though its device is idle.
    let offered = Phase::Offered {
        accept_deadline: ms_now() + Duration::seconds(5),
    };
    let mut b = transaction("d2", offered.clone());
    b.pos_reference = Some("ref-1".into());
    assert!(matches!(
        s.insert_transaction(&b, &[], &[]).await,
        Err(InsertError::DuplicateReference)
    ));
    assert!(s.transaction(&b.id).await.unwrap().is_none());
    assert!(s.active_transaction(&d2).await.unwrap().is_none());
    // Another register may use the same reference.
    b.register = register("r2", "d2").info;
    s.insert_transaction(&b, &[], &[]).await.unwrap();
    // A busy device is told apart from a reused reference.
    let mut c = transaction("d2", offered);
    c.pos_reference = Some("ref-3".into());
    assert!(matches!(
        s.insert_transaction(&c, &[], &[]).await,
        Err(InsertError::DeviceBusy)
    ));
    // Without a reference, any number of transactions per register.
    s.insert_transaction(&transaction("d1", completed_at(ms_now())), &[], &[])
        .await
        .unwrap();
    s.insert_transaction(&transaction("d1", completed_at(ms_now())), &[], &[])
        .await
        .unwrap();
}

async fn events_in_order(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    let d1 = DeviceId::parse("d1").unwrap();
    let at = ms_now();
    let offered = Phase::Offered {
        accept_deadline: at + Duration::seconds(5),
    };
    let t = transaction("d1", offered.clone());
    // Same timestamps throughout: the order is the order of writing, not of `at`.
    s.insert_transaction(
        &t,
        &[
            TimelineEvent::new(at, EventKind::Received, "Card.Purchase $5.00"),
            TimelineEvent::new(at, EventKind::Offered, ""),
        ],
        &[],
    )
    .await
    .unwrap();
    s.append_events(&t.id, &[TimelineEvent::new(at, EventKind::Accepted, "")])
        .await
        .unwrap();
    s.append_events(&t.id, &[]).await.unwrap();
    let started = Phase::Started { started_at: at };
    assert!(s
        .transition(
            &t.id,
            &offered,
            &started,
            &[TimelineEvent::new(at, EventKind::Started, "")],
            &[]
        )
        .await
        .unwrap());
    s.set_display_text(&t.id, &d1, "Insert card", at)
        .await
        .unwrap();
    // A transition that loses its race writes none of its events.
    assert!(!s
        .transition(
            &t.id,
            &offered,
            &started,
            &[TimelineEvent::new(at, EventKind::Aborted, "")],
            &[]
        )
        .await
        .unwrap());
    assert!(s
        .transition(
            &t.id,
            &started,
            &completed_at(at),
            &[
                TimelineEvent::new(at, EventKind::Result, "APPROVED"),
                TimelineEvent::new(at, EventKind::Completed, ""),
            ],
            &[]
        )
        .await
        .unwrap());
    let events = s.events(&t.id).await.unwrap();
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::Received,
            EventKind::Offered,
            EventKind::Accepted,
            EventKind::Started,
            EventKind::Prompt,
            EventKind::Result,
            EventKind::Completed,
        ]
    );
    assert_eq!(
        events[0],
        TimelineEvent::new(at, EventKind::Received, "Card.Purchase $5.00")
    );
    assert_eq!(events[4].detail, "Insert card");
    assert!(s.events(&TransactionId::new()).await.unwrap().is_empty());
}

async fn transactions_are_searchable(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    s.insert_device(&device("d2"), None).await.unwrap();
    let done = completed_at(ms_now());
    let mut a = transaction("d1", done.clone());
    a.pos_reference = Some("INV_1%".into());
    a.created_at -= Duration::minutes(10);
    let b = transaction(
        "d2",
        Phase::Started {
            started_at: ms_now(),
        },
    );
    s.insert_transaction(&a, &[], &[]).await.unwrap();
    s.insert_transaction(&b, &[], &[]).await.unwrap();
    let q = |f: &dyn Fn(&mut cloud::store::TransactionQuery)| {
        let mut q = cloud::store::TransactionQuery {
            limit: 10,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let ids = |v: Vec<TransactionRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.query_transactions(&q(&|_| {})).await.unwrap()),
        vec![b.id, a.id],
        "newest first"
    );
    assert_eq!(
        ids(s
            .query_transactions(&q(&|q| q.device = Some("D2".into())))
            .await
            .unwrap()),
        vec![b.id]
    );
    assert_eq!(
        ids(s
            .query_transactions(&q(&|q| q.pending_only = true))
            .await
            .unwrap()),
        vec![b.id]
    );
    // Wildcards in the search text are literal.
    assert_eq!(
        ids(s
            .query_transactions(&q(&|q| q.reference = Some("inv_1%".into())))
            .await
            .unwrap()),
        vec![a.id]
    );
    assert!(s
        .query_transactions(&q(&|q| q.reference = Some("inv%1".into())))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(s
            .query_transactions(&q(
                // The random tail: ids are time-ordered, so two made together share a prefix.
                &|q| q.reference = Some(b.id.to_string()[24..].to_string())
            ))
            .await
            .unwrap()),
        vec![b.id]
    );
    assert_eq!(
        ids(s
            .query_transactions(&q(&|q| q.since = Some(ms_now() - Duration::minutes(1))))
            .await
            .unwrap()),
        vec![b.id]
    );
    assert_eq!(
        ids(s
            .query_transactions(&q(&|q| q.register = Some("R1".into())))
            .await
            .unwrap())
        .len(),
        2
    );
    assert_eq!(
        ids(s.query_transactions(&q(&|q| q.limit = 1)).await.unwrap()),
        vec![b.id]
    );
}

async fn callbacks_are_claimed_by_one_node(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    let started = Phase::Started {
        started_at: ms_now(),
    };
    let mut t = transaction("d1", started.clone());
    t.callback_url = Some("http://pos.example/cb".into());
    s.insert_transaction(&t, &[], &[]).await.unwrap();
    let done = ms_now();
    assert!(s
        .transition(&t.id, &started, &completed_at(done), &[], &[])
        .await
        .unwrap());
    let lease = done + Duration::seconds(30);
    // Two nodes claim at once: one gets it.
    let (x, y) = tokio::join!(
        s.claim_callbacks(done, 10, lease),
        s.claim_callbacks(done, 10, lease)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 1, "claimed twice: {x:?} {y:?}");
    // Leased: not due again before the lease ends, due after it (the claimer died).
    assert!(s
        .claim_callbacks(done + Duration::seconds(29), 10, lease)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.claim_callbacks(lease, 10, lease + Duration::seconds(30))
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn callbacks_outbox(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    s.insert_device(&device("d2"), None).await.unwrap();
    let far = Utc::now() + Duration::days(1);
    let url = "http://pos.example/callback".to_string();
    let started = Phase::Started {
        started_at: ms_now(),
    };
    let mut t = transaction("d1", started.clone());
    t.callback_url = Some(url.clone());
    s.insert_transaction(&t, &[], &[]).await.unwrap();
    assert!(
        s.due_callbacks(far, 10).await.unwrap().is_empty(),
        "not yet"
    );
    assert_eq!(s.next_callback_at().await.unwrap(), None);

    // Completion queues the callback in the same commit, due at once.
    let done = ms_now();
    assert!(s
        .transition(&t.id, &started, &completed_at(done), &[], &[])
        .await
        .unwrap());
    let job = |id: TransactionId, attempts| CallbackJob {
        transaction_id: id,
        url: url.clone(),
        attempts,
    };
    assert_eq!(s.due_callbacks(done, 10).await.unwrap(), vec![job(t.id, 0)]);
    assert!(s
        .due_callbacks(done - Duration::milliseconds(1), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.next_callback_at().await.unwrap(), Some(done));

    // A transaction stored already completed is queued too; one without a URL is not.
    let mut direct = transaction("d2", completed_at(done + Duration::milliseconds(1)));
    direct.callback_url = Some(url.clone());
    s.insert_transaction(&direct, &[], &[]).await.unwrap();
    s.insert_transaction(&transaction("d2", completed_at(done)), &[], &[])
        .await
        .unwrap();
    assert_eq!(
        s.due_callbacks(far, 10).await.unwrap(),
        vec![job(t.id, 0), job(direct.id, 0)],
        "oldest first"
    );
    assert_eq!(s.due_callbacks(far, 1).await.unwrap(), vec![job(t.id, 0)]);

    // A failed attempt with a retry moves it later and counts the attempt.
    let retry_at = done + Duration::seconds(10);
    let failed = TimelineEvent::new(done, EventKind::CallbackFailed, "HTTP 500; retry");
    s.record_callback_attempt(&t.id, false, Some(retry_at), "HTTP 500", &failed)
        .await
        .unwrap();
    assert_eq!(
        s.due_callbacks(done + Duration::seconds(5), 10)
            .await
            .unwrap(),
        vec![job(direct.id, 0)]
    );
    assert_eq!(
        s.due_callbacks(retry_at, 10).await.unwrap(),
        vec![job(direct.id, 0), job(t.id, 1)]
    );

    // Delivered: gone from the outbox.
    let delivered = TimelineEvent::new(done, EventKind::CallbackDelivered, "HTTP 200");
    s.record_callback_attempt(&direct.id, true, None, "", &delivered)
        .await
        .unwrap();
    assert_eq!(s.next_callback_at().await.unwrap(), Some(retry_at));
    // Given up: gone too, and nothing is pending any more.
    let gave_up = TimelineEvent::new(retry_at, EventKind::CallbackFailed, "giving up");
    s.record_callback_attempt(&t.id, false, None, "HTTP 500", &gave_up)
        .await
        .unwrap();
    assert!(s.due_callbacks(far, 10).await.unwrap().is_empty());
    assert_eq!(s.next_callback_at().await.unwrap(), None);
    // Each attempt is on the timeline.
    assert_eq!(s.events(&t.id).await.unwrap(), vec![failed, gave_up]);
    assert_eq!(s.events(&direct.id).await.unwrap(), vec![delivered]);
}

async fn secrets(s: Arc<dyn Store>) {
    assert_eq!(
        s.secret("callback-signing", &|| "first".to_string())
            .await
            .unwrap(),
        "first"
    );
    assert_eq!(
        s.secret("callback-signing", &|| "second".to_string())
            .await
            .unwrap(),
        "first",
        "created once, then kept"
    );
    assert_eq!(s.secret("other", &|| "x".to_string()).await.unwrap(), "x");
}

async fn probe_writes(s: Arc<dyn Store>) {
    // The probe commits, again and again, and never shows as a secret someone asked for.
    s.probe_write().await.unwrap();
    s.probe_write().await.unwrap();
    assert_eq!(s.secret("other", &|| "x".to_string()).await.unwrap(), "x");
}

async fn purge(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    s.insert_device(&device("d2"), None).await.unwrap();
    let long_ago = ms_now() - Duration::days(10);
    let mut old_done = transaction("d1", completed_at(long_ago));
    old_done.created_at = long_ago;
    old_done.callback_url = Some("http://pos.example/cb".into());
    s.insert_transaction(
        &old_done,
        &[TimelineEvent::new(long_ago, EventKind::Received, "")],
        &[],
    )
    .await
    .unwrap();
    let mut old_running = transaction(
        "d1",
        Phase::Started {
            started_at: long_ago,
        },
    );
    old_running.created_at = long_ago;
    s.insert_transaction(&old_running, &[], &[]).await.unwrap();
    let new_done = transaction("d2", completed_at(ms_now()));
    s.insert_transaction(&new_done, &[], &[]).await.unwrap();

    let cutoff = ms_now() - Duration::days(1);
    assert_eq!(s.purge_completed_before(cutoff).await.unwrap(), 1);
    assert!(s.transaction(&old_done.id).await.unwrap().is_none());
    assert!(s.events(&old_done.id).await.unwrap().is_empty());
    assert!(
        s.due_callbacks(Utc::now() + Duration::days(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "its callback went with it"
    );
    assert!(
        s.transaction(&old_running.id).await.unwrap().is_some(),
        "running ones are kept"
    );
    assert!(s.transaction(&new_done.id).await.unwrap().is_some());
    assert_eq!(s.purge_completed_before(cutoff).await.unwrap(), 0);
}

/// Self-enrolled devices unused since the cutoff go, with their codes and registers; operator
/// devices, connected ones, recently seen ones and busy ones stay.
async fn unused_self_enrolled_devices_are_purged(s: Arc<dyn Store>) {
    let long_ago = ms_now() - Duration::days(3);
    let cutoff = ms_now() - Duration::days(1);
    let virtual_device = |id: &str, created_at| DeviceRecord {
        self_enrolled: true,
        capabilities: Vec::new(),
        created_at,
        ..device(id)
    };
    let id = |s: &str| DeviceId::parse(s).unwrap();
    // Enrolled long ago and never connected: goes, with its code and register.
    s.insert_device(&virtual_device("v-never", long_ago), None)
        .await
        .unwrap();
    let code = PairingCode::parse("12345678").unwrap();
    assert!(s
        .replace_pairing_code(&id("v-never"), &code, Utc::now() + Duration::minutes(2))
        .await
        .unwrap());
    s.pair_register(&register("r-never", "v-never"))
        .await
        .unwrap();
    // Seen long ago, gone since: goes.
    s.insert_device(&virtual_device("v-stale", long_ago), None)
        .await
        .unwrap();
    s.set_device_connection(&id("v-stale"), "n", true, long_ago)
        .await
        .unwrap();
    s.set_device_connection(&id("v-stale"), "n", false, long_ago)
        .await
        .unwrap();
    // Enrolled long ago but seen recently: stays.
    s.insert_device(&virtual_device("v-recent", long_ago), None)
        .await
        .unwrap();
    s.set_device_connection(&id("v-recent"), "n", true, long_ago)
        .await
        .unwrap();
    s.set_device_connection(&id("v-recent"), "n", false, Utc::now())
        .await
        .unwrap();
    // Connected since long ago (last seen is its connect time): stays.
    s.insert_device(&virtual_device("v-online", long_ago), None)
        .await
        .unwrap();
    s.set_device_connection(&id("v-online"), "n", true, long_ago)
        .await
        .unwrap();
    // Never connected, but enrolled recently: stays.
    s.insert_device(&virtual_device("v-new", ms_now()), None)
        .await
        .unwrap();
    // Unused, but with a transaction in progress: stays (only it can report the outcome).
    s.insert_device(&virtual_device("v-busy", long_ago), None)
        .await
        .unwrap();
    s.insert_transaction(
        &transaction(
            "v-busy",
            Phase::Started {
                started_at: long_ago,
            },
        ),
        &[],
        &[],
    )
    .await
    .unwrap();
    // Enrolled by an operator long ago and never connected: never purged.
    s.insert_device(
        &DeviceRecord {
            created_at: long_ago,
            ..device("operator")
        },
        None,
    )
    .await
    .unwrap();

    assert_eq!(s.purge_unused_self_enrolled(cutoff).await.unwrap(), 2);
    let mut left: Vec<String> = s
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id.to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["operator", "v-busy", "v-new", "v-online", "v-recent"]
    );
    assert!(s.register(&key("r-never")).await.unwrap().is_none());
    assert_eq!(
        s.take_pairing_code(&code, Utc::now(), None).await.unwrap(),
        None
    );
    assert!(s.device(&id("v-new")).await.unwrap().unwrap().self_enrolled);
    assert!(
        !s.device(&id("operator"))
            .await
            .unwrap()
            .unwrap()
            .self_enrolled
    );
    assert_eq!(s.purge_unused_self_enrolled(cutoff).await.unwrap(), 0);
}

/// What many nodes do at once: each race has exactly one winner.
async fn races(s: Arc<dyn Store>) {
    const N: usize = 10;
    for i in 0..N {
        s.insert_device(&device(&format!("d{i}")), None)
            .await
            .unwrap();
    }
    let d0 = DeviceId::parse("d0").unwrap();
    let offered = Phase::Offered {
        accept_deadline: ms_now() + Duration::seconds(30),
    };

    // Racing POSTs for one idle device: one stored, the others told it is busy.
    let results = join_all((0..N).map(|_| {
        let s = s.clone();
        let t = transaction("d0", offered.clone());
        async move { s.insert_transaction(&t, &[], &[]).await }
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(()) | Err(InsertError::DeviceBusy))));

    // Racing retries of one POS reference on idle devices: one stored, the others duplicates.
    let results = join_all((1..N).map(|i| {
        let s = s.clone();
        let mut t = transaction(&format!("d{i}"), offered.clone());
        t.pos_reference = Some("same".into());
        async move { s.insert_transaction(&t, &[], &[]).await }
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(()) | Err(InsertError::DuplicateReference))));

    // Racing moves of one transaction: exactly one applies, with its events.
    let id = s.active_transaction(&d0).await.unwrap().unwrap().id;
    let moved = join_all((0..N).map(|_| {
        let s = s.clone();
        let offered = offered.clone();
        async move {
            s.transition(
                &id,
                &offered,
                &completed_at(ms_now()),
                &[TimelineEvent::new(ms_now(), EventKind::Completed, "")],
                &[],
            )
            .await
            .unwrap()
        }
    }))
    .await;
    assert_eq!(moved.iter().filter(|m| **m).count(), 1);
    assert_eq!(s.events(&id).await.unwrap().len(), 1);

    // Racing POS with one pairing code: one pairs.
    let code = PairingCode::parse("12345678").unwrap();
    assert!(s
        .replace_pairing_code(&d0, &code, Utc::now() + Duration::minutes(2))
        .await
        .unwrap());
    let taken = join_all((0..N).map(|_| {
        let s = s.clone();
        let code = code.clone();
        async move { s.take_pairing_code(&code, Utc::now(), None).await.unwrap() }
    }))
    .await;
    assert_eq!(taken.iter().flatten().collect::<Vec<_>>(), vec![&d0]);

    // Nodes starting together agree on one generated secret.
    let values = join_all((0..N).map(|i| {
        let s = s.clone();
        async move {
            s.secret("shared", &move || format!("value-{i}"))
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(values.iter().all(|v| *v == values[0]));
}

/// A completed, approved purchase of `amount` on `device`, with the device's result fields.
fn approved_sale(device: &str, amount: u64) -> TransactionRecord {
    let mut t = transaction(device, completed_at(ms_now()));
    t.request.amount_total = Cents::new(amount).ok();
    if let Phase::Completed(c) = &mut t.phase {
        c.by = cloud::domain::lifecycle::CompletedBy::Device;
        c.transaction_result = Some(protocol::TransactionResult::Accepted);
        c.result = protocol::ResultCode::Ok;
        c.fields.insert("AmountTotal".into(), amount.to_string());
        c.fields.insert("CardPan".into(), "....4242".into());
    }
    t
}

/// A follow-up of `original` on `device`, offered (in flight).
fn follow_up(
    original: &TransactionRecord,
    device: &str,
    function: Function,
    amount: Option<u64>,
) -> TransactionRecord {
    let mut t = transaction(
        device,
        Phase::Offered {
            accept_deadline: ms_now() + Duration::seconds(30),
        },
    );
    t.request = TransactionRequest::of(function);
    t.request.amount_total = amount.and_then(|a| Cents::new(a).ok());
    t.request.original = Some(protocol::OriginalPayment {
        transaction_id: original.id,
        function: original.request.function,
        amount: 1000,
        fields: BTreeMap::new(),
    });
    t
}

async fn follow_ups_fit_their_payment(s: Arc<dyn Store>) {
    const N: usize = 10;
    for i in 0..=N {
        s.insert_device(&device(&format!("f{i}")), None)
            .await
            .unwrap();
    }
    let sale = approved_sale("f0", 1000);
    s.insert_transaction(&sale, &[], &[]).await.unwrap();

    // Ten refunds of 3.00 race on ten devices: exactly the three that fit are stored.
    let results = join_all((1..=N).map(|i| {
        let s = s.clone();
        let t = follow_up(&sale, &format!("f{i}"), Function::CardRefund, Some(300));
        async move { s.insert_transaction(&t, &[], &[]).await }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        3,
        "{results:?}"
    );
    for r in &results {
        match r {
            Ok(()) => {}
            Err(InsertError::Refused(refusal)) => assert_eq!(refusal.refundable(), Some(100)),
            Err(e) => panic!("{e:?}"),
        }
    }
    let payment = s.payment(&sale.id).await.unwrap().unwrap();
    assert_eq!(payment.follow_ups.len(), 3);
    let summary = payment.summary();
    assert_eq!((summary.refunding, summary.refundable), (900, 100));
    // A void of a payment with refunds is refused; so is a follow-up of what is not stored.
    s.insert_device(&device("f-idle"), None).await.unwrap();
    let void = follow_up(&sale, "f-idle", Function::CardVoid, None);
    assert!(matches!(
        s.insert_transaction(&void, &[], &[]).await,
        Err(InsertError::Refused(
            cloud::domain::payments::Refusal::HasRefunds(_)
        ))
    ));
    let ghost = follow_up(&approved_sale("f0", 5), "f0", Function::CardRefund, Some(1));
    assert!(matches!(
        s.insert_transaction(&ghost, &[], &[]).await,
        Err(InsertError::UnknownOriginal)
    ));
    // A settlement of the sale's device after it: settled.
    let mut cutover = approved_sale("f0", 1);
    cutover.request = TransactionRequest::of(Function::AcquirerSettlementCutover);
    if let Phase::Completed(c) = &mut cutover.phase {
        c.transaction_result = None;
        c.completed_at += Duration::seconds(1);
    }
    s.insert_transaction(&cutover, &[], &[]).await.unwrap();
    assert!(s.payment(&sale.id).await.unwrap().unwrap().settled);
    // The merchant-wide reference lookup finds at most two.
    let mut referenced = approved_sale("f0", 700);
    referenced.pos_reference = Some("sale-9".into());
    s.insert_transaction(&referenced, &[], &[]).await.unwrap();
    let found = s
        .transactions_by_merchant_reference(&referenced.merchant_id, "sale-9")
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![referenced.id]
    );
}

async fn tenders_fit_their_order(s: Arc<dyn Store>) {
    use cloud::domain::orders::{OrderId, OrderRecord, OrderRefusal};
    const N: usize = 6;
    for i in 0..N {
        s.insert_device(&device(&format!("o{i}")), None)
            .await
            .unwrap();
    }
    let order = OrderRecord {
        id: OrderId::new(),
        merchant_id: MerchantId::from_stored("mid".into()),
        amount_total: 1000,
        currency: protocol::Currency::AUD,
        pos_reference: Some("table-4".into()),
        cancelled: false,
        created_at: ms_now(),
    };
    s.insert_order(&order).await.unwrap();
    let again = OrderRecord {
        id: OrderId::new(),
        ..order.clone()
    };
    assert!(matches!(
        s.insert_order(&again).await,
        Err(InsertError::DuplicateReference)
    ));
    assert_eq!(
        s.order_by_reference(&order.merchant_id, "table-4")
            .await
            .unwrap(),
        Some(order.clone())
    );
    let tender = |device: &str, amount: u64| {
        let mut t = transaction(
            device,
            Phase::Offered {
                accept_deadline: ms_now() + Duration::seconds(30),
            },
        );
        t.request.amount_total = Cents::new(amount).ok();
        t.request.order_id = Some(order.id.to_string());
        t
    };
    // Six tenders of 4.00 race: two fit the 10.00.
    let results = join_all((0..N).map(|i| {
        let s = s.clone();
        let t = tender(&format!("o{i}"), 400);
        async move { s.insert_transaction(&t, &[], &[]).await }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
    assert!(results.iter().all(|r| matches!(
        r,
        Ok(())
            | Err(InsertError::OrderRefused(OrderRefusal::Overpayment {
                remaining: 200,
                ..
            }))
    )));
    let sheet = s.order(&order.id).await.unwrap().unwrap();
    assert_eq!((sheet.tenders.len(), sheet.summary().remaining), (2, 200));
    // Another merchant's tender does not find the order.
    s.insert_device(&device("o-idle"), None).await.unwrap();
    let mut foreign = tender("o-idle", 100);
    foreign.merchant_id = MerchantId::from_stored("other".into());
    assert!(matches!(
        s.insert_transaction(&foreign, &[], &[]).await,
        Err(InsertError::UnknownOrder)
    ));
    // Cancelled once; then it takes nothing.
    assert!(s.cancel_order(&order.id, ms_now()).await.unwrap());
    assert!(!s.cancel_order(&order.id, ms_now()).await.unwrap());
    let late = tender("o-idle", 100);
    assert!(matches!(
        s.insert_transaction(&late, &[], &[]).await,
        Err(InsertError::OrderRefused(OrderRefusal::Cancelled(_)))
    ));
    assert!(s.order(&order.id).await.unwrap().unwrap().order.cancelled);
}

async fn displays_change_version_only_when_they_change(s: Arc<dyn Store>) {
    s.insert_device(&device("s0"), None).await.unwrap();
    let id = DeviceId::parse("s0").unwrap();
    assert_eq!(s.display(&id).await.unwrap(), Some((0, None)));
    let cart = r#"{"lines":[],"total":100}"#;
    assert_eq!(s.set_display(&id, Some(cart)).await.unwrap(), Some(1));
    // The same display again is the same version: a retry changes nothing.
    assert_eq!(s.set_display(&id, Some(cart)).await.unwrap(), Some(1));
    assert_eq!(
        s.display(&id).await.unwrap(),
        Some((1, Some(cart.to_string())))
    );
    assert_eq!(s.set_display(&id, None).await.unwrap(), Some(2));
    assert_eq!(s.set_display(&id, None).await.unwrap(), Some(2));
    assert_eq!(s.display(&id).await.unwrap(), Some((2, None)));
    assert_eq!(s.set_display(&id, Some(cart)).await.unwrap(), Some(3));
    let nobody = DeviceId::parse("nobody").unwrap();
    assert_eq!(s.set_display(&nobody, Some(cart)).await.unwrap(), None);
    assert_eq!(s.display(&nobody).await.unwrap(), None);
}

async fn health_history_is_bounded_newest_first(s: Arc<dyn Store>) {
    let (a, b) = (
        DeviceId::parse("h-a").unwrap(),
        DeviceId::parse("h-b").unwrap(),
    );
    let t0 = ms_now();
    for i in 0..7 {
        let at = t0 + chrono::Duration::seconds(i);
        s.record_health(&a, at, &format!("{{\"n\":{i}}}"), 5)
            .await
            .unwrap();
    }
    s.record_health(&b, t0, "{}", 5).await.unwrap();
    let history = s.health_history(&a, 10).await.unwrap();
    let kept: Vec<&str> = history.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(
        kept,
        [
            r#"{"n":6}"#,
            r#"{"n":5}"#,
            r#"{"n":4}"#,
            r#"{"n":3}"#,
            r#"{"n":2}"#
        ],
        "the newest five, newest first"
    );
    assert_eq!(history[0].0, t0 + chrono::Duration::seconds(6));
    assert_eq!(s.health_history(&a, 2).await.unwrap().len(), 2);
    // Another device's history is its own.
    assert_eq!(s.health_history(&b, 10).await.unwrap().len(), 1);
    let none = DeviceId::parse("h-none").unwrap();
    assert!(s.health_history(&none, 10).await.unwrap().is_empty());
    let mut latest = s.latest_health().await.unwrap();
    latest.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
    let latest: Vec<(&str, &str)> = latest
        .iter()
        .map(|(d, _, h)| (d.as_str(), h.as_str()))
        .collect();
    assert_eq!(latest, [("h-a", r#"{"n":6}"#), ("h-b", "{}")]);
}

async fn profiles_keep_every_version_and_device_configs_move_only_on_change(s: Arc<dyn Store>) {
    use cloud::domain::config::{ProfileRecord, ProfileScope};
    use protocol::config::Profile;
    let m = MerchantId::from_stored("mid".into());
    let scope = ProfileScope::Merchant(m.clone());
    assert_eq!(s.profile(&scope).await.unwrap(), None);
    let record = |version: u64, text: &str| ProfileRecord {
        scope: scope.clone(),
        version,
        profile: Profile {
            idle_text: Some(text.into()),
            tip_presets: Some(vec![5, 10]),
            ..Profile::default()
        },
        set_at: ms_now(),
        actor: "cli".into(),
    };
    s.insert_profile(
        &record(1, "one"),
        &audit("config.set", "merchant:mid", Some(&m)),
    )
    .await
    .unwrap();
    s.insert_profile(
        &record(2, "two"),
        &audit("config.set", "merchant:mid", Some(&m)),
    )
    .await
    .unwrap();
    // A version taken (a concurrent change won) is refused, its audit entry with it.
    let taken = s
        .insert_profile(
            &record(2, "late"),
            &audit("config.set", "merchant:mid", Some(&m)),
        )
        .await;
    assert!(
        matches!(taken, Err(InsertError::AlreadyExists)),
        "{taken:?}"
    );
    let current = s.profile(&scope).await.unwrap().unwrap();
    assert_eq!(
        (current.version, current.profile.idle_text.as_deref()),
        (2, Some("two"))
    );
    assert_eq!(current.profile.tip_presets, Some(vec![5, 10]));
    let history = s.profile_history(&scope, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(s.profile_history(&scope, 1).await.unwrap().len(), 1);
    let audited = s
        .audit(&AuditQuery {
            action: Some("config.set".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 2, "one entry per stored version");
    // Scopes are apart: the operator's is another profile.
    assert_eq!(s.profile(&ProfileScope::Operator).await.unwrap(), None);

    s.insert_device(&device("cfg0"), None).await.unwrap();
    let id = DeviceId::parse("cfg0").unwrap();
    let state = s.device_config(&id).await.unwrap().unwrap();
    assert_eq!((state.version, state.acked, state.settings), (0, 0, None));
    let a = s
        .set_device_config(&id, r#"{"a":1}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.version, a.acked, a.pending()), (1, 0, true));
    // The same settings again: the same version.
    let again = s
        .set_device_config(&id, r#"{"a":1}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.version, 1);
    let b = s
        .set_device_config(&id, r#"{"a":2}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.version, b.settings.as_deref()), (2, Some(r#"{"a":2}"#)));
    // Acks move forward only, and never past what was computed.
    let at = ms_now();
    assert!(!s.ack_config(&id, 3, at).await.unwrap());
    assert!(s.ack_config(&id, 1, at).await.unwrap());
    assert!(s.ack_config(&id, 2, at).await.unwrap());
    assert!(!s.ack_config(&id, 2, at).await.unwrap());
    assert!(!s.ack_config(&id, 1, at).await.unwrap());
    let done = s.device_config(&id).await.unwrap().unwrap();
    assert_eq!(
        (done.acked, done.acked_at, done.pending()),
        (2, Some(at), false)
    );
    let nobody = DeviceId::parse("nobody").unwrap();
    assert_eq!(s.set_device_config(&nobody, "{}").await.unwrap(), None);
    assert_eq!(s.device_config(&nobody).await.unwrap(), None);
    assert!(!s.ack_config(&nobody, 1, at).await.unwrap());
}

async fn capabilities_and_merchant_terms(s: Arc<dyn Store>) {
    s.insert_device(&device("c0"), None).await.unwrap();
    let id = DeviceId::parse("c0").unwrap();
    s.set_device_capabilities(&id, "currency void", None)
        .await
        .unwrap();
    assert_eq!(
        s.device(&id).await.unwrap().unwrap().capabilities,
        vec!["currency".to_string(), "void".to_string()]
    );
    let hardware = protocol::device::Hardware {
        screen: Some(protocol::device::Screen {
            width: 480,
            height: 800,
        }),
        printer_columns: Some(32),
    };
    let json = serde_json::to_string(&hardware).unwrap();
    s.set_device_capabilities(&id, "printer", Some(&json))
        .await
        .unwrap();
    let d = s.device(&id).await.unwrap().unwrap();
    assert_eq!(d.capabilities, vec!["printer".to_string()]);
    assert_eq!(d.hardware, Some(hardware));
    let shop = MerchantRecord {
        id: MerchantId::from_stored("mid".into()),
        name: "Shop".into(),
        created_at: ms_now(),
        currency: protocol::Currency::AUD,
        max_tip_percent: 30,
    };
    s.create_merchant(&shop, &audit("merchant.created", "mid", Some(&shop.id)))
        .await
        .unwrap();
    let nzd = protocol::Currency::parse("NZD").unwrap();
    assert!(s
        .set_merchant_terms(
            &shop.id,
            nzd,
            15,
            &audit("merchant.terms_set", "mid", Some(&shop.id))
        )
        .await
        .unwrap());
    let m = s.merchant(&shop.id).await.unwrap().unwrap();
    assert_eq!((m.currency, m.max_tip_percent), (nzd, 15));
    assert!(!s
        .set_merchant_terms(
            &MerchantId::from_stored("none".into()),
            nzd,
            15,
            &audit("merchant.terms_set", "none", None)
        )
        .await
        .unwrap());
    // A route carries the device's merchant's currency.
    s.pair_register(&register("rc", "c0")).await.unwrap();
    assert_eq!(s.route(&key("rc")).await.unwrap().unwrap().currency, nzd);
}

fn receipt_to(
    t: &TransactionRecord,
    address: &str,
    copy: ReceiptCopy,
    at: DateTime<Utc>,
) -> ReceiptDelivery {
    let address = if address.starts_with('+') {
        Address::Phone(PhoneNumber::parse(address).unwrap())
    } else {
        Address::Email(EmailAddress::parse(address).unwrap())
    };
    ReceiptDelivery::new(t.id, address, copy, at)
}

fn queued_event(d: &ReceiptDelivery) -> TimelineEvent {
    TimelineEvent::new(d.created_at, EventKind::ReceiptQueued, d.describe())
}

const EMAIL_ONLY: Channels = Channels {
    email: true,
    sms: false,
};
const BOTH: Channels = Channels {
    email: true,
    sms: true,
};

async fn receipt_deliveries_are_queued_once_retried_and_recorded(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    let now = ms_now();
    let t = transaction("d1", completed_at(now));
    s.insert_transaction(&t, &[], &[]).await.unwrap();
    assert!(s.receipt_deliveries(&t.id).await.unwrap().is_empty());
    assert_eq!(s.next_receipt_at(BOTH).await.unwrap(), None);

    // Email and SMS in one commit, each with its event, due at once.
    let email = receipt_to(&t, "ann@example.com", ReceiptCopy::Customer, now);
    let sms = receipt_to(&t, "+61412345678", ReceiptCopy::Customer, now);
    let queued = s
        .queue_receipts(&[
            (email.clone(), queued_event(&email)),
            (sms.clone(), queued_event(&sms)),
        ])
        .await
        .unwrap();
    assert_eq!(
        queued,
        vec![
            Queued {
                delivery: email.clone(),
                replayed: false
            },
            Queued {
                delivery: sms.clone(),
                replayed: false
            }
        ]
    );
    assert_eq!(
        s.receipt_deliveries(&t.id).await.unwrap(),
        vec![email.clone(), sms.clone()]
    );
    assert_eq!(
        kinds(&s.events(&t.id).await.unwrap()),
        vec![EventKind::ReceiptQueued, EventKind::ReceiptQueued]
    );
    assert_eq!(s.next_receipt_at(BOTH).await.unwrap(), Some(now));

    // Asked again: the same deliveries, nothing written. Another copy is another delivery.
    let later = now + Duration::seconds(1);
    let again = receipt_to(&t, "ann@example.com", ReceiptCopy::Customer, later);
    let merchant = receipt_to(&t, "ann@example.com", ReceiptCopy::Merchant, later);
    let queued = s
        .queue_receipts(&[
            (again.clone(), queued_event(&again)),
            (merchant.clone(), queued_event(&merchant)),
        ])
        .await
        .unwrap();
    assert_eq!(queued[0].delivery, email);
    assert!(queued[0].replayed);
    assert_eq!(queued[1].delivery, merchant);
    assert!(!queued[1].replayed);
    assert_eq!(s.events(&t.id).await.unwrap().len(), 3);

    // A node with only email claims only email deliveries, oldest first, until the lease ends.
    let lease = now + Duration::seconds(30);
    let claimed = s
        .claim_receipts(later, 10, lease, EMAIL_ONLY)
        .await
        .unwrap();
    let mut ids: Vec<_> = claimed.iter().map(|d| d.id.clone()).collect();
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut want = vec![email.id.clone(), merchant.id.clone()];
    want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(ids, want);
    assert!(claimed.iter().all(|d| d.next_attempt_at == lease));
    assert!(s
        .claim_receipts(later, 10, lease, EMAIL_ONLY)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.next_receipt_at(EMAIL_ONLY).await.unwrap(), Some(lease));
    assert_eq!(s.next_receipt_at(BOTH).await.unwrap(), Some(now), "the SMS");
    assert_eq!(s.next_receipt_at(Channels::default()).await.unwrap(), None);

    // A failed attempt is counted, retried later, and on the timeline.
    let retry_at = now + Duration::seconds(5);
    let failed = TimelineEvent::new(later, EventKind::ReceiptFailed, "refused; retry");
    let retry = AttemptOutcome::Retry {
        at: retry_at,
        error: "SMTP: connection refused".into(),
    };
    assert!(s
        .record_receipt_attempt(&email.id, &retry, &failed)
        .await
        .unwrap());
    let stored = |id: DeliveryId| {
        let s = s.clone();
        let t = t.id;
        async move {
            s.receipt_deliveries(&t)
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.id == id)
                .unwrap()
        }
    };
    let d = stored(email.id.clone()).await;
    assert_eq!(
        (
            d.state,
            d.attempts,
            d.last_error.as_str(),
            d.next_attempt_at
        ),
        (
            DeliveryState::Pending,
            1,
            "SMTP: connection refused",
            retry_at
        )
    );
    assert_eq!(
        s.claim_receipts(retry_at, 10, retry_at + Duration::seconds(30), EMAIL_ONLY)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id.clone())
            .collect::<Vec<_>>(),
        vec![email.id.clone()]
    );

    // Sent: kept with its time and the error before it; asking again still finds it.
    let sent_at = retry_at + Duration::seconds(1);
    let sent = TimelineEvent::new(sent_at, EventKind::ReceiptSent, "250 OK");
    assert!(s
        .record_receipt_attempt(&email.id, &AttemptOutcome::Sent { at: sent_at }, &sent)
        .await
        .unwrap());
    let d = stored(email.id.clone()).await;
    assert_eq!(
        (d.state, d.attempts, d.sent_at, d.last_error.as_str()),
        (
            DeliveryState::Sent,
            2,
            Some(sent_at),
            "SMTP: connection refused"
        )
    );
    // A late record of a delivery no longer pending changes nothing.
    assert!(!s
        .record_receipt_attempt(&email.id, &retry, &failed)
        .await
        .unwrap());
    assert_eq!(stored(email.id.clone()).await, d);
    let again = receipt_to(&t, "ann@example.com", ReceiptCopy::Customer, sent_at);
    let queued = s
        .queue_receipts(&[(again.clone(), queued_event(&again))])
        .await
        .unwrap();
    assert_eq!((queued[0].delivery.clone(), queued[0].replayed), (d, true));

    // Given up: failed with its error; the same address may then be asked for again.
    let gave_up = TimelineEvent::new(sent_at, EventKind::ReceiptFailed, "giving up");
    let outcome = AttemptOutcome::GaveUp {
        error: "SMS webhook answered HTTP 400".into(),
    };
    assert!(s
        .record_receipt_attempt(&sms.id, &outcome, &gave_up)
        .await
        .unwrap());
    let d = stored(sms.id.clone()).await;
    assert_eq!(
        (d.state, d.attempts, d.last_error.as_str()),
        (DeliveryState::Failed, 1, "SMS webhook answered HTTP 400")
    );
    let retry_sms = receipt_to(&t, "+61 412 345 678", ReceiptCopy::Customer, sent_at);
    let queued = s
        .queue_receipts(&[(retry_sms.clone(), queued_event(&retry_sms))])
        .await
        .unwrap();
    assert_eq!(queued[0].delivery, retry_sms);
    assert!(!queued[0].replayed);
    assert_eq!(s.receipt_deliveries(&t.id).await.unwrap().len(), 4);
    let events = s.events(&t.id).await.unwrap();
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::ReceiptQueued,
            EventKind::ReceiptQueued,
            EventKind::ReceiptQueued,
            EventKind::ReceiptFailed,
            EventKind::ReceiptSent,
            EventKind::ReceiptFailed,
            EventKind::ReceiptQueued,
        ]
    );

    // The retention sweep takes a transaction's deliveries with it.
    assert_eq!(
        s.purge_completed_before(now + Duration::days(1))
            .await
            .unwrap(),
        1
    );
    assert!(s.receipt_deliveries(&t.id).await.unwrap().is_empty());
    assert_eq!(s.next_receipt_at(BOTH).await.unwrap(), None);
}

async fn receipts_race_to_one_delivery_and_one_claim(s: Arc<dyn Store>) {
    s.insert_device(&device("d1"), None).await.unwrap();
    let now = ms_now();
    let t = transaction("d1", completed_at(now));
    s.insert_transaction(&t, &[], &[]).await.unwrap();
    // Two nodes queue the same receipt at once: one delivery, one event.
    let asks: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            let d = receipt_to(&t, "ann@example.com", ReceiptCopy::Customer, now);
            async move { s.queue_receipts(&[(d.clone(), queued_event(&d))]).await }
        })
        .collect();
    let answers: Vec<Queued> = join_all(asks)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    assert_eq!(answers.iter().filter(|q| !q.replayed).count(), 1);
    let stored = s.receipt_deliveries(&t.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(answers.iter().all(|q| q.delivery.id == stored[0].id));
    assert_eq!(s.events(&t.id).await.unwrap().len(), 1);

    // Two nodes claim at once: one gets it.
    let lease = now + Duration::seconds(30);
    let (x, y) = tokio::join!(
        s.claim_receipts(now, 10, lease, BOTH),
        s.claim_receipts(now, 10, lease, BOTH)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 1, "claimed twice: {x:?} {y:?}");
    // Due again once the lease is over (the node that claimed it died).
    assert_eq!(
        s.claim_receipts(lease, 10, lease + Duration::seconds(30), BOTH)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The log after `after` once it holds at least `n` events. On PostgreSQL an event is shown
/// once every transaction older than its own has ended, in any database of the server (other
/// tests write meanwhile), so a read just after a commit may come a moment early.
async fn settled_log(
    s: &Arc<dyn Store>,
    after: &cloud::domain::events::Cursor,
    n: usize,
) -> Vec<cloud::domain::events::Event> {
    let everything = cloud::domain::events::Audience::Everything;
    for _ in 0..500 {
        let events = s.log_after(after, &everything, &[], 100).await.unwrap();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the log never held {n} events after {after}");
}

async fn the_event_log_is_ordered_scoped_and_written_with_its_change(s: Arc<dyn Store>) {
    use cloud::domain::events::{self as catalogue, Audience, Cursor, EventType};
    s.insert_device(&device("d1"), None).await.unwrap();
    let d1 = DeviceId::parse("d1").unwrap();
    let mid = MerchantId::from_stored("mid".into());
    // A pairing, a connection, a transaction's creation and completion: each logs in its commit.
    s.pair_register(&register("r1", "d1")).await.unwrap();
    s.set_device_connection(&d1, "n1", true, ms_now())
        .await
        .unwrap();
    // Closing a connection another node holds changes nothing, and logs nothing.
    s.set_device_connection(&d1, "n2", false, ms_now())
        .await
        .unwrap();
    let t = transaction(
        "d1",
        Phase::Started {
            started_at: ms_now(),
        },
    );
    let created = catalogue::for_transaction(None, &t, &t.phase);
    s.insert_transaction(&t, &[], &created).await.unwrap();
    let done = completed_at(ms_now());
    let completed = catalogue::for_transaction(Some(&t.phase), &t, &done);
    assert!(s
        .transition(&t.id, &t.phase, &done, &[], &completed)
        .await
        .unwrap());
    // A transition that loses its compare-and-set logs nothing.
    assert!(!s
        .transition(&t.id, &t.phase, &done, &[], &completed)
        .await
        .unwrap());
    let all = settled_log(&s, &Cursor::START, 4).await;
    let kinds: Vec<EventType> = all.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventType::PairingPaired,
            EventType::DeviceConnected,
            EventType::TransactionCreated,
            EventType::TransactionCompleted
        ]
    );
    for w in all.windows(2) {
        assert!(w[0].cursor < w[1].cursor);
    }
    // An event that names only its device takes the device's merchant.
    assert!(all
        .iter()
        .all(|e| e.event.merchant_id.as_ref() == Some(&mid)));
    assert_eq!(all[3].event, completed[0]);
    assert_eq!(s.log_head().await.unwrap(), all[3].cursor);
    // Pages, filters and audiences.
    let page = s
        .log_after(&all[1].cursor, &Audience::Everything, &[], 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].cursor, all[2].cursor);
    let only = s
        .log_after(
            &Cursor::START,
            &Audience::Everything,
            &[EventType::TransactionCompleted, EventType::PairingPaired],
            100,
        )
        .await
        .unwrap();
    assert_eq!(only.len(), 2);
    let vendor = Audience::Vendor("Vendor".into());
    assert_eq!(
        s.log_after(&Cursor::START, &vendor, &[], 100)
            .await
            .unwrap()
            .len(),
        3
    );
    let elsewhere = Audience::Merchant(MerchantId::new());
    assert!(s
        .log_after(&Cursor::START, &elsewhere, &[], 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.logged_event(&all[0].event.id).await.unwrap().unwrap(),
        all[0]
    );
    assert!(s
        .logged_event(&catalogue::EventId::new())
        .await
        .unwrap()
        .is_none());
    // Unpairing logs one event per register removed.
    s.unpair(&d1, None, None, ms_now()).await.unwrap();
    let last = settled_log(&s, &all[3].cursor, 1).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].event.kind, EventType::PairingUnpaired);
    // Retention: everything created before the cut goes.
    assert_eq!(
        s.purge_events_before(ms_now() + Duration::seconds(1))
            .await
            .unwrap(),
        5
    );
    assert!(s
        .log_after(&Cursor::START, &Audience::Everything, &[], 100)
        .await
        .unwrap()
        .is_empty());
}

async fn webhook_endpoints_are_leased_to_one_holder_and_move_with_each_attempt(s: Arc<dyn Store>) {
    use cloud::domain::events::{Cursor, EventId, TypeFilter};
    use cloud::domain::webhooks::{Attempt, DeliveryPolicy, Endpoint, EndpointId, Owner, Progress};
    let now = ms_now();
    let e = Endpoint {
        id: EndpointId::new(),
        owner: Owner::Merchant(MerchantId::from_stored("mid".into())),
        url: "https://hooks.example.com/x".parse().unwrap(),
        types: TypeFilter::parse_list("transaction.*,device.connected").unwrap(),
        description: "till".into(),
        secret: "whsec_1".into(),
        previous_secret: None,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        cursor: Cursor { epoch: 0, seq: 7 },
        attempts: 0,
        failing_since: None,
        next_attempt_at: now,
    };
    let mid = MerchantId::from_stored("mid".into());
    let audit_of = |action: &str| audit(action, e.id.as_str(), Some(&mid));
    s.insert_webhook(&e, &audit_of("webhook.created"))
        .await
        .unwrap();
    assert_eq!(s.webhook(&e.id).await.unwrap().unwrap(), e);
    assert_eq!(s.webhooks().await.unwrap(), vec![e.clone()]);
    // One holder at a time, until its lease runs out.
    let until = now + Duration::seconds(30);
    assert!(s
        .lease_webhook(&e.id, "a", now, until)
        .await
        .unwrap()
        .is_some());
    assert!(s
        .lease_webhook(&e.id, "b", now, until)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .lease_webhook(&e.id, "b", until, until + Duration::seconds(30))
        .await
        .unwrap()
        .is_some());
    let attempt = |delivered: bool, code: u16| Attempt {
        event_id: EventId::new(),
        event_type: "transaction.created".into(),
        attempt: 1,
        delivered,
        response_code: Some(code),
        error: (!delivered).then(|| format!("HTTP {code}")),
        at: now,
    };
    // "a" lost its lease: its attempt records nothing.
    let advance = Progress::Advance(Cursor { epoch: 0, seq: 9 });
    assert!(!s
        .record_webhook_attempt(&e.id, "a", &attempt(true, 200), &advance, until, None)
        .await
        .unwrap());
    assert!(s.webhook_deliveries(&e.id, 10).await.unwrap().is_empty());
    // "b" fails once (backing off), then delivers: the cursor moves, the failure clears.
    let failure = DeliveryPolicy::default().after_failure(1, None, now);
    let failed = Progress::Failed(failure.clone());
    assert!(s
        .record_webhook_attempt(&e.id, "b", &attempt(false, 500), &failed, until, None)
        .await
        .unwrap());
    let stored = s.webhook(&e.id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.attempts,
            stored.failing_since,
            stored.next_attempt_at
        ),
        (1, Some(now), failure.next_attempt_at)
    );
    // Not due while it backs off.
    s.release_webhook(&e.id, "b").await.unwrap();
    assert!(s
        .lease_webhook(&e.id, "c", now, until)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .lease_webhook(&e.id, "c", failure.next_attempt_at, until)
        .await
        .unwrap()
        .is_some());
    assert!(s
        .record_webhook_attempt(&e.id, "c", &attempt(true, 204), &advance, until, None)
        .await
        .unwrap());
    let stored = s.webhook(&e.id).await.unwrap().unwrap();
    assert_eq!(stored.cursor, Cursor { epoch: 0, seq: 9 });
    assert_eq!((stored.attempts, stored.failing_since), (0, None));
    let log = s.webhook_deliveries(&e.id, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert!(log[0].delivered && !log[1].delivered);
    assert_eq!(log[1].response_code, Some(500));
    // Redeliveries queue once, make it due at once, and leave when delivered.
    let again = EventId::new();
    assert!(s.queue_redelivery(&e.id, &again, now).await.unwrap());
    assert!(s.queue_redelivery(&e.id, &again, now).await.unwrap());
    assert!(!s
        .queue_redelivery(&EndpointId::new(), &again, now)
        .await
        .unwrap());
    assert_eq!(s.redeliveries(&e.id).await.unwrap(), vec![again.clone()]);
    let redelivered = Progress::Redelivered(again);
    assert!(s
        .record_webhook_attempt(&e.id, "c", &attempt(true, 200), &redelivered, until, None)
        .await
        .unwrap());
    assert!(s.redeliveries(&e.id).await.unwrap().is_empty());
    // Disabling with its notice; re-enabling clears the failures.
    let mut failure = DeliveryPolicy::default().after_failure(9, Some(now), now);
    failure.disable = Some("gone".into());
    let notice = audit_of("webhook.disabled");
    assert!(s
        .record_webhook_attempt(
            &e.id,
            "c",
            &attempt(false, 503),
            &Progress::Failed(failure),
            until,
            Some(&notice)
        )
        .await
        .unwrap());
    let mut stored = s.webhook(&e.id).await.unwrap().unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.disabled_reason.as_deref(), Some("gone"));
    assert!(s
        .lease_webhook(&e.id, "c", now + Duration::days(1), until)
        .await
        .unwrap()
        .is_none());
    let audited = s
        .audit(&AuditQuery {
            action: Some("webhook.disabled".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    stored.enabled = true;
    stored.disabled_reason = None;
    stored.previous_secret = Some(("whsec_0".into(), now + Duration::hours(1)));
    stored.secret = "whsec_2".into();
    assert!(s
        .update_webhook(&stored, &audit_of("webhook.changed"))
        .await
        .unwrap());
    let back = s.webhook(&e.id).await.unwrap().unwrap();
    assert!(back.enabled && back.attempts == 0 && back.failing_since.is_none());
    assert_eq!(back.secret, "whsec_2");
    assert_eq!(back.previous_secret, stored.previous_secret);
    assert_eq!(back.types, e.types);
    // Deleting takes its log with it.
    assert!(s
        .delete_webhook(&e.id, &audit_of("webhook.deleted"))
        .await
        .unwrap());
    assert!(!s
        .delete_webhook(&e.id, &audit_of("webhook.deleted"))
        .await
        .unwrap());
    assert!(s.webhook(&e.id).await.unwrap().is_none());
    assert!(s.webhook_deliveries(&e.id, 10).await.unwrap().is_empty());
}

macro_rules! contract {
    ($($name:ident),*) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (s, _dir) = super::sqlite().await;
                    super::$name(s).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[cfg_attr(
                    not(eftcloud_test_postgres),
                    ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
                )]
                #[tokio::test]
                async fn $name() {
                    eftcloud_testing::FreshDatabase::run("PostgreSQL store tests", |url| async move {
                        let s = super::cloud::store::open(&url).await.unwrap();
                        super::$name(s).await;
                    })
                    .await;
                }
            )*
        }
    };
}

contract!(
    receipt_deliveries_are_queued_once_retried_and_recorded,
    receipts_race_to_one_delivery_and_one_claim,
    transactions_are_searchable,
    callbacks_are_claimed_by_one_node,
    devices_and_connections,
    pairing_codes,
    pairing_codes_by_merchant,
    accounts,
    people,
    device_changes_carry_their_audit_entry,
    registers,
    routes,
    transactions,
    references,
    events_in_order,
    callbacks_outbox,
    secrets,
    probe_writes,
    purge,
    unused_self_enrolled_devices_are_purged,
    races,
    follow_ups_fit_their_payment,
    tenders_fit_their_order,
    capabilities_and_merchant_terms,
    displays_change_version_only_when_they_change,
    health_history_is_bounded_newest_first,
    profiles_keep_every_version_and_device_configs_move_only_on_change,
    the_event_log_is_ordered_scoped_and_written_with_its_change,
    webhook_endpoints_are_leased_to_one_holder_and_move_with_each_attempt
);

#[tokio::test]
async fn a_failed_commit_stores_nothing_and_says_the_store_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let faults = Arc::new(cloud::store::StoreFaults::default());
    let s = cloud::store::open_with_faults(&url, Some(faults.clone()))
        .await
        .unwrap();
    s.insert_device(&device("d1"), None).await.unwrap();
    faults.fail_commits();
    let e = s.insert_device(&device("d2"), None).await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    let e = s.probe_write().await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    // Reads go on (a full disk still reads) and show that nothing of the failed write stayed.
    assert!(s
        .device(&DeviceId::parse("d2").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(s
        .device(&DeviceId::parse("d1").unwrap())
        .await
        .unwrap()
        .is_some());
    assert_eq!(faults.injected(), 2);
    faults.heal();
    s.insert_device(&device("d2"), None).await.unwrap();
    s.probe_write().await.unwrap();
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    {
        let s = cloud::store::open(&url).await.unwrap();
        s.insert_device(&device("d1"), None).await.unwrap();
        s.insert_transaction(
            &transaction(
                "d1",
                Phase::Started {
                    started_at: Utc::now(),
                },
            ),
            &[],
            &[],
        )
        .await
        .unwrap();
    }
    let s = cloud::store::open(&url).await.unwrap();
    assert!(s
        .active_transaction(&DeviceId::parse("d1").unwrap())
        .await
        .unwrap()
        .is_some());
    assert!(cloud::store::open("mysql://x").await.is_err());
}

#[cfg_attr(
    not(eftcloud_test_postgres),
    ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
)]
#[tokio::test]
async fn postgres_nodes_share_one_database() {
    eftcloud_testing::FreshDatabase::run("PostgreSQL store tests", |url| async move {
        // Two nodes starting together: migrations run once, both see the same data.
        let (a, b) = tokio::join!(cloud::store::open(&url), cloud::store::open(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        a.insert_device(&device("d1"), None).await.unwrap();
        assert!(matches!(
            b.insert_device(&device("d1"), None).await,
            Err(InsertError::AlreadyExists)
        ));
        assert_eq!(b.devices().await.unwrap().len(), 1);
        // Reopening an existing database applies nothing new.
        let c = cloud::store::open(&url.replace("postgres://", "postgresql://"))
            .await
            .unwrap();
        assert_eq!(c.devices().await.unwrap().len(), 1);
    })
    .await;
}

/// A row the schema allows but the record cannot be (an offer without its deadline, a time out
/// of range) is reported as corrupt, never read as a default (the epoch, zero).
#[tokio::test]
async fn sqlite_rows_that_cannot_be_records_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let s = cloud::store::open(&url).await.unwrap();
    s.insert_device(&device("d1"), None).await.unwrap();
    let offered = transaction(
        "d1",
        Phase::Offered {
            accept_deadline: Utc::now(),
        },
    );
    s.insert_transaction(&offered, &[], &[]).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    let corrupt = |sql: &'static str| {
        let raw = raw.clone();
        async move {
            sqlx::query(sql).execute(&raw).await.unwrap();
        }
    };
    corrupt("UPDATE transactions SET accept_deadline = NULL").await;
    let e = s.transaction(&offered.id).await.unwrap_err();
    assert!(matches!(e, cloud::store::StoreError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("accept_deadline"), "{e}");

    corrupt("UPDATE transactions SET state = 'started', started_at = NULL").await;
    let e = s.transaction(&offered.id).await.unwrap_err();
    assert!(e.to_string().contains("started_at"), "{e}");

    corrupt("UPDATE transactions SET started_at = 9223372036854775807").await;
    let e = s.transaction(&offered.id).await.unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    raw.close().await;
}

/// The audit log refuses changes and deletions whatever writes to the database.
#[tokio::test]
async fn the_audit_log_is_append_only_even_to_raw_sql() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let s = cloud::store::open(&url).await.unwrap();
    s.append_audit(&audit("device.enrolled", "d1", None))
        .await
        .unwrap();
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ] {
        let e = sqlx::query(sql).execute(&raw).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    raw.close().await;
}

/// The same on PostgreSQL.
#[cfg_attr(
    not(eftcloud_test_postgres),
    ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
)]
#[tokio::test]
async fn the_audit_log_is_append_only_even_to_raw_sql_on_postgres() {
    eftcloud_testing::FreshDatabase::run("PostgreSQL store tests", |url| async move {
        let s = cloud::store::open(&url).await.unwrap();
        s.append_audit(&audit("device.enrolled", "d1", None))
            .await
            .unwrap();
        let raw = sqlx::PgPool::connect(&url).await.unwrap();
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
        ] {
            let e = sqlx::query(sql).execute(&raw).await.unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
        raw.close().await;
    })
    .await;
}

/// Data from before accounts existed moves over: each distinct merchant name of the devices
/// becomes a merchant, and devices and their transactions carry its id.
#[tokio::test]
async fn sqlite_devices_before_accounts_become_merchants() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 5)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    for (id, merchant, mid) in [
        ("d1", "Toys Shop", "00000000-0000-4000-8000-000000000002"),
        ("d2", "Toys Shop", "00000000-0000-4000-8000-000000000001"),
        ("d3", "", "00000000-0000-4000-8000-000000000003"),
    ] {
        sqlx::query(
            "INSERT INTO devices (id, secret_hash, merchant, merchant_id, created_at) VALUES (?, 'h', ?, ?, 0)",
        )
        .bind(id)
        .bind(merchant)
        .bind(mid)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO transactions (id, device_id, register_id, business_name, vendor_name, register_name,
           merchant_id, merchant, request, token, token_expires_at, created_at, state)
         VALUES ('00000000-0000-4000-8000-00000000000a', 'd1', 'r', 'b', 'v', 'n',
           '00000000-0000-4000-8000-000000000002', 'Toys Shop', '{}', 't', 0, 0, 'completed')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let s = cloud::store::open(&url).await.unwrap();
    let merchants = s.merchants().await.unwrap();
    let names: Vec<&str> = merchants.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Toys Shop", "Unnamed merchant"]);
    let toys = &merchants[0];
    assert_eq!(toys.id.as_str(), "00000000-0000-4000-8000-000000000001");
    for d in s.devices().await.unwrap() {
        let want = if d.id.as_str() == "d3" {
            &merchants[1].id
        } else {
            &toys.id
        };
        assert_eq!(&d.merchant_id, want, "{}", d.id);
    }
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (tx_merchant,): (String,) = sqlx::query_as("SELECT merchant_id FROM transactions")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(tx_merchant, toys.id.as_str());
    raw.close().await;
}

#[path = "store/reports.rs"]
mod reports;
