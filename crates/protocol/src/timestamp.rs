//! Timestamp formats of the POS API.

use chrono::{DateTime, Datelike, Local, Timelike, Utc};

/// `transactionTimeStamp`: UTC `yyyyMMddHHmmss` followed by four fractional-second digits,
/// as in the vendor's example `201809182353193193`.
pub fn transaction_timestamp(t: DateTime<Utc>) -> String {
    let frac = t.timestamp_subsec_micros() / 100;
    format!("{}{frac:04}", utc_compact(t))
}

/// `RequestTimestamp` / `ResponseTimestamp`: UTC `yyyyMMddHHmmss`.
///
/// Written field by field: it is in every poll's body, and chrono's `format` parses its
/// pattern on every call.
pub fn utc_compact(t: DateTime<Utc>) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The device-local `Timestamp` of a result: `yyyyMMddHHmmss` in the device's own time zone.
pub fn device_local_now() -> String {
    Local::now().format("%Y%m%d%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats() {
        let t = Utc
            .with_ymd_and_hms(2018, 9, 18, 23, 53, 19)
            .single()
            .map(|t| t + chrono::Duration::microseconds(319_300));
        let Some(t) = t else { panic!("valid date") };
        assert_eq!(transaction_timestamp(t), "201809182353193193");
        assert_eq!(utc_compact(t), "20180918235319");
    }
}
