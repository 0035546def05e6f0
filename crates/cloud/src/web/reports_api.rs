//! The admin API of settlements, their reconciliation, a merchant's daily report and the
//! exports (`/admin/settlements`, `/admin/reports/daily`, `/admin/exports/...`). Read only,
//! with `reports:read` (or `admin`); a merchant's credential sees its own merchant only, and
//! another merchant's settlement does not exist for it.

use super::accounts_api::AccountsApiError;
use super::dashboard::{rfc3339, Admin};
use super::WebState;
use crate::domain::accounts::{MerchantId, Scope};
use crate::domain::lifecycle::Phase;
use crate::domain::reconciliation::{CardDifference, Mismatch, Reason};
use crate::engine::reconciliation::{
    DailyReport, ExportedTransaction, ReportError, Settlement, SettlementFilter, MAX_SETTLEMENTS,
};
use crate::pos_api::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use protocol::settlement::{BatchTransaction, CardTotals};
use protocol::TransactionId;
use serde::{Deserialize, Serialize};

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            e @ ReportError::TimeZone(_) => AccountsApiError::Invalid(e.to_string()).into(),
            ReportError::MerchantNotFound => {
                AccountsApiError::NotFound("Merchant not found".into()).into()
            }
            ReportError::Engine(e) => e.into(),
        }
    }
}

fn invalid(m: String) -> ApiError {
    AccountsApiError::Invalid(m).into()
}

/// A query parameter's value, blank counting as absent.
fn text(o: &Option<String>) -> Option<&str> {
    o.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// An instant: RFC 3339, or `yyyy-mm-dd` (its start, or with `end_of_day` its last
/// millisecond), in UTC.
fn parse_time(name: &str, s: &str, end_of_day: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        invalid(format!(
            "Invalid {name} '{s}': expected RFC 3339 (2026-12-04T09:30:00Z) or a date (2026-12-04)"
        ))
    })?;
    let (start, end) = crate::engine::reconciliation::day_bounds(chrono_tz::UTC, day);
    Ok(if end_of_day { end } else { start })
}

fn parse_merchant(o: &Option<String>) -> Option<MerchantId> {
    text(o).map(|m| MerchantId::from_stored(m.to_string()))
}

/// One card type's totals as the admin API shows them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TotalsView {
    pub card_type: String,
    pub purchase_count: u64,
    pub purchase_amount: u64,
    pub refund_count: u64,
    pub refund_amount: u64,
    /// Purchases less refunds.
    pub net: i64,
}

impl From<&CardTotals> for TotalsView {
    fn from(t: &CardTotals) -> Self {
        Self {
            card_type: t.card_type.clone(),
            purchase_count: t.purchase_count,
            purchase_amount: t.purchase_amount,
            refund_count: t.refund_count,
            refund_amount: t.refund_amount,
            net: i64::try_from(t.net()).unwrap_or(i64::MAX),
        }
    }
}

fn totals(t: &[CardTotals]) -> Vec<TotalsView> {
    t.iter().map(TotalsView::from).collect()
}

/// All card types together.
fn overall(t: &[CardTotals]) -> TotalsView {
    let mut all = CardTotals {
        card_type: "*".into(),
        ..CardTotals::default()
    };
    for c in t {
        all.purchase_count += c.purchase_count;
        all.purchase_amount = all.purchase_amount.saturating_add(c.purchase_amount);
        all.refund_count += c.refund_count;
        all.refund_amount = all.refund_amount.saturating_add(c.refund_amount);
    }
    TotalsView::from(&all)
}

/// A settled transaction as one side counts it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    pub function: String,
    pub card_type: String,
    pub amount: u64,
}

impl From<&BatchTransaction> for EntryView {
    fn from(b: &BatchTransaction) -> Self {
        Self {
            function: b.function.as_str().to_string(),
            card_type: b.card_type.clone(),
            amount: b.amount,
        }
    }
}

/// A transaction the two sides disagree on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MismatchView {
    pub transaction_id: String,
    pub reasons: Vec<Reason>,
    pub terminal: Option<EntryView>,
    pub cloud: Option<EntryView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<&Mismatch> for MismatchView {
    fn from(m: &Mismatch) -> Self {
        Self {
            transaction_id: m.transaction_id.to_string(),
            reasons: m.reasons.clone(),
            terminal: m.terminal.as_ref().map(EntryView::from),
            cloud: m.cloud.as_ref().map(EntryView::from),
            note: m.note.clone(),
        }
    }
}

/// A settlement in a list: the cutover, its period and how it reconciles, in sum.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementView {
    /// The cutover's transaction id.
    pub transaction_id: String,
    pub device_id: String,
    pub merchant_id: String,
    pub register_id: String,
    /// When the period began in the cloud (the previous approved cutover), if it had one.
    pub period_start: Option<String>,
    /// When the cutover completed in the cloud.
    pub period_end: String,
    /// The terminal's own period, device-local `yyyyMMddHHmmss`, as it reported it.
    pub terminal_period_start: Option<String>,
    pub terminal_period_end: Option<String>,
    /// `balanced`, `unbalanced` or `unreported`.
    pub status: &'static str,
    pub itemised: bool,
    pub mismatch_count: usize,
    pub terminal_totals: Option<TotalsView>,
    pub cloud_totals: TotalsView,
}

impl From<&Settlement> for SettlementView {
    fn from(s: &Settlement) -> Self {
        let r = &s.reconciliation;
        let c = &s.cutover;
        Self {
            transaction_id: c.id.to_string(),
            device_id: c.device_id.to_string(),
            merchant_id: c.merchant_id.to_string(),
            register_id: c.register.key.register_id.clone(),
            period_start: s.period_start.map(rfc3339),
            period_end: rfc3339(s.period_end),
            terminal_period_start: s.batch.as_ref().and_then(|b| b.period_start.clone()),
            terminal_period_end: s.batch.as_ref().map(|b| b.period_end.clone()),
            status: r.status.as_str(),
            itemised: r.itemised,
            mismatch_count: r.mismatches.len(),
            terminal_totals: s.batch.as_ref().map(|_| overall(&r.terminal_totals)),
            cloud_totals: overall(&r.cloud_totals),
        }
    }
}

/// A settlement's whole reconciliation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationView {
    #[serde(flatten)]
    pub settlement: SettlementView,
    /// Whether the terminal's list adds up to its own totals (none when it listed nothing).
    pub terminal_consistent: Option<bool>,
    pub terminal_by_card_type: Vec<TotalsView>,
    pub cloud_by_card_type: Vec<TotalsView>,
    /// The card types whose totals differ: terminal less cloud.
    pub differences: Vec<CardDifference>,
    pub mismatches: Vec<MismatchView>,
}

impl From<&Settlement> for ReconciliationView {
    fn from(s: &Settlement) -> Self {
        let r = &s.reconciliation;
        Self {
            settlement: SettlementView::from(s),
            terminal_consistent: r.terminal_consistent,
            terminal_by_card_type: totals(&r.terminal_totals),
            cloud_by_card_type: totals(&r.cloud_totals),
            differences: r.differences.clone(),
            mismatches: r.mismatches.iter().map(MismatchView::from).collect(),
        }
    }
}

/// Filters of `GET /admin/settlements` and its export.
#[derive(Debug, Default, Deserialize)]
pub struct SettlementParams {
    pub merchant: Option<String>,
    pub device: Option<String>,
    /// Completed at or after (RFC 3339 or `yyyy-mm-dd`).
    pub since: Option<String>,
    /// Completed at or before (RFC 3339, or `yyyy-mm-dd`: to the end of that day).
    pub until: Option<String>,
    /// At most this many, newest first (default and most: 500).
    pub limit: Option<String>,
    /// Exports only: `csv` or `json`.
    pub format: Option<String>,
}

impl SettlementParams {
    fn filter(&self) -> Result<SettlementFilter, ApiError> {
        let device = text(&self.device)
            .map(protocol::DeviceId::parse)
            .transpose()
            .map_err(|e| invalid(format!("Invalid device: {e}")))?;
        let limit = match text(&self.limit) {
            None => MAX_SETTLEMENTS,
            Some(l) => l.parse::<u32>().ok().filter(|l| *l >= 1).ok_or_else(|| {
                invalid(format!(
                    "Invalid limit '{l}': expected 1 to {MAX_SETTLEMENTS}"
                ))
            })?,
        };
        Ok(SettlementFilter {
            merchant: parse_merchant(&self.merchant),
            device,
            since: text(&self.since)
                .map(|s| parse_time("since", s, false))
                .transpose()?,
            until: text(&self.until)
                .map(|s| parse_time("until", s, true))
                .transpose()?,
            limit: limit.min(MAX_SETTLEMENTS),
        })
    }
}

/// `GET /admin/settlements`: approved cutovers, newest first, each with its reconciliation
/// status.
pub async fn settlements(
    State(state): State<WebState>,
    admin: Admin,
    Query(params): Query<SettlementParams>,
) -> Result<Json<Vec<SettlementView>>, ApiError> {
    admin.require(Scope::ReportsRead)?;
    let found = state
        .engine
        .settlements(&admin.principal, &params.filter()?)
        .await?;
    Ok(Json(found.iter().map(SettlementView::from).collect()))
}

/// `GET /admin/settlements/{transaction_id}/reconciliation`.
pub async fn reconciliation(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<ReconciliationView>, ApiError> {
    admin.require(Scope::ReportsRead)?;
    let not_found = || AccountsApiError::NotFound("Settlement not found".into());
    let id: TransactionId = id.parse().map_err(|_| not_found())?;
    let s = state
        .engine
        .settlement(&admin.principal, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(ReconciliationView::from(&s)))
}

/// Parameters of `GET /admin/reports/daily`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyParams {
    pub merchant: Option<String>,
    /// `yyyy-mm-dd`.
    pub date: Option<String>,
    /// An IANA zone; by default the one all the merchant's sites share, else UTC.
    pub time_zone: Option<String>,
}

/// A merchant's day.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyView {
    pub merchant_id: String,
    pub date: String,
    pub time_zone: String,
    /// The day's first and last instants (UTC).
    pub since: String,
    pub until: String,
    pub settlements: Vec<SettlementView>,
    /// How many settlements are not balanced (unbalanced or unreported).
    pub settlements_unbalanced: usize,
    /// The cloud's totals of the day by card type, and all together.
    pub totals: Vec<TotalsView>,
    pub total: TotalsView,
    pub transaction_count: usize,
}

impl From<&DailyReport> for DailyView {
    fn from(d: &DailyReport) -> Self {
        Self {
            merchant_id: d.merchant_id.to_string(),
            date: d.date.format("%Y-%m-%d").to_string(),
            time_zone: d.time_zone.clone(),
            since: rfc3339(d.since),
            until: rfc3339(d.until),
            settlements_unbalanced: d
                .settlements
                .iter()
                .filter(|s| {
                    s.reconciliation.status != crate::domain::reconciliation::Status::Balanced
                })
                .count(),
            settlements: d.settlements.iter().map(SettlementView::from).collect(),
            totals: totals(&d.totals),
            total: overall(&d.totals),
            transaction_count: d.transactions,
        }
    }
}

/// `GET /admin/reports/daily?merchant=&date=YYYY-MM-DD[&timeZone=]`. A merchant's credential
/// may leave out `merchant` (its own).
pub async fn daily(
    State(state): State<WebState>,
    admin: Admin,
    Query(params): Query<DailyParams>,
) -> Result<Json<DailyView>, ApiError> {
    admin.require(Scope::ReportsRead)?;
    let merchant = parse_merchant(&params.merchant)
        .or_else(|| admin.merchant().cloned())
        .ok_or_else(|| invalid("merchant is required".into()))?;
    let date = text(&params.date).ok_or_else(|| invalid("date is required".into()))?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| invalid(format!("Invalid date '{date}': expected YYYY-MM-DD")))?;
    let report = state
        .engine
        .daily_report(&admin.principal, &merchant, date, text(&params.time_zone))
        .await?;
    Ok(Json(DailyView::from(&report)))
}

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

fn format_of(o: &Option<String>) -> Result<Format, ApiError> {
    match text(o).map(str::to_ascii_lowercase).as_deref() {
        None | Some("csv") => Ok(Format::Csv),
        Some("json") => Ok(Format::Json),
        Some(other) => Err(invalid(format!(
            "Invalid format '{other}': expected csv or json"
        ))),
    }
}

/// A spreadsheet takes a cell that begins with `=`, `+`, `-` or `@` for a formula: a text
/// column (a register's name, a POS reference) that begins so is prefixed with `'` (OWASP's
/// advice on CSV injection). Amounts are numbers and are left alone.
fn cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

/// Rows as a downloadable file: CSV (a header row, RFC 4180 quoting) or a JSON array.
fn download<T: Serialize + Default>(
    name: &str,
    format: Format,
    rows: &[T],
) -> Result<Response, ApiError> {
    let (body, content_type, ext) = match format {
        Format::Json => (
            serde_json::to_vec(rows).map_err(|e| invalid(e.to_string()))?,
            "application/json",
            "json",
        ),
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            for row in rows {
                w.serialize(row).map_err(|e| invalid(e.to_string()))?;
            }
            let mut bytes = w.into_inner().map_err(|e| invalid(e.to_string()))?;
            if rows.is_empty() {
                // The header comes with the first row: an empty export still names its
                // columns, so it is the header of a row nobody asked for.
                let mut h = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(Vec::new());
                h.serialize(T::default())
                    .map_err(|e| invalid(e.to_string()))?;
                let all = h.into_inner().map_err(|e| invalid(e.to_string()))?;
                let end = all
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map_or(all.len(), |i| i + 2);
                bytes = all[..end].to_vec();
            }
            (bytes, "text/csv; charset=utf-8", "csv")
        }
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.{ext}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// One transaction of an export: a row of the CSV, an object of the JSON.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRow {
    pub transaction_id: String,
    pub created_at: String,
    pub completed_at: String,
    pub merchant_id: String,
    pub device_id: String,
    pub register_id: String,
    pub register_name: String,
    pub function: String,
    /// `TransactionResult` when there is one, else `Result`.
    pub outcome: String,
    pub result_text: String,
    pub currency: String,
    /// What the device charged (`AmountTotal`), else the amount asked for, minor units.
    pub amount: Option<u64>,
    pub amount_tip: Option<u64>,
    /// For an approved transaction that settles: what it settles for now (after tip
    /// adjustments; 0 when voided).
    pub amount_settled: Option<u64>,
    pub voided: bool,
    pub card_type: String,
    pub card_pan: String,
    pub auth_id: String,
    pub original_transaction_id: String,
    pub pos_reference: String,
}

impl From<&ExportedTransaction> for TransactionRow {
    fn from(e: &ExportedTransaction) -> Self {
        let t = &e.transaction;
        let (outcome, result_text, completed_at, fields) = match &t.phase {
            Phase::Completed(c) => (
                c.transaction_result
                    .map(|x| x.as_str().to_string())
                    .unwrap_or_else(|| c.result.as_str().to_string()),
                c.result_text.clone(),
                rfc3339(c.completed_at),
                Some(&c.fields),
            ),
            Phase::Offered { .. } | Phase::Started { .. } => {
                (String::new(), String::new(), String::new(), None)
            }
        };
        let field = |k: &str| {
            fields
                .and_then(|f| f.get(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let number = |k: &str| field(k).parse::<u64>().ok();
        let asked = match t.request.function {
            protocol::Function::CardTipAdjust => t.request.amount_tip,
            _ => t.request.headline_amount().map(protocol::Cents::get),
        };
        Self {
            transaction_id: t.id.to_string(),
            created_at: rfc3339(t.created_at),
            completed_at,
            merchant_id: t.merchant_id.to_string(),
            device_id: t.device_id.to_string(),
            register_id: cell(&t.register.key.register_id),
            register_name: cell(&t.register.register_name),
            function: t.request.function.as_str().to_string(),
            outcome,
            result_text: cell(&result_text),
            currency: t.request.currency().to_string(),
            amount: number("AmountTotal").or(asked),
            amount_tip: number("AmountTip"),
            amount_settled: e.settled.map(|s| s.unwrap_or(0)),
            voided: matches!(e.settled, Some(None)),
            card_type: cell(&field("CardType")),
            card_pan: cell(&field("CardPan")),
            auth_id: cell(&field("AuthId")),
            original_transaction_id: t
                .request
                .original
                .as_ref()
                .map(|o| o.transaction_id.to_string())
                .unwrap_or_default(),
            pos_reference: cell(t.pos_reference.as_deref().unwrap_or_default()),
        }
    }
}

/// Parameters of `GET /admin/exports/transactions`.
#[derive(Debug, Default, Deserialize)]
pub struct ExportParams {
    pub format: Option<String>,
    pub merchant: Option<String>,
    /// Completed at or after (RFC 3339 or `yyyy-mm-dd`).
    pub since: Option<String>,
    /// Completed at or before (RFC 3339, or `yyyy-mm-dd`: to the end of that day).
    pub until: Option<String>,
}

/// `GET /admin/exports/transactions?format=csv|json&merchant=&since=&until=`: completed
/// transactions, oldest first, at most 50,000.
pub async fn export_transactions(
    State(state): State<WebState>,
    admin: Admin,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    admin.require(Scope::ReportsRead)?;
    let format = format_of(&params.format)?;
    let since = text(&params.since)
        .map(|s| parse_time("since", s, false))
        .transpose()?;
    let until = text(&params.until)
        .map(|s| parse_time("until", s, true))
        .transpose()?;
    let merchant = parse_merchant(&params.merchant);
    let found = state
        .engine
        .export_transactions(&admin.principal, merchant.as_ref(), since, until)
        .await?;
    let rows: Vec<TransactionRow> = found.iter().map(TransactionRow::from).collect();
    download("transactions", format, &rows)
}

/// One settlement of an export.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementRow {
    pub transaction_id: String,
    pub merchant_id: String,
    pub device_id: String,
    pub period_start: String,
    pub period_end: String,
    pub terminal_period_start: String,
    pub terminal_period_end: String,
    pub status: &'static str,
    pub mismatch_count: usize,
    pub terminal_purchase_count: Option<u64>,
    pub terminal_purchase_amount: Option<u64>,
    pub terminal_refund_count: Option<u64>,
    pub terminal_refund_amount: Option<u64>,
    pub cloud_purchase_count: u64,
    pub cloud_purchase_amount: u64,
    pub cloud_refund_count: u64,
    pub cloud_refund_amount: u64,
}

impl From<&SettlementView> for SettlementRow {
    fn from(s: &SettlementView) -> Self {
        let t = s.terminal_totals.as_ref();
        Self {
            transaction_id: s.transaction_id.clone(),
            merchant_id: s.merchant_id.clone(),
            device_id: s.device_id.clone(),
            period_start: s.period_start.clone().unwrap_or_default(),
            period_end: s.period_end.clone(),
            terminal_period_start: s.terminal_period_start.clone().unwrap_or_default(),
            terminal_period_end: s.terminal_period_end.clone().unwrap_or_default(),
            status: s.status,
            mismatch_count: s.mismatch_count,
            terminal_purchase_count: t.map(|t| t.purchase_count),
            terminal_purchase_amount: t.map(|t| t.purchase_amount),
            terminal_refund_count: t.map(|t| t.refund_count),
            terminal_refund_amount: t.map(|t| t.refund_amount),
            cloud_purchase_count: s.cloud_totals.purchase_count,
            cloud_purchase_amount: s.cloud_totals.purchase_amount,
            cloud_refund_count: s.cloud_totals.refund_count,
            cloud_refund_amount: s.cloud_totals.refund_amount,
        }
    }
}

/// `GET /admin/exports/settlements?format=csv|json&merchant=&device=&since=&until=`: the
/// settlements of `GET /admin/settlements`, one row each.
pub async fn export_settlements(
    State(state): State<WebState>,
    admin: Admin,
    Query(params): Query<SettlementParams>,
) -> Result<Response, ApiError> {
    admin.require(Scope::ReportsRead)?;
    let format = format_of(&params.format)?;
    let found = state
        .engine
        .settlements(&admin.principal, &params.filter()?)
        .await?;
    let rows: Vec<SettlementRow> = found
        .iter()
        .map(|s| SettlementRow::from(&SettlementView::from(s)))
        .collect();
    download("settlements", format, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cells_that_a_spreadsheet_would_run_are_defused() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("@x"), "'@x");
        assert_eq!(cell("-2"), "'-2");
        assert_eq!(cell("Main Register"), "Main Register");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn csv_has_a_header_and_quotes_as_rfc_4180_says() {
        #[derive(Default, Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Row {
            register_name: String,
            amount: Option<u64>,
        }
        let rows = [
            Row {
                register_name: "Bar, \"back\"\nroom".into(),
                amount: Some(100),
            },
            Row {
                register_name: "Front".into(),
                amount: None,
            },
        ];
        let Ok(response) = download("t", Format::Csv, &rows) else {
            unreachable!()
        };
        assert_eq!(
            response.headers().get(header::CONTENT_DISPOSITION),
            Some(&HeaderValue::from_static("attachment; filename=\"t.csv\""))
        );
        let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
            response.into_body(),
            1 << 20,
        ));
        let Some(Ok(body)) = body else { unreachable!() };
        assert_eq!(
            String::from_utf8_lossy(&body),
            "registerName,amount\r\n\"Bar, \"\"back\"\"\nroom\",100\r\nFront,\r\n"
        );
        let Ok(empty) = download::<Row>("t", Format::Csv, &[]) else {
            unreachable!()
        };
        let body =
            futures_util::FutureExt::now_or_never(axum::body::to_bytes(empty.into_body(), 1 << 20));
        let Some(Ok(body)) = body else { unreachable!() };
        assert_eq!(String::from_utf8_lossy(&body), "registerName,amount\r\n");
        assert!(format_of(&Some("xml".into())).is_err());
        assert_eq!(format_of(&Some(" JSON".into())).ok(), Some(Format::Json));
        assert_eq!(format_of(&None).ok(), Some(Format::Csv));
    }
}
