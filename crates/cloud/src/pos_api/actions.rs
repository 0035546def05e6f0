//! eftcloud extensions: terminal actions at the counter.
//!
//! * `POST /pos/register/display`: the cart on the customer's screen while the clerk scans
//!   (or `Clear=true`), shown at once, never a job, never busy.
//! * `POST /pos/register/input`: ask the customer for a signature, an email, a phone number, a
//!   number, text, a choice or a yes/no.
//! * `POST /pos/register/print`: a slip on the terminal's printer.
//! * `POST /pos/register/qr`: a QR code on the terminal's screen.
//!
//! The last three are jobs of the transaction lifecycle (`Terminal.Input`, `Terminal.Print`,
//! `Terminal.ShowQr`): stored before the 200, idempotent by `PosReference`, one at a time per
//! device (a busy device answers 429), on the timeline, polled and long-polled at
//! `GET /pos/transaction/{id}`, cancelled at `POST /pos/transaction/{id}/cancel`. Each answers
//! as `POST /pos/transaction` in its asynchronous mode: the envelope with its `PollingUrl`
//! (with `wait=<seconds>`, up to 60, held until the job completes or the wait ends).

use super::access::require_register;
use super::error::{ApiError, HttpError, ServiceError};
use super::fields::{FieldError, Fields};
use super::transaction::{callback_url, pos_reference};
use super::ApiState;
use crate::engine::actions::{DisplayError, Displayed};
use crate::engine::transactions::NewTransaction;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::action::{
    Cart, CartLine, InputKind, InputRequest, InputRules, PrintJob, PrintLine, QrDisplay,
    DEFAULT_TIMEOUT_SECS,
};
use protocol::pos_api::TransactionEnvelope;
use protocol::{Currency, Function, TransactionRequest};
use serde::Serialize;

/// The display's family of errors.
#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    /// 400, as for transactions.
    #[error("{}", protocol::pos_api::NOT_PAIRED)]
    NotPaired,
    /// 409: the device lacks the capability.
    #[error("{0}")]
    Unsupported(String),
}

impl HttpError for ActionsError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotPaired => StatusCode::BAD_REQUEST,
            Self::Unsupported(_) => StatusCode::CONFLICT,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::NotPaired => Some("not_paired"),
            Self::Unsupported(_) => Some("unsupported"),
        }
    }
}

impl From<DisplayError> for ApiError {
    fn from(e: DisplayError) -> Self {
        match e {
            DisplayError::NotPaired => ActionsError::NotPaired.into(),
            e @ DisplayError::Unsupported(_) => ActionsError::Unsupported(e.to_string()).into(),
            DisplayError::Engine(e) => ServiceError::engine(e).into(),
        }
    }
}

/// What the customer's screen shows now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisplayView {
    pub device_id: String,
    /// Grows with each change; a repeated request answers the same version.
    pub version: u64,
    /// Whether the device was connected and was sent the cart now (else it is shown when the
    /// device reconnects).
    pub delivered: bool,
    /// The cart shown (`null` once cleared), with its currency.
    #[schema(value_type = Option<Object>)]
    pub cart: Option<Cart>,
}

impl From<Displayed> for DisplayView {
    fn from(d: Displayed) -> Self {
        DisplayView {
            device_id: d.device.to_string(),
            version: d.version,
            delivered: d.delivered,
            cart: d.cart,
        }
    }
}

/// Documentation only: the fields of a display.
#[derive(utoipa::ToSchema)]
#[schema(
    description = "A cart for the customer's screen (form body, JSON body or query string). \
    In a JSON body `Lines` is an array; in a form it is the array's JSON text."
)]
pub struct DisplayForm {
    #[schema(rename = "POSRegisterID")]
    pub register_id: String,
    #[schema(rename = "POSBusinessName")]
    pub business_name: String,
    #[schema(rename = "POSVendorName")]
    pub vendor_name: String,
    /// Each line: `description` (1 to 120 characters), `quantity` (text, `1` when absent),
    /// `unitPrice` and `amount` in minor units. At most 200 lines.
    #[schema(rename = "Lines", required = false, value_type = Vec<Object>,
        example = json!([{"description": "Flat white", "quantity": "2", "unitPrice": 450, "amount": 900}]))]
    pub lines: String,
    /// What the customer will pay, in minor units (required unless `Clear`).
    #[schema(rename = "AmountTotal", required = false, example = "900")]
    pub amount_total: String,
    /// The tax included, in minor units.
    #[schema(rename = "AmountTax", required = false)]
    pub amount_tax: String,
    /// ISO 4217; the merchant's when absent.
    #[schema(rename = "Currency", required = false)]
    pub currency: String,
    /// `true`: clear the screen (the other fields are ignored).
    #[schema(rename = "Clear", required = false)]
    pub clear: bool,
}

/// Show a cart on the customer's screen
///
/// eftcloud extension. Shows the basket on the device paired with the register while the
/// clerk scans, or clears it (`Clear=true`). Delivered at once and never interrupting a
/// payment (the device shows it beside the payment or after it); idempotent (the same cart
/// again is the same `version`); a device that is offline is shown the latest cart when it
/// reconnects. Needs a device that declares the `display` capability.
#[utoipa::path(
    post,
    path = "/pos/register/display",
    tag = "eftcloud extensions",
    request_body(content((DisplayForm = "application/x-www-form-urlencoded"), (DisplayForm = "application/json"))),
    responses(
        (status = 200, description = "What the screen shows now", body = DisplayView),
        (status = 400, description = "A missing or invalid field (`Invalid Lines[2].amount: ...`), the register is not paired, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = protocol::pos_api::ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = protocol::pos_api::ErrorBody),
        (status = 409, description = "The device cannot show a cart (no `display` capability)", body = protocol::pos_api::ErrorBody),
    ),
)]
pub async fn display(
    State(state): State<ApiState>,
    fields: Fields,
) -> Result<Json<DisplayView>, ApiError> {
    let register = require_register(&fields)?;
    fields.credential().check_vendor(&register.vendor_name)?;
    let cart = if flag(&fields, "Clear")? {
        None
    } else {
        Some(parse_cart(&fields)?)
    };
    let shown = state
        .engine
        .show_display(&register, cart, fields.credential().merchant())
        .await?;
    Ok(Json(shown.into()))
}

/// A `true`/`false` field, false when absent.
fn flag(fields: &Fields, name: &str) -> Result<bool, FieldError> {
    match fields.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(_) => Err(FieldError::invalid(format!(
            "Invalid {name}: true or false"
        ))),
    }
}

/// A JSON array field (`Lines`, `Options`): an array in a JSON body, its JSON text in a form.
fn json_array(fields: &Fields, name: &str) -> Result<Option<Vec<serde_json::Value>>, FieldError> {
    let Some(raw) = fields.get(name) else {
        return Ok(None);
    };
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Array(items)) => Ok(Some(items)),
        _ => Err(FieldError::invalid(format!(
            "Invalid {name}: expected a JSON array"
        ))),
    }
}

/// Minor units from a JSON number or a string of digits.
fn minor_units(v: &serde_json::Value, field: &str) -> Result<u64, FieldError> {
    let parsed = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        FieldError::invalid(format!(
            "Invalid {field}: expected minor units (a whole number, 0 or more)"
        ))
    })
}

fn amount_field(fields: &Fields, name: &str) -> Result<Option<u64>, FieldError> {
    fields
        .get(name)
        .map(|v| {
            v.trim().parse().map_err(|_| {
                FieldError::invalid(format!(
                    "Invalid {name}: expected minor units (a whole number, 0 or more)"
                ))
            })
        })
        .transpose()
}

fn parse_cart(fields: &Fields) -> Result<Cart, FieldError> {
    let items = json_array(fields, "Lines")?.unwrap_or_default();
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = |f: &str| format!("Lines[{i}].{f}");
        let Some(obj) = item.as_object() else {
            return Err(FieldError::invalid(format!(
                "Invalid Lines[{i}]: expected an object"
            )));
        };
        let description = match obj.get("description") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => {
                return Err(FieldError::invalid(format!(
                    "Missing required field: {}",
                    name("description")
                )))
            }
        };
        let quantity = match obj.get("quantity") {
            None | Some(serde_json::Value::Null) => "1".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(FieldError::invalid(format!(
                    "Invalid {}: text or a number",
                    name("quantity")
                )))
            }
        };
        let unit_price = match obj.get("unitPrice") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(minor_units(v, &name("unitPrice"))?),
        };
        let amount = match obj.get("amount") {
            Some(v) => minor_units(v, &name("amount"))?,
            None => {
                return Err(FieldError::invalid(format!(
                    "Missing required field: {}",
                    name("amount")
                )))
            }
        };
        lines.push(CartLine {
            description,
            quantity,
            unit_price,
            amount,
        });
    }
    let total = amount_field(fields, "AmountTotal")?
        .ok_or_else(|| FieldError::invalid("Missing required field: AmountTotal"))?;
    let cart = Cart {
        lines,
        currency: currency(fields)?,
        total,
        tax: amount_field(fields, "AmountTax")?,
    };
    cart.check().map_err(FieldError::invalid)?;
    Ok(cart)
}

fn currency(fields: &Fields) -> Result<Option<Currency>, FieldError> {
    fields
        .get("Currency")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(Currency::parse)
        .transpose()
        .map_err(FieldError::invalid)
}

/// A whole-number field within `u32`/`i64`, absent when blank.
fn number<T: std::str::FromStr>(fields: &Fields, name: &str) -> Result<Option<T>, FieldError> {
    fields
        .get(name)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| FieldError::invalid(format!("Invalid {name}: a whole number")))
        })
        .transpose()
}

fn timeout(fields: &Fields) -> Result<u32, FieldError> {
    Ok(number::<u32>(fields, "TimeoutSeconds")?.unwrap_or(DEFAULT_TIMEOUT_SECS))
}

fn parse_input(fields: &Fields) -> Result<InputRequest, FieldError> {
    let kind = InputKind::parse(
        fields
            .get("InputKind")
            .ok_or_else(|| FieldError::invalid("Missing required field: InputKind"))?,
    )
    .map_err(FieldError::invalid)?;
    let options = match json_array(fields, "Options")? {
        None => Vec::new(),
        Some(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(FieldError::invalid(format!(
                    "Invalid Options[{i}]: expected text"
                ))),
            })
            .collect::<Result<_, _>>()?,
    };
    let decimals = number::<u8>(fields, "Decimals")?.unwrap_or(0);
    let input = InputRequest {
        kind,
        prompt: fields.get("Prompt").unwrap_or_default().trim().to_string(),
        options,
        rules: InputRules {
            min_length: number(fields, "MinLength")?,
            max_length: number(fields, "MaxLength")?,
            min: number(fields, "Min")?,
            max: number(fields, "Max")?,
            decimals,
        },
        timeout_secs: timeout(fields)?,
    };
    input.check().map_err(FieldError::invalid)?;
    Ok(input)
}

fn parse_print(fields: &Fields) -> Result<PrintJob, FieldError> {
    let items = json_array(fields, "Lines")?.unwrap_or_default();
    let lines = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value::<PrintLine>(v)
                .map_err(|e| FieldError::invalid(format!("Invalid Lines[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let job = PrintJob { lines };
    job.check().map_err(FieldError::invalid)?;
    Ok(job)
}

fn parse_qr(fields: &Fields) -> Result<QrDisplay, FieldError> {
    let qr = QrDisplay {
        data: fields
            .get("QrData")
            .ok_or_else(|| FieldError::invalid("Missing required field: QrData"))?
            .to_string(),
        caption: fields.get("Caption").unwrap_or_default().trim().to_string(),
        timeout_secs: timeout(fields)?,
    };
    qr.check().map_err(FieldError::invalid)?;
    Ok(qr)
}

/// Starts an action job for the register the request names and answers with its envelope.
async fn start(
    state: &ApiState,
    headers: &HeaderMap,
    fields: &Fields,
    request: TransactionRequest,
) -> Result<Response, ApiError> {
    let register = require_register(fields)?;
    fields.credential().check_vendor(&register.vendor_name)?;
    let wait = super::polling::wait_param(fields.get("wait"))?;
    let started = state
        .engine
        .start_transaction(NewTransaction {
            register,
            request,
            sale_data: None,
            callback_url: callback_url(fields)?,
            pos_reference: pos_reference(fields, headers)?,
            merchant: fields.credential().merchant().cloned(),
            original_merchant: None,
        })
        .await?;
    // With `wait`, held until the customer answers (or `wait` passes), as a long poll is.
    let record = match wait {
        Some(wait) => state.wait_completed(started.record, wait).await?,
        None => started.record,
    };
    let body: TransactionEnvelope = state.envelope(&record);
    let mut response = Json(body).into_response();
    if started.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Documentation only: the fields of an input request.
#[derive(utoipa::ToSchema)]
#[schema(description = "What to ask the customer (form body, JSON body or query string).")]
pub struct InputForm {
    #[schema(rename = "POSRegisterID")]
    pub register_id: String,
    #[schema(rename = "POSBusinessName")]
    pub business_name: String,
    #[schema(rename = "POSVendorName")]
    pub vendor_name: String,
    /// `signature`, `email`, `phone`, `number`, `text`, `selection` or `confirmation`.
    #[schema(rename = "InputKind", example = "email")]
    pub kind: String,
    /// What the screen asks, 1 to 200 characters.
    #[schema(rename = "Prompt", example = "Email for your receipt?")]
    pub prompt: String,
    /// Selection: 2 to 12 distinct choices (a JSON array of text).
    #[schema(rename = "Options", required = false, value_type = Vec<String>)]
    pub options: String,
    /// Text and email: fewest and most characters.
    #[schema(rename = "MinLength", required = false)]
    pub min_length: u32,
    #[schema(rename = "MaxLength", required = false)]
    pub max_length: u32,
    /// Number: bounds in whole units, and digits allowed after the point (0 to 6, 0 by default).
    #[schema(rename = "Min", required = false)]
    pub min: i64,
    #[schema(rename = "Max", required = false)]
    pub max: i64,
    #[schema(rename = "Decimals", required = false)]
    pub decimals: u8,
    /// 5 to 600 seconds, 60 by default: the input then ends `CANCELLED` with `CancelReason`
    /// `timeout`.
    #[schema(rename = "TimeoutSeconds", required = false)]
    pub timeout_seconds: u32,
    /// The POS's reference: the same reference (and request) returns the same input.
    #[schema(rename = "PosReference", required = false, max_length = 128)]
    pub pos_reference: String,
    #[schema(rename = "PosNotificationCallbackUrl", required = false)]
    pub callback_url: String,
}

/// Ask the customer for input
///
/// eftcloud extension. A `Terminal.Input` job on the device paired with the register: the
/// customer signs, types an email, phone number, number or text, picks an option, or answers
/// yes or no. Poll (or long-poll with `wait`) `GET /pos/transaction/{id}`: once completed,
/// `Result` is `OK` with `data.InputValue` (the signature as SVG path data with
/// `data.SignatureViewBox`; for a selection also `data.InputIndex`), or `CANCELLED` with
/// `data.CancelReason` (`customer`, `timeout`, `pos`). The device and the cloud both check the
/// answer against the rules. Cancel with `POST /pos/transaction/{id}/cancel`. Needs the
/// `input` capability (`signature` for a signature).
#[utoipa::path(
    post,
    path = "/pos/register/input",
    tag = "eftcloud extensions",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Same as `PosReference`"),
        ("wait" = Option<f64>, Query, minimum = 0, maximum = 60, description = "Hold the answer until the job completes, at most this many seconds"),
    ),
    request_body(content((InputForm = "application/x-www-form-urlencoded"), (InputForm = "application/json"))),
    responses(
        (status = 200, description = "The input job, pending (`Idempotent-Replayed: true` when the reference named an existing one)", body = TransactionEnvelope),
        (status = 400, description = "A missing or invalid field, the register is not paired, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = protocol::pos_api::ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = protocol::pos_api::ErrorBody),
        (status = 409, description = "The device cannot run it (no `input`/`signature` capability), or the reference was used for another request", body = protocol::pos_api::ErrorBody),
        (status = 429, description = "The device runs another job (a payment, another input)", body = protocol::pos_api::ErrorBody),
    ),
)]
pub async fn input(
    State(state): State<ApiState>,
    headers: HeaderMap,
    fields: Fields,
) -> Result<Response, ApiError> {
    let mut input = parse_input(&fields)?;
    if fields.get("TimeoutSeconds").is_none() {
        // The device's configured input timeout, where an operator set one.
        if let Ok(register) = require_register(&fields) {
            if let Some(secs) = state.engine.configured_input_timeout(&register).await? {
                input.timeout_secs = secs;
            }
        }
    }
    let request = TransactionRequest {
        input: Some(input),
        ..TransactionRequest::of(Function::TerminalInput)
    };
    start(&state, &headers, &fields, request).await
}

/// Documentation only: the fields of a print job.
#[derive(utoipa::ToSchema)]
#[schema(
    description = "A slip for the terminal's printer (form body, JSON body or query string). \
    In a JSON body `Lines` is an array; in a form it is the array's JSON text."
)]
pub struct PrintForm {
    #[schema(rename = "POSRegisterID")]
    pub register_id: String,
    #[schema(rename = "POSBusinessName")]
    pub business_name: String,
    #[schema(rename = "POSVendorName")]
    pub vendor_name: String,
    /// 1 to 200 lines, each with a `kind`: `text` (`text` up to 120 characters, `bold`,
    /// `align` left/centre/right, `large`), `qr` (`data`, up to 1000 bytes), `barcode`
    /// (`symbology` code128 or ean13, `data`), `feed` (`lines`, 1 to 10), `cut`.
    #[schema(rename = "Lines", value_type = Vec<Object>, example = json!([
        {"kind": "text", "text": "VOUCHER", "bold": true, "align": "centre", "large": true},
        {"kind": "qr", "data": "https://example.com/v/123"},
        {"kind": "barcode", "symbology": "ean13", "data": "4006381333931"},
        {"kind": "cut"}]))]
    pub lines: String,
    #[schema(rename = "PosReference", required = false, max_length = 128)]
    pub pos_reference: String,
    #[schema(rename = "PosNotificationCallbackUrl", required = false)]
    pub callback_url: String,
}

/// Print on the terminal's printer
///
/// eftcloud extension. A `Terminal.Print` job: once completed, `Result` is `OK` with
/// `data.PrinterStatus` `OK`, or `FAILED` with the printer's trouble in `data.PrinterStatus`
/// (`NO_PAPER`, `NO_PRINTER`, `PAPER_JAM`, `ERROR`) and `ResultText` in words. Needs the
/// `printer` capability.
#[utoipa::path(
    post,
    path = "/pos/register/print",
    tag = "eftcloud extensions",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Same as `PosReference`"),
        ("wait" = Option<f64>, Query, minimum = 0, maximum = 60, description = "Hold the answer until the job completes, at most this many seconds"),
    ),
    request_body(content((PrintForm = "application/x-www-form-urlencoded"), (PrintForm = "application/json"))),
    responses(
        (status = 200, description = "The print job, pending", body = TransactionEnvelope),
        (status = 400, description = "A missing or invalid field (`Invalid Lines[3]: ...`), the register is not paired, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = protocol::pos_api::ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = protocol::pos_api::ErrorBody),
        (status = 409, description = "The device has no printer it declared, or the reference was used for another request", body = protocol::pos_api::ErrorBody),
        (status = 429, description = "The device runs another job", body = protocol::pos_api::ErrorBody),
    ),
)]
pub async fn print(
    State(state): State<ApiState>,
    headers: HeaderMap,
    fields: Fields,
) -> Result<Response, ApiError> {
    let request = TransactionRequest {
        print: Some(parse_print(&fields)?),
        ..TransactionRequest::of(Function::TerminalPrint)
    };
    start(&state, &headers, &fields, request).await
}

/// Documentation only: the fields of a QR code on screen.
#[derive(utoipa::ToSchema)]
#[schema(
    description = "A QR code for the terminal's screen (form body, JSON body or query string)."
)]
pub struct QrForm {
    #[schema(rename = "POSRegisterID")]
    pub register_id: String,
    #[schema(rename = "POSBusinessName")]
    pub business_name: String,
    #[schema(rename = "POSVendorName")]
    pub vendor_name: String,
    /// What the code holds (a link, a payment request), up to 1000 bytes.
    #[schema(rename = "QrData", example = "https://example.com/loyalty/join")]
    pub data: String,
    /// Shown under the code, up to 100 characters.
    #[schema(
        rename = "Caption",
        required = false,
        example = "Scan to join our rewards"
    )]
    pub caption: String,
    /// 5 to 600 seconds, 60 by default.
    #[schema(rename = "TimeoutSeconds", required = false)]
    pub timeout_seconds: u32,
    #[schema(rename = "PosReference", required = false, max_length = 128)]
    pub pos_reference: String,
    #[schema(rename = "PosNotificationCallbackUrl", required = false)]
    pub callback_url: String,
}

/// Show a QR code on the terminal
///
/// eftcloud extension. A `Terminal.ShowQr` job: the code stays on screen until the customer
/// dismisses it (`OK`, `data.QrOutcome` `dismissed`), the timeout passes (`OK`, `timeout`),
/// the customer cancels (`CANCELLED`, `data.CancelReason` `customer`) or the POS cancels.
/// Needs the `qr_display` capability.
#[utoipa::path(
    post,
    path = "/pos/register/qr",
    tag = "eftcloud extensions",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Same as `PosReference`"),
        ("wait" = Option<f64>, Query, minimum = 0, maximum = 60, description = "Hold the answer until the job completes, at most this many seconds"),
    ),
    request_body(content((QrForm = "application/x-www-form-urlencoded"), (QrForm = "application/json"))),
    responses(
        (status = 200, description = "The QR job, pending", body = TransactionEnvelope),
        (status = 400, description = "A missing or invalid field, the register is not paired, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = protocol::pos_api::ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = protocol::pos_api::ErrorBody),
        (status = 409, description = "The device cannot show a QR code, or the reference was used for another request", body = protocol::pos_api::ErrorBody),
        (status = 429, description = "The device runs another job", body = protocol::pos_api::ErrorBody),
    ),
)]
pub async fn qr(
    State(state): State<ApiState>,
    headers: HeaderMap,
    fields: Fields,
) -> Result<Response, ApiError> {
    let request = TransactionRequest {
        qr: Some(parse_qr(&fields)?),
        ..TransactionRequest::of(Function::TerminalShowQr)
    };
    start(&state, &headers, &fields, request).await
}
