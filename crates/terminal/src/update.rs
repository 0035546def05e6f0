//! Software updates of the agent itself: where an artifact is downloaded from, the download,
//! how a verified file is installed (the [`Installer`] the embedding program chose), and the
//! marker that carries the outcome across the restart into the new version.
//!
//! The agent's side of the protocol (the `update` frame and its `update_status` steps) lives in
//! [`crate::agent`]; this module does the I/O it calls for. The order of an installation is
//! what makes it safe to lose power at any point: the marker is written first, then the new
//! executable is written beside the old one, synced, and renamed over it (a rename is atomic,
//! so the file at the executable's path is always one whole version), and only then is the new
//! version started. A start that finds the marker reports `installed` if it runs the version
//! the marker names, and `failed` if it still runs another one.

use crate::journal::write_atomic;
use protocol::update::{Artifact, BadArtifact, ReleaseKey};
use protocol::DeviceId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The largest artifact the agent downloads, whatever the offer says: the file is held in
/// memory until it is verified, and a terminal's memory is small.
pub const MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;

/// How long a download may stall between two pieces of the file before it is given up.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How the agent installs a verified artifact. The `eftcloud terminal` command replaces its
/// own executable ([`Installer::SelfReplace`]); an agent embedded in another program (a test,
/// an app) must not, because replacing and re-executing "itself" would replace the program
/// that embeds it, so it refuses unless that program says how ([`Installer::Custom`]).
#[derive(Clone, Default)]
pub enum Installer {
    /// Refuse every update: `failed` with `install: this agent cannot replace itself (running
    /// in-process)`. The default of [`TerminalConfig`](crate::TerminalConfig).
    #[default]
    Refuse,
    /// Write the file over the executable this process runs (`std::env::current_exe`),
    /// atomically, and execute it with the same arguments (same journal, same settings).
    SelfReplace,
    /// The embedding program installs: it gets the verified file, and the agent reports
    /// `installed` when it next starts running the new version.
    Custom(Arc<dyn Install>),
}

impl fmt::Debug for Installer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Installer::Refuse => "Refuse",
            Installer::SelfReplace => "SelfReplace",
            Installer::Custom(_) => "Custom(..)",
        })
    }
}

/// Why an embedded agent refuses updates by default.
pub const IN_PROCESS_REFUSAL: &str = "this agent cannot replace itself (running in-process)";

/// An installer of the embedding program's own ([`Installer::Custom`]). It runs on a blocking
/// thread and may take its time; while it runs, the agent takes no new transaction.
pub trait Install: Send + Sync {
    /// Installs `update`, whose checksum and signature are verified. An error is reported as
    /// `failed` with `install: <error>`, and the agent carries on with the version it runs.
    fn install(&self, update: &VerifiedUpdate) -> Result<(), String>;
}

impl<F> Install for F
where
    F: Fn(&VerifiedUpdate) -> Result<(), String> + Send + Sync,
{
    fn install(&self, update: &VerifiedUpdate) -> Result<(), String> {
        self(update)
    }
}

/// A downloaded artifact whose checksum and signature are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUpdate {
    pub campaign_id: String,
    pub version: String,
    pub file: Vec<u8>,
}

/// What the agent keeps beside its journal from the moment it starts installing until the
/// next start has reported the outcome (`<journal>.update.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallMarker {
    pub campaign_id: String,
    /// The version being installed.
    pub version: String,
}

/// Reads the marker; `None` when there is none. An unreadable or corrupt marker is an error
/// the caller logs: it only ever costs a report, never a payment, so it does not stop the agent.
pub fn read_marker(path: &Path) -> Result<Option<InstallMarker>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is corrupt: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the marker atomically (like the journal), off the async threads.
pub async fn write_marker(path: &Path, marker: &InstallMarker) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(marker).map_err(io::Error::other)?;
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Removes the marker; a marker already gone is fine.
pub async fn remove_marker(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Why an update was not installed: the `reason` of its `failed` step, prefixed with what
/// failed (`download: ...`, `checksum: ...`, `signature: ...`, `install: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateFailure {
    /// The offer itself cannot be followed (its window's end does not parse).
    #[error("offer: {0}")]
    Offer(String),
    #[error("download: {0}")]
    Download(#[from] DownloadError),
    /// The file is not the one the artifact names.
    #[error("checksum: {0}")]
    Checksum(BadArtifact),
    /// No release key this device trusts signed the artifact (or not this version of it).
    #[error("signature: {0}")]
    Signature(BadArtifact),
    #[error("install: {0}")]
    Install(String),
}

impl From<BadArtifact> for UpdateFailure {
    fn from(e: BadArtifact) -> Self {
        match e {
            BadArtifact::Checksum { .. } => UpdateFailure::Checksum(e),
            other => UpdateFailure::Signature(other),
        }
    }
}

/// Downloads the artifact and verifies its checksum and signature against `trusted`; only a
/// file that passes both is returned. Hashing a large file takes a while, so it runs on a
/// blocking thread.
pub async fn fetch_verified(
    client: &reqwest::Client,
    source: &Source,
    artifact: Artifact,
    trusted: Vec<ReleaseKey>,
) -> Result<Vec<u8>, UpdateFailure> {
    let file = download(client, source, artifact.size).await?;
    tokio::task::spawn_blocking(move || {
        artifact.check_file(&file, &trusted)?;
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| {
        Err(UpdateFailure::Install(format!(
            "the check did not finish: {e}"
        )))
    })
}

/// Why an artifact could not be downloaded (reported as `failed` with `download: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error("'{url}' is not an http(s) URL nor a path of the cloud's")]
    BadUrl { url: String },
    #[error("the artifact is {size} bytes, more than this agent takes ({MAX_ARTIFACT_BYTES})")]
    OverLimit { size: u64 },
    #[error("{url}: {detail}")]
    Request { url: String, detail: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sends more than the artifact's {size} bytes")]
    TooLarge { url: String, size: u64 },
    #[error("{url} sent {got} bytes, not the artifact's {size}")]
    Truncated { url: String, got: u64, size: u64 },
}

/// Where to download an artifact from, and with which credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    pub url: Url,
    /// HTTP Basic `device_id:secret`, only to the cloud this agent is connected to: a file on
    /// another server (a CDN) never sees the device's secret.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("url", &self.url.as_str())
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// Resolves an artifact's `url` for the cloud this agent is connected to at `device_url` (its
/// `ws(s)://host[/prefix]/device/v1`): an absolute `http(s)://` URL as it is, a path (`/...`)
/// on the cloud's own `http(s)://host[/prefix]`.
pub fn source(
    artifact_url: &str,
    device_url: &Url,
    device_id: &DeviceId,
    secret: &str,
) -> Result<Source, DownloadError> {
    let bad = || DownloadError::BadUrl {
        url: artifact_url.to_string(),
    };
    let cloud = cloud_base(device_url).ok_or_else(bad)?;
    let url = if artifact_url.starts_with('/') && !artifact_url.starts_with("//") {
        let prefix = cloud.as_str().trim_end_matches('/');
        Url::parse(&format!("{prefix}{artifact_url}")).map_err(|_| bad())?
    } else {
        let url = Url::parse(artifact_url).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad());
        }
        url
    };
    let credentials =
        (url.origin() == cloud.origin()).then(|| (device_id.to_string(), secret.to_string()));
    Ok(Source { url, credentials })
}

/// The cloud's HTTP base from its device endpoint: `wss://h/eft/device/v1` → `https://h/eft`.
fn cloud_base(device_url: &Url) -> Option<Url> {
    let scheme = match device_url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    let path = device_url.path().trim_end_matches('/');
    let prefix = path.strip_suffix(protocol::device::PATH).unwrap_or(path);
    let host = device_url.host_str()?;
    let port = device_url
        .port()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    // An IPv6 host comes back from `host_str` in brackets already.
    Url::parse(&format!("{scheme}://{host}{port}{prefix}")).ok()
}

/// Downloads `size` bytes from `source`: refuses a file larger than `size` (or than
/// [`MAX_ARTIFACT_BYTES`]) as soon as it shows, and one that ends short.
pub async fn download(
    client: &reqwest::Client,
    source: &Source,
    size: u64,
) -> Result<Vec<u8>, DownloadError> {
    if size > MAX_ARTIFACT_BYTES {
        return Err(DownloadError::OverLimit { size });
    }
    let url = source.url.to_string();
    let request_error = |e: reqwest::Error| DownloadError::Request {
        url: url.clone(),
        detail: error_chain(&e),
    };
    let mut request = client.get(source.url.clone());
    if let Some((user, password)) = &source.credentials {
        request = request.basic_auth(user, Some(password));
    }
    let mut response = request.send().await.map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(DownloadError::Status {
            url,
            status: status.as_u16(),
        });
    }
    let too_large = || DownloadError::TooLarge {
        url: url.clone(),
        size,
    };
    if response.content_length().is_some_and(|n| n > size) {
        return Err(too_large());
    }
    // Bounded by `size`, itself bounded above; the capacity is only a hint.
    let mut file = Vec::with_capacity(usize::try_from(size.min(16 << 20)).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if file.len() as u64 + chunk.len() as u64 > size {
            return Err(too_large());
        }
        file.extend_from_slice(&chunk);
    }
    if (file.len() as u64) < size {
        return Err(DownloadError::Truncated {
            url,
            got: file.len() as u64,
            size,
        });
    }
    Ok(file)
}

/// reqwest's own message says only "error sending request"; the cause is in its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Writes `file` over the executable at `exe`: into a temporary file in the same directory
/// (a rename is atomic only within one file system), synced, mode 0755, renamed over `exe`,
/// and the directory synced so that the rename survives a power cut. The running process is
/// unaffected: it keeps the old file open until it executes the new one.
#[cfg(unix)]
pub fn replace_executable(exe: &Path, file: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match exe.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = exe
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp: PathBuf = dir.join(format!(".{}.update.tmp", name.to_string_lossy()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        f.write_all(file)?;
        // The umask may have narrowed the mode at creation.
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, exe)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Executes `exe` in place of this process with this process's arguments and environment:
/// the same journal, settings and flags, the same process id. Returns only on failure.
#[cfg(unix)]
pub fn exec(exe: &Path) -> io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(artifact: &str, device: &str) -> Result<(String, bool), DownloadError> {
        let device = Url::parse(device).unwrap_or_else(|_| unreachable!());
        let id = DeviceId::parse("dev-1").unwrap_or_else(|_| unreachable!());
        source(artifact, &device, &id, "s").map(|s| (s.url.to_string(), s.credentials.is_some()))
    }

    #[test]
    fn a_path_is_the_clouds_and_gets_the_credentials() {
        assert_eq!(
            at("/device/v1/artifacts/a1", "ws://127.0.0.1:8080/device/v1"),
            Ok(("http://127.0.0.1:8080/device/v1/artifacts/a1".into(), true))
        );
        assert_eq!(
            at(
                "/device/v1/artifacts/a1",
                "wss://eft.example.com/eft/device/v1"
            ),
            Ok((
                "https://eft.example.com/eft/device/v1/artifacts/a1".into(),
                true
            ))
        );
        // The cloud's own absolute URL is the cloud's too.
        assert_eq!(
            at(
                "https://eft.example.com/x",
                "wss://eft.example.com/device/v1"
            ),
            Ok(("https://eft.example.com/x".into(), true))
        );
        // Another server never sees the secret; nor does the cloud's host on another port.
        assert_eq!(
            at(
                "https://cdn.example.com/agent",
                "wss://eft.example.com/device/v1"
            ),
            Ok(("https://cdn.example.com/agent".into(), false))
        );
        assert_eq!(
            at(
                "http://eft.example.com:81/a",
                "ws://eft.example.com/device/v1"
            ),
            Ok(("http://eft.example.com:81/a".into(), false))
        );
        for bad in [
            "ftp://h/a",
            "agent.bin",
            "//cdn.example.com/a",
            "file:///bin/sh",
            "",
        ] {
            assert!(
                matches!(
                    at(bad, "ws://h/device/v1"),
                    Err(DownloadError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_marker_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let path = dir.path().join("dev.update.json");
        assert_eq!(read_marker(&path), Ok(None));
        let marker = InstallMarker {
            campaign_id: "c1".into(),
            version: "2.0.0".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|_| unreachable!());
        rt.block_on(async {
            assert!(write_marker(&path, &marker).await.is_ok());
            assert_eq!(read_marker(&path), Ok(Some(marker.clone())));
            assert!(remove_marker(&path).await.is_ok());
            assert!(remove_marker(&path).await.is_ok(), "gone already is fine");
        });
        assert_eq!(read_marker(&path), Ok(None));
        std::fs::write(&path, b"{").unwrap_or_else(|_| unreachable!());
        assert!(read_marker(&path).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn an_executable_is_replaced_whole_and_stays_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let exe = dir.path().join("agent");
        std::fs::write(&exe, b"old").unwrap_or_else(|_| unreachable!());
        assert!(replace_executable(&exe, b"new version").is_ok());
        assert_eq!(
            std::fs::read(&exe).ok().as_deref(),
            Some(&b"new version"[..])
        );
        let mode = std::fs::metadata(&exe)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o755);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap_or_else(|_| unreachable!())
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("agent")]);
        // A directory that is not there: an error, nothing panics.
        assert!(replace_executable(&dir.path().join("nope/agent"), b"x").is_err());
    }
}
