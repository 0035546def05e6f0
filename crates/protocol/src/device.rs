//! The device protocol (v1): JSON text frames over a WebSocket at `/device/v1`, each with a
//! `type`. Everything is keyed by ids, so every message may be repeated safely and both sides
//! answer duplicates idempotently. `docs/device-protocol.md` is the prose version of this file.

use crate::action::{Display, Receipts};
use crate::function::Function;
use crate::ids::{DeviceId, TransactionId};
use crate::outcome::{ResultCode, TerminalStatus, TransactionResult};
use crate::pairing::PairingCode;
use crate::register::{RegisterInfo, RegisterKey};
use crate::request::TransactionRequest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The path of the device endpoint.
pub const PATH: &str = "/device/v1";

/// The protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest text frame either side accepts; a larger one closes the connection.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// WebSocket close codes used by the cloud (4000-4999 is the application range).
pub mod close {
    /// Normal closure (the device asked to leave, or the cloud is shutting down: 1001).
    pub const GOING_AWAY: u16 = 1001;
    /// The cloud cannot serve the device now (its storage is unavailable): reconnect with the
    /// usual backoff (1013, the WebSocket standard's "try again later").
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The first frame was not a valid `hello`, or it did not arrive in time.
    pub const HELLO_REQUIRED: u16 = 4000;
    /// Unknown device id or wrong secret.
    pub const AUTH_FAILED: u16 = 4001;
    /// A frame could not be parsed or broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 4002;
    /// A newer connection for the same device id took over.
    pub const REPLACED: u16 = 4003;
    /// No frame from the device within the heartbeat deadline.
    pub const HEARTBEAT_TIMEOUT: u16 = 4004;
    /// The device spoke a protocol version the cloud does not know.
    pub const UNSUPPORTED_VERSION: u16 = 4005;
    /// A frame was larger than `MAX_FRAME_BYTES`.
    pub const FRAME_TOO_LARGE: u16 = 4009;
    /// Too many refused handshakes from this address: retry after the reason's delay (like
    /// HTTP 429).
    pub const TOO_MANY_ATTEMPTS: u16 = 4029;
}

/// The optional device frames a cloud may accept (`welcome.accepts`).
pub mod accepts {
    /// The `health` frame.
    pub const HEALTH: &str = "health";
}

/// A prompt the device is showing (`progress.prompt`). Free text is in `progress.text`.
pub mod prompt {
    pub const PRESENT_CARD: &str = "present_card";
    pub const SELECT_ACCOUNT: &str = "select_account";
    pub const ENTER_PIN: &str = "enter_pin";
    pub const PROCESSING: &str = "processing";
    pub const SIGNATURE_REQUIRED: &str = "signature_required";
    pub const SCAN_QR: &str = "scan_qr";
    pub const SHOW_QR: &str = "show_qr";
    pub const REMOVE_CARD: &str = "remove_card";
}

/// What a device can do beyond SmartConnect's functions, as it declares in `hello`
/// (`capabilities`). The cloud sends a device nothing it did not declare: a request that needs
/// a capability the device lacks is refused before anything is sent, so a device that predates
/// one never receives a frame it cannot parse.
pub mod capability {
    use crate::function::Function;
    use crate::request::TransactionRequest;

    /// `Card.Refund` with `original`: a refund against an earlier payment.
    pub const REFERENCED_REFUND: &str = "refund.referenced";
    /// `Card.Void`.
    pub const VOID: &str = "void";
    /// `Card.TipAdjust`.
    pub const TIP_ADJUST: &str = "tip_adjust";
    /// `Card.TopUp` of a pre-authorisation.
    pub const TOP_UP: &str = "top_up";
    /// `Card.Release` of a pre-authorisation.
    pub const RELEASE: &str = "release";
    /// Amounts in any ISO 4217 currency (`currency`); without it, only AUD.
    pub const CURRENCY: &str = "currency";
    /// A customer-facing screen that shows a cart (`display` frames, `cart` in offers).
    pub const DISPLAY: &str = "display";
    /// `Terminal.Input` of every kind but a signature (a keypad or a touch screen).
    pub const INPUT: &str = "input";
    /// `Terminal.Input` of a signature (a signature pad or a touch screen).
    pub const SIGNATURE: &str = "signature";
    /// `Terminal.Print` (a printer).
    pub const PRINTER: &str = "printer";
    /// `Terminal.ShowQr` (a screen that can draw a QR code).
    pub const QR_DISPLAY: &str = "qr_display";
    /// `config` frames: the device applies the settings an operator sets and acknowledges
    /// them (`config_ack`).
    pub const CONFIG: &str = "config";
    /// `update` frames: the device downloads, verifies and installs signed software, and
    /// reports each step (`update_status`).
    pub const UPDATE: &str = "update";

    /// Every capability this crate knows, as the reference agent declares them.
    pub const ALL: [&str; 13] = [
        REFERENCED_REFUND,
        VOID,
        TIP_ADJUST,
        TOP_UP,
        RELEASE,
        CURRENCY,
        DISPLAY,
        INPUT,
        SIGNATURE,
        PRINTER,
        QR_DISPLAY,
        CONFIG,
        UPDATE,
    ];

    /// The capabilities a request needs of the device that runs it.
    pub fn needed_by(request: &TransactionRequest) -> Vec<&'static str> {
        let mut out = Vec::new();
        match request.function {
            Function::CardRefund if request.original.is_some() => out.push(REFERENCED_REFUND),
            Function::CardVoid => out.push(VOID),
            Function::CardTipAdjust => out.push(TIP_ADJUST),
            Function::CardTopUp => out.push(TOP_UP),
            Function::CardRelease => out.push(RELEASE),
            Function::TerminalInput => match &request.input {
                Some(i) if i.kind == crate::action::InputKind::Signature => out.push(SIGNATURE),
                _ => out.push(INPUT),
            },
            Function::TerminalPrint => out.push(PRINTER),
            Function::TerminalShowQr => out.push(QR_DISPLAY),
            _ => {}
        }
        if request.currency() != crate::currency::Currency::AUD {
            out.push(CURRENCY);
        }
        out
    }
}

/// A frame sent by the device to the cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceMessage {
    /// First frame: authenticates, and hands over the results the cloud has not acknowledged.
    Hello(Hello),
    /// Asks for a new pairing code (the previous one stops working).
    PairingCodeRequest,
    /// Unpairs one register, or every register when `register` is absent.
    Unpair {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        register: Option<RegisterKey>,
    },
    /// The device is ready to run the offered transaction; wait for `start` or `abort`.
    Accept { transaction_id: TransactionId },
    /// A prompt is on screen (present card, PIN, signature, ...).
    Progress {
        transaction_id: TransactionId,
        prompt: String,
        #[serde(default)]
        text: String,
    },
    /// The outcome, journaled on the device before it is sent; repeated until `result_ack`.
    Result(DeviceResult),
    /// The device's own state, sent when it changes.
    Status { status: TerminalStatus },
    /// Its health (software, battery, network, paper, storage, uptime): on connect and every
    /// few minutes, only to a cloud whose `welcome` lists `health` in `accepts`.
    Health(crate::health::Health),
    /// The settings of this `config` version are applied (sent after the transaction in
    /// progress, if any, is over).
    ConfigAck { version: u64 },
    /// A step of a software update (`update` frame): downloading, verified, installing,
    /// installed, failed with a reason, or postponed to the next window.
    UpdateStatus {
        campaign_id: String,
        /// The artifact's version.
        version: String,
        step: crate::update::UpdateStep,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Answer to `ping`.
    Pong { nonce: u64 },
}

/// The `hello` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub device_id: DeviceId,
    pub secret: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub agent_version: String,
    /// Results journaled on the device that the cloud has not acknowledged yet.
    #[serde(default)]
    pub unacknowledged: Vec<DeviceResult>,
    /// The transaction the device is running right now, if any (started, no result yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<TransactionId>,
    /// What it can do beyond SmartConnect's functions ([`capability`]); unknown names are
    /// kept and ignored, so a newer device works with an older cloud.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Its screen and printer, for the operator and for a POS that lays out a slip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    /// For a device that declares `config`: the version of the settings it runs (none: it
    /// never applied any, or lost them). The cloud sends its settings again when this is not
    /// the version it computed, so a device whose storage was wiped is not left on defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<u64>,
}

/// A device's screen and printer, as it declares them in `hello`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// The customer-facing screen, in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
    /// Characters a printed line holds in normal size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_columns: Option<u16>,
}

/// A screen's size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
}

/// A transaction's outcome as the device reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceResult {
    pub transaction_id: TransactionId,
    /// Absent for non-financial functions such as `Terminal.GetStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_result: Option<TransactionResult>,
    pub result: ResultCode,
    pub result_text: String,
    /// Further `data` fields, PascalCase as in the POS API: `AuthId`, `AcquirerRef`,
    /// `TerminalRef`, `CardPan`, `CardType`, `AccountType`, `AmountTotal`, `AmountSurcharge`,
    /// `AmountTip`, `Timestamp`, `Receipt`, `Status`, `ReferenceId`, ... The cloud never lets
    /// these override the fields it owns (register identity, ids, function).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The merchant's and customer's copies as structured data, beside the fixed-width
    /// `Receipt` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<Receipts>,
    /// A settlement's batch (`Acquirer.Settlement.Cutover`, `.Inquiry`) in structured form,
    /// for the cloud's reconciliation; absent for everything else and from older devices.
    /// Boxed: every other result carries none, and a result is moved whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Box<crate::settlement::SettlementBatch>>,
}

/// A frame sent by the cloud to the device.
// A frame lives only from its building to its serialising (or, on the device, from parsing to
// handling): boxing the offer would cost an allocation per offer to save stack that is never
// held in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CloudMessage {
    /// Authentication succeeded.
    Welcome {
        device_id: DeviceId,
        registers: Vec<RegisterInfo>,
        /// The cloud pings this often; a device that hears nothing for three intervals
        /// should reconnect.
        heartbeat_ms: u64,
        /// The optional device frames this cloud understands (`health`): a device sends
        /// none that is not listed, so a newer device works with an older cloud.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        accepts: Vec<String>,
    },
    /// A new pairing code to show (previous codes no longer work).
    PairingCode {
        code: PairingCode,
        /// Milliseconds until it expires; the device asks for a new one before then.
        expires_in_ms: u64,
    },
    /// A register completed pairing with this device.
    Paired { register: RegisterInfo },
    /// Registers that are no longer paired with this device (after `unpair`, or because the
    /// register paired with another device or an operator removed it).
    Unpaired { registers: Vec<RegisterKey> },
    /// A transaction to run. Answer `accept` to run it; nothing may touch a card before `start`.
    Transaction(TransactionOffer),
    /// Go ahead with an accepted transaction.
    Start { transaction_id: TransactionId },
    /// Do not run this transaction (it was not accepted in time, or was cancelled first).
    Abort {
        transaction_id: TransactionId,
        reason: String,
    },
    /// The POS asked to cancel; stop if the card has not been charged yet.
    Cancel { transaction_id: TransactionId },
    /// The result is stored; the device may drop it from its journal's outbox.
    ResultAck { transaction_id: TransactionId },
    /// Heartbeat; answer `pong` with the same nonce.
    Ping { nonce: u64 },
    /// What the customer's screen shows between payments (a cart, or nothing), for a device
    /// that declares `display`. Never an interruption: a device that runs a payment keeps it
    /// for when the payment is over (or shows it beside the payment).
    Display(Display),
    /// The device's effective settings, for a device that declares `config`: sent on connect
    /// when the device has not acknowledged this version, and when an operator changes them,
    /// never while the device runs a transaction. Apply between transactions and answer
    /// `config_ack`.
    Config(crate::config::DeviceConfig),
    /// Install this signed software, for a device that declares `update`: download it, verify
    /// its checksum and signature with a release key the device trusts, install it only when
    /// idle and before `install_before`, and report each step (`update_status`).
    Update(crate::update::UpdateOffer),
    /// A frame was refused without closing the connection.
    Error { message: String },
}

/// The `transaction` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionOffer {
    pub transaction_id: TransactionId,
    pub register: RegisterInfo,
    #[serde(flatten)]
    pub request: TransactionRequest,
    /// `RequestTimestamp`, UTC `yyyyMMddHHmmss`.
    pub request_timestamp: String,
}

impl TransactionOffer {
    /// The function to run.
    pub fn function(&self) -> Function {
        self.request.function
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Cents;

    #[test]
    fn frames_are_tagged_snake_case() {
        let id = TransactionId::new();
        let m = DeviceMessage::Accept { transaction_id: id };
        let s = serde_json::to_string(&m).unwrap_or_default();
        assert_eq!(s, format!(r#"{{"type":"accept","transaction_id":"{id}"}}"#));
        let back: DeviceMessage =
            serde_json::from_str(&s).unwrap_or(DeviceMessage::PairingCodeRequest);
        assert_eq!(back, m);
        let p: Result<DeviceMessage, _> =
            serde_json::from_str(r#"{"type":"pairing_code_request"}"#);
        assert_eq!(p.ok(), Some(DeviceMessage::PairingCodeRequest));
    }

    #[test]
    fn offer_flattens_request() {
        let offer = CloudMessage::Transaction(TransactionOffer {
            transaction_id: TransactionId::new(),
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: "r".into(),
                    business_name: "b".into(),
                    vendor_name: "v".into(),
                },
                register_name: "Main".into(),
            },
            request: TransactionRequest {
                amount_total: Cents::new(500).ok(),
                ..TransactionRequest::of(Function::CardPurchase)
            },
            request_timestamp: "20240101000000".into(),
        });
        let v: serde_json::Value = serde_json::to_value(&offer).unwrap_or_default();
        assert_eq!(v["type"], "transaction");
        assert_eq!(v["function"], "Card.Purchase");
        assert_eq!(v["amount_total"], 500);
        assert_eq!(v["register"]["register_id"], "r");
        let back: Result<CloudMessage, _> = serde_json::from_value(v);
        assert_eq!(back.ok(), Some(offer));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        for s in [
            "",
            "{}",
            r#"{"type":"accept"}"#,
            r#"{"type":"accept","transaction_id":"nope"}"#,
            r#"{"type":"launch_missiles"}"#,
            r#"{"type":"result","transaction_id":"00000000-0000-0000-0000-000000000000","result":"MAYBE","result_text":""}"#,
        ] {
            assert!(serde_json::from_str::<DeviceMessage>(s).is_err(), "{s}");
        }
    }
}
