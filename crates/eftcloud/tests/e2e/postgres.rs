//! The cloud on PostgreSQL: one purchase end to end through a real terminal, on a fresh database
//! created on the server named by `EFTCLOUD_TEST_DATABASE_URL` (skipped when it is not set).

use crate::harness::*;
use eftcloud_testing::FreshDatabase;
use pos::TransactionSpec;
use protocol::{Cents, Function};
use sqlx::Connection;
use std::sync::Arc;

#[cfg_attr(
    not(eftcloud_test_postgres),
    ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
)]
#[tokio::test]
async fn a_purchase_runs_on_postgres() {
    FreshDatabase::run("PostgreSQL end-to-end test", |url| async move {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let app = spawn_app_on(url.clone(), dir, Opts::default(), None).await;
        let (t, reg) = paired_terminal(&app, "dev-pg").await;
        let pos = app.pos();
        let started = pos
            .start(
                &reg,
                &TransactionSpec::new(Function::CardPurchase)
                    .with_amount(Cents::new(1250).unwrap()),
            )
            .await
            .unwrap();
        let done = pos
            .wait_for_completion(&started, quick(), |_| {})
            .await
            .unwrap();
        assert_eq!(done.field("TransactionResult"), Some("OK-ACCEPTED"));
        assert_eq!(done.field("AmountTotal"), Some("1250"));
        t.stop().await;
        app.stop().await;

        // The outcome lives in PostgreSQL, with its timeline.
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let (state,): (String,) = sqlx::query_as("SELECT state FROM transactions WHERE id = $1")
            .bind(done.transaction_id.as_str())
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(state, "completed");
        let (events,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM transaction_events WHERE transaction_id = $1")
                .bind(done.transaction_id.as_str())
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(events >= 3, "timeline has {events} events");
        conn.close().await.unwrap();
    })
    .await;
}
