//! The terminal agent's typed errors: what stops it, each with a message an operator can act on.

use std::path::PathBuf;

/// Why the terminal agent (or its command line) could not run.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// The cloud address cannot be turned into a WebSocket URL.
    #[error("invalid cloud URL '{url}': {reason}")]
    BadCloudUrl { url: String, reason: String },
    /// The CA certificate to trust cannot be used.
    #[error("CA certificate {}: {reason}", path.display())]
    CaCert { path: PathBuf, reason: String },
    /// A command-line value was refused.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The journal could not be read or written.
    #[error("journal {}: {source}", path.display())]
    JournalIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The journal exists but cannot be understood. It is never discarded, because it may hold
    /// payment results the cloud has not received.
    #[error(
        "journal {} is corrupt ({detail}); it may hold payment results the cloud has not \
         received, so it was left untouched: repair it or move it aside to start afresh",
        path.display()
    )]
    JournalCorrupt { path: PathBuf, detail: String },
    /// The applied settings could not be read or written.
    #[error("settings {}: {source}", path.display())]
    SettingsIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The applied settings exist but cannot be understood. The cloud sends a configuration
    /// again only while it is unacknowledged, so starting on the defaults would silently drop
    /// the merchant's surcharges and receipt text.
    #[error(
        "settings {} are corrupt ({detail}); move the file aside to start with the default \
         settings (the cloud sends its configuration again only when an operator changes it)",
        path.display()
    )]
    SettingsCorrupt { path: PathBuf, detail: String },
}
