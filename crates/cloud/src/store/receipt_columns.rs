//! The receipt outbox's rows as both SQL backends read and write them (`receipt_deliveries`),
//! so the two cannot drift apart.

use super::columns::{from_ms, ms, parse_transaction_id, Columns};
use super::StoreError;
use crate::domain::receipts::{
    Address, AttemptOutcome, Channel, DeliveryId, DeliveryState, ReceiptCopy, ReceiptDelivery,
};

/// A `receipt_deliveries` row (`SELECT *`).
pub(super) fn delivery(row: &impl Columns) -> Result<ReceiptDelivery, StoreError> {
    let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("receipt delivery {what} {v}"));
    let channel = row.text("channel")?;
    let channel = Channel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?;
    let address = row.text("address")?;
    let address =
        Address::from_stored(channel, &address).map_err(|_| corrupt("address", &address))?;
    let copy = row.text("receipt_copy")?;
    let copy = ReceiptCopy::parse(&copy).ok_or_else(|| corrupt("copy", &copy))?;
    let state = row.text("state")?;
    let state = DeliveryState::parse(&state).ok_or_else(|| corrupt("state", &state))?;
    Ok(ReceiptDelivery {
        id: DeliveryId::from_stored(row.text("id")?),
        transaction_id: parse_transaction_id(&row.text("transaction_id")?)?,
        address,
        copy,
        state,
        attempts: row.count("attempts")?,
        next_attempt_at: from_ms(row.int("next_attempt_at")?)?,
        last_error: row.text("last_error")?,
        created_at: from_ms(row.int("created_at")?)?,
        sent_at: row.opt_int("sent_at")?.map(from_ms).transpose()?,
    })
}

/// What an attempt writes: (state, last_error, next_attempt_at, sent_at); a column left
/// `None` keeps its value (a sent delivery keeps the error of the attempt before).
pub(super) fn attempt_columns(
    outcome: &AttemptOutcome,
) -> (&'static str, Option<&str>, Option<i64>, Option<i64>) {
    match outcome {
        AttemptOutcome::Sent { at } => (DeliveryState::Sent.as_str(), None, None, Some(ms(*at))),
        AttemptOutcome::Retry { at, error } => (
            DeliveryState::Pending.as_str(),
            Some(error),
            Some(ms(*at)),
            None,
        ),
        AttemptOutcome::GaveUp { error } => {
            (DeliveryState::Failed.as_str(), Some(error), None, None)
        }
    }
}
