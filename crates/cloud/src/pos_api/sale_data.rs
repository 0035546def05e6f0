//! `SaleData`: one form field holding the POS's basket as JSON. Checked for shape, stored as sent.

/// Largest `SaleData` accepted, in bytes (a basket of a few hundred lines fits easily).
pub const MAX_SALE_DATA_BYTES: usize = 256 * 1024;

/// Checks that `raw` is `{"version": ..., "saleData": {"totalAmount": ..., "totalTax": ..., ...}}`.
pub fn validate(raw: &str) -> Result<(), String> {
    if raw.len() > MAX_SALE_DATA_BYTES {
        return Err(format!(
            "Invalid SaleData: larger than {MAX_SALE_DATA_BYTES} bytes"
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("Invalid SaleData: not valid JSON ({e})"))?;
    let sale = v
        .get("saleData")
        .and_then(|s| s.as_object())
        .ok_or("Invalid SaleData: expected an object with a \"saleData\" object")?;
    for key in ["totalAmount", "totalTax"] {
        match sale.get(key) {
            Some(serde_json::Value::String(_) | serde_json::Value::Number(_)) => {}
            _ => return Err(format!("Invalid SaleData: saleData.{key} is required")),
        }
    }
    if let Some(items) = sale.get("lineItems") {
        if !items.is_array() {
            return Err("Invalid SaleData: saleData.lineItems must be an array".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(validate(
            r#"{"version":"1.0.0","saleData":{"totalAmount":"500","totalTax":"45","lineItems":[]}}"#
        )
        .is_ok());
        assert!(validate("{not json").is_err());
        assert!(validate(r#"{"version":"1.0.0"}"#).is_err());
        assert!(validate(r#"{"saleData":{"totalAmount":"500"}}"#).is_err());
        assert!(
            validate(r#"{"saleData":{"totalAmount":"5","totalTax":"0","lineItems":{}}}"#).is_err()
        );
    }
}
