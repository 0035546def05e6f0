//! SmartConnect request decoding: a form body through `Fields`, then the domain parsers the
//! handlers use (`TransactionRequest`, `RegisterKey`, `PairingCode`, `Cents`).
#![no_main]

use cloud::pos_api::fields::Fields;
use libfuzzer_sys::fuzz_target;
use protocol::request::TransactionRequest;
use protocol::{Cents, PairingCode, RegisterKey};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The raw text as a path segment and as an amount.
    let _ = PairingCode::parse(&text);
    if let Ok(c) = Cents::parse(&text) {
        assert!(c.get() >= 1);
        let _ = c.display_decimal();
    }
    let Ok(fields) = Fields::from_parts(None, "application/x-www-form-urlencoded", data) else {
        return;
    };
    if let Ok(req) = TransactionRequest::parse(|k| fields.get(k)) {
        let _ = req.headline_amount();
        let _ = req.pos_fields();
        // What the device receives must survive the wire.
        let json = serde_json::to_string(&req).unwrap_or_default();
        let back: Result<TransactionRequest, _> = serde_json::from_str(&json);
        assert_eq!(back.ok().as_ref(), Some(&req));
    }
    let _ = RegisterKey::parse(
        fields.get("POSRegisterID"),
        fields.get("POSBusinessName"),
        fields.get("POSVendorName"),
    );
    if let Some(code) = fields.get("code") {
        let _ = PairingCode::parse(code);
    }
    for k in ["AmountTotal", "AmountCash", "AmountAuth", "AmountFinal"] {
        if let Some(v) = fields.get(k) {
            let _ = Cents::parse(v);
        }
    }
});
