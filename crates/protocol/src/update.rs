//! Software updates: an artifact signed by the operator's release key, offered to a device that
//! declares `update` in an `update` frame, and the steps the device reports back.
//!
//! The signature is Ed25519 over [`signed_message`]: the artifact's version and SHA-256 bound
//! together, so an old artifact cannot be relabelled as a new one, nor a new file slipped under
//! a signed version. A device trusts only the public keys it was provisioned with (never keys
//! the cloud sends), so a cloud that is compromised cannot make it run code the operator did not
//! sign: it verifies the checksum and the signature before installing, and refuses either
//! mismatch.

use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest artifact version, in characters.
pub const MAX_VERSION_LEN: usize = 64;

/// What a device is asked to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The version it installs (what the agent reports as `agent_version` afterwards).
    pub version: String,
    /// Where to download it: an `https://` (or `http://`) URL, or a path of the cloud's own
    /// (`/device/v1/artifacts/{id}`, downloaded with the device's credentials).
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// Lower-case hex Ed25519 signature of [`signed_message`] by the release key `key_id`.
    pub signature: String,
    /// The release key's id ([`key_id`]).
    pub key_id: String,
}

/// The `update` frame's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOffer {
    /// The campaign it belongs to; every `update_status` names it.
    pub campaign_id: String,
    pub artifact: Artifact,
    /// The end of the maintenance window (UTC, RFC 3339): install only before then, and only
    /// when idle; past it, report `postponed` and the cloud offers it again in the next window.
    pub install_before: String,
}

/// A step of an update on the device (`update_status.step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStep {
    Downloading,
    /// Checksum and signature verified.
    Verified,
    Installing,
    /// Running the new version.
    Installed,
    /// Not installed, with a `reason` (`checksum`, `signature`, `download`, `install`, ...).
    Failed,
    /// Not installed yet: the window closed before the device was idle. Offered again later.
    Postponed,
}

impl UpdateStep {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStep::Downloading => "downloading",
            UpdateStep::Verified => "verified",
            UpdateStep::Installing => "installing",
            UpdateStep::Installed => "installed",
            UpdateStep::Failed => "failed",
            UpdateStep::Postponed => "postponed",
        }
    }

    /// Whether the update is over on the device (installed or failed).
    pub fn is_final(self) -> bool {
        matches!(self, UpdateStep::Installed | UpdateStep::Failed)
    }
}

/// Why an artifact is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadArtifact {
    #[error("the file's SHA-256 is {actual}, not the {expected} the artifact names")]
    Checksum { expected: String, actual: String },
    #[error("the signature does not verify with release key {0}")]
    Signature(String),
    #[error("release key {0} is not one this device trusts")]
    UntrustedKey(String),
    #[error("'{0}' is not a lower-case hex {1}")]
    Hex(String, &'static str),
    #[error("a version is 1 to {MAX_VERSION_LEN} printable characters without spaces")]
    Version,
    #[error("'{0}' is not an Ed25519 release key (64 hex digits)")]
    PublicKey(String),
    #[error("not an Ed25519 private key in PKCS#8 form")]
    PrivateKey,
}

/// The bytes a release key signs for an artifact.
pub fn signed_message(version: &str, sha256: &str) -> Vec<u8> {
    format!("eftcloud-artifact-v1\n{version}\n{sha256}").into_bytes()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Checks a version's form.
pub fn check_version(version: &str) -> Result<(), BadArtifact> {
    if version.is_empty()
        || version.chars().count() > MAX_VERSION_LEN
        || !version.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(BadArtifact::Version);
    }
    Ok(())
}

/// An operator's release key, as devices and the cloud trust it: the public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseKey {
    public: Vec<u8>,
}

impl ReleaseKey {
    /// Parses 64 hex digits.
    pub fn parse(hex_key: &str) -> Result<Self, BadArtifact> {
        let hex_key = hex_key.trim();
        let bytes = unhex(hex_key)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| BadArtifact::PublicKey(hex_key.to_string()))?;
        Ok(Self { public: bytes })
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.public)
    }

    /// Its id: the first 16 hex digits of the SHA-256 of the public key.
    pub fn id(&self) -> String {
        key_id(&self.public)
    }

    /// Whether `signature` (hex) signs `message` with this key.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Some(sig) = unhex(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::ED25519, &self.public)
            .verify(message, &sig)
            .is_ok()
    }
}

/// A key's id from its public bytes.
pub fn key_id(public: &[u8]) -> String {
    sha256_hex(public)[..16].to_string()
}

/// The private half, to sign artifacts (`eftcloud release-key sign`), kept in PKCS#8.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new key, as PKCS#8 bytes (to store) and the key itself.
    pub fn generate() -> Result<(Vec<u8>, Self), BadArtifact> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| BadArtifact::PrivateKey)?;
        let key = Self::from_pkcs8(pkcs8.as_ref())?;
        Ok((pkcs8.as_ref().to_vec(), key))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, BadArtifact> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(|pair| Self { pair })
            .map_err(|_| BadArtifact::PrivateKey)
    }

    pub fn public(&self) -> ReleaseKey {
        ReleaseKey {
            public: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// The artifact fields for `file` at `version`: checksum, signature, key id.
    pub fn sign(&self, version: &str, file: &[u8]) -> Result<Signed, BadArtifact> {
        check_version(version)?;
        let sha256 = sha256_hex(file);
        let signature = hex(self.pair.sign(&signed_message(version, &sha256)).as_ref());
        Ok(Signed {
            sha256,
            signature,
            key_id: self.public().id(),
        })
    }
}

/// What signing an artifact produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub sha256: String,
    pub signature: String,
    pub key_id: String,
}

impl Artifact {
    /// Checks the artifact's signature with the key of its `key_id` among `trusted`.
    pub fn check_signature(&self, trusted: &[ReleaseKey]) -> Result<(), BadArtifact> {
        check_version(&self.version)?;
        if unhex(&self.sha256).is_none_or(|b| b.len() != 32) {
            return Err(BadArtifact::Hex(self.sha256.clone(), "SHA-256"));
        }
        let key = trusted
            .iter()
            .find(|k| k.id() == self.key_id)
            .ok_or_else(|| BadArtifact::UntrustedKey(self.key_id.clone()))?;
        if !key.verifies(
            &signed_message(&self.version, &self.sha256),
            &self.signature,
        ) {
            return Err(BadArtifact::Signature(self.key_id.clone()));
        }
        Ok(())
    }

    /// Checks a downloaded file: its checksum, then the signature.
    pub fn check_file(&self, file: &[u8], trusted: &[ReleaseKey]) -> Result<(), BadArtifact> {
        let actual = sha256_hex(file);
        if actual != self.sha256 {
            return Err(BadArtifact::Checksum {
                expected: self.sha256.clone(),
                actual,
            });
        }
        self.check_signature(trusted)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &SigningKey, version: &str, file: &[u8]) -> Artifact {
        let s = key.sign(version, file).unwrap_or_else(|_| unreachable!());
        Artifact {
            version: version.into(),
            url: "https://example.com/agent".into(),
            size: file.len() as u64,
            sha256: s.sha256,
            signature: s.signature,
            key_id: s.key_id,
        }
    }

    #[test]
    fn a_signed_file_verifies_and_any_change_is_refused() {
        let (pkcs8, key) = SigningKey::generate().unwrap_or_else(|_| unreachable!());
        let again = SigningKey::from_pkcs8(&pkcs8).unwrap_or_else(|_| unreachable!());
        assert_eq!(again.public(), key.public());
        let trusted =
            vec![ReleaseKey::parse(&key.public().to_hex()).unwrap_or_else(|_| unreachable!())];
        let file = b"agent 1.1.0".to_vec();
        let a = signed(&key, "1.1.0", &file);
        assert_eq!(a.check_file(&file, &trusted), Ok(()));

        // Another file under the same artifact: the checksum.
        assert!(matches!(
            a.check_file(b"evil", &trusted),
            Err(BadArtifact::Checksum { .. })
        ));
        // The same file relabelled as another version: the signature.
        let relabelled = Artifact {
            version: "9.9.9".into(),
            ..a.clone()
        };
        assert_eq!(
            relabelled.check_file(&file, &trusted),
            Err(BadArtifact::Signature(a.key_id.clone()))
        );
        // A signature of another key under this key's id, or a key the device does not trust.
        let (_, other) = SigningKey::generate().unwrap_or_else(|_| unreachable!());
        let by_other = Artifact {
            key_id: a.key_id.clone(),
            ..signed(&other, "1.1.0", &file)
        };
        assert!(matches!(
            by_other.check_file(&file, &trusted),
            Err(BadArtifact::Signature(_))
        ));
        let untrusted = signed(&other, "1.1.0", &file);
        assert!(matches!(
            untrusted.check_file(&file, &trusted),
            Err(BadArtifact::UntrustedKey(_))
        ));
        // Garbage is refused, never a panic.
        let garbage = Artifact {
            signature: "zz".into(),
            ..a.clone()
        };
        assert!(garbage.check_file(&file, &trusted).is_err());
        let odd = Artifact {
            sha256: "abc".into(),
            ..a.clone()
        };
        assert!(odd.check_signature(&trusted).is_err());
    }

    #[test]
    fn keys_and_versions_parse_strictly() {
        assert!(ReleaseKey::parse("00").is_err());
        assert!(ReleaseKey::parse(&"G".repeat(64)).is_err());
        assert!(ReleaseKey::parse(&"0".repeat(64)).is_ok());
        assert_eq!(
            ReleaseKey::parse(&"0".repeat(64))
                .map(|k| k.id().len())
                .ok(),
            Some(16)
        );
        assert_eq!(check_version("1.2.3-rc.1"), Ok(()));
        assert_eq!(check_version(&"9".repeat(MAX_VERSION_LEN)), Ok(()));
        for bad in ["", "1 2", &"9".repeat(65), "1.0\n"] {
            assert_eq!(check_version(bad), Err(BadArtifact::Version), "{bad:?}");
        }
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn frames_are_snake_case() {
        for step in [
            UpdateStep::Downloading,
            UpdateStep::Verified,
            UpdateStep::Installing,
            UpdateStep::Installed,
            UpdateStep::Failed,
            UpdateStep::Postponed,
        ] {
            let v = serde_json::to_value(step).unwrap_or_default();
            assert_eq!(v, step.as_str());
        }
        assert_eq!(UpdateStep::Postponed.as_str(), "postponed");
        assert!(UpdateStep::Installed.is_final() && !UpdateStep::Verified.is_final());
    }
}
