//! TLS for the listeners: a certificate and key from PEM files, or a self-signed certificate
//! generated for development. rustls with the ring provider, HTTP/1.1 only (see `ALPN`).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Offered protocols: HTTP/1.1 only, so every connection gets the header read timeout (hyper
/// has none for HTTP/2) and WebSocket upgrades work the one way every device client knows.
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// File names of the development certificate inside its directory.
pub const DEV_CERT_FILE: &str = "dev-cert.pem";
const DEV_KEY_FILE: &str = "dev-key.pem";
/// The names the development certificate was made for, one a line: a change regenerates it.
const DEV_HOSTS_FILE: &str = "dev-cert.hosts";

/// Where the listeners' certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// A certificate chain and its private key, both PEM (e.g. from Let's Encrypt).
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for `hosts` (names or IP addresses), kept in `dir` and reused
    /// while the hosts stay the same, so terminals that trust it keep trusting it.
    SelfSigned { dir: PathBuf, hosts: Vec<String> },
}

/// A certificate that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read TLS private key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("TLS certificate and key cannot be used together: {0}")]
    Mismatch(String),
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The server configuration of `source`, and the certificate file clients should trust when it
/// is a generated one.
pub fn server_config(source: &TlsSource) -> Result<(Arc<ServerConfig>, Option<PathBuf>), TlsError> {
    match source {
        TlsSource::Files { cert, key } => Ok((load(cert, key)?, None)),
        TlsSource::SelfSigned { dir, hosts } => {
            let cert = self_signed(dir, hosts)?;
            Ok((load(&cert, &dir.join(DEV_KEY_FILE))?, Some(cert)))
        }
    }
}

/// Reads a PEM certificate chain and private key and checks that they belong together.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert_path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| cert_err(pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(pem_reason(e)))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.to_path_buf(),
        reason: pem_reason(e),
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Mismatch(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM block of the expected kind in the file".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// Makes (or reuses) the development certificate in `dir`; returns the certificate's path.
fn self_signed(dir: &Path, hosts: &[String]) -> Result<PathBuf, TlsError> {
    let cert_path = dir.join(DEV_CERT_FILE);
    let key_path = dir.join(DEV_KEY_FILE);
    let hosts_path = dir.join(DEV_HOSTS_FILE);
    let wanted = hosts.join("\n");
    let same_hosts = std::fs::read_to_string(&hosts_path).is_ok_and(|h| h == wanted);
    if same_hosts && cert_path.is_file() && key_path.is_file() {
        return Ok(cert_path);
    }
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(hosts.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write(&key_path, &key_pair.serialize_pem())?;
    restrict(&key_path)?;
    write(&cert_path, &cert.pem())?;
    write(&hosts_path, &wanted)?;
    tracing::info!(cert = %cert_path.display(), hosts = %hosts.join(","), "generated a self-signed TLS certificate");
    Ok(cert_path)
}

/// The private key is readable by its owner only.
fn restrict(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| TlsError::Write {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_while_the_hosts_stay_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let source = TlsSource::SelfSigned {
            dir: dir.path().into(),
            hosts: hosts.clone(),
        };
        let (_, cert) = server_config(&source).unwrap();
        let cert = cert.unwrap();
        let first = std::fs::read_to_string(&cert).unwrap();
        server_config(&source).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), first);
        let other = TlsSource::SelfSigned {
            dir: dir.path().into(),
            hosts: vec!["localhost".to_string()],
        };
        server_config(&other).unwrap();
        assert_ne!(std::fs::read_to_string(&cert).unwrap(), first);
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("cert.pem"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = load(&missing, &key).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
