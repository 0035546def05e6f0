//! `SaleData`: one form field holding the POS's basket as JSON. Checked for shape, stored as sent.

/// Largest `SaleData` accepted, in bytes (a basket of a few hundred lines fits). Kept below
/// the default request body limit so that the field is refused with its own message.
pub const MAX_SALE_DATA_BYTES: usize = 48 * 1024;

/// Deepest nesting of arrays and objects accepted (a basket needs four or five levels).
pub const MAX_SALE_DATA_DEPTH: usize = 16;

/// Checks that `raw` is `{"version": ..., "saleData": {"totalAmount": ..., "totalTax": ..., ...}}`.
pub fn validate(raw: &str) -> Result<(), String> {
    if raw.len() > MAX_SALE_DATA_BYTES {
        return Err(format!(
            "Invalid SaleData: larger than {MAX_SALE_DATA_BYTES} bytes"
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("Invalid SaleData: not valid JSON ({e})"))?;
    if depth(&v) > MAX_SALE_DATA_DEPTH {
        return Err(format!(
            "Invalid SaleData: nested deeper than {MAX_SALE_DATA_DEPTH} levels"
        ));
    }
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

/// How deeply arrays and objects nest in `v` (a scalar is 0), without recursion.
fn depth(v: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            serde_json::Value::Object(o) => stack.extend(o.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    deepest
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

    #[test]
    fn size_and_depth_are_limited() {
        let base = r#"{"saleData":{"totalAmount":"5","totalTax":"0","x":"#;
        let nest = |n: usize| format!("{base}{}1{}}}}}", "[".repeat(n), "]".repeat(n));
        // The document and saleData are two levels; 14 arrays make 16.
        assert!(validate(&nest(MAX_SALE_DATA_DEPTH - 2)).is_ok());
        let deep = validate(&nest(MAX_SALE_DATA_DEPTH - 1));
        assert!(deep.is_err_and(|e| e.contains("nested")));
        // Far deeper than serde_json's own recursion limit: an error, not a stack overflow.
        assert!(validate(&nest(10_000)).is_err());
        let big = format!("{base}\"{}\"}}}}", "x".repeat(MAX_SALE_DATA_BYTES));
        assert!(validate(&big).is_err_and(|e| e.contains("larger")));
        assert!(depth(&serde_json::json!(1)) == 0);
    }
}
