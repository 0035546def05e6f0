//! The cloud on PostgreSQL: one purchase end to end through a real terminal, on a fresh database
//! created on the server named by `EFTCLOUD_TEST_DATABASE_URL` (skipped when it is not set).

use crate::harness::*;
use pos::{TransactionSpec, WaitOptions};
use protocol::{Cents, Function};
use sqlx::Connection;
use std::io::Write;
use std::sync::Arc;

const ENV: &str = "EFTCLOUD_TEST_DATABASE_URL";

/// A database created for one test, dropped by [`FreshDatabase::drop`].
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl FreshDatabase {
    pub async fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var(ENV) else {
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL end-to-end test skipped: {ENV} not set"
            );
            return None;
        };
        let name = format!("eftcloud_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Some(Self {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    pub async fn drop(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_purchase_runs_on_postgres() {
    let Some(db) = FreshDatabase::create().await else {
        return;
    };
    let url = db.url.clone();
    // In its own task so a failure still drops the database.
    let outcome = tokio::spawn(async move {
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
            .wait_for_completion(
                &started,
                WaitOptions {
                    interval: std::time::Duration::from_millis(20),
                    timeout: PATIENCE,
                },
                |_| {},
            )
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
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
