//! The device message decoder: any text frame either decodes or is refused, and whatever
//! decodes re-encodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::device::{CloudMessage, DeviceMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = serde_json::from_str::<DeviceMessage>(text) {
        let json = serde_json::to_string(&m).unwrap_or_default();
        let back = serde_json::from_str::<DeviceMessage>(&json);
        assert_eq!(back.ok().as_ref(), Some(&m), "round trip of {json}");
    }
    // The device side decodes the cloud's frames with the same machinery.
    if let Ok(m) = serde_json::from_str::<CloudMessage>(text) {
        let json = serde_json::to_string(&m).unwrap_or_default();
        let back = serde_json::from_str::<CloudMessage>(&json);
        assert_eq!(back.ok().as_ref(), Some(&m), "round trip of {json}");
    }
});
