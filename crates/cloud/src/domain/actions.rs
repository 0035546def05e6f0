//! Terminal actions as the cloud judges them: whether a device's result fits what the POS
//! asked (an input's answer passes the request's rules, a printer or QR outcome is one the
//! protocol names, an action reports no money moving), and the cart a payment shows.
//!
//! The lifecycle calls [`check_result`] before it stores a result, so a POS never reads an
//! answer its own rules refuse: a refused result stays in the device's journal, and the device
//! is told why.

use protocol::action::{cancel_reason, field, printer_status, Cart, InputRequest};
use protocol::device::DeviceResult;
use protocol::{Function, ResultCode, TransactionRequest};

/// Whether `r` can be stored as the outcome of `request`. Receipts are checked for every
/// function (they are shown and emailed); the rest only for terminal actions.
pub fn check_result(request: &TransactionRequest, r: &DeviceResult) -> Result<(), String> {
    if let Some(receipts) = &r.receipts {
        receipts.check().map_err(|e| format!("receipts: {e}"))?;
    }
    let function = request.function;
    if !function.is_action() {
        return Ok(());
    }
    if r.transaction_result.is_some() {
        return Err(format!(
            "{function} moves no money: its result has no transaction_result"
        ));
    }
    let reason = r.fields.get(field::CANCEL_REASON).map(String::as_str);
    if let Some(reason) = reason {
        let known = [
            cancel_reason::CUSTOMER,
            cancel_reason::TIMEOUT,
            cancel_reason::POS,
        ];
        if !known.contains(&reason) {
            return Err(format!(
                "CancelReason '{reason}' is not one of customer, timeout, pos"
            ));
        }
        if r.result != ResultCode::Cancelled {
            return Err("CancelReason belongs to a CANCELLED result".into());
        }
    }
    match function {
        Function::TerminalInput => match (&request.input, r.result) {
            (Some(input), ResultCode::Ok) => check_answer(input, r),
            _ => Ok(()),
        },
        Function::TerminalPrint => {
            let status = r.fields.get(field::PRINTER_STATUS).map(String::as_str);
            match status {
                Some(s) if !printer_status::ALL.contains(&s) => Err(format!(
                    "PrinterStatus '{s}' is not one of {}",
                    printer_status::ALL.join(", ")
                )),
                // A slip that printed cannot report a printer in trouble, nor the reverse.
                Some(s) if (r.result == ResultCode::Ok) != (s == printer_status::OK) => {
                    Err(format!("PrinterStatus {s} contradicts Result {}", r.result))
                }
                _ => Ok(()),
            }
        }
        Function::TerminalShowQr => match r.fields.get(field::QR_OUTCOME).map(String::as_str) {
            Some("dismissed" | "timeout") if r.result == ResultCode::Ok => Ok(()),
            Some(o) => Err(format!(
                "QrOutcome '{o}' is dismissed or timeout, on an OK result"
            )),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn check_answer(input: &InputRequest, r: &DeviceResult) -> Result<(), String> {
    input
        .check_answer(&r.fields)
        .map_err(|e| format!("the {} answer is refused: {e}", input.kind))
}

/// The cart a payment shows on a device that declares `display`: the POS's `SaleData` basket,
/// in the payment's currency when the basket names none.
pub fn cart_of_payment(request: &TransactionRequest, sale_data: Option<&str>) -> Option<Cart> {
    if request.function.is_action() {
        return None;
    }
    let mut cart = Cart::from_sale_data(sale_data?)?;
    if cart.currency.is_none() {
        cart.currency = request.currency;
    }
    Some(cart)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::action::{InputKind, InputRules, PrintJob, QrDisplay};
    use protocol::{TransactionId, TransactionResult};
    use std::collections::BTreeMap;

    fn result(code: ResultCode, fields: &[(&str, &str)]) -> DeviceResult {
        DeviceResult {
            transaction_id: TransactionId::new(),
            transaction_result: None,
            result: code,
            result_text: String::new(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            receipts: None,
            settlement: None,
        }
    }

    fn input(kind: InputKind) -> TransactionRequest {
        TransactionRequest {
            input: Some(InputRequest {
                kind,
                prompt: "Email?".into(),
                options: vec![],
                rules: InputRules::default(),
                timeout_secs: 60,
            }),
            ..TransactionRequest::of(Function::TerminalInput)
        }
    }

    #[test]
    fn an_answer_must_pass_the_request_rules() {
        let email = input(InputKind::Email);
        let ok = result(ResultCode::Ok, &[("InputValue", "a@b.co")]);
        assert_eq!(check_result(&email, &ok), Ok(()));
        let bad = result(ResultCode::Ok, &[("InputValue", "not an email")]);
        assert!(check_result(&email, &bad).is_err());
        let missing = result(ResultCode::Ok, &[]);
        assert!(check_result(&email, &missing).is_err());
        // Cancelled: no answer to check, a known reason.
        let cancelled = result(ResultCode::Cancelled, &[("CancelReason", "customer")]);
        assert_eq!(check_result(&email, &cancelled), Ok(()));
        let odd = result(ResultCode::Cancelled, &[("CancelReason", "bored")]);
        assert!(check_result(&email, &odd).is_err());
        let contradiction = result(
            ResultCode::Ok,
            &[("InputValue", "a@b.co"), ("CancelReason", "customer")],
        );
        assert!(check_result(&email, &contradiction).is_err());
    }

    #[test]
    fn actions_move_no_money() {
        let mut r = result(ResultCode::Ok, &[("InputValue", "a@b.co")]);
        r.transaction_result = Some(TransactionResult::Accepted);
        assert!(check_result(&input(InputKind::Email), &r).is_err());
        // A payment's result is not an action's: untouched here.
        let purchase = TransactionRequest::of(Function::CardPurchase);
        assert_eq!(check_result(&purchase, &r), Ok(()));
    }

    #[test]
    fn printer_outcomes_are_named_and_consistent() {
        let print = TransactionRequest {
            print: Some(PrintJob { lines: vec![] }),
            ..TransactionRequest::of(Function::TerminalPrint)
        };
        let cases = [
            (ResultCode::Ok, Some("OK"), true),
            (ResultCode::Ok, None, true),
            (ResultCode::Failed, Some("NO_PAPER"), true),
            (ResultCode::Failed, Some("NO_PRINTER"), true),
            (ResultCode::Ok, Some("NO_PAPER"), false),
            (ResultCode::Failed, Some("OK"), false),
            (ResultCode::Failed, Some("ON_FIRE"), false),
        ];
        for (code, status, fits) in cases {
            let fields: Vec<(&str, &str)> =
                status.map(|s| ("PrinterStatus", s)).into_iter().collect();
            let r = result(code, &fields);
            assert_eq!(check_result(&print, &r).is_ok(), fits, "{code} {status:?}");
        }
    }

    #[test]
    fn qr_outcomes_are_named() {
        let qr = TransactionRequest {
            qr: Some(QrDisplay {
                data: "x".into(),
                caption: String::new(),
                timeout_secs: 60,
            }),
            ..TransactionRequest::of(Function::TerminalShowQr)
        };
        let ok = |o| result(ResultCode::Ok, &[("QrOutcome", o)]);
        assert_eq!(check_result(&qr, &ok("dismissed")), Ok(()));
        assert_eq!(check_result(&qr, &ok("timeout")), Ok(()));
        assert!(check_result(&qr, &ok("scanned")).is_err());
        let cancelled = result(ResultCode::Cancelled, &[("QrOutcome", "dismissed")]);
        assert!(check_result(&qr, &cancelled).is_err());
        assert_eq!(check_result(&qr, &result(ResultCode::Ok, &[])), Ok(()));
    }

    #[test]
    fn bad_receipts_are_refused_for_any_function() {
        let mut r = result(ResultCode::Ok, &[]);
        r.transaction_result = Some(TransactionResult::Accepted);
        r.receipts = Some(protocol::action::Receipts {
            merchant: Some(protocol::action::Receipt {
                header: vec!["x".repeat(500)],
                ..Default::default()
            }),
            customer: None,
        });
        let purchase = TransactionRequest::of(Function::CardPurchase);
        assert!(check_result(&purchase, &r).is_err());
    }

    #[test]
    fn a_payment_shows_its_basket_in_its_currency() {
        let sale = r#"{"saleData":{"totalAmount":"500","totalTax":"0","lineItems":[{"productName":"Tea","totalPrice":"500"}]}}"#;
        let mut purchase = TransactionRequest::of(Function::CardPurchase);
        purchase.currency = Some(protocol::Currency::parse("NZD").unwrap_or_default());
        let cart = cart_of_payment(&purchase, Some(sale));
        assert_eq!(cart.as_ref().map(|c| c.lines.len()), Some(1));
        assert_eq!(cart.and_then(|c| c.currency), purchase.currency);
        assert_eq!(cart_of_payment(&purchase, None), None);
        assert_eq!(cart_of_payment(&input(InputKind::Email), Some(sale)), None);
    }
}
