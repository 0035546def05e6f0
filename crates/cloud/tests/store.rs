//! The `Store` contract, one suite for every backend: SQLite always (a fresh temporary file per
//! test); further backends run the same functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, Utc};
use cloud::engine::lifecycle::{CloudReason, Completion, Phase};
use cloud::store::{DeviceRecord, InsertError, RegisterRecord, Store, TransactionRecord};
use eftcloud_cloud as cloud;
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

fn device(id: &str) -> DeviceRecord {
    DeviceRecord {
        id: DeviceId::parse(id).unwrap(),
        secret_hash: "h".into(),
        vendor: "v".into(),
        model: "m".into(),
        merchant: "Shop".into(),
        merchant_id: "mid".into(),
        created_at: Utc::now(),
        connected_at: None,
        last_seen_at: None,
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
        merchant_id: "mid".into(),
        merchant: "Shop".into(),
        request: TransactionRequest {
            function: Function::CardPurchase,
            amount_total: Cents::new(500).ok(),
            amount_cash: None,
            amount_auth: None,
            amount_final: None,
            transaction_reference: None,
            date: None,
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
    s.insert_device(&device("d1")).await.unwrap();
    assert!(matches!(
        s.insert_device(&device("d1")).await,
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
    s.insert_device(&device("d1")).await.unwrap();
    s.insert_device(&device("d2")).await.unwrap();
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
    assert_eq!(s.take_pairing_code(&a, Utc::now()).await.unwrap(), None);
    assert_eq!(
        s.take_pairing_code(&b, Utc::now()).await.unwrap(),
        Some(d1.clone())
    );
    assert_eq!(
        s.take_pairing_code(&b, Utc::now()).await.unwrap(),
        None,
        "single use"
    );
    // Expired.
    assert!(s
        .replace_pairing_code(&d2, &a, Utc::now() + Duration::milliseconds(50))
        .await
        .unwrap());
    assert_eq!(
        s.take_pairing_code(&a, Utc::now() + Duration::seconds(1))
            .await
            .unwrap(),
        None
    );
}

async fn registers(s: Arc<dyn Store>) {
    s.insert_device(&device("d1")).await.unwrap();
    s.insert_device(&device("d2")).await.unwrap();
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
        s.unpair(&d2, Some(&key("r1"))).await.unwrap(),
        vec![key("r1")]
    );
    assert_eq!(
        s.unpair(&DeviceId::parse("d1").unwrap(), None)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(s.unpair(&d2, None).await.unwrap(), vec![key("r2")]);
    assert!(s.register(&key("r2")).await.unwrap().is_none());
}

async fn transactions(s: Arc<dyn Store>) {
    s.insert_device(&device("d1")).await.unwrap();
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
    s.insert_transaction(&t, &[]).await.unwrap();
    assert_eq!(s.transaction(&t.id).await.unwrap().unwrap(), t);
    // One active transaction per device.
    let second = transaction("d1", offered.clone());
    assert!(matches!(
        s.insert_transaction(&second, &[]).await,
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
    s.insert_transaction(&done, &[]).await.unwrap();
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
    assert!(s.transition(&t.id, &offered, &started, &[]).await.unwrap());
    assert!(
        !s.transition(&t.id, &offered, &started, &[]).await.unwrap(),
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
        .transition(&t.id, &started, &completed, &[])
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
    s.insert_transaction(&second, &[]).await.unwrap();
}

macro_rules! contract {
    ($($name:ident),*) => {
        mod on_sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (s, _dir) = sqlite().await;
                    super::$name(s).await;
                }
            )*
        }
    };
}

contract!(
    devices_and_connections,
    pairing_codes,
    registers,
    transactions
);

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    {
        let s = cloud::store::open(&url).await.unwrap();
        s.insert_device(&device("d1")).await.unwrap();
        s.insert_transaction(
            &transaction(
                "d1",
                Phase::Started {
                    started_at: Utc::now(),
                },
            ),
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
