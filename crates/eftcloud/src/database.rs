//! Where the data lives: flags shared by `serve` and the admin commands.

use anyhow::Context;
use std::path::PathBuf;

/// `--data-dir` / `--database-url`.
#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Directory holding the SQLite database (created if missing).
    #[arg(long, env = "EFTCLOUD_DATA_DIR", default_value = "./eftcloud-data")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://path` for one node, `postgres://user@host/db` for a store shared
    /// by many nodes; overrides --data-dir.
    #[arg(long, env = "EFTCLOUD_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    /// The database URL to open.
    pub fn url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(url) => {
                const SCHEMES: [&str; 3] = ["sqlite:", "postgres://", "postgresql://"];
                if !SCHEMES.iter().any(|s| url.starts_with(s)) {
                    anyhow::bail!(
                        "unsupported database URL '{url}': expected sqlite://<path> or postgres://[user[:password]@]host[:port]/database"
                    );
                }
                Ok(url.clone())
            }
            None => Ok(cloud::config::database_url_for_data_dir(&self.data_dir)?),
        }
    }

    /// Opens the store.
    pub async fn open(&self) -> anyhow::Result<std::sync::Arc<dyn cloud::store::Store>> {
        let url = self.url()?;
        cloud::store::open(&url)
            .await
            .with_context(|| format!("cannot open database {}", without_password(&url)))
    }
}

/// The URL fit for messages and logs: a PostgreSQL URL may carry a password.
pub fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Only fails for URLs that cannot have credentials, and this one has them.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_show_the_password() {
        assert_eq!(
            without_password("postgres://app:s3cret@db:5432/eftcloud"),
            "postgres://app:***@db:5432/eftcloud"
        );
        assert_eq!(
            without_password("postgres://app@db/eftcloud"),
            "postgres://app@db/eftcloud"
        );
        assert_eq!(without_password("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn postgres_urls_are_accepted() {
        for url in ["postgres://u@h/db", "postgresql://u@h/db", "sqlite://x.db"] {
            let args = DatabaseArgs {
                data_dir: "unused".into(),
                database_url: Some(url.into()),
            };
            assert_eq!(args.url().ok().as_deref(), Some(url));
        }
        let args = DatabaseArgs {
            data_dir: "unused".into(),
            database_url: Some("mysql://h/db".into()),
        };
        assert!(args.url().is_err());
    }
}
