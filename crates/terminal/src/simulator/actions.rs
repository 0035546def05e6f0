//! The simulator's terminal actions: the customer's input (`Terminal.Input`), the printer
//! (`Terminal.Print`) and a QR code on the screen (`Terminal.ShowQr`). They move no money, so
//! their results carry no `transaction_result`.
//!
//! The simulated customer answers at once (within [`MAX_ANSWER_DELAY`]) with a fixed answer
//! per kind that passes the request's rules; triggers in the text change that:
//!
//! | action | trigger | outcome |
//! |--------|---------|---------|
//! | input | `#cancel` in the prompt | the customer cancels: `CANCELLED`, `CancelReason` `customer` |
//! | input | `#timeout` in the prompt | no answer: after `timeout_secs` (the configured `input_timeout_secs` when it is 0), `CANCELLED`, `CancelReason` `timeout` |
//! | input | `#slow` in the prompt | answers after [`SLOW_ANSWER`] (time for a POS cancel) |
//! | print | `#nopaper` in a text line | `FAILED`, `PrinterStatus` `NO_PAPER` |
//! | print | no printer (`--no-printer`) | `FAILED`, `PrinterStatus` `NO_PRINTER` |
//! | QR | `#cancel` in the caption | the customer cancels: `CANCELLED`, `CancelReason` `customer` |
//! | QR | `#timeout` in the caption | `OK`, `QrOutcome` `timeout` after `timeout_secs` |
//! | QR | `#slow` in the caption | dismissed after [`SLOW_ANSWER`] |
//!
//! A `cancel` from the POS while an input or QR code waits ends it `CANCELLED`, `CancelReason`
//! `pos`. With an [`Operator`] (`--interactive`), the operator answers inputs and dismisses QR
//! codes on stdin instead, and the input and QR triggers do not apply.

use super::{device_result, Simulator};
use crate::backend::BackendTransaction;
use crate::console::Operator;
use protocol::action::{
    cancel_reason, field, printer_status, InputKind, InputRequest, PrintLine, QrDisplay,
};
use protocol::device::{prompt, DeviceResult};
use protocol::timestamp::device_local_now;
use protocol::{ResultCode, TransactionResult};
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest the simulated customer takes to answer (the simulator's `step_delay`, if
/// shorter), so tests stay quick.
pub const MAX_ANSWER_DELAY: Duration = Duration::from_millis(100);
/// How long an answer takes with `#slow`.
pub const SLOW_ANSWER: Duration = Duration::from_secs(2);

/// The simulated signature: one stroke, as a pad draws it (curves only, no shorthand
/// commands, which the protocol's check refuses).
pub const SIGNATURE: &str = "M10 80 C 40 10, 65 10, 95 80 C 125 150, 150 150, 180 80";
/// The signature's `viewBox`.
pub const SIGNATURE_VIEW_BOX: &str = "0 0 400 150";
/// The simulated customer's email address (fitted to the rules' lengths).
pub const EMAIL: &str = "customer@example.com";
/// The simulated customer's phone number.
pub const PHONE: &str = "+61400000000";
/// The simulated customer's text (fitted to the rules' lengths).
pub const TEXT: &str = "Simulated answer";
/// The simulated number when the rules set no minimum.
pub const NUMBER: i64 = 42;

/// The `progress` prompt of an input other than a signature (the protocol names none).
const INPUT_PROMPT: &str = "input";

/// How a customer interaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    /// The customer answered (the result's fields).
    Answered(BTreeMap<String, String>),
    /// The QR code was dismissed.
    Dismissed,
    /// Cancelled, with the `CancelReason`.
    Cancelled(&'static str),
    /// The timeout passed.
    TimedOut,
}

impl Simulator {
    /// How long the simulated customer takes to answer.
    fn answer_delay(&self) -> Duration {
        self.config.step_delay.min(MAX_ANSWER_DELAY)
    }

    /// Runs the customer's part against the POS's cancel and the timeout.
    async fn against_deadline(
        &self,
        tx: &BackendTransaction,
        timeout_secs: u32,
        customer: impl std::future::Future<Output = Ended>,
    ) -> Ended {
        let timeout = Duration::from_secs(u64::from(timeout_secs));
        tokio::select! {
            biased;
            _ = tx.cancel.cancelled() => Ended::Cancelled(cancel_reason::POS),
            ended = customer => ended,
            _ = tokio::time::sleep(timeout) => Ended::TimedOut,
        }
    }

    /// `Terminal.Input`.
    pub(super) async fn input(&self, tx: &BackendTransaction) -> DeviceResult {
        let Some(req) = &tx.offer.request.input else {
            return failed(tx, "NO INPUT IN REQUEST", BTreeMap::new());
        };
        let mut text = req.prompt.clone();
        if req.kind == InputKind::Selection {
            let options: Vec<String> = req
                .options
                .iter()
                .enumerate()
                .map(|(i, o)| format!("{}. {o}", i + 1))
                .collect();
            text = format!("{text}\n{}", options.join(" / "));
        }
        let shown = if req.kind == InputKind::Signature {
            prompt::SIGNATURE_REQUIRED
        } else {
            INPUT_PROMPT
        };
        tx.progress.show(shown, text).await;
        let customer = async {
            match &self.operator {
                Some(op) => ask_input(op, req).await,
                None => self.simulated_input(req).await,
            }
        };
        let timeout = input_timeout(req, &tx.settings);
        let ended = self.against_deadline(tx, timeout, customer).await;
        let mut fields = self.base_fields(tx, &device_local_now());
        match ended {
            Ended::Answered(answer) => {
                // The cloud refuses an answer its rules do not pass; never send one.
                if let Err(e) = req.check_answer(&answer) {
                    return failed(tx, &format!("Cannot answer within the rules: {e}"), fields);
                }
                fields.extend(answer);
                ok(tx, "Answered", fields)
            }
            Ended::TimedOut => cancelled(tx, cancel_reason::TIMEOUT, fields),
            Ended::Cancelled(reason) => cancelled(tx, reason, fields),
            Ended::Dismissed => failed(tx, "No answer", fields),
        }
    }

    async fn simulated_input(&self, req: &InputRequest) -> Ended {
        if req.prompt.contains("#timeout") {
            return std::future::pending().await;
        }
        let delay = if req.prompt.contains("#slow") {
            SLOW_ANSWER
        } else {
            self.answer_delay()
        };
        tokio::time::sleep(delay).await;
        if req.prompt.contains("#cancel") {
            return Ended::Cancelled(cancel_reason::CUSTOMER);
        }
        Ended::Answered(simulated_answer(req))
    }

    /// `Terminal.Print`.
    pub(super) async fn print(&self, tx: &BackendTransaction) -> DeviceResult {
        let Some(job) = &tx.offer.request.print else {
            return failed(tx, "NO PRINT JOB IN REQUEST", BTreeMap::new());
        };
        let mut fields = self.base_fields(tx, &device_local_now());
        let Some(columns) = tx.hardware.printer_columns else {
            fields.insert(
                field::PRINTER_STATUS.into(),
                printer_status::NO_PRINTER.into(),
            );
            return failed(tx, "No printer", fields);
        };
        tx.progress.show(prompt::PROCESSING, "Printing").await;
        if self.pause(tx, self.answer_delay()).await.is_err() {
            return cancelled(tx, cancel_reason::POS, fields);
        }
        let out_of_paper = job
            .lines
            .iter()
            .any(|l| matches!(l, PrintLine::Text { text, .. } if text.contains("#nopaper")));
        if out_of_paper {
            fields.insert(
                field::PRINTER_STATUS.into(),
                printer_status::NO_PAPER.into(),
            );
            return failed(tx, "Printer out of paper", fields);
        }
        tx.progress.printed(crate::slip::render(job, columns)).await;
        fields.insert(field::PRINTER_STATUS.into(), printer_status::OK.into());
        ok(tx, "Printed", fields)
    }

    /// `Terminal.ShowQr`.
    pub(super) async fn show_qr(&self, tx: &BackendTransaction) -> DeviceResult {
        let Some(qr) = &tx.offer.request.qr else {
            return failed(tx, "NO QR CODE IN REQUEST", BTreeMap::new());
        };
        let text = if qr.caption.is_empty() {
            format!("[QR: {}]", qr.data)
        } else {
            format!("{}\n[QR: {}]", qr.caption, qr.data)
        };
        tx.progress.show(prompt::SHOW_QR, text).await;
        let customer = async {
            match &self.operator {
                Some(op) => ask_qr(op, qr).await,
                None => self.simulated_qr(qr).await,
            }
        };
        let ended = self.against_deadline(tx, qr.timeout_secs, customer).await;
        let mut fields = self.base_fields(tx, &device_local_now());
        match ended {
            Ended::Dismissed | Ended::Answered(_) => {
                fields.insert(field::QR_OUTCOME.into(), "dismissed".into());
                ok(tx, "Dismissed", fields)
            }
            Ended::TimedOut => {
                fields.insert(field::QR_OUTCOME.into(), "timeout".into());
                ok(tx, "Timed out", fields)
            }
            Ended::Cancelled(reason) => cancelled(tx, reason, fields),
        }
    }

    async fn simulated_qr(&self, qr: &QrDisplay) -> Ended {
        if qr.caption.contains("#timeout") {
            return std::future::pending().await;
        }
        let delay = if qr.caption.contains("#slow") {
            SLOW_ANSWER
        } else {
            self.answer_delay()
        };
        tokio::time::sleep(delay).await;
        if qr.caption.contains("#cancel") {
            return Ended::Cancelled(cancel_reason::CUSTOMER);
        }
        Ended::Dismissed
    }
}

/// How long an input waits: its request's `timeout_secs`, or the configured
/// `input_timeout_secs` when the request sets none (0). The cloud fills in its default when a
/// POS names no timeout, so a 0 reaches a device only from a cloud that leaves the default to
/// the terminal's configuration.
pub fn input_timeout(req: &InputRequest, settings: &protocol::config::Settings) -> u32 {
    if req.timeout_secs == 0 {
        settings.input_timeout_secs
    } else {
        req.timeout_secs
    }
}

/// The simulated customer's answer to `req`, within its rules: see the constants above. A
/// number is the rules' minimum if set, else [`NUMBER`] (at most the maximum); an email or a
/// text is lengthened or shortened to fit the lengths; a selection is the first option.
pub fn simulated_answer(req: &InputRequest) -> BTreeMap<String, String> {
    let rules = &req.rules;
    let lengths = |natural: usize, floor: usize| {
        let min = rules.min_length.map_or(0, |m| m as usize).max(floor);
        let max = rules.max_length.map_or(usize::MAX, |m| m as usize);
        natural.clamp(min, max.max(min))
    };
    let mut fields = BTreeMap::new();
    let value = match req.kind {
        InputKind::Signature => {
            fields.insert(
                field::SIGNATURE_VIEW_BOX.to_string(),
                SIGNATURE_VIEW_BOX.to_string(),
            );
            SIGNATURE.to_string()
        }
        InputKind::Email => email_of_length(lengths(EMAIL.len(), 6)),
        InputKind::Phone => PHONE.to_string(),
        InputKind::Number => {
            let n = match (rules.min, rules.max) {
                (Some(min), _) => min,
                (None, Some(max)) => NUMBER.min(max),
                (None, None) => NUMBER,
            };
            if rules.decimals == 0 {
                n.to_string()
            } else {
                format!("{n}.{}", "0".repeat(usize::from(rules.decimals)))
            }
        }
        InputKind::Text => {
            let n = lengths(TEXT.len(), 1);
            // Repeats the answer to reach a minimum; a trailing space would read oddly.
            let mut s: String = TEXT.chars().chain(" ".chars()).cycle().take(n).collect();
            if s.ends_with(' ') {
                s.pop();
                s.push('.');
            }
            s
        }
        InputKind::Selection => {
            fields.insert(field::INPUT_INDEX.to_string(), "0".to_string());
            req.options.first().cloned().unwrap_or_default()
        }
        InputKind::Confirmation => "yes".to_string(),
    };
    fields.insert(field::INPUT_VALUE.to_string(), value);
    fields
}

/// An address of exactly `n` characters (6 at least): `customer@example.com` when `n` is its
/// length, the local part shortened or repeated otherwise, the domain shortened below 13.
fn email_of_length(n: usize) -> String {
    let domain = if n >= 13 { "@example.com" } else { "@e.co" };
    let local_len = n.saturating_sub(domain.len()).max(1);
    let local: String = "customer".chars().cycle().take(local_len).collect();
    format!("{local}{domain}")
}

/// Asks the operator for an input's answer until one passes the rules.
async fn ask_input(op: &Operator, req: &InputRequest) -> Ended {
    let mut lines = op.listen();
    let how = match req.kind {
        InputKind::Selection => format!("pick 1 to {}", req.options.len()),
        InputKind::Confirmation => "y or n".to_string(),
        InputKind::Signature => "press Enter to sign".to_string(),
        kind => format!("type the {kind}"),
    };
    op.say(&format!(
        "? the customer is asked ({}): {} — {how}, or c to cancel",
        req.kind, req.prompt
    ));
    if req.kind == InputKind::Selection {
        for (i, o) in req.options.iter().enumerate() {
            op.say(&format!("    {}. {o}", i + 1));
        }
    }
    loop {
        let line = lines.line().await;
        let line = line.trim();
        if line.eq_ignore_ascii_case("c") {
            return Ended::Cancelled(cancel_reason::CUSTOMER);
        }
        let mut fields = BTreeMap::new();
        let value = match req.kind {
            InputKind::Selection => {
                let chosen = line
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| req.options.get(i).map(|o| (i, o)));
                let Some((i, option)) = chosen else {
                    op.say(&format!("? pick a number from 1 to {}", req.options.len()));
                    continue;
                };
                fields.insert(field::INPUT_INDEX.to_string(), i.to_string());
                option.clone()
            }
            InputKind::Confirmation => match line.to_ascii_lowercase().as_str() {
                "y" | "yes" => "yes".to_string(),
                "n" | "no" => "no".to_string(),
                _ => {
                    op.say("? y or n (c to cancel)");
                    continue;
                }
            },
            InputKind::Signature => {
                if !line.is_empty() {
                    op.say("? a signature cannot be typed: press Enter to sign, c to cancel");
                    continue;
                }
                fields.insert(
                    field::SIGNATURE_VIEW_BOX.to_string(),
                    SIGNATURE_VIEW_BOX.to_string(),
                );
                SIGNATURE.to_string()
            }
            _ => line.to_string(),
        };
        if let Err(e) = req.check_value(&value) {
            op.say(&format!("? {e}: try again (c to cancel)"));
            continue;
        }
        fields.insert(field::INPUT_VALUE.to_string(), value);
        return Ended::Answered(fields);
    }
}

/// Waits for the operator to dismiss a QR code.
async fn ask_qr(op: &Operator, qr: &QrDisplay) -> Ended {
    let mut lines = op.listen();
    op.say(&format!(
        "? QR code on screen: {} {} — press Enter when the customer dismisses it, or c to cancel",
        qr.data, qr.caption
    ));
    loop {
        match lines.line().await.trim() {
            "" => return Ended::Dismissed,
            "c" | "C" => return Ended::Cancelled(cancel_reason::CUSTOMER),
            _ => op.say("? Enter to dismiss, c to cancel"),
        }
    }
}

fn ok(tx: &BackendTransaction, text: &str, fields: BTreeMap<String, String>) -> DeviceResult {
    result(tx, ResultCode::Ok, text, fields)
}

fn failed(tx: &BackendTransaction, text: &str, fields: BTreeMap<String, String>) -> DeviceResult {
    result(tx, ResultCode::Failed, text, fields)
}

fn cancelled(
    tx: &BackendTransaction,
    reason: &'static str,
    mut fields: BTreeMap<String, String>,
) -> DeviceResult {
    let text = match reason {
        cancel_reason::CUSTOMER => "Cancelled by customer",
        cancel_reason::TIMEOUT => "Timed out",
        _ => "Cancelled by POS",
    };
    fields.insert(field::CANCEL_REASON.into(), reason.into());
    result(tx, ResultCode::Cancelled, text, fields)
}

fn result(
    tx: &BackendTransaction,
    code: ResultCode,
    text: &str,
    fields: BTreeMap<String, String>,
) -> DeviceResult {
    // Not financial: `device_result` leaves `transaction_result` out whatever is passed.
    device_result(
        tx.offer.transaction_id,
        tx.offer.function(),
        TransactionResult::Failed,
        code,
        text,
        fields,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::{BackendOutcome, CardBackend, Note, ProgressSink};
    use crate::simulator::SimulatorConfig;
    use protocol::action::{Align, InputRules, PrintJob};
    use protocol::device::{Hardware, TransactionOffer};
    use protocol::{Function, RegisterInfo, RegisterKey, TransactionId, TransactionRequest};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    pub(crate) fn input(kind: InputKind, prompt: &str) -> InputRequest {
        InputRequest {
            kind,
            prompt: prompt.into(),
            options: if kind == InputKind::Selection {
                vec!["Red".into(), "Green".into(), "Blue".into()]
            } else {
                vec![]
            },
            rules: InputRules::default(),
            timeout_secs: 30,
        }
    }

    pub(crate) fn slip(text: &str) -> PrintJob {
        PrintJob {
            lines: vec![
                PrintLine::Text {
                    text: "Cafe".into(),
                    bold: true,
                    align: Align::Centre,
                    large: false,
                },
                PrintLine::Text {
                    text: text.into(),
                    bold: false,
                    align: Align::Left,
                    large: false,
                },
                PrintLine::Qr {
                    data: "https://example.com/r/1".into(),
                },
                PrintLine::Cut,
            ],
        }
    }

    pub(crate) fn qr(caption: &str) -> QrDisplay {
        QrDisplay {
            data: "https://example.com/join".into(),
            caption: caption.into(),
            timeout_secs: 30,
        }
    }

    pub(crate) fn hardware() -> Hardware {
        Hardware {
            screen: None,
            printer_columns: Some(32),
        }
    }

    fn sim() -> Simulator {
        Simulator::new(SimulatorConfig {
            step_delay: Duration::ZERO,
            slow: Duration::from_millis(50),
        })
    }

    fn offer(request: TransactionRequest) -> TransactionOffer {
        TransactionOffer {
            transaction_id: TransactionId::new(),
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: "r1".into(),
                    business_name: "Shop".into(),
                    vendor_name: "V".into(),
                },
                register_name: "Front".into(),
            },
            request,
            request_timestamp: "20240101000000".into(),
        }
    }

    fn with_input(req: InputRequest) -> TransactionOffer {
        offer(TransactionRequest {
            input: Some(req),
            ..TransactionRequest::of(Function::TerminalInput)
        })
    }

    fn with_print(job: PrintJob) -> TransactionOffer {
        offer(TransactionRequest {
            print: Some(job),
            ..TransactionRequest::of(Function::TerminalPrint)
        })
    }

    fn with_qr(q: QrDisplay) -> TransactionOffer {
        offer(TransactionRequest {
            qr: Some(q),
            ..TransactionRequest::of(Function::TerminalShowQr)
        })
    }

    /// Runs one offer on `sim`, returning its result and the notes it sent.
    async fn run_on(
        sim: &Simulator,
        offer: TransactionOffer,
        hardware: Hardware,
        cancel: CancellationToken,
    ) -> (DeviceResult, Vec<Note>) {
        run_configured(sim, offer, hardware, cancel, Default::default()).await
    }

    /// Like [`run_on`], with the cloud's configuration `settings`.
    async fn run_configured(
        sim: &Simulator,
        offer: TransactionOffer,
        hardware: Hardware,
        cancel: CancellationToken,
        settings: protocol::config::Settings,
    ) -> (DeviceResult, Vec<Note>) {
        let (tx, mut rx) = mpsc::channel(64);
        let outcome = sim
            .run(BackendTransaction {
                progress: ProgressSink::new(offer.transaction_id, tx),
                cancel,
                history: Default::default(),
                hardware,
                settings,
                offer,
            })
            .await;
        let mut notes = Vec::new();
        while let Ok((_, n)) = rx.try_recv() {
            notes.push(n);
        }
        match outcome {
            BackendOutcome::Completed(r) => (r, notes),
            other => panic!("expected a result, got {other:?}"),
        }
    }

    async fn run(offer: TransactionOffer) -> DeviceResult {
        run_on(&sim(), offer, hardware(), CancellationToken::new())
            .await
            .0
    }

    fn field<'a>(r: &'a DeviceResult, k: &str) -> Option<&'a str> {
        r.fields.get(k).map(String::as_str)
    }

    /// A POS `cancel` after `after`.
    fn cancel_after(after: Duration) -> CancellationToken {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            trigger.cancel();
        });
        cancel
    }

    #[tokio::test]
    async fn every_kind_of_input_is_answered_within_its_rules() {
        let expected = [
            (InputKind::Signature, SIGNATURE),
            (InputKind::Email, EMAIL),
            (InputKind::Phone, PHONE),
            (InputKind::Number, "42"),
            (InputKind::Text, TEXT),
            (InputKind::Selection, "Red"),
            (InputKind::Confirmation, "yes"),
        ];
        for (kind, value) in expected {
            let req = input(kind, "Your answer?");
            let r = run(with_input(req.clone())).await;
            assert_eq!(r.result, ResultCode::Ok, "{kind}: {}", r.result_text);
            assert_eq!(r.result_text, "Answered");
            assert_eq!(r.transaction_result, None, "an input moves no money");
            assert_eq!(field(&r, field::INPUT_VALUE), Some(value), "{kind}");
            assert_eq!(req.check_answer(&r.fields), Ok(()), "{kind}");
            assert_eq!(field(&r, field::CANCEL_REASON), None);
            match kind {
                InputKind::Selection => assert_eq!(field(&r, field::INPUT_INDEX), Some("0")),
                InputKind::Signature => {
                    assert_eq!(field(&r, field::SIGNATURE_VIEW_BOX), Some("0 0 400 150"))
                }
                _ => assert_eq!(field(&r, field::INPUT_INDEX), None),
            }
        }
    }

    #[tokio::test]
    async fn answers_follow_the_rules() {
        let ruled = |kind, rules: InputRules| {
            let mut r = input(kind, "Your answer?");
            r.rules = rules;
            assert_eq!(r.check(), Ok(()), "{r:?}");
            r
        };
        let cases = [
            (
                ruled(
                    InputKind::Number,
                    InputRules {
                        min: Some(5),
                        max: Some(10),
                        ..InputRules::default()
                    },
                ),
                "5",
            ),
            (
                ruled(
                    InputKind::Number,
                    InputRules {
                        max: Some(7),
                        decimals: 2,
                        ..InputRules::default()
                    },
                ),
                "7.00",
            ),
            (
                ruled(
                    InputKind::Number,
                    InputRules {
                        min: Some(-3),
                        ..InputRules::default()
                    },
                ),
                "-3",
            ),
            (
                ruled(
                    InputKind::Text,
                    InputRules {
                        max_length: Some(10),
                        ..InputRules::default()
                    },
                ),
                "Simulated.",
            ),
            (
                ruled(
                    InputKind::Text,
                    InputRules {
                        min_length: Some(20),
                        ..InputRules::default()
                    },
                ),
                "Simulated answer Sim",
            ),
            (
                ruled(
                    InputKind::Email,
                    InputRules {
                        max_length: Some(8),
                        ..InputRules::default()
                    },
                ),
                "cus@e.co",
            ),
            (
                ruled(
                    InputKind::Email,
                    InputRules {
                        min_length: Some(24),
                        ..InputRules::default()
                    },
                ),
                "customercust@example.com",
            ),
        ];
        for (req, value) in cases {
            let r = run(with_input(req.clone())).await;
            assert_eq!(field(&r, field::INPUT_VALUE), Some(value), "{req:?}");
            assert_eq!(req.check_answer(&r.fields), Ok(()), "{req:?}");
        }
        // Rules no address fits: a failure, never an answer the cloud would refuse.
        let impossible = ruled(
            InputKind::Email,
            InputRules {
                max_length: Some(5),
                ..InputRules::default()
            },
        );
        let r = run(with_input(impossible)).await;
        assert_eq!(r.result, ResultCode::Failed);
        assert_eq!(field(&r, field::INPUT_VALUE), None);
    }

    #[tokio::test]
    async fn input_shows_its_prompt_and_options() {
        let (_, notes) = run_on(
            &sim(),
            with_input(input(InputKind::Selection, "Colour?")),
            hardware(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(
            notes,
            vec![Note::Prompt(crate::backend::Progress {
                prompt: "input".into(),
                text: "Colour?\n1. Red / 2. Green / 3. Blue".into(),
            })]
        );
        let (_, notes) = run_on(
            &sim(),
            with_input(input(InputKind::Signature, "Sign here")),
            hardware(),
            CancellationToken::new(),
        )
        .await;
        assert!(
            matches!(&notes[..], [Note::Prompt(p)] if p.prompt == prompt::SIGNATURE_REQUIRED),
            "{notes:?}"
        );
    }

    #[tokio::test]
    async fn the_customer_cancels_an_input_on_cancel() {
        let r = run(with_input(input(InputKind::Email, "Email? #cancel"))).await;
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(r.transaction_result, None);
        assert_eq!(
            field(&r, field::CANCEL_REASON),
            Some(cancel_reason::CUSTOMER)
        );
        assert_eq!(field(&r, field::INPUT_VALUE), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_input_times_out() {
        let started = tokio::time::Instant::now();
        let r = run(with_input(input(InputKind::Phone, "Phone? #timeout"))).await;
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(r.result_text, "Timed out");
        assert_eq!(
            field(&r, field::CANCEL_REASON),
            Some(cancel_reason::TIMEOUT)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_input_without_a_timeout_waits_the_configured_one() {
        let settings = protocol::config::Settings {
            input_timeout_secs: 7,
            ..Default::default()
        };
        let mut req = input(InputKind::Text, "Name? #timeout");
        req.timeout_secs = 0;
        let started = tokio::time::Instant::now();
        let (r, _) = run_configured(
            &sim(),
            with_input(req.clone()),
            hardware(),
            CancellationToken::new(),
            settings.clone(),
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert_eq!(
            field(&r, field::CANCEL_REASON),
            Some(cancel_reason::TIMEOUT)
        );
        // A request's own timeout wins over the configured one.
        req.timeout_secs = 30;
        let started = tokio::time::Instant::now();
        let _ = run_configured(
            &sim(),
            with_input(req),
            hardware(),
            CancellationToken::new(),
            settings,
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_input_answers_late_or_is_cancelled_by_the_pos() {
        let started = tokio::time::Instant::now();
        let r = run(with_input(input(InputKind::Number, "How many? #slow"))).await;
        assert_eq!(started.elapsed(), SLOW_ANSWER);
        assert_eq!(r.result, ResultCode::Ok);

        let started = tokio::time::Instant::now();
        let cancel = cancel_after(Duration::from_millis(500));
        let (r, _) = run_on(
            &sim(),
            with_input(input(InputKind::Number, "How many? #slow")),
            hardware(),
            cancel,
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(r.result_text, "Cancelled by POS");
        assert_eq!(field(&r, field::CANCEL_REASON), Some(cancel_reason::POS));
    }

    #[tokio::test]
    async fn a_slip_is_printed_and_shown() {
        let (r, notes) = run_on(
            &sim(),
            with_print(slip("Thank you")),
            hardware(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(r.result, ResultCode::Ok);
        assert_eq!(r.result_text, "Printed");
        assert_eq!(r.transaction_result, None);
        assert_eq!(field(&r, field::PRINTER_STATUS), Some(printer_status::OK));
        let printed: Vec<&String> = notes
            .iter()
            .filter_map(|n| match n {
                Note::Printed(s) => Some(s),
                Note::Prompt(_) => None,
            })
            .collect();
        assert_eq!(printed.len(), 1);
        let slip = printed[0];
        assert!(
            slip.contains("CAFE") && slip.contains("Thank you"),
            "{slip}"
        );
        assert!(slip.contains("[QR: https://example.com/r/1]"), "{slip}");
        for line in slip.lines() {
            assert!(line.chars().count() <= 32, "{line:?}");
        }
    }

    #[tokio::test]
    async fn printer_trouble_fails_the_print() {
        let (r, notes) = run_on(
            &sim(),
            with_print(slip("Paper? #nopaper")),
            hardware(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(r.result, ResultCode::Failed);
        assert_eq!(r.result_text, "Printer out of paper");
        assert_eq!(r.transaction_result, None);
        assert_eq!(
            field(&r, field::PRINTER_STATUS),
            Some(printer_status::NO_PAPER)
        );
        assert!(!notes.iter().any(|n| matches!(n, Note::Printed(_))));

        let no_printer = Hardware {
            printer_columns: None,
            ..hardware()
        };
        let (r, notes) = run_on(
            &sim(),
            with_print(slip("Hello")),
            no_printer,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(r.result, ResultCode::Failed);
        assert_eq!(r.result_text, "No printer");
        assert_eq!(
            field(&r, field::PRINTER_STATUS),
            Some(printer_status::NO_PRINTER)
        );
        assert!(notes.is_empty(), "{notes:?}");

        let cancel = CancellationToken::new();
        cancel.cancel();
        let slow = Simulator::new(SimulatorConfig {
            step_delay: Duration::from_millis(50),
            slow: Duration::ZERO,
        });
        let (r, _) = run_on(&slow, with_print(slip("Hello")), hardware(), cancel).await;
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(field(&r, field::CANCEL_REASON), Some(cancel_reason::POS));
        assert_eq!(field(&r, field::PRINTER_STATUS), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_qr_code_is_dismissed_cancelled_or_times_out() {
        let (r, notes) = run_on(
            &sim(),
            with_qr(qr("Join us")),
            hardware(),
            Default::default(),
        )
        .await;
        assert_eq!(r.result, ResultCode::Ok);
        assert_eq!(r.transaction_result, None);
        assert_eq!(field(&r, field::QR_OUTCOME), Some("dismissed"));
        assert!(
            matches!(&notes[..], [Note::Prompt(p)] if p.prompt == prompt::SHOW_QR
                && p.text == "Join us\n[QR: https://example.com/join]"),
            "{notes:?}"
        );

        let r = run(with_qr(qr("Join us #cancel"))).await;
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(
            field(&r, field::CANCEL_REASON),
            Some(cancel_reason::CUSTOMER)
        );
        assert_eq!(field(&r, field::QR_OUTCOME), None);

        let started = tokio::time::Instant::now();
        let r = run(with_qr(qr("#timeout"))).await;
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(r.result, ResultCode::Ok);
        assert_eq!(field(&r, field::QR_OUTCOME), Some("timeout"));

        let cancel = cancel_after(Duration::from_secs(1));
        let (r, _) = run_on(&sim(), with_qr(qr("#slow")), hardware(), cancel).await;
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(field(&r, field::CANCEL_REASON), Some(cancel_reason::POS));
    }

    /// Runs `offer` with an operator typing `lines`, each once the simulator listens.
    async fn operated(offer: TransactionOffer, lines: &[&str]) -> DeviceResult {
        let op = Operator::new();
        let sim = sim().with_operator(op.clone());
        let run = tokio::spawn(async move {
            run_on(&sim, offer, hardware(), CancellationToken::new())
                .await
                .0
        });
        for line in lines {
            while !op.is_asking() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(op.answer(line.to_string()), None, "{line}");
            // Let the question read it before the next line.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match run.await {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn the_operator_answers_and_is_asked_again_when_invalid() {
        let req = input(InputKind::Email, "Email?");
        let r = operated(
            with_input(req.clone()),
            &["not an email", "me@shop.example"],
        )
        .await;
        assert_eq!(field(&r, field::INPUT_VALUE), Some("me@shop.example"));
        assert_eq!(req.check_answer(&r.fields), Ok(()));

        let req = input(InputKind::Selection, "Colour?");
        let r = operated(with_input(req.clone()), &["7", "green", "2"]).await;
        assert_eq!(field(&r, field::INPUT_VALUE), Some("Green"));
        assert_eq!(field(&r, field::INPUT_INDEX), Some("1"));
        assert_eq!(req.check_answer(&r.fields), Ok(()));

        let r = operated(
            with_input(input(InputKind::Confirmation, "Agree?")),
            &["maybe", "N"],
        )
        .await;
        assert_eq!(field(&r, field::INPUT_VALUE), Some("no"));

        let r = operated(
            with_input(input(InputKind::Signature, "Sign")),
            &["my name", ""],
        )
        .await;
        assert_eq!(field(&r, field::INPUT_VALUE), Some(SIGNATURE));
        assert_eq!(
            field(&r, field::SIGNATURE_VIEW_BOX),
            Some(SIGNATURE_VIEW_BOX)
        );

        // The operator's answers are theirs: a trigger in the prompt does nothing.
        let r = operated(
            with_input(input(InputKind::Phone, "Phone? #cancel")),
            &["c"],
        )
        .await;
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(
            field(&r, field::CANCEL_REASON),
            Some(cancel_reason::CUSTOMER)
        );

        let r = operated(with_qr(qr("Scan me")), &["what", ""]).await;
        assert_eq!(field(&r, field::QR_OUTCOME), Some("dismissed"));
        let r = operated(with_qr(qr("Scan me")), &["c"]).await;
        assert_eq!(
            field(&r, field::CANCEL_REASON),
            Some(cancel_reason::CUSTOMER)
        );
    }
}
