//! Outcome vocabulary: `TransactionResult`, `Result` and the terminal's `Status`.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as the POS API writes it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses the wire spelling exactly.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// `data.TransactionResult`: what happened to the money.
    TransactionResult {
        /// Approved.
        Accepted => "OK-ACCEPTED",
        /// Declined by the issuer or acquirer; the function itself ran fine.
        Declined => "OK-DECLINED",
        /// The function is not available on this device.
        Unavailable => "OK-UNAVAILABLE",
        /// Still running and late (only while `PENDING`).
        Delayed => "OK-DELAYED",
        /// Cancelled on the device, or the device could not be reached.
        Cancelled => "CANCELLED",
        /// Failed.
        Failed => "FAILED",
        /// The interface to the device failed.
        FailedInterface => "FAILED-INTERFACE",
    }
}

wire_enum! {
    /// `data.Result`: whether the function itself ran.
    ResultCode {
        Ok => "OK",
        Cancelled => "CANCELLED",
        DelayedTransaction => "DELAYED-TRANSACTION",
        Failed => "FAILED",
        FailedInterface => "FAILED-INTERFACE",
    }
}

wire_enum! {
    /// `data.Status` of `Terminal.GetStatus`.
    TerminalStatus {
        Ready => "READY",
        Busy => "BUSY",
        NotInitialized => "NOT_INITIALIZED",
        NotLoggedOn => "NOT_LOGGED_ON",
        ReversalPending => "REVERSAL_PENDING",
        Offline => "OFFLINE",
    }
}

impl TransactionResult {
    /// Whether this outcome means the money moved (or the pre-authorisation holds).
    pub fn is_accepted(self) -> bool {
        self == TransactionResult::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for v in TransactionResult::ALL {
            assert_eq!(TransactionResult::parse(v.as_str()), Some(*v));
            let json = serde_json::to_string(v).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", v.as_str()));
        }
        for v in ResultCode::ALL {
            assert_eq!(ResultCode::parse(v.as_str()), Some(*v));
        }
        for v in TerminalStatus::ALL {
            assert_eq!(TerminalStatus::parse(v.as_str()), Some(*v));
        }
        assert_eq!(ResultCode::parse("ok"), None);
    }
}
