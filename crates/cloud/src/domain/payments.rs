//! The money lifecycle of a payment by reference: what an approved payment amounts to after
//! its follow-ups (refunds, a void, tip adjustments; top-ups, a capture or a release of a
//! pre-authorisation), and whether a new follow-up fits.
//!
//! No I/O. The store calls [`admit`] inside the commit that inserts a follow-up, with the
//! original locked and every earlier follow-up read in that same commit, so two refunds that
//! race (on one node or on two) are decided one after the other and never both fit when only
//! one does. A follow-up counts against the payment from the moment it is stored until it ends
//! not approved: an in-flight refund holds its amount, exactly as an approved one.

use super::lifecycle::Phase;
use super::records::TransactionRecord;
use protocol::{Currency, Function, TransactionId, TransactionResult};
use serde::Serialize;

/// The original payment, reduced to what the arithmetic needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: TransactionId,
    pub function: Function,
    pub currency: Currency,
    /// Completed and approved.
    pub approved: bool,
    /// What it came to as approved, in minor units: the device's `AmountTotal` (surcharge and
    /// tip included), else the amount asked for.
    pub amount: u64,
    /// The tip in `amount` (the device's `AmountTip`).
    pub tip: u64,
    /// The amount the POS asked for, which the tip percentage is taken of.
    pub base: u64,
    /// Cash out in `amount`, which is not refundable by card.
    pub cash: u64,
    /// Its device has settled (an approved cutover) since it completed.
    pub settled: bool,
}

/// Where a follow-up stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpState {
    /// Stored, not completed: its amount is held.
    InFlight,
    Approved,
    /// Declined, cancelled or failed: as if it had never been asked for.
    NotApproved,
}

/// One follow-up of a payment, reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub id: TransactionId,
    pub function: Function,
    /// The refund or top-up amount, the new tip, or the captured amount; 0 for a void or a
    /// release.
    pub amount: u64,
    pub state: FollowUpState,
}

/// A payment and its follow-ups, summed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub function: Function,
    pub currency: Currency,
    pub approved: bool,
    /// What the payment comes to now (after tip adjustments), in minor units.
    pub amount: u64,
    pub tip: u64,
    pub refunded: u64,
    /// Held by refunds still running.
    pub refunding: u64,
    pub refundable: u64,
    pub voided: bool,
    pub voiding: bool,
    /// A tip adjustment is running.
    pub adjusting: bool,
    pub settled: bool,
    /// A pre-authorisation: the amount held (the authorisation and its approved top-ups).
    pub authorised: u64,
    /// A pre-authorisation: captured by its completion (`Card.Finalise`).
    pub captured: u64,
    /// A pre-authorisation: released (what was held and not captured, once released).
    pub released: u64,
    /// A completion or a release is running.
    pub closing: bool,
    /// A top-up is running.
    pub topping_up: bool,
}

/// Why a follow-up does not fit its payment. Each message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("transaction {0} is a {1}, which {2}")]
    WrongKind(TransactionId, Function, &'static str),
    #[error("transaction {0} was not approved: there is nothing to act on")]
    NotApproved(TransactionId),
    #[error("transaction {id} has been voided: nothing is left to {what}")]
    Voided {
        id: TransactionId,
        what: &'static str,
    },
    #[error("refund of {} exceeds what is refundable: {} (refunded {}, in progress {})",
        currency.decimal(*asked), currency.decimal(*refundable), currency.decimal(*refunded), currency.decimal(*refunding))]
    ExceedsRefundable {
        asked: u64,
        refundable: u64,
        refunded: u64,
        refunding: u64,
        currency: Currency,
    },
    #[error("transaction {0} has been settled: refund it instead")]
    Settled(TransactionId),
    #[error("transaction {0} has refunds: refund the rest instead of voiding it")]
    HasRefunds(TransactionId),
    #[error("transaction {0} has a {1} in progress: wait for its outcome")]
    Busy(TransactionId, &'static str),
    #[error("tip of {} exceeds this merchant's maximum of {max_percent}% ({})", currency.decimal(*asked), currency.decimal(*max))]
    TipTooHigh {
        asked: u64,
        max: u64,
        max_percent: u32,
        currency: Currency,
    },
    #[error("pre-authorisation {0} is already {1}")]
    Closed(TransactionId, &'static str),
    #[error("completion of {} exceeds the authorised {}", currency.decimal(*asked), currency.decimal(*authorised))]
    ExceedsAuthorised {
        asked: u64,
        authorised: u64,
        currency: Currency,
    },
    #[error("Currency {asked} differs from the original's {original}")]
    CurrencyMismatch { asked: Currency, original: Currency },
    #[error("top-up would take the authorised amount past the largest amount accepted")]
    TooLarge,
}

impl Refusal {
    /// The amount still refundable, for a refusal about it (the 409's `amountRefundable`).
    pub fn refundable(&self) -> Option<u64> {
        match self {
            Refusal::ExceedsRefundable { refundable, .. } => Some(*refundable),
            Refusal::Voided { .. } => Some(0),
            _ => None,
        }
    }
}

/// What the merchant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Largest tip, as a percentage of the amount asked for.
    pub max_tip_percent: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_tip_percent: DEFAULT_MAX_TIP_PERCENT,
        }
    }
}

/// The tip limit of a merchant that did not set one.
pub const DEFAULT_MAX_TIP_PERCENT: u32 = 30;

/// A follow-up as asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub function: Function,
    /// As in [`FollowUp::amount`].
    pub amount: u64,
    pub currency: Currency,
}

/// Payments a refund may name: those that captured money from a card.
fn refundable_kind(f: Function) -> bool {
    matches!(
        f,
        Function::CardPurchase | Function::CardPurchasePlusCash | Function::CardFinalise
    )
}

/// Payments a void may name (before settlement).
fn voidable_kind(f: Function) -> bool {
    matches!(
        f,
        Function::CardPurchase
            | Function::CardPurchasePlusCash
            | Function::CardCashAdvance
            | Function::CardFinalise
    )
}

/// Payments that carry a tip.
fn tippable_kind(f: Function) -> bool {
    matches!(f, Function::CardPurchase | Function::CardFinalise)
}

/// Sums a payment's follow-ups, oldest first.
pub fn summarise(payment: &Payment, follow_ups: &[FollowUp]) -> Summary {
    use FollowUpState::*;
    let mut s = Summary {
        function: payment.function,
        currency: payment.currency,
        approved: payment.approved,
        amount: payment.amount,
        tip: payment.tip,
        refunded: 0,
        refunding: 0,
        refundable: 0,
        voided: false,
        voiding: false,
        adjusting: false,
        settled: payment.settled,
        authorised: 0,
        captured: 0,
        released: 0,
        closing: false,
        topping_up: false,
    };
    let pre_auth = payment.function == Function::CardAuthorise;
    if pre_auth && payment.approved {
        s.authorised = payment.amount;
    }
    let mut release_approved = false;
    for f in follow_ups {
        // A follow-up not approved counts as if it had never been asked for (the last arm).
        match (f.function, f.state) {
            (Function::CardRefund, Approved) => s.refunded = s.refunded.saturating_add(f.amount),
            (Function::CardRefund, InFlight) => s.refunding = s.refunding.saturating_add(f.amount),
            (Function::CardVoid, Approved) => s.voided = true,
            (Function::CardVoid, InFlight) => s.voiding = true,
            (Function::CardTipAdjust, Approved) => {
                // The latest approved adjustment is the tip.
                s.amount = s.amount.saturating_sub(s.tip).saturating_add(f.amount);
                s.tip = f.amount;
            }
            (Function::CardTipAdjust, InFlight) => s.adjusting = true,
            (Function::CardTopUp, Approved) => s.authorised = s.authorised.saturating_add(f.amount),
            (Function::CardTopUp, InFlight) => s.topping_up = true,
            (Function::CardFinalise, Approved) => s.captured = f.amount,
            (Function::CardRelease, Approved) => release_approved = true,
            (Function::CardFinalise | Function::CardRelease, InFlight) => s.closing = true,
            _ => {}
        }
    }
    if release_approved {
        s.released = s.authorised.saturating_sub(s.captured);
    }
    if refundable_kind(payment.function) && payment.approved && !s.voided && !s.voiding {
        s.refundable = s
            .amount
            .saturating_sub(payment.cash)
            .saturating_sub(s.refunded)
            .saturating_sub(s.refunding);
    }
    s
}

/// Whether `asked` fits the payment as it stands. Total: every follow-up of every payment has
/// an answer.
pub fn admit(
    payment: &Payment,
    follow_ups: &[FollowUp],
    asked: &Asked,
    policy: Policy,
) -> Result<(), Refusal> {
    let s = summarise(payment, follow_ups);
    let id = payment.id;
    if asked.currency != payment.currency {
        return Err(Refusal::CurrencyMismatch {
            asked: asked.currency,
            original: payment.currency,
        });
    }
    let wrong = |what| Err(Refusal::WrongKind(id, payment.function, what));
    match asked.function {
        Function::CardRefund => {
            if !refundable_kind(payment.function) {
                return wrong("cannot be refunded by reference");
            }
            if !payment.approved {
                return Err(Refusal::NotApproved(id));
            }
            if s.voided || s.voiding {
                return Err(Refusal::Voided { id, what: "refund" });
            }
            if s.adjusting {
                return Err(Refusal::Busy(id, "tip adjustment"));
            }
            if asked.amount > s.refundable {
                return Err(Refusal::ExceedsRefundable {
                    asked: asked.amount,
                    refundable: s.refundable,
                    refunded: s.refunded,
                    refunding: s.refunding,
                    currency: s.currency,
                });
            }
            Ok(())
        }
        Function::CardVoid => {
            if !voidable_kind(payment.function) {
                return wrong("cannot be voided");
            }
            if !payment.approved {
                return Err(Refusal::NotApproved(id));
            }
            if s.voided || s.voiding {
                return Err(Refusal::Voided { id, what: "void" });
            }
            if s.settled {
                return Err(Refusal::Settled(id));
            }
            if s.refunded > 0 || s.refunding > 0 {
                return Err(Refusal::HasRefunds(id));
            }
            if s.adjusting {
                return Err(Refusal::Busy(id, "tip adjustment"));
            }
            Ok(())
        }
        Function::CardTipAdjust => {
            if !tippable_kind(payment.function) {
                return wrong("takes no tip");
            }
            if !payment.approved {
                return Err(Refusal::NotApproved(id));
            }
            if s.voided || s.voiding {
                return Err(Refusal::Voided { id, what: "adjust" });
            }
            if s.settled {
                return Err(Refusal::Settled(id));
            }
            if s.refunded > 0 || s.refunding > 0 {
                return Err(Refusal::HasRefunds(id));
            }
            if s.adjusting {
                return Err(Refusal::Busy(id, "tip adjustment"));
            }
            let max = payment
                .base
                .saturating_mul(u64::from(policy.max_tip_percent))
                / 100;
            if asked.amount > max {
                return Err(Refusal::TipTooHigh {
                    asked: asked.amount,
                    max,
                    max_percent: policy.max_tip_percent,
                    currency: s.currency,
                });
            }
            Ok(())
        }
        Function::CardTopUp | Function::CardRelease | Function::CardFinalise => {
            if payment.function != Function::CardAuthorise {
                return wrong("is not a pre-authorisation");
            }
            if !payment.approved {
                return Err(Refusal::NotApproved(id));
            }
            if follow_ups_approved(follow_ups, Function::CardRelease) {
                return Err(Refusal::Closed(id, "released"));
            }
            if follow_ups_approved(follow_ups, Function::CardFinalise) {
                return Err(Refusal::Closed(id, "completed"));
            }
            if s.closing {
                return Err(Refusal::Busy(id, "completion or release"));
            }
            match asked.function {
                Function::CardTopUp => {
                    if s.authorised.saturating_add(asked.amount) > protocol::Cents::MAX {
                        return Err(Refusal::TooLarge);
                    }
                    Ok(())
                }
                Function::CardFinalise => {
                    if s.topping_up {
                        return Err(Refusal::Busy(id, "top-up"));
                    }
                    if asked.amount > s.authorised {
                        return Err(Refusal::ExceedsAuthorised {
                            asked: asked.amount,
                            authorised: s.authorised,
                            currency: s.currency,
                        });
                    }
                    Ok(())
                }
                _ => {
                    if s.topping_up {
                        return Err(Refusal::Busy(id, "top-up"));
                    }
                    Ok(())
                }
            }
        }
        _ => wrong("takes no follow-up of this kind"),
    }
}

fn follow_ups_approved(follow_ups: &[FollowUp], function: Function) -> bool {
    follow_ups
        .iter()
        .any(|f| f.function == function && f.state == FollowUpState::Approved)
}

/// A payment as stored: the original, its follow-ups oldest first, whether its device settled
/// since, and its merchant's policy. The store reads it in the commit that inserts a follow-up
/// (and for the POS's view of a payment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub original: TransactionRecord,
    pub follow_ups: Vec<TransactionRecord>,
    pub settled: bool,
    pub policy: Policy,
}

impl PaymentRecord {
    /// Assembles a payment from what the store read: `cutovers` are the settlements of the
    /// original's device completed after it, `max_tip_percent` its merchant's (the default if
    /// the merchant is gone).
    pub fn new(
        original: TransactionRecord,
        follow_ups: Vec<TransactionRecord>,
        cutovers: &[TransactionRecord],
        max_tip_percent: Option<u32>,
    ) -> Self {
        let settled = cutovers.iter().any(|c| {
            c.request.function == Function::AcquirerSettlementCutover
                && c.device_id == original.device_id
                && matches!(&c.phase, Phase::Completed(done) if done.is_success())
                && c.completed_at() > original.completed_at()
        });
        PaymentRecord {
            original,
            follow_ups,
            settled,
            policy: Policy {
                max_tip_percent: max_tip_percent.unwrap_or(DEFAULT_MAX_TIP_PERCENT),
            },
        }
    }

    /// The payment, reduced.
    pub fn payment(&self) -> Payment {
        Payment::of(&self.original, self.settled)
    }

    /// Its follow-ups, reduced.
    pub fn follow_ups(&self) -> Vec<FollowUp> {
        self.follow_ups.iter().map(FollowUp::of).collect()
    }

    /// Where it stands.
    pub fn summary(&self) -> Summary {
        summarise(&self.payment(), &self.follow_ups())
    }

    /// Whether the follow-up `request` fits.
    pub fn admit(&self, request: &protocol::TransactionRequest) -> Result<(), Refusal> {
        admit(
            &self.payment(),
            &self.follow_ups(),
            &asked(request),
            self.policy,
        )
    }
}

/// A minor-units amount from a device field.
fn field_amount(tx: &TransactionRecord, key: &str) -> Option<u64> {
    match &tx.phase {
        Phase::Completed(c) => c.fields.get(key)?.trim().parse().ok(),
        _ => None,
    }
}

impl Payment {
    /// The payment a stored transaction is; `settled` as the store found it.
    pub fn of(tx: &TransactionRecord, settled: bool) -> Payment {
        let approved = matches!(&tx.phase, Phase::Completed(c)
            if c.transaction_result == Some(TransactionResult::Accepted));
        let base = tx.request.headline_amount().map_or(0, protocol::Cents::get);
        Payment {
            id: tx.id,
            function: tx.request.function,
            currency: tx.request.currency(),
            approved,
            amount: field_amount(tx, "AmountTotal").unwrap_or(base),
            tip: field_amount(tx, "AmountTip").unwrap_or(0),
            base,
            cash: tx.request.amount_cash.map_or(0, protocol::Cents::get),
            settled,
        }
    }
}

impl FollowUp {
    /// The follow-up a stored transaction is.
    pub fn of(tx: &TransactionRecord) -> FollowUp {
        let state = match &tx.phase {
            Phase::Completed(c) if c.transaction_result == Some(TransactionResult::Accepted) => {
                FollowUpState::Approved
            }
            Phase::Completed(_) => FollowUpState::NotApproved,
            Phase::Offered { .. } | Phase::Started { .. } => FollowUpState::InFlight,
        };
        FollowUp {
            id: tx.id,
            function: tx.request.function,
            amount: asked_amount(&tx.request),
            state,
        }
    }
}

/// What a follow-up request asks for, as [`FollowUp::amount`] counts it.
pub fn asked_amount(request: &protocol::TransactionRequest) -> u64 {
    match request.function {
        Function::CardTipAdjust => request.amount_tip.unwrap_or(0),
        Function::CardFinalise => request.amount_final.map_or(0, protocol::Cents::get),
        _ => request.amount_total.map_or(0, protocol::Cents::get),
    }
}

/// The follow-up asked for by a request.
pub fn asked(request: &protocol::TransactionRequest) -> Asked {
    Asked {
        function: request.function,
        amount: asked_amount(request),
        currency: request.currency(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use proptest::prelude::*;
    use FollowUpState::*;

    fn purchase(amount: u64) -> Payment {
        Payment {
            id: TransactionId::new(),
            function: Function::CardPurchase,
            currency: Currency::AUD,
            approved: true,
            amount,
            tip: 0,
            base: amount,
            cash: 0,
            settled: false,
        }
    }

    fn pre_auth(amount: u64) -> Payment {
        Payment {
            function: Function::CardAuthorise,
            ..purchase(amount)
        }
    }

    fn f(function: Function, amount: u64, state: FollowUpState) -> FollowUp {
        FollowUp {
            id: TransactionId::new(),
            function,
            amount,
            state,
        }
    }

    fn ask(function: Function, amount: u64) -> Asked {
        Asked {
            function,
            amount,
            currency: Currency::AUD,
        }
    }

    fn admits(p: &Payment, fs: &[FollowUp], function: Function, amount: u64) -> bool {
        admit(p, fs, &ask(function, amount), Policy::default()).is_ok()
    }

    #[test]
    fn refunds_count_approved_and_in_flight_but_not_declined() {
        let p = purchase(1000);
        let fs = [
            f(Function::CardRefund, 300, Approved),
            f(Function::CardRefund, 200, InFlight),
            f(Function::CardRefund, 400, NotApproved),
        ];
        let s = summarise(&p, &fs);
        assert_eq!((s.refunded, s.refunding, s.refundable), (300, 200, 500));
        assert!(admits(&p, &fs, Function::CardRefund, 500));
        let e = admit(&p, &fs, &ask(Function::CardRefund, 501), Policy::default());
        assert_eq!(e.as_ref().err().and_then(Refusal::refundable), Some(500));
        assert!(matches!(
            e,
            Err(Refusal::ExceedsRefundable { asked: 501, .. })
        ));
    }

    #[test]
    fn refund_rules() {
        let p = purchase(1000);
        assert!(admits(&p, &[], Function::CardRefund, 1000));
        let declined = Payment {
            approved: false,
            ..p.clone()
        };
        assert!(matches!(
            admit(
                &declined,
                &[],
                &ask(Function::CardRefund, 1),
                Policy::default()
            ),
            Err(Refusal::NotApproved(_))
        ));
        for kind in [
            Function::CardRefund,
            Function::CardAuthorise,
            Function::TerminalGetStatus,
        ] {
            let other = Payment {
                function: kind,
                ..p.clone()
            };
            assert!(!admits(&other, &[], Function::CardRefund, 1), "{kind}");
        }
        let cash = Payment {
            function: Function::CardPurchasePlusCash,
            cash: 400,
            ..p.clone()
        };
        assert_eq!(summarise(&cash, &[]).refundable, 600);
        let voided = [f(Function::CardVoid, 0, Approved)];
        assert!(matches!(
            admit(
                &p,
                &voided,
                &ask(Function::CardRefund, 1),
                Policy::default()
            ),
            Err(Refusal::Voided { .. })
        ));
        let aud_vs_jpy = Asked {
            currency: Currency::parse("JPY").unwrap_or_default(),
            ..ask(Function::CardRefund, 1)
        };
        assert!(matches!(
            admit(&p, &[], &aud_vs_jpy, Policy::default()),
            Err(Refusal::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn void_rules() {
        let p = purchase(1000);
        assert!(admits(&p, &[], Function::CardVoid, 0));
        let settled = Payment {
            settled: true,
            ..p.clone()
        };
        assert!(matches!(
            admit(
                &settled,
                &[],
                &ask(Function::CardVoid, 0),
                Policy::default()
            ),
            Err(Refusal::Settled(_))
        ));
        for fs in [
            vec![f(Function::CardVoid, 0, InFlight)],
            vec![f(Function::CardVoid, 0, Approved)],
        ] {
            assert!(matches!(
                admit(&p, &fs, &ask(Function::CardVoid, 0), Policy::default()),
                Err(Refusal::Voided { .. })
            ));
        }
        assert!(admits(
            &p,
            &[f(Function::CardVoid, 0, NotApproved)],
            Function::CardVoid,
            0
        ));
        assert!(matches!(
            admit(
                &p,
                &[f(Function::CardRefund, 1, InFlight)],
                &ask(Function::CardVoid, 0),
                Policy::default()
            ),
            Err(Refusal::HasRefunds(_))
        ));
        let voided = summarise(&p, &[f(Function::CardVoid, 0, Approved)]);
        assert!(voided.voided);
        assert_eq!(voided.refundable, 0);
        assert!(!admits(&pre_auth(100), &[], Function::CardVoid, 0));
    }

    #[test]
    fn tips_are_bounded_by_the_merchant_percentage_and_replace_each_other() {
        let p = purchase(1000);
        let policy = Policy {
            max_tip_percent: 20,
        };
        let tip = |amount| admit(&p, &[], &ask(Function::CardTipAdjust, amount), policy);
        assert!(tip(200).is_ok());
        assert!(tip(0).is_ok());
        assert!(matches!(
            tip(201),
            Err(Refusal::TipTooHigh { max: 200, .. })
        ));
        let fs = [
            f(Function::CardTipAdjust, 150, Approved),
            f(Function::CardTipAdjust, 100, Approved),
        ];
        let s = summarise(&p, &fs);
        assert_eq!((s.amount, s.tip, s.refundable), (1100, 100, 1100));
        let running = [f(Function::CardTipAdjust, 100, InFlight)];
        assert!(matches!(
            admit(&p, &running, &ask(Function::CardTipAdjust, 50), policy),
            Err(Refusal::Busy(..))
        ));
        assert!(matches!(
            admit(&p, &running, &ask(Function::CardRefund, 50), policy),
            Err(Refusal::Busy(..))
        ));
        let settled = Payment {
            settled: true,
            ..p.clone()
        };
        assert!(matches!(
            admit(&settled, &[], &ask(Function::CardTipAdjust, 1), policy),
            Err(Refusal::Settled(_))
        ));
    }

    #[test]
    fn pre_authorisations_top_up_then_capture_or_release() {
        let p = pre_auth(10_000);
        let fs = vec![
            f(Function::CardTopUp, 5_000, Approved),
            f(Function::CardTopUp, 9_999, NotApproved),
        ];
        assert_eq!(summarise(&p, &fs).authorised, 15_000);
        assert!(admits(&p, &fs, Function::CardFinalise, 15_000));
        assert!(matches!(
            admit(
                &p,
                &fs,
                &ask(Function::CardFinalise, 15_001),
                Policy::default()
            ),
            Err(Refusal::ExceedsAuthorised {
                authorised: 15_000,
                ..
            })
        ));
        let mut captured = fs.clone();
        captured.push(f(Function::CardFinalise, 12_000, Approved));
        let s = summarise(&p, &captured);
        assert_eq!((s.captured, s.released), (12_000, 0));
        for next in [
            Function::CardTopUp,
            Function::CardRelease,
            Function::CardFinalise,
        ] {
            assert!(matches!(
                admit(&p, &captured, &ask(next, 1), Policy::default()),
                Err(Refusal::Closed(_, "completed"))
            ));
        }
        let mut released = fs.clone();
        released.push(f(Function::CardRelease, 0, Approved));
        assert_eq!(summarise(&p, &released).released, 15_000);
        assert!(matches!(
            admit(
                &p,
                &released,
                &ask(Function::CardFinalise, 1),
                Policy::default()
            ),
            Err(Refusal::Closed(_, "released"))
        ));
        let topping = [f(Function::CardTopUp, 1, InFlight)];
        assert!(admits(&p, &topping, Function::CardTopUp, 1));
        assert!(!admits(&p, &topping, Function::CardFinalise, 1));
        assert!(!admits(&purchase(100), &[], Function::CardTopUp, 1));
        assert!(matches!(
            admit(
                &pre_auth(protocol::Cents::MAX),
                &[],
                &ask(Function::CardTopUp, 1),
                Policy::default()
            ),
            Err(Refusal::TooLarge)
        ));
    }

    #[test]
    fn refusals_say_what_is_left_to_refund() {
        let id = TransactionId::new();
        assert_eq!(Refusal::Voided { id, what: "refund" }.refundable(), Some(0));
        assert_eq!(Refusal::Settled(id).refundable(), None);
        // Nothing is refundable of a declined payment, nor of one that is not a capture.
        let declined = Payment {
            approved: false,
            ..purchase(1000)
        };
        assert_eq!(summarise(&declined, &[]).refundable, 0);
        assert_eq!(summarise(&pre_auth(1000), &[]).refundable, 0);
        // Only an approved pre-authorisation holds anything.
        assert_eq!(summarise(&purchase(1000), &[]).authorised, 0);
        let refused = Payment {
            approved: false,
            ..pre_auth(1000)
        };
        assert_eq!(summarise(&refused, &[]).authorised, 0);
        assert_eq!(summarise(&pre_auth(1000), &[]).authorised, 1000);
    }

    #[test]
    fn a_tip_needs_a_clean_unsettled_purchase() {
        let p = purchase(1000);
        let policy = Policy::default();
        let tip = |fs: &[FollowUp]| admit(&p, fs, &ask(Function::CardTipAdjust, 10), policy);
        assert!(matches!(
            tip(&[f(Function::CardVoid, 0, InFlight)]),
            Err(Refusal::Voided { .. })
        ));
        assert!(matches!(
            tip(&[f(Function::CardVoid, 0, Approved)]),
            Err(Refusal::Voided { .. })
        ));
        assert!(matches!(
            tip(&[f(Function::CardRefund, 10, Approved)]),
            Err(Refusal::HasRefunds(_))
        ));
        assert!(matches!(
            tip(&[f(Function::CardRefund, 10, InFlight)]),
            Err(Refusal::HasRefunds(_))
        ));
        let cash = Payment {
            function: Function::CardPurchasePlusCash,
            ..purchase(1000)
        };
        assert!(matches!(
            admit(&cash, &[], &ask(Function::CardTipAdjust, 10), policy),
            Err(Refusal::WrongKind(..))
        ));
    }

    #[test]
    fn a_running_capture_or_release_holds_the_pre_authorisation() {
        let p = pre_auth(10_000);
        for closing in [Function::CardFinalise, Function::CardRelease] {
            let fs = [f(closing, 100, InFlight)];
            assert!(summarise(&p, &fs).closing, "{closing}");
            for next in [
                Function::CardTopUp,
                Function::CardRelease,
                Function::CardFinalise,
            ] {
                assert!(matches!(
                    admit(&p, &fs, &ask(next, 1), Policy::default()),
                    Err(Refusal::Busy(..))
                ));
            }
        }
        // A top-up to exactly the largest amount is fine; one more is not.
        let near = pre_auth(protocol::Cents::MAX - 1);
        assert!(admits(&near, &[], Function::CardTopUp, 1));
        assert!(!admits(&near, &[], Function::CardTopUp, 2));
    }

    /// A stored transaction of `function` with `request` amounts, completed with `outcome`
    /// (none: still running) and the device's `fields`.
    fn record(
        function: Function,
        amount: u64,
        outcome: Option<TransactionResult>,
        fields: &[(&str, &str)],
    ) -> TransactionRecord {
        use crate::domain::lifecycle::{CompletedBy, Completion};
        let at = DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let mut request = protocol::TransactionRequest::of(function);
        match function {
            Function::CardTipAdjust => request.amount_tip = Some(amount),
            Function::CardFinalise => request.amount_final = protocol::Cents::new(amount).ok(),
            _ => request.amount_total = protocol::Cents::new(amount).ok(),
        }
        TransactionRecord {
            id: TransactionId::new(),
            device_id: protocol::DeviceId::parse("dev").unwrap_or_else(|_| unreachable!()),
            register: protocol::RegisterInfo {
                key: protocol::RegisterKey {
                    register_id: "r".into(),
                    business_name: "b".into(),
                    vendor_name: "v".into(),
                },
                register_name: "R".into(),
            },
            merchant_id: crate::domain::accounts::MerchantId::default(),
            merchant: String::new(),
            request,
            sale_data: None,
            callback_url: None,
            pos_reference: None,
            fingerprint: String::new(),
            token: String::new(),
            token_expires_at: at,
            created_at: at,
            phase: match outcome {
                None => Phase::Started { started_at: at },
                Some(r) => Phase::Completed(Completion {
                    by: CompletedBy::Device,
                    transaction_result: Some(r),
                    result: protocol::ResultCode::Ok,
                    result_text: String::new(),
                    fields: fields
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    completed_at: at,
                    receipts: None,
                    settlement: None,
                }),
            },
            display_text: None,
        }
    }

    #[test]
    fn stored_records_reduce_to_what_the_device_reported() {
        use TransactionResult::*;
        // The device's AmountTotal (with a surcharge) and AmountTip are what was paid.
        let sale = record(
            Function::CardPurchase,
            1000,
            Some(Accepted),
            &[("AmountTotal", " 1015 "), ("AmountTip", "0")],
        );
        let p = Payment::of(&sale, false);
        assert_eq!((p.approved, p.amount, p.base, p.tip), (true, 1015, 1000, 0));
        // Without them, the amount asked for; a declined or running one is not approved.
        let bare = record(Function::CardPurchase, 700, Some(Declined), &[]);
        assert_eq!(
            (
                Payment::of(&bare, true).amount,
                Payment::of(&bare, true).approved
            ),
            (700, false)
        );
        assert!(Payment::of(&bare, true).settled);
        assert!(!Payment::of(&record(Function::CardPurchase, 5, None, &[]), false).approved);
        let running = record(Function::CardPurchase, 5, None, &[("AmountTotal", "9")]);
        assert_eq!(Payment::of(&running, false).amount, 5);

        let states: Vec<FollowUpState> = [Some(Accepted), Some(Declined), Some(Cancelled), None]
            .into_iter()
            .map(|o| FollowUp::of(&record(Function::CardRefund, 1, o, &[])).state)
            .collect();
        assert_eq!(states, vec![Approved, NotApproved, NotApproved, InFlight]);
        let amount = |f, a| FollowUp::of(&record(f, a, None, &[])).amount;
        assert_eq!(amount(Function::CardTipAdjust, 150), 150);
        assert_eq!(amount(Function::CardFinalise, 9000), 9000);
        assert_eq!(amount(Function::CardRefund, 300), 300);
        assert_eq!(amount(Function::CardVoid, 0), 0);

        // A payment record admits by its follow-ups and its merchant's policy.
        let refunds = vec![
            record(Function::CardRefund, 600, Some(Accepted), &[]),
            record(Function::CardRefund, 400, Some(Declined), &[]),
        ];
        let stored = PaymentRecord::new(sale.clone(), refunds, &[], Some(10));
        assert_eq!(stored.follow_ups().len(), 2);
        assert_eq!(stored.summary().refundable, 415);
        let mut refund = protocol::TransactionRequest::of(Function::CardRefund);
        refund.amount_total = protocol::Cents::new(416).ok();
        assert!(matches!(
            stored.admit(&refund),
            Err(Refusal::ExceedsRefundable { .. })
        ));
        refund.amount_total = protocol::Cents::new(415).ok();
        assert!(stored.admit(&refund).is_ok());
        let mut tip = protocol::TransactionRequest::of(Function::CardTipAdjust);
        tip.amount_tip = Some(101);
        let clean = PaymentRecord::new(sale.clone(), vec![], &[], Some(10));
        assert!(matches!(
            clean.admit(&tip),
            Err(Refusal::TipTooHigh { max: 100, .. })
        ));
        assert_eq!(
            PaymentRecord::new(sale.clone(), vec![], &[], None).policy,
            Policy::default()
        );
    }

    #[test]
    fn only_a_later_successful_cutover_of_the_same_device_settles() {
        use crate::domain::lifecycle::{CompletedBy, Completion};
        let sale = record(
            Function::CardPurchase,
            1000,
            Some(TransactionResult::Accepted),
            &[],
        );
        let cutover = |ok: bool, later: i64, device: &str| {
            let mut c = record(Function::AcquirerSettlementCutover, 1, None, &[]);
            c.request = protocol::TransactionRequest::of(Function::AcquirerSettlementCutover);
            c.device_id = protocol::DeviceId::parse(device).unwrap_or_else(|_| unreachable!());
            c.phase = Phase::Completed(Completion {
                by: CompletedBy::Device,
                transaction_result: None,
                result: if ok {
                    protocol::ResultCode::Ok
                } else {
                    protocol::ResultCode::Failed
                },
                result_text: String::new(),
                fields: Default::default(),
                completed_at: sale.completed_at().unwrap_or_default()
                    + chrono::Duration::seconds(later),
                receipts: None,
                settlement: None,
            });
            c
        };
        let settled =
            |c: TransactionRecord| PaymentRecord::new(sale.clone(), vec![], &[c], None).settled;
        assert!(settled(cutover(true, 1, "dev")));
        assert!(!settled(cutover(false, 1, "dev")));
        assert!(!settled(cutover(true, 0, "dev")));
        assert!(!settled(cutover(true, 1, "other")));
        let mut not_a_cutover = cutover(true, 1, "dev");
        not_a_cutover.request = protocol::TransactionRequest::of(Function::AcquirerLogon);
        assert!(!settled(not_a_cutover));
    }

    fn arb_follow_up() -> impl Strategy<Value = (Function, u64, FollowUpState)> {
        (
            proptest::sample::select(vec![
                Function::CardRefund,
                Function::CardRefund,
                Function::CardVoid,
                Function::CardTipAdjust,
            ]),
            0u64..700,
            proptest::sample::select(vec![InFlight, Approved, NotApproved]),
        )
    }

    proptest! {
        /// Whatever follow-ups are asked for, in whatever order, and however they end: what
        /// is admitted never refunds more than the payment came to, and a voided payment is
        /// never also refunded.
        #[test]
        fn admitted_follow_ups_never_overdraw(
            amount in 1u64..2000,
            asks in proptest::collection::vec(arb_follow_up(), 0..25),
        ) {
            let p = purchase(amount);
            let mut admitted: Vec<FollowUp> = Vec::new();
            for (function, n, outcome) in asks {
                if admit(&p, &admitted, &ask(function, n), Policy { max_tip_percent: 50 }).is_ok() {
                    admitted.push(f(function, n, InFlight));
                    // It ends some time later: in flight, approved or not.
                    if let Some(last) = admitted.last_mut() {
                        last.state = outcome;
                    }
                }
                let s = summarise(&p, &admitted);
                prop_assert!(s.refunded + s.refunding <= s.amount);
                prop_assert!(!(s.voided && s.refunded > 0));
                prop_assert!(s.refundable <= s.amount);
                prop_assert_eq!(s.refundable, if s.voided || s.voiding { 0 } else {
                    s.amount - s.refunded - s.refunding
                });
            }
        }
    }
}
