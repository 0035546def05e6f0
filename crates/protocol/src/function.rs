//! The functions a POS can ask a device to run (`TransactionType`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One function of the POS API's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Function {
    CardPurchase,
    CardRefund,
    CardPurchasePlusCash,
    CardCashAdvance,
    CardAuthorise,
    CardFinalise,
    QrMerchantPurchase,
    QrConsumerPurchase,
    QrRefund,
    AcquirerLogon,
    AcquirerSettlementInquiry,
    AcquirerSettlementCutover,
    JournalReprintReceipt,
    JournalGetTransResult,
    TerminalGetStatus,
    TerminalReadCard,
    /// eftcloud: reverse an approved payment before settlement (`/void`).
    CardVoid,
    /// eftcloud: change the tip of an approved payment before settlement (`/adjust`).
    CardTipAdjust,
    /// eftcloud: raise an approved pre-authorisation (`/increment`).
    CardTopUp,
    /// eftcloud: release what is left of a pre-authorisation (`/release`).
    CardRelease,
    /// eftcloud terminal action: ask the customer for input (`/pos/register/input`).
    TerminalInput,
    /// eftcloud terminal action: print on the terminal's printer (`/pos/register/print`).
    TerminalPrint,
    /// eftcloud terminal action: show a QR code on the terminal's screen (`/pos/register/qr`).
    TerminalShowQr,
}

/// A `TransactionType` that is not in the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unknown TransactionType '{0}'")]
pub struct UnknownFunction(pub String);

impl Function {
    /// Every function, in the order of the spec's table.
    pub const ALL: [Function; 16] = [
        Function::CardPurchase,
        Function::CardRefund,
        Function::CardPurchasePlusCash,
        Function::CardCashAdvance,
        Function::CardAuthorise,
        Function::CardFinalise,
        Function::QrMerchantPurchase,
        Function::QrConsumerPurchase,
        Function::QrRefund,
        Function::AcquirerLogon,
        Function::AcquirerSettlementInquiry,
        Function::AcquirerSettlementCutover,
        Function::JournalReprintReceipt,
        Function::JournalGetTransResult,
        Function::TerminalGetStatus,
        Function::TerminalReadCard,
    ];

    /// eftcloud's follow-up operations on an earlier payment, named by that payment's
    /// reference: never a SmartConnect `TransactionType` (the POS API's routes for them are
    /// `/pos/transaction/{id}/void`, `/adjust`, `/increment`, `/release`).
    pub const FOLLOW_UPS: [Function; 4] = [
        Function::CardVoid,
        Function::CardTipAdjust,
        Function::CardTopUp,
        Function::CardRelease,
    ];

    /// eftcloud's terminal actions: jobs the terminal runs for the counter that move no
    /// money, each with a route of its own under `/pos/register/` (never a SmartConnect
    /// `TransactionType`). They share a transaction's lifecycle: stored before the POS's 200,
    /// offered, accepted, started, completed, one at a time per device.
    pub const ACTIONS: [Function; 3] = [
        Function::TerminalInput,
        Function::TerminalPrint,
        Function::TerminalShowQr,
    ];

    /// Whether this is one of [`Function::ACTIONS`].
    pub fn is_action(self) -> bool {
        Function::ACTIONS.contains(&self)
    }

    /// Whether this is one of [`Function::FOLLOW_UPS`].
    pub fn is_follow_up(self) -> bool {
        Function::FOLLOW_UPS.contains(&self)
    }

    /// The wire name, e.g. `Card.Purchase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Function::CardPurchase => "Card.Purchase",
            Function::CardRefund => "Card.Refund",
            Function::CardPurchasePlusCash => "Card.PurchasePlusCash",
            Function::CardCashAdvance => "Card.CashAdvance",
            Function::CardAuthorise => "Card.Authorise",
            Function::CardFinalise => "Card.Finalise",
            Function::QrMerchantPurchase => "QR.Merchant.Purchase",
            Function::QrConsumerPurchase => "QR.Consumer.Purchase",
            Function::QrRefund => "QR.Refund",
            Function::AcquirerLogon => "Acquirer.Logon",
            Function::AcquirerSettlementInquiry => "Acquirer.Settlement.Inquiry",
            Function::AcquirerSettlementCutover => "Acquirer.Settlement.Cutover",
            Function::JournalReprintReceipt => "Journal.ReprintReceipt",
            Function::JournalGetTransResult => "Journal.GetTransResult",
            Function::TerminalGetStatus => "Terminal.GetStatus",
            Function::TerminalReadCard => "Terminal.ReadCard",
            Function::CardVoid => "Card.Void",
            Function::CardTipAdjust => "Card.TipAdjust",
            Function::CardTopUp => "Card.TopUp",
            Function::CardRelease => "Card.Release",
            Function::TerminalInput => "Terminal.Input",
            Function::TerminalPrint => "Terminal.Print",
            Function::TerminalShowQr => "Terminal.ShowQr",
        }
    }

    /// Whether the function moves money, and so completes with a `TransactionResult`.
    pub fn is_financial(self) -> bool {
        matches!(
            self,
            Function::CardPurchase
                | Function::CardRefund
                | Function::CardPurchasePlusCash
                | Function::CardCashAdvance
                | Function::CardAuthorise
                | Function::CardFinalise
                | Function::QrMerchantPurchase
                | Function::QrConsumerPurchase
                | Function::QrRefund
                | Function::CardVoid
                | Function::CardTipAdjust
                | Function::CardTopUp
                | Function::CardRelease
        )
    }
}

impl FromStr for Function {
    type Err = UnknownFunction;
    /// Matches the wire name exactly as the table spells it, ignoring ASCII case and spaces
    /// around it (clients are lenient about case elsewhere, so the server is here too). The
    /// follow-ups and the terminal actions parse too (they are stored and sent to devices);
    /// the POS API's `TransactionType` refuses them (`TransactionRequest::parse`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Function::ALL
            .into_iter()
            .chain(Function::FOLLOW_UPS)
            .chain(Function::ACTIONS)
            .find(|f| f.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownFunction(s.to_string()))
    }
}

impl TryFrom<String> for Function {
    type Error = UnknownFunction;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Function> for String {
    fn from(f: Function) -> String {
        f.as_str().to_string()
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for f in Function::ALL
            .into_iter()
            .chain(Function::FOLLOW_UPS)
            .chain(Function::ACTIONS)
        {
            assert_eq!(f.as_str().parse::<Function>(), Ok(f));
            assert_eq!(f.as_str().to_lowercase().parse::<Function>(), Ok(f));
        }
    }

    #[test]
    fn follow_ups_are_financial_and_apart_from_the_table() {
        for f in Function::FOLLOW_UPS {
            assert!(f.is_financial() && f.is_follow_up(), "{f}");
            assert!(!Function::ALL.contains(&f), "{f}");
        }
        assert!(Function::ALL.iter().all(|f| !f.is_follow_up()));
    }

    #[test]
    fn actions_move_no_money_and_are_apart_from_the_table() {
        for f in Function::ACTIONS {
            assert!(
                !f.is_financial() && f.is_action() && !f.is_follow_up(),
                "{f}"
            );
            assert!(!Function::ALL.contains(&f), "{f}");
        }
        assert!(Function::ALL.iter().all(|f| !f.is_action()));
        assert!(Function::FOLLOW_UPS.iter().all(|f| !f.is_action()));
    }

    #[test]
    fn unknown_is_an_error() {
        assert!("Card.Steal".parse::<Function>().is_err());
        assert!("".parse::<Function>().is_err());
    }
}
