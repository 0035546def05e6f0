//! What a POS asks for: a function with its amounts, plus the optional SaleData, completion
//! callback and (eftcloud extension) the POS's own reference.

use protocol::{Cents, Function, RegisterKey, TransactionRequest};

/// How the cloud should answer `POST /Transaction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionMode {
    /// `TransactionMode=ASYNC`: answer at once with a polling URL.
    Async,
    /// The legacy mode (no `TransactionMode` field): hold the request until completion.
    Sync,
}

/// One transaction to start: the function and its fields, and the optional extras.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSpec {
    /// The function and its amounts, reference and date.
    pub request: TransactionRequest,
    /// `SaleData`: a JSON document, sent as one raw string field.
    pub sale_data: Option<String>,
    /// `PosNotificationCallbackUrl`: notified when the transaction completes.
    pub callback_url: Option<String>,
    /// `PosReference` (eftcloud extension): repeating a POST with the same reference returns the
    /// original transaction instead of charging twice.
    pub pos_reference: Option<String>,
    /// `OriginalTransactionId` (eftcloud extension): a `Card.Refund` or `Card.Finalise` of
    /// this earlier payment.
    pub original: Option<String>,
}

impl TransactionSpec {
    /// A spec for `function` with no fields set yet.
    pub fn new(function: Function) -> Self {
        Self {
            request: TransactionRequest::of(function),
            sale_data: None,
            callback_url: None,
            pos_reference: None,
            original: None,
        }
    }

    /// Sets the function's headline amount: `AmountAuth` for `Card.Authorise`, `AmountFinal` for
    /// `Card.Finalise`, `AmountTotal` otherwise.
    pub fn with_amount(mut self, amount: Cents) -> Self {
        match self.request.function {
            Function::CardAuthorise => self.request.amount_auth = Some(amount),
            Function::CardFinalise => self.request.amount_final = Some(amount),
            _ => self.request.amount_total = Some(amount),
        }
        self
    }

    /// Sets the currency of the amounts (eftcloud extension; the merchant's when unset).
    pub fn with_currency(mut self, currency: protocol::Currency) -> Self {
        self.request.currency = Some(currency);
        self
    }

    /// Makes this payment a tender of an order (eftcloud extension: `OrderId`).
    pub fn with_order(mut self, order_id: impl Into<String>) -> Self {
        self.request.order_id = Some(order_id.into());
        self
    }

    /// Sets the POS's own reference (`PosReference`), which makes a retried POST safe.
    pub fn with_pos_reference(mut self, reference: impl Into<String>) -> Self {
        self.pos_reference = Some(reference.into());
        self
    }

    /// The `POST /Transaction` form. Amounts are decimal cent strings; unset optional fields
    /// are left out rather than sent empty.
    pub fn form(
        &self,
        register: &RegisterKey,
        mode: TransactionMode,
    ) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("POSRegisterID", register.register_id.clone()),
            ("POSBusinessName", register.business_name.clone()),
            ("POSVendorName", register.vendor_name.clone()),
        ];
        if mode == TransactionMode::Async {
            form.push(("TransactionMode", "ASYNC".to_string()));
        }
        form.push((
            "TransactionType",
            self.request.function.as_str().to_string(),
        ));
        form.extend(self.request.pos_fields());
        let extras = [
            ("SaleData", &self.sale_data),
            ("PosNotificationCallbackUrl", &self.callback_url),
            ("PosReference", &self.pos_reference),
            ("OriginalTransactionId", &self.original),
        ];
        form.extend(
            extras
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.clone()))),
        );
        form
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register() -> RegisterKey {
        RegisterKey {
            register_id: "r-1".into(),
            business_name: "Toys Shop".into(),
            vendor_name: "Till2Go".into(),
        }
    }

    fn cents(v: u64) -> Cents {
        Cents::new(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn async_purchase_form() {
        let mut spec = TransactionSpec::new(Function::CardPurchase)
            .with_amount(cents(500))
            .with_pos_reference("sale-42");
        spec.sale_data = Some(r#"{"version":"1.0.0","saleData":{}}"#.into());
        spec.callback_url = Some("https://pos.example/cb".into());
        assert_eq!(
            spec.form(&register(), TransactionMode::Async),
            vec![
                ("POSRegisterID", "r-1".to_string()),
                ("POSBusinessName", "Toys Shop".to_string()),
                ("POSVendorName", "Till2Go".to_string()),
                ("TransactionMode", "ASYNC".to_string()),
                ("TransactionType", "Card.Purchase".to_string()),
                ("AmountTotal", "500".to_string()),
                (
                    "SaleData",
                    r#"{"version":"1.0.0","saleData":{}}"#.to_string()
                ),
                (
                    "PosNotificationCallbackUrl",
                    "https://pos.example/cb".to_string()
                ),
                ("PosReference", "sale-42".to_string()),
            ]
        );
    }

    #[test]
    fn sync_mode_sends_no_transaction_mode() {
        let spec = TransactionSpec::new(Function::TerminalGetStatus);
        let form = spec.form(&register(), TransactionMode::Sync);
        assert!(form.iter().all(|(k, _)| *k != "TransactionMode"));
        assert_eq!(
            form.last(),
            Some(&("TransactionType", "Terminal.GetStatus".to_string()))
        );
    }

    #[test]
    fn amount_goes_to_the_functions_field() {
        let auth = TransactionSpec::new(Function::CardAuthorise).with_amount(cents(100));
        assert_eq!(auth.request.amount_auth, Some(cents(100)));
        assert_eq!(auth.request.amount_total, None);
        let fin = TransactionSpec::new(Function::CardFinalise).with_amount(cents(90));
        assert_eq!(fin.request.amount_final, Some(cents(90)));
        let refund = TransactionSpec::new(Function::CardRefund).with_amount(cents(5));
        assert_eq!(refund.request.amount_total, Some(cents(5)));
    }

    #[test]
    fn cash_out_and_finalise_fields() {
        let mut spec =
            TransactionSpec::new(Function::CardPurchasePlusCash).with_amount(cents(5000));
        spec.request.amount_cash = Some(cents(2000));
        let form = spec.form(&register(), TransactionMode::Async);
        assert!(form.contains(&("AmountTotal", "5000".to_string())));
        assert!(form.contains(&("AmountCash", "2000".to_string())));

        let mut spec = TransactionSpec::new(Function::CardFinalise).with_amount(cents(90));
        spec.request.transaction_reference = Some("A1".into());
        let form = spec.form(&register(), TransactionMode::Async);
        assert!(form.contains(&("AmountFinal", "90".to_string())));
        assert!(form.contains(&("TransactionReference", "A1".to_string())));
    }
}
