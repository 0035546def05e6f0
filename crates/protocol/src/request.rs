//! A transaction request as the device receives it: a function and its validated fields.

use crate::action::{Cart, InputRequest, PrintJob, QrDisplay};
use crate::amount::{AmountError, Cents};
use crate::currency::{Currency, UnknownCurrency};
use crate::function::{Function, UnknownFunction};
use crate::ids::TransactionId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the POS asked for, checked against the function's needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRequest {
    pub function: Function,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_total: Option<Cents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cash: Option<Cents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_auth: Option<Cents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_final: Option<Cents>,
    /// Links a `Card.Finalise` to its `Card.Authorise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_reference: Option<String>,
    /// Settlement date (`yyyyMMdd`) for `Acquirer.Settlement.Inquiry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The currency of the amounts; absent means AUD (SmartConnect's), so a request from a
    /// POS that never names one reads as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// The new tip of a `Card.TipAdjust`, in minor units (0 removes the tip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_tip: Option<u64>,
    /// The earlier payment a referenced refund or a follow-up acts on, with what the device
    /// needs to find it at the acquirer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<OriginalPayment>,
    /// The order this payment is a tender of (split tenders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The basket to show while the payment runs (from `SaleData`), for a device that
    /// declares `display`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart: Option<Cart>,
    /// `Terminal.Input`: what to ask the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputRequest>,
    /// `Terminal.Print`: the slip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub print: Option<PrintJob>,
    /// `Terminal.ShowQr`: the code and its caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr: Option<QrDisplay>,
}

/// The earlier payment a follow-up acts on, as the cloud recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalPayment {
    pub transaction_id: TransactionId,
    pub function: Function,
    /// What it comes to now, in minor units: as approved with its tip adjustments (surcharge and
    /// tip included); for a tip adjustment, before any tip; for a pre-authorisation, the total
    /// held (the authorisation and its approved top-ups).
    pub amount: u64,
    /// The acquirer's references and the card, from the original's result: `AuthId`,
    /// `AcquirerRef`, `TerminalRef`, `CardType`, `CardPan`, `AccountType`, `Timestamp`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl OriginalPayment {
    /// The result fields a follow-up carries to the device.
    pub const FIELDS: [&'static str; 7] = [
        "AuthId",
        "AcquirerRef",
        "TerminalRef",
        "CardType",
        "CardPan",
        "AccountType",
        "Timestamp",
    ];
}

/// Why a request's fields were refused; each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Missing required field: TransactionType")]
    MissingFunction,
    #[error(transparent)]
    UnknownFunction(#[from] UnknownFunction),
    #[error("Missing required field: {0}")]
    Missing(&'static str),
    #[error("Invalid {0}: {1}")]
    BadAmount(&'static str, AmountError),
    #[error("Invalid AmountCash: must not exceed AmountTotal")]
    CashExceedsTotal,
    #[error("Invalid TransactionReference: at most 64 characters")]
    ReferenceTooLong,
    #[error("Invalid Date: expected yyyyMMdd")]
    BadDate,
    #[error(transparent)]
    BadCurrency(#[from] UnknownCurrency),
    /// A follow-up named as a `TransactionType`: they have routes of their own.
    #[error(
        "TransactionType '{0}' is an eftcloud follow-up: use POST /pos/transaction/{{id}}/{1}"
    )]
    FollowUpFunction(Function, &'static str),
    /// A terminal action named as a `TransactionType`: they have routes of their own.
    #[error("TransactionType '{0}' is an eftcloud terminal action: use POST /pos/register/{1}")]
    ActionFunction(Function, &'static str),
}

const MAX_REFERENCE_LEN: usize = 64;

impl TransactionRequest {
    /// Parses the request from a field lookup (form body, then query string), taking only the
    /// fields the function uses; unknown or unused fields are ignored as the API requires.
    pub fn parse<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Result<Self, RequestError> {
        let function: Function = field("TransactionType")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(RequestError::MissingFunction)?
            .parse()?;
        if let Some(route) = follow_up_route(function) {
            return Err(RequestError::FollowUpFunction(function, route));
        }
        if let Some(route) = action_route(function) {
            return Err(RequestError::ActionFunction(function, route));
        }
        let currency = field("Currency")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Currency::parse)
            .transpose()?;
        let amount = |name: &'static str| -> Result<Cents, RequestError> {
            let raw = field(name)
                .filter(|s| !s.trim().is_empty())
                .ok_or(RequestError::Missing(name))?;
            Cents::parse(raw).map_err(|e| RequestError::BadAmount(name, e))
        };
        let reference = || -> Result<String, RequestError> {
            let r = field("TransactionReference")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or(RequestError::Missing("TransactionReference"))?;
            if r.chars().count() > MAX_REFERENCE_LEN {
                return Err(RequestError::ReferenceTooLong);
            }
            Ok(r.to_string())
        };
        let mut req = TransactionRequest {
            function,
            amount_total: None,
            amount_cash: None,
            amount_auth: None,
            amount_final: None,
            transaction_reference: None,
            date: None,
            currency,
            amount_tip: None,
            original: None,
            order_id: None,
            cart: None,
            input: None,
            print: None,
            qr: None,
        };
        match function {
            Function::CardPurchase
            | Function::CardRefund
            | Function::CardCashAdvance
            | Function::QrMerchantPurchase
            | Function::QrConsumerPurchase
            | Function::QrRefund => req.amount_total = Some(amount("AmountTotal")?),
            Function::CardPurchasePlusCash => {
                let total = amount("AmountTotal")?;
                let cash = amount("AmountCash")?;
                if cash > total {
                    return Err(RequestError::CashExceedsTotal);
                }
                req.amount_total = Some(total);
                req.amount_cash = Some(cash);
            }
            Function::CardAuthorise => {
                req.amount_auth = Some(amount("AmountAuth")?);
                req.transaction_reference = Some(reference()?);
            }
            Function::CardFinalise => {
                req.amount_final = Some(amount("AmountFinal")?);
                req.transaction_reference = Some(reference()?);
            }
            Function::AcquirerSettlementInquiry => {
                if let Some(d) = field("Date").map(str::trim).filter(|s| !s.is_empty()) {
                    let ok = d.len() == 8 && chrono::NaiveDate::parse_from_str(d, "%Y%m%d").is_ok();
                    if !ok {
                        return Err(RequestError::BadDate);
                    }
                    req.date = Some(d.to_string());
                }
            }
            Function::AcquirerLogon
            | Function::AcquirerSettlementCutover
            | Function::JournalReprintReceipt
            | Function::JournalGetTransResult
            | Function::TerminalGetStatus
            | Function::TerminalReadCard => {}
            // Refused above.
            Function::CardVoid
            | Function::CardTipAdjust
            | Function::CardTopUp
            | Function::CardRelease
            | Function::TerminalInput
            | Function::TerminalPrint
            | Function::TerminalShowQr => {}
        }
        Ok(req)
    }

    /// A request with a function and nothing else, to fill in.
    pub fn of(function: Function) -> Self {
        TransactionRequest {
            function,
            amount_total: None,
            amount_cash: None,
            amount_auth: None,
            amount_final: None,
            transaction_reference: None,
            date: None,
            currency: None,
            amount_tip: None,
            original: None,
            order_id: None,
            cart: None,
            input: None,
            print: None,
            qr: None,
        }
    }

    /// The currency of the amounts (AUD when the request names none).
    pub fn currency(&self) -> Currency {
        self.currency.unwrap_or_default()
    }

    /// The amount the customer sees first: total, pre-authorised or final amount.
    pub fn headline_amount(&self) -> Option<Cents> {
        self.amount_total.or(self.amount_auth).or(self.amount_final)
    }

    /// The request's fields as the POS API's `data` spells them, for echoing back.
    pub fn pos_fields(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let amounts = [
            ("AmountTotal", self.amount_total),
            ("AmountCash", self.amount_cash),
            ("AmountAuth", self.amount_auth),
            ("AmountFinal", self.amount_final),
        ];
        for (k, v) in amounts {
            if let Some(v) = v {
                out.push((k, v.to_string()));
            }
        }
        if let Some(r) = &self.transaction_reference {
            out.push(("TransactionReference", r.clone()));
        }
        if let Some(d) = &self.date {
            out.push(("Date", d.clone()));
        }
        if let Some(c) = &self.currency {
            out.push(("Currency", c.to_string()));
        }
        if let Some(t) = self.amount_tip {
            out.push(("AmountTip", t.to_string()));
        }
        if let Some(o) = &self.original {
            out.push(("OriginalTransactionId", o.transaction_id.to_string()));
        }
        if let Some(o) = &self.order_id {
            out.push(("OrderId", o.clone()));
        }
        if let Some(i) = &self.input {
            out.push(("InputKind", i.kind.to_string()));
            out.push(("Prompt", i.prompt.clone()));
        }
        if let Some(q) = &self.qr {
            out.push(("QrData", q.data.clone()));
        }
        out
    }
}

/// The POS API route of a terminal action (under `/pos/register/`), if it is one.
pub fn action_route(f: Function) -> Option<&'static str> {
    match f {
        Function::TerminalInput => Some("input"),
        Function::TerminalPrint => Some("print"),
        Function::TerminalShowQr => Some("qr"),
        _ => None,
    }
}

/// The POS API route of a follow-up function, if it is one.
pub fn follow_up_route(f: Function) -> Option<&'static str> {
    match f {
        Function::CardVoid => Some("void"),
        Function::CardTipAdjust => Some("adjust"),
        Function::CardTopUp => Some("increment"),
        Function::CardRelease => Some("release"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<TransactionRequest, RequestError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TransactionRequest::parse(|k| m.get(k).map(String::as_str))
    }

    #[test]
    fn purchase_needs_amount_total() {
        let r = parse(&[("TransactionType", "Card.Purchase"), ("AmountTotal", "500")]);
        assert_eq!(r.map(|r| r.amount_total.map(Cents::get)), Ok(Some(500)));
        assert_eq!(
            parse(&[("TransactionType", "Card.Purchase")]),
            Err(RequestError::Missing("AmountTotal"))
        );
        assert_eq!(
            parse(&[("TransactionType", "Card.Purchase"), ("AmountTotal", "0")]),
            Err(RequestError::BadAmount("AmountTotal", AmountError::Zero))
        );
    }

    #[test]
    fn cash_out_checks_cash_part() {
        assert!(parse(&[
            ("TransactionType", "Card.PurchasePlusCash"),
            ("AmountTotal", "5000"),
            ("AmountCash", "2000")
        ])
        .is_ok());
        assert_eq!(
            parse(&[
                ("TransactionType", "Card.PurchasePlusCash"),
                ("AmountTotal", "1000"),
                ("AmountCash", "2000")
            ]),
            Err(RequestError::CashExceedsTotal)
        );
    }

    #[test]
    fn preauth_needs_reference() {
        assert_eq!(
            parse(&[("TransactionType", "Card.Authorise"), ("AmountAuth", "100")]),
            Err(RequestError::Missing("TransactionReference"))
        );
        let r = parse(&[
            ("TransactionType", "Card.Finalise"),
            ("AmountFinal", "90"),
            ("TransactionReference", "A1"),
        ]);
        assert_eq!(
            r.map(|r| r.pos_fields()),
            Ok(vec![
                ("AmountFinal", "90".to_string()),
                ("TransactionReference", "A1".to_string())
            ])
        );
    }

    #[test]
    fn settlement_date_is_optional_but_checked() {
        assert!(parse(&[("TransactionType", "Acquirer.Settlement.Inquiry")]).is_ok());
        assert!(parse(&[
            ("TransactionType", "Acquirer.Settlement.Inquiry"),
            ("Date", "20240131")
        ])
        .is_ok());
        assert_eq!(
            parse(&[
                ("TransactionType", "Acquirer.Settlement.Inquiry"),
                ("Date", "20241331")
            ]),
            Err(RequestError::BadDate)
        );
    }

    #[test]
    fn currency_is_optional_but_checked() {
        let r = parse(&[
            ("TransactionType", "Card.Purchase"),
            ("AmountTotal", "500"),
            ("Currency", "jpy"),
        ]);
        assert_eq!(
            r.as_ref().map(|r| r.currency().code().to_string()),
            Ok("JPY".into())
        );
        assert_eq!(
            r.map(|r| r.pos_fields())
                .ok()
                .and_then(|f| f.last().cloned()),
            Some(("Currency", "JPY".to_string()))
        );
        let none = parse(&[("TransactionType", "Card.Purchase"), ("AmountTotal", "500")]);
        assert_eq!(none.as_ref().map(|r| r.currency), Ok(None));
        assert_eq!(none.map(|r| r.currency()), Ok(Currency::AUD));
        assert!(matches!(
            parse(&[
                ("TransactionType", "Card.Purchase"),
                ("AmountTotal", "500"),
                ("Currency", "XYZ")
            ]),
            Err(RequestError::BadCurrency(_))
        ));
    }

    #[test]
    fn follow_ups_are_not_transaction_types() {
        for f in Function::FOLLOW_UPS {
            let e = parse(&[("TransactionType", f.as_str()), ("AmountTotal", "500")]);
            assert!(
                matches!(e, Err(RequestError::FollowUpFunction(g, _)) if g == f),
                "{f}"
            );
        }
    }

    #[test]
    fn actions_are_not_transaction_types() {
        for f in Function::ACTIONS {
            let e = parse(&[("TransactionType", f.as_str())]);
            assert!(
                matches!(e, Err(RequestError::ActionFunction(g, _)) if g == f),
                "{f}"
            );
        }
    }

    #[test]
    fn unknown_or_missing_function() {
        assert_eq!(parse(&[]), Err(RequestError::MissingFunction));
        assert!(matches!(
            parse(&[("TransactionType", "Card.Nope")]),
            Err(RequestError::UnknownFunction(_))
        ));
    }
}
