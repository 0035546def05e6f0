//! Bodies of the POS API (SmartConnect-compatible): the transaction envelope, its `data` keys,
//! and the error body. With the `openapi` feature the bodies also describe themselves as OpenAPI
//! schemas (the cloud serves them at `/openapi.json`); terminal makers leave the feature off.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `transactionStatus` of the envelope: `PENDING` until the transaction has its final outcome,
/// then `COMPLETED` (and every later poll returns the identical body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum TransactionStatus {
    Pending,
    Completed,
}

/// The body of `POST /Transaction` (async), of every poll, and of the legacy synchronous mode.
/// Envelope keys are camelCase; `data` keys are PascalCase and every value is a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TransactionEnvelope {
    /// The transaction's id (a UUID issued by the cloud); also `data.RequestId` once completed.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "f363c7de-102c-4d80-a902-ed37413ca599", min_length = 1)
    )]
    pub transaction_id: String,
    /// When the cloud received the request: UTC `yyyyMMddHHmmss` followed by four
    /// fractional-second digits.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "201809182353193193", min_length = 1)
    )]
    pub transaction_time_stamp: String,
    /// The merchant the device is enrolled for.
    pub merchant_id: String,
    /// The device running the transaction (also `data.DeviceID`).
    #[cfg_attr(feature = "openapi", schema(example = "7070714000", min_length = 1))]
    pub device_id: String,
    pub transaction_status: TransactionStatus,
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::data_schema))]
    pub data: BTreeMap<String, String>,
    /// The polling token: the credential of the polling URL (also in `data.PollingUrl`). It
    /// expires some time after the POST (15 minutes by default), not after completion.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "a4934205-e3fa-47ea-88c3-6f6422a0af72", min_length = 1)
    )]
    pub merchant_access_token: String,
    /// eftcloud: the merchant's and the customer's receipts as structured data, once the
    /// device reported them (beside the fixed-width `data.Receipt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<crate::action::Receipts>,
}

impl TransactionEnvelope {
    /// A `data` field, if present and not empty.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.data
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether the transaction has completed.
    pub fn is_completed(&self) -> bool {
        self.transaction_status == TransactionStatus::Completed
    }
}

/// Every error body: `{"error": "<human readable message>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, in words meant for the operator or the integrator.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "device is busy", min_length = 1)
    )]
    pub error: String,
}

/// The body of a successful pairing: `{"result": "success"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PairingResponse {
    /// Always `success`.
    #[cfg_attr(feature = "openapi", schema(example = "success", min_length = 1))]
    pub result: String,
}

/// Names of `data` keys, so no part of the code spells them twice.
pub mod keys {
    pub const POS_VENDOR: &str = "PosVendor";
    pub const POS_REGISTER_ID: &str = "PosRegisterID";
    pub const POS_BUSINESS_NAME: &str = "PosBusinessName";
    pub const DEVICE_ID: &str = "DeviceID";
    pub const FUNCTION: &str = "Function";
    pub const POLLING_URL: &str = "PollingUrl";
    pub const MERCHANT: &str = "Merchant";
    pub const COMPANY: &str = "Company";
    pub const REQUEST_ID: &str = "RequestId";
    pub const TRANSACTION_RESULT: &str = "TransactionResult";
    pub const RESULT: &str = "Result";
    pub const RESULT_TEXT: &str = "ResultText";
    pub const AMOUNT_TOTAL: &str = "AmountTotal";
    pub const REQUEST_TIMESTAMP: &str = "RequestTimestamp";
    pub const RESPONSE_TIMESTAMP: &str = "ResponseTimestamp";
    pub const RECEIPT: &str = "Receipt";
    pub const STATUS: &str = "Status";
    /// eftcloud extension: the prompt the device shows while the transaction runs.
    pub const DISPLAY_TEXT: &str = "DisplayText";
    /// eftcloud extension: the POS's own reference for the transaction, when it gave one.
    pub const POS_REFERENCE: &str = "PosReference";
}

/// Error text for a transaction from a register that is not paired (the vendor's wording).
pub const NOT_PAIRED: &str = "This register is not paired to a device, please pair it first.";
/// Error text for an unknown, used or expired pairing code (the vendor's wording).
pub const INVALID_PAIRING_CODE: &str =
    "Invalid Pairing Code. Please make sure you entered the code correctly";
/// Error text when the device already runs a transaction.
pub const DEVICE_BUSY: &str = "device is busy";
/// `ResultText` while a started transaction is late.
pub const DELAYED_TEXT: &str = "Transaction takes longer than usual";

/// The OpenAPI description of `data`: an object of string values, with the documented keys.
#[cfg(feature = "openapi")]
mod openapi {
    use super::keys;
    use crate::{Function, ResultCode, TerminalStatus, TransactionResult};
    use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

    fn text(description: &str) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    }

    fn one_of<'a>(description: &str, values: impl IntoIterator<Item = &'a str>) -> ObjectBuilder {
        text(description).enum_values(Some(values))
    }

    /// `data` keys other than the enumerated ones, with their descriptions.
    const TEXT_KEYS: &[(&str, &str)] = &[
        (keys::POS_VENDOR, "The register's `POSVendorName`."),
        (keys::POS_REGISTER_ID, "The register's `POSRegisterID`."),
        (keys::POS_BUSINESS_NAME, "The register's `POSBusinessName`."),
        (keys::DEVICE_ID, "The device running the transaction."),
        (
            keys::POLLING_URL,
            "Absolute URL to poll for the outcome: \
             `{base}/pos/transaction/{transactionId}?merchantAccessToken={token}`.",
        ),
        (
            keys::REQUEST_TIMESTAMP,
            "When the cloud received the request, UTC `yyyyMMddHHmmss`.",
        ),
        (
            keys::AMOUNT_TOTAL,
            "Cents. The requested amount; once completed, the amount actually charged \
             (surcharge and tip included) when the device reports it.",
        ),
        (
            "AmountCash",
            "Cents, as requested (`Card.PurchasePlusCash`).",
        ),
        ("AmountAuth", "Cents, as requested (`Card.Authorise`)."),
        ("AmountFinal", "Cents, as requested (`Card.Finalise`)."),
        (
            "TransactionReference",
            "As requested (`Card.Authorise`, `Card.Finalise`).",
        ),
        (
            "Date",
            "As requested (`Acquirer.Settlement.Inquiry`), `yyyyMMdd`.",
        ),
        (
            keys::RESULT_TEXT,
            "The outcome in words (e.g. `APPROVED`); empty while pending, \
             `Transaction takes longer than usual` while the device is late.",
        ),
        (keys::MERCHANT, "Completed only: the merchant's name."),
        (
            keys::COMPANY,
            "Completed only: the register's business name.",
        ),
        (keys::REQUEST_ID, "Completed only: equals `transactionId`."),
        (
            keys::RESPONSE_TIMESTAMP,
            "Completed only: when the outcome was recorded, UTC `yyyyMMddHHmmss`.",
        ),
        ("AuthId", "From the device: the authorisation code."),
        ("AcquirerRef", "From the device: the acquirer's reference."),
        ("TerminalRef", "From the device: the terminal's reference."),
        (
            "CardPan",
            "From the device: the masked card number, e.g. `....0138`.",
        ),
        ("CardType", "From the device: the card scheme."),
        (
            "AccountType",
            "From the device: the account charged (`CREDIT`, `CHEQUE`, `SAVINGS`).",
        ),
        ("AmountSurcharge", "From the device: cents of surcharge."),
        ("AmountTip", "From the device: cents of tip."),
        (
            "Timestamp",
            "From the device: its local time of the result, `yyyyMMddHHmmss`.",
        ),
        (
            keys::RECEIPT,
            "From the device: the receipt, fixed-width text, lines separated by `\\n`.",
        ),
        (
            "ReferenceId",
            "From the device (`Journal.GetTransResult`): the transaction it reports on.",
        ),
        (
            keys::DISPLAY_TEXT,
            "eftcloud extension. While pending only: the prompt the device shows \
             (`Present card`, `Enter PIN`, ...).",
        ),
        (
            keys::POS_REFERENCE,
            "eftcloud extension. The POS's own reference (`PosReference` field or \
             `Idempotency-Key` header), present only when the POS gave one.",
        ),
    ];

    /// The schema of the envelope's `data`.
    pub fn data_schema() -> Object {
        let mut b = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "PascalCase keys, every value a string. Keys the cloud owns (register identity, \
                 `DeviceID`, `Function`, `PollingUrl`, `RequestId`, `Merchant`, `Company`, \
                 timestamps, outcome) are never overridden by the device; other keys from the \
                 device's result are passed on. Non-financial functions complete without \
                 `TransactionResult`.",
            ))
            .property(
                keys::FUNCTION,
                one_of(
                    "The function, as requested in `TransactionType`.",
                    Function::ALL.iter().map(|f| f.as_str()),
                ),
            )
            .property(
                keys::TRANSACTION_RESULT,
                one_of(
                    "What happened to the money. Empty while pending (`OK-DELAYED` while the \
                     device is late); absent for non-financial functions.",
                    std::iter::once("").chain(TransactionResult::ALL.iter().map(|t| t.as_str())),
                ),
            )
            .property(
                keys::RESULT,
                one_of(
                    "Whether the function itself ran. Empty while pending \
                     (`DELAYED-TRANSACTION` while the device is late).",
                    std::iter::once("").chain(ResultCode::ALL.iter().map(|r| r.as_str())),
                ),
            )
            .property(
                keys::STATUS,
                one_of(
                    "`Terminal.GetStatus` only: the device's status.",
                    TerminalStatus::ALL.iter().map(|s| s.as_str()),
                ),
            );
        for (key, description) in TEXT_KEYS {
            b = b.property(*key, text(description));
        }
        for key in [
            keys::POS_VENDOR,
            keys::POS_REGISTER_ID,
            keys::POS_BUSINESS_NAME,
            keys::DEVICE_ID,
            keys::FUNCTION,
            keys::POLLING_URL,
        ] {
            b = b.required(key);
        }
        b.additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_keys_are_camel_case() {
        let e = TransactionEnvelope {
            transaction_id: "t".into(),
            transaction_time_stamp: "s".into(),
            merchant_id: "m".into(),
            device_id: "d".into(),
            transaction_status: TransactionStatus::Pending,
            data: BTreeMap::new(),
            merchant_access_token: "k".into(),
            receipts: None,
        };
        let v = serde_json::to_value(&e).unwrap_or_default();
        for k in [
            "transactionId",
            "transactionTimeStamp",
            "merchantId",
            "deviceId",
            "transactionStatus",
            "data",
            "merchantAccessToken",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["transactionStatus"], "PENDING");
    }
}
