//! eftcloud's terminal actions: the cart on the customer's screen, and the jobs a terminal runs
//! for the counter (customer input, a slip on its printer, a QR code on its screen), each
//! started like a transaction and polled like one.

use crate::client::PosClient;
use crate::error::PosError;
use crate::extensions::register_form;
use protocol::action::{Cart, InputRequest, PrintJob, QrDisplay};
use protocol::pos_api::TransactionEnvelope;
use protocol::RegisterKey;
use serde::Deserialize;
use std::time::Duration;

/// A job for the terminal at the counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the customer (`/pos/register/input`).
    Input(InputRequest),
    /// Print a slip (`/pos/register/print`).
    Print(PrintJob),
    /// Show a QR code (`/pos/register/qr`).
    ShowQr(QrDisplay),
}

/// Form fields, as the POS API names them.
type Form = Vec<(&'static str, String)>;

impl Action {
    /// The route under `/pos/register/` and the form fields of the action.
    fn form(&self) -> Result<(&'static str, Form), PosError> {
        Ok(match self {
            Action::Input(i) => {
                let mut f = vec![
                    ("InputKind", i.kind.to_string()),
                    ("Prompt", i.prompt.clone()),
                    ("TimeoutSeconds", i.timeout_secs.to_string()),
                ];
                if !i.options.is_empty() {
                    f.push(("Options", json(&i.options)?));
                }
                let r = &i.rules;
                let numbers = [
                    ("MinLength", r.min_length.map(i64::from)),
                    ("MaxLength", r.max_length.map(i64::from)),
                    ("Min", r.min),
                    ("Max", r.max),
                ];
                for (k, v) in numbers {
                    if let Some(v) = v {
                        f.push((k, v.to_string()));
                    }
                }
                if r.decimals > 0 {
                    f.push(("Decimals", r.decimals.to_string()));
                }
                ("input", f)
            }
            Action::Print(p) => ("print", vec![("Lines", json(&p.lines)?)]),
            Action::ShowQr(q) => (
                "qr",
                vec![
                    ("QrData", q.data.clone()),
                    ("Caption", q.caption.clone()),
                    ("TimeoutSeconds", q.timeout_secs.to_string()),
                ],
            ),
        })
    }
}

/// The JSON text a form field carries (`Options`, `Lines`).
fn json<T: serde::Serialize>(v: &T) -> Result<String, PosError> {
    serde_json::to_string(v).map_err(|e| PosError::BadResponse(e.to_string()))
}

/// What the customer's screen shows after a display request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisplayState {
    pub device_id: String,
    pub version: u64,
    /// Whether the device was connected and was sent it now.
    pub delivered: bool,
    #[serde(default)]
    pub cart: Option<Cart>,
}

impl PosClient {
    /// Shows `cart` on the customer's screen of `register`'s device, or clears it (none).
    pub async fn display(
        &self,
        register: &RegisterKey,
        cart: Option<&Cart>,
    ) -> Result<DisplayState, PosError> {
        let url = self.endpoints().path(&["pos", "register", "display"])?;
        let mut form = register_form(register);
        match cart {
            None => form.push(("Clear", "true".into())),
            Some(c) => {
                let lines: Vec<serde_json::Value> = c
                    .lines
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "description": l.description,
                            "quantity": l.quantity,
                            "unitPrice": l.unit_price,
                            "amount": l.amount,
                        })
                    })
                    .collect();
                form.push(("Lines", serde_json::Value::Array(lines).to_string()));
                form.push(("AmountTotal", c.total.to_string()));
                if let Some(t) = c.tax {
                    form.push(("AmountTax", t.to_string()));
                }
                if let Some(cur) = c.currency {
                    form.push(("Currency", cur.to_string()));
                }
            }
        }
        let resp = self.http().post(url).form(&form).send().await?;
        crate::client::read_json(resp).await
    }

    /// Starts `action` on `register`'s device. With `pos_reference`, a retry returns the same
    /// job; with `wait`, the answer is held until the job completes. Poll the envelope's
    /// `PollingUrl` (or [`PosClient::wait_for_completion`]) for the outcome.
    pub async fn action(
        &self,
        register: &RegisterKey,
        action: &Action,
        pos_reference: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<TransactionEnvelope, PosError> {
        let (route, fields) = action.form()?;
        let url = self.endpoints().path(&["pos", "register", route])?;
        self.post_job(url, register, fields, pos_reference, wait)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::action::{InputKind, InputRules, PrintLine};

    #[test]
    fn actions_become_the_fields_of_their_route() {
        let input = Action::Input(InputRequest {
            kind: InputKind::Number,
            prompt: "Bags?".into(),
            options: vec![],
            rules: InputRules {
                min: Some(0),
                max: Some(9),
                ..InputRules::default()
            },
            timeout_secs: 30,
        });
        let (route, f) = input.form().unwrap_or(("", vec![]));
        assert_eq!(route, "input");
        assert!(f.contains(&("Min", "0".into())) && f.contains(&("Max", "9".into())));
        assert!(f.contains(&("TimeoutSeconds", "30".into())));
        assert!(!f.iter().any(|(k, _)| *k == "Options" || *k == "Decimals"));
        let print = Action::Print(PrintJob {
            lines: vec![PrintLine::Cut],
        });
        assert_eq!(
            print.form().ok(),
            Some(("print", vec![("Lines", r#"[{"kind":"cut"}]"#.to_string())]))
        );
    }
}
