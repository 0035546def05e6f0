//! Test support shared by the store contract tests and the end-to-end tests: a PostgreSQL
//! database created for one test on the server named by `EFTCLOUD_TEST_DATABASE_URL`, and
//! dropped afterwards, so runs never interfere.
// Test support: a failure to create or drop a database is a failed test, said by the panic.
#![allow(clippy::unwrap_used)]

use sqlx::Connection;
use std::io::Write;

/// The variable naming the PostgreSQL server tests may create databases on.
pub const DATABASE_ENV: &str = "EFTCLOUD_TEST_DATABASE_URL";

/// A database created for one test; [`FreshDatabase::drop`] removes it.
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    /// The URL of the fresh database.
    pub url: String,
}

impl FreshDatabase {
    /// Creates one, or says that `what` is skipped (once, straight to stderr past the test
    /// harness's capture) and returns `None` when the variable is not set.
    pub async fn create(what: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(DATABASE_ENV) else {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(std::io::stderr(), "{what} skipped: {DATABASE_ENV} not set");
            });
            return None;
        };
        let name = format!("eftcloud_test_{}", uuid::Uuid::new_v4().simple());
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

    /// Drops the database, closing whatever connections the test left open.
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

    /// Runs `test` with the URL of a fresh database, then drops it whether the test passed or
    /// not (skipped, saying so as `what`, when the variable is not set).
    pub async fn run<F, Fut>(what: &str, test: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(db) = Self::create(what).await else {
            return;
        };
        // In its own task, so a failed assertion comes back here as a JoinError and the
        // database is still dropped; the panic is then resumed.
        let outcome = tokio::spawn(test(db.url.clone())).await;
        db.drop().await;
        if let Err(e) = outcome {
            if let Ok(panic) = e.try_into_panic() {
                std::panic::resume_unwind(panic);
            }
            std::panic::resume_unwind(Box::new("test task cancelled"));
        }
    }
}
