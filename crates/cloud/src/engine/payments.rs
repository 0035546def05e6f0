//! Follow-ups of a payment by reference: referenced refunds, voids, tip adjustments, top-ups,
//! completions and releases of pre-authorisations. Each is a transaction of its own (stored
//! before the POS's 200, offered, accepted, started, completed, on its timeline, idempotent by
//! `PosReference`), which names its original; whether it fits the original is decided by
//! `domain::payments` in the commit that stores it.

use super::transactions::{NewTransaction, StartError, Started};
use super::{Engine, EngineError};
use crate::domain::accounts::Principal;
use crate::domain::lifecycle::Phase;
use crate::domain::payments::PaymentRecord;
use crate::domain::TransactionRecord;
use protocol::{Cents, Currency, Function, OriginalPayment, RegisterKey, TransactionId};
use protocol::{TransactionRequest, TransactionResult};

/// How the POS names the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginalRef {
    /// Its `transactionId`.
    Id(TransactionId),
    /// The `PosReference` the POS gave it: the register's own first, else the only one of the
    /// merchant's transactions with it.
    PosReference(String),
}

/// What a follow-up asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUpKind {
    /// Refund this much of a purchase (`Card.Refund` with an original).
    Refund(Cents),
    /// Reverse the whole payment before settlement.
    Void,
    /// Make the tip this much (0 removes it).
    TipAdjust(u64),
    /// Raise a pre-authorisation by this much.
    TopUp(Cents),
    /// Capture this much of a pre-authorisation (`Card.Finalise` with an original).
    Capture(Cents),
    /// Release what is left of a pre-authorisation.
    Release,
}

impl FollowUpKind {
    /// The function the device runs.
    pub fn function(&self) -> Function {
        match self {
            FollowUpKind::Refund(_) => Function::CardRefund,
            FollowUpKind::Void => Function::CardVoid,
            FollowUpKind::TipAdjust(_) => Function::CardTipAdjust,
            FollowUpKind::TopUp(_) => Function::CardTopUp,
            FollowUpKind::Capture(_) => Function::CardFinalise,
            FollowUpKind::Release => Function::CardRelease,
        }
    }
}

/// A follow-up as the POS API hands it to the engine.
#[derive(Debug, Clone)]
pub struct NewFollowUp {
    pub kind: FollowUpKind,
    pub original: OriginalRef,
    /// The register whose device runs it; the original's register when absent.
    pub register: Option<RegisterKey>,
    /// If the POS named one: must be the original's.
    pub currency: Option<Currency>,
    pub callback_url: Option<String>,
    pub pos_reference: Option<String>,
}

impl Engine {
    /// Finds a follow-up's original as `principal` may see it: by id, or by the POS's
    /// reference (the register's own transaction first, else the only transaction of the
    /// register's merchant with that reference).
    pub async fn find_original(
        &self,
        principal: &Principal,
        register: Option<&RegisterKey>,
        original: &OriginalRef,
    ) -> Result<TransactionRecord, StartError> {
        let found = match original {
            OriginalRef::Id(id) => self.transaction_as(principal, id).await?,
            OriginalRef::PosReference(reference) => {
                let register = register.ok_or(StartError::UnknownOriginal)?;
                let store = self.store();
                match store.transaction_by_reference(register, reference).await? {
                    Some(own) => Some(own),
                    None => {
                        let Some(route) = store.route(register).await? else {
                            return Err(StartError::NotPaired);
                        };
                        let mut all = store
                            .transactions_by_merchant_reference(
                                &route.device.merchant_id,
                                reference,
                            )
                            .await?;
                        if all.len() > 1 {
                            return Err(StartError::AmbiguousOriginal(reference.clone()));
                        }
                        all.pop()
                    }
                }
                .filter(|t| super::queries::sees(principal, t))
            }
        };
        found.ok_or(StartError::UnknownOriginal)
    }

    /// Starts a follow-up of `original` (found by [`Self::find_original`]) on the register's
    /// device (the original's register when none is given).
    pub async fn start_follow_up(
        &self,
        principal: &Principal,
        original: &TransactionRecord,
        new: NewFollowUp,
    ) -> Result<Started, StartError> {
        let mut request = TransactionRequest::of(new.kind.function());
        match new.kind {
            FollowUpKind::Refund(amount) | FollowUpKind::TopUp(amount) => {
                request.amount_total = Some(amount)
            }
            FollowUpKind::Capture(amount) => {
                request.amount_final = Some(amount);
                // SmartConnect's completion names its authorisation by this reference.
                request.transaction_reference = original.request.transaction_reference.clone();
            }
            FollowUpKind::TipAdjust(tip) => request.amount_tip = Some(tip),
            FollowUpKind::Void | FollowUpKind::Release => {}
        }
        request.currency = new.currency.or(original.request.currency);
        // What the device is told the payment comes to: as it stands with its follow-ups
        // (the store decides again, in the insert's commit, whether this one fits).
        let summary = match self.store().payment(&original.id).await? {
            Some(p) => p.summary(),
            None => return Err(StartError::UnknownOriginal),
        };
        let amount = match new.kind {
            FollowUpKind::TopUp(_) | FollowUpKind::Capture(_) | FollowUpKind::Release => {
                summary.authorised
            }
            FollowUpKind::TipAdjust(_) => summary.amount.saturating_sub(summary.tip),
            FollowUpKind::Refund(_) | FollowUpKind::Void => summary.amount,
        };
        let fields = match &original.phase {
            Phase::Completed(c) => OriginalPayment::FIELDS
                .iter()
                .filter_map(|k| Some((k.to_string(), c.fields.get(*k)?.clone())))
                .collect(),
            _ => Default::default(),
        };
        request.original = Some(OriginalPayment {
            transaction_id: original.id,
            function: original.request.function,
            amount,
            fields,
        });
        let register = new
            .register
            .unwrap_or_else(|| original.register.key.clone());
        self.start_transaction(NewTransaction {
            register,
            request,
            sale_data: None,
            callback_url: new.callback_url,
            pos_reference: new.pos_reference,
            merchant: principal.merchant().cloned(),
            original_merchant: Some(original.merchant_id.clone()),
        })
        .await
    }

    /// The pre-authorisation a SmartConnect `Card.Finalise` completes: the one approved
    /// `Card.Authorise` of the register's merchant with its `TransactionReference`, if exactly
    /// one is (a reference used for several leaves the completion unlinked, as SmartConnect
    /// has it).
    pub async fn authorisation_for(
        &self,
        register: &RegisterKey,
        reference: &str,
    ) -> Result<Option<TransactionId>, EngineError> {
        let store = self.store();
        let Some(route) = store.route(register).await? else {
            return Ok(None);
        };
        let found = store
            .authorisations_by_reference(&route.device.merchant_id, reference)
            .await?;
        let mut approved = found.iter().filter(|t| approved(t));
        match (approved.next(), approved.next()) {
            (Some(one), None) if found.len() < 3 => Ok(Some(one.id)),
            _ => Ok(None),
        }
    }

    /// The merchant of the device a register is paired to.
    pub async fn register_merchant(
        &self,
        register: &RegisterKey,
    ) -> Result<Option<crate::domain::accounts::MerchantId>, EngineError> {
        Ok(self
            .store()
            .route(register)
            .await?
            .map(|r| r.device.merchant_id))
    }

    /// A payment with its follow-ups, as `principal` may see it.
    pub async fn payment_as(
        &self,
        principal: &Principal,
        id: &TransactionId,
    ) -> Result<Option<PaymentRecord>, EngineError> {
        Ok(self
            .store()
            .payment(id)
            .await?
            .filter(|p| super::queries::sees(principal, &p.original)))
    }
}

/// Whether a stored transaction was approved.
pub fn approved(tx: &TransactionRecord) -> bool {
    matches!(&tx.phase, Phase::Completed(c) if c.transaction_result == Some(TransactionResult::Accepted))
}
