//! The store contract of what reports read ([`cloud::store::ReportStore`]): settlements and a
//! period's completed transactions with their follow-ups, on both backends.

use super::*;
use cloud::store::PeriodQuery;

/// `tx` completed approved by its device at `at`.
fn approved_at(mut tx: TransactionRecord, at: DateTime<Utc>) -> TransactionRecord {
    tx.phase = Phase::Completed(Completion {
        by: cloud::domain::lifecycle::CompletedBy::Device,
        transaction_result: tx
            .request
            .function
            .is_financial()
            .then_some(protocol::TransactionResult::Accepted),
        result: protocol::ResultCode::Ok,
        result_text: "APPROVED".into(),
        fields: BTreeMap::from([("CardType".to_string(), "VISA".to_string())]),
        receipts: None,
        settlement: None,
        completed_at: at,
    });
    tx
}

fn ids(txs: &[TransactionRecord]) -> Vec<TransactionId> {
    txs.iter().map(|t| t.id).collect()
}

async fn reports_read_settlements_and_periods(s: Arc<dyn Store>) {
    let mut other = device("rp2");
    other.merchant_id = MerchantId::from_stored("other".into());
    s.insert_device(&device("rp1"), None).await.unwrap();
    s.insert_device(&other, None).await.unwrap();
    let t0 = ms_now() - Duration::minutes(10);
    let at = |secs: i64| t0 + Duration::seconds(secs);
    let on = |device: &str, f: Function, secs: i64| {
        let mut t = transaction(device, completed_at(at(secs)));
        t.request.function = f;
        if !f.is_financial() {
            t.request.amount_total = None;
        }
        approved_at(t, at(secs))
    };
    let s1 = on("rp1", Function::CardPurchase, 1);
    let s2 = on("rp1", Function::CardPurchase, 2);
    let mut elsewhere = on("rp2", Function::CardPurchase, 2);
    elsewhere.merchant_id = MerchantId::from_stored("other".into());
    for t in [&s1, &s2, &elsewhere] {
        s.insert_transaction(t, &[], &[]).await.unwrap();
    }
    // A void of s2, run on the other device (the merchant's follow-ups may run anywhere).
    let mut void = follow_up(&s2, "rp2", Function::CardVoid, None);
    void = approved_at(void, at(3));
    s.insert_transaction(&void, &[], &[]).await.unwrap();
    let cut = on("rp1", Function::AcquirerSettlementCutover, 4);
    s.insert_transaction(&cut, &[], &[]).await.unwrap();
    let s3 = on("rp1", Function::CardPurchase, 5);
    s.insert_transaction(&s3, &[], &[]).await.unwrap();
    // Still running: in no period.
    let running = transaction(
        "rp1",
        Phase::Offered {
            accept_deadline: at(600),
        },
    );
    s.insert_transaction(&running, &[], &[]).await.unwrap();

    let q = |device: Option<&str>, since: Option<i64>, until: Option<i64>| PeriodQuery {
        merchant: None,
        device: device.map(|d| DeviceId::parse(d).unwrap()),
        since: since.map(at),
        until: until.map(at),
        limit: 100,
    };
    // Settlements: the device's cutovers, newest first, by completion time.
    assert_eq!(
        ids(&s.settlements(&q(Some("rp1"), None, None)).await.unwrap()),
        vec![cut.id]
    );
    assert!(s
        .settlements(&q(Some("rp2"), None, None))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .settlements(&q(None, None, Some(3)))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&s.settlements(&q(None, Some(4), Some(4))).await.unwrap()),
        vec![cut.id]
    );
    let mine = PeriodQuery {
        merchant: Some(MerchantId::from_stored("other".into())),
        ..q(None, None, None)
    };
    assert!(s.settlements(&mine).await.unwrap().is_empty());

    // A period: completed at or after `since`, at or before `until`, oldest first.
    let period = q(Some("rp1"), None, Some(4));
    assert_eq!(
        ids(&s.completed_transactions(&period).await.unwrap()),
        vec![s1.id, s2.id, cut.id]
    );
    assert_eq!(
        ids(&s
            .completed_transactions(&q(Some("rp1"), Some(2), None))
            .await
            .unwrap()),
        vec![s2.id, cut.id, s3.id]
    );
    // Their follow-ups, wherever they ran.
    assert_eq!(
        ids(&s.follow_ups_of_completed(&period).await.unwrap()),
        vec![void.id]
    );
    assert!(s
        .follow_ups_of_completed(&q(Some("rp1"), Some(4), None))
        .await
        .unwrap()
        .is_empty());
    // By merchant, and bounded.
    assert_eq!(
        ids(&s.completed_transactions(&mine).await.unwrap()),
        vec![elsewhere.id]
    );
    let two = PeriodQuery {
        limit: 2,
        ..q(None, None, None)
    };
    // (s2 and the other device's sale completed together: the older id first.)
    assert_eq!(
        ids(&s.completed_transactions(&two).await.unwrap()),
        vec![s1.id, s2.id]
    );
    // The stored batch comes back with its cutover.
    let mut reported = on("rp1", Function::AcquirerSettlementCutover, 6);
    if let Phase::Completed(c) = &mut reported.phase {
        c.settlement = Some(Box::new(protocol::settlement::SettlementBatch {
            period_start: Some("20261204090000".into()),
            period_end: "20261204120000".into(),
            totals: vec![],
            transactions: Some(vec![protocol::settlement::BatchTransaction {
                transaction_id: s3.id,
                function: Function::CardPurchase,
                card_type: "VISA".into(),
                amount: 500,
            }]),
        }));
    }
    s.insert_transaction(&reported, &[], &[]).await.unwrap();
    let back = s.settlements(&q(Some("rp1"), Some(6), None)).await.unwrap();
    assert_eq!(back, vec![reported]);
}

contract!(reports_read_settlements_and_periods);
