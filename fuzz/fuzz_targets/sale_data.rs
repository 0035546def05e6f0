//! `SaleData` validation: size, depth, shape.
#![no_main]

use cloud::pos_api::sale_data::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = validate(s);
    }
});
