//! How the terminal checks the cloud's certificate: the public web roots, plus a CA of the
//! operator's own (`--ca-cert`, e.g. the certificate of a development cloud).

use crate::error::TerminalError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// The TLS client configuration for `wss://` clouds; fails when `ca_cert` cannot be read or
/// holds no usable certificate.
pub fn client_config(ca_cert: Option<&Path>) -> Result<Arc<ClientConfig>, TerminalError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        let bad = |reason: String| TerminalError::CaCert {
            path: path.to_path_buf(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| match e {
                rustls::pki_types::pem::Error::Io(e) => bad(e.to_string()),
                other => bad(format!("not valid PEM ({other:?})")),
            })?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not valid PEM ({e:?})")))?;
        if certs.is_empty() {
            return Err(bad("no CERTIFICATE block in the file".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate ({e})")))?;
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TerminalError::InvalidArgument(format!("TLS set-up: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
