//! Where the data lives: flags shared by `serve` and the admin commands.

use anyhow::Context;
use std::path::PathBuf;

/// `--data-dir` / `--database-url`.
#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Directory holding the SQLite database (created if missing).
    #[arg(long, env = "EFTCLOUD_DATA_DIR", default_value = "./eftcloud-data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://path`); overrides --data-dir.
    #[arg(long, env = "EFTCLOUD_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    /// The database URL to open.
    pub fn url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(url) => {
                if !url.starts_with("sqlite:") {
                    anyhow::bail!("unsupported database URL '{url}': expected sqlite://<path>");
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
            .with_context(|| format!("cannot open database {url}"))
    }
}
