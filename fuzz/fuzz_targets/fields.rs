//! The lenient field parser (`Fields::from_parts`): query string, form or JSON body.
#![no_main]

use cloud::pos_api::fields::Fields;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: the content type; then the query string up to the first 0xFF byte, then
    // the body.
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let content_type = match kind % 4 {
        0 => "application/x-www-form-urlencoded",
        1 => "application/json",
        2 => "text/plain; charset=UTF-8",
        _ => "APPLICATION/JSON; charset=utf-8",
    };
    let (query, body) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (Some(String::from_utf8_lossy(&rest[..i])), &rest[i + 1..]),
        None => (None, rest),
    };
    if let Ok(fields) = Fields::from_parts(query.as_deref(), content_type, body) {
        let _ = fields.get("POSRegisterID");
        let _ = fields.get("posregisterid");
        let _ = fields.get_any(&["Contact Name", "ContactName"]);
    }
});
