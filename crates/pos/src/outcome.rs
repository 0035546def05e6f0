//! Reading a completed transaction: did the POS get what it asked for?

use protocol::pos_api::{keys, TransactionEnvelope};
use protocol::{Function, ResultCode, TransactionResult};

/// Whether a completed transaction succeeded. A financial function succeeds only when the money
/// moved (`TransactionResult` is `OK-ACCEPTED`); a declined payment is a function that ran fine,
/// so `Result` alone would mislead. A non-financial function succeeds when it ran
/// (`Result` is `OK`); its `TransactionResult`, if any, may describe another transaction
/// (`Journal.GetTransResult`). A pending envelope is never a success.
pub fn outcome_is_success(env: &TransactionEnvelope) -> bool {
    if !env.is_completed() {
        return false;
    }
    let transaction_result = env
        .field(keys::TRANSACTION_RESULT)
        .and_then(TransactionResult::parse);
    let result = env.field(keys::RESULT).and_then(ResultCode::parse);
    let financial = match env.field(keys::FUNCTION).map(str::parse::<Function>) {
        Some(Ok(f)) => f.is_financial(),
        // Without a known function, the presence of a TransactionResult is the best hint that
        // money was involved; judging by it is the cautious choice.
        _ => transaction_result.is_some(),
    };
    if financial {
        transaction_result.is_some_and(TransactionResult::is_accepted)
    } else {
        result == Some(ResultCode::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::pos_api::TransactionStatus;

    fn env(status: TransactionStatus, data: &[(&str, &str)]) -> TransactionEnvelope {
        TransactionEnvelope {
            transaction_id: "t".into(),
            transaction_time_stamp: "20240101000000000".into(),
            merchant_id: "m".into(),
            device_id: "d".into(),
            transaction_status: status,
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            merchant_access_token: "k".into(),
            receipts: None,
        }
    }

    fn completed(data: &[(&str, &str)]) -> bool {
        outcome_is_success(&env(TransactionStatus::Completed, data))
    }

    #[test]
    fn financial_needs_ok_accepted() {
        let f = ("Function", "Card.Purchase");
        assert!(completed(&[
            f,
            ("TransactionResult", "OK-ACCEPTED"),
            ("Result", "OK")
        ]));
        assert!(!completed(&[
            f,
            ("TransactionResult", "OK-DECLINED"),
            ("Result", "OK")
        ]));
        assert!(!completed(&[
            f,
            ("TransactionResult", "CANCELLED"),
            ("Result", "OK")
        ]));
        assert!(!completed(&[
            f,
            ("TransactionResult", "CANCELLED"),
            ("Result", "FAILED-INTERFACE")
        ]));
        assert!(!completed(&[
            f,
            ("TransactionResult", "FAILED"),
            ("Result", "FAILED")
        ]));
        assert!(!completed(&[f, ("Result", "OK")]));
    }

    #[test]
    fn non_financial_needs_result_ok() {
        let f = ("Function", "Terminal.GetStatus");
        assert!(completed(&[f, ("Result", "OK"), ("Status", "READY")]));
        assert!(!completed(&[f, ("Result", "FAILED")]));
        assert!(!completed(&[f]));
        // The last transaction was declined, but fetching it worked.
        assert!(completed(&[
            ("Function", "Journal.GetTransResult"),
            ("Result", "OK"),
            ("TransactionResult", "OK-DECLINED")
        ]));
    }

    #[test]
    fn pending_is_never_success() {
        assert!(!outcome_is_success(&env(
            TransactionStatus::Pending,
            &[
                ("Function", "Card.Purchase"),
                ("TransactionResult", "OK-ACCEPTED")
            ]
        )));
        assert!(!outcome_is_success(&env(
            TransactionStatus::Pending,
            &[
                ("Function", "Card.Purchase"),
                ("TransactionResult", "OK-DELAYED")
            ]
        )));
    }

    #[test]
    fn unknown_function_is_judged_cautiously() {
        assert!(!completed(&[
            ("TransactionResult", "OK-DECLINED"),
            ("Result", "OK")
        ]));
        assert!(completed(&[
            ("TransactionResult", "OK-ACCEPTED"),
            ("Result", "OK")
        ]));
        assert!(completed(&[("Result", "OK")]));
    }
}
