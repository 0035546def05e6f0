//! Settlements and their reconciliation, the day's report of a merchant, and the exports: the
//! read side of reconciliation. Nothing here writes: a settlement is a completed, approved
//! `Acquirer.Settlement.Cutover`, its batch is what the device reported in its result, and the
//! cloud's side is computed from the device's records of the period each time it is asked
//! for ([`crate::domain::reconciliation`]).

use super::queries::sees;
use super::{Engine, EngineError};
use crate::domain::accounts::{MerchantId, Principal};
use crate::domain::lifecycle::Phase;
use crate::domain::reconciliation::{self, Reconciliation};
use crate::domain::TransactionRecord;
use crate::store::PeriodQuery;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use protocol::settlement::{CardTotals, SettlementBatch};
use protocol::{DeviceId, TransactionId};
use std::collections::BTreeMap;

/// Most transactions one settlement period is read with (a device's batch is far smaller).
pub const MAX_PERIOD_TRANSACTIONS: u32 = 20_000;

/// Most settlements one list reconciles.
pub const MAX_SETTLEMENTS: u32 = 500;

/// Most rows one export holds.
pub const MAX_EXPORT_ROWS: u32 = 50_000;

/// How many earlier cutovers are looked through for the previous approved one (a failed
/// cutover closes no period).
const EARLIER_CUTOVERS: u32 = 50;

/// A settlement: an approved cutover and the period it closed.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub cutover: TransactionRecord,
    /// The batch the device reported, if it reports batches.
    pub batch: Option<SettlementBatch>,
    /// When the period began in the cloud: the device's previous approved cutover (none: the
    /// device's first transaction).
    pub period_start: Option<DateTime<Utc>>,
    /// When the cutover completed in the cloud.
    pub period_end: DateTime<Utc>,
    /// The comparison of the batch with the cloud's records.
    pub reconciliation: Reconciliation,
}

/// Which settlements to list.
#[derive(Debug, Clone, Default)]
pub struct SettlementFilter {
    pub merchant: Option<MerchantId>,
    pub device: Option<DeviceId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// A merchant's day.
#[derive(Debug, Clone)]
pub struct DailyReport {
    pub merchant_id: MerchantId,
    pub date: NaiveDate,
    /// The IANA zone the day is taken in.
    pub time_zone: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Every settlement of the merchant's devices that day, oldest first.
    pub settlements: Vec<Settlement>,
    /// The cloud's totals of the day by card type: approved transactions that settle,
    /// completed that day, as they stood at the day's end.
    pub totals: Vec<CardTotals>,
    /// How many transactions completed that day (any function, any outcome).
    pub transactions: usize,
}

/// A completed transaction for an export, with what it settled for.
#[derive(Debug, Clone)]
pub struct ExportedTransaction {
    pub transaction: TransactionRecord,
    /// For an approved transaction that settles: its amount after its tip adjustments and
    /// whether it was voided, as of now.
    pub settled: Option<Option<u64>>,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown time zone '{0}': expected an IANA name such as Australia/Sydney or UTC")]
    TimeZone(String),
    #[error("no such merchant")]
    MerchantNotFound,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ReportError {
    fn from(e: crate::store::StoreError) -> Self {
        ReportError::Engine(e.into())
    }
}

/// Whether a cutover was approved: only then did it close a period.
fn approved_cutover(tx: &TransactionRecord) -> bool {
    tx.request.function == protocol::Function::AcquirerSettlementCutover
        && matches!(&tx.phase, Phase::Completed(c) if c.is_success())
}

impl Engine {
    /// The settlements `principal` sees matching `filter`, newest first, each reconciled.
    pub async fn settlements(
        &self,
        principal: &Principal,
        filter: &SettlementFilter,
    ) -> Result<Vec<Settlement>, EngineError> {
        let merchant = match (principal.merchant(), &filter.merchant) {
            // Another merchant's settlements do not exist for this credential.
            (Some(own), Some(asked)) if own != asked => return Ok(Vec::new()),
            (Some(own), _) => Some(own.clone()),
            (None, asked) => asked.clone(),
        };
        let q = PeriodQuery {
            merchant,
            device: filter.device.clone(),
            since: filter.since,
            until: filter.until,
            limit: filter.limit.clamp(1, MAX_SETTLEMENTS),
        };
        let mut out = Vec::new();
        for cutover in self.store().settlements(&q).await? {
            if approved_cutover(&cutover) && sees(principal, &cutover) {
                out.push(self.settle(cutover).await?);
            }
        }
        Ok(out)
    }

    /// One settlement with its reconciliation, if `id` is an approved cutover `principal`
    /// sees.
    pub async fn settlement(
        &self,
        principal: &Principal,
        id: &TransactionId,
    ) -> Result<Option<Settlement>, EngineError> {
        match self.store().transaction(id).await? {
            Some(tx) if approved_cutover(&tx) && sees(principal, &tx) => {
                Ok(Some(self.settle(tx).await?))
            }
            _ => Ok(None),
        }
    }

    /// Reconciles an approved cutover against the device's records of its period.
    async fn settle(&self, cutover: TransactionRecord) -> Result<Settlement, EngineError> {
        let store = self.store();
        let (batch, period_end) = match &cutover.phase {
            Phase::Completed(c) => (c.settlement.as_deref().cloned(), c.completed_at),
            // An approved cutover is completed (checked by the callers).
            Phase::Offered { .. } | Phase::Started { .. } => (None, cutover.created_at),
        };
        let earlier = store
            .settlements(&PeriodQuery {
                device: Some(cutover.device_id.clone()),
                until: Some(period_end - Duration::milliseconds(1)),
                limit: EARLIER_CUTOVERS,
                ..PeriodQuery::default()
            })
            .await?;
        let period_start = earlier
            .iter()
            .find(|c| approved_cutover(c))
            .and_then(TransactionRecord::completed_at);
        let period = PeriodQuery {
            device: Some(cutover.device_id.clone()),
            // Times are kept in milliseconds: the previous cutover's own is not in the period.
            since: period_start.map(|s| s + Duration::milliseconds(1)),
            until: Some(period_end),
            limit: MAX_PERIOD_TRANSACTIONS,
            ..PeriodQuery::default()
        };
        let mut transactions = store.completed_transactions(&period).await?;
        transactions.retain(|t| t.id != cutover.id);
        let follow_ups = store.follow_ups_of_completed(&period).await?;
        let cloud = reconciliation::cloud_batch(&transactions, &follow_ups, period_end);
        let mut notes: BTreeMap<TransactionId, String> = BTreeMap::new();
        let listed = batch.as_ref().and_then(|b| b.transactions.as_ref());
        for t in listed.into_iter().flatten() {
            let id = t.transaction_id;
            if cloud.entries.iter().any(|e| e.transaction_id == id) || notes.contains_key(&id) {
                continue;
            }
            let note = match cloud.excluded.get(&id) {
                Some(why) => why.clone(),
                None => reconciliation::outside_period(
                    store.transaction(&id).await?.as_ref(),
                    &cutover.device_id,
                    period_start,
                    period_end,
                ),
            };
            notes.insert(id, note);
        }
        let reconciliation = reconciliation::reconcile(batch.as_ref(), &cloud.entries, &notes);
        Ok(Settlement {
            cutover,
            batch,
            period_start,
            period_end,
            reconciliation,
        })
    }

    /// A merchant's day `date` in `time_zone` (an IANA name; none: the zone every site of the
    /// merchant shares, else UTC): its settlements and the cloud's totals by card type.
    pub async fn daily_report(
        &self,
        principal: &Principal,
        merchant: &MerchantId,
        date: NaiveDate,
        time_zone: Option<&str>,
    ) -> Result<DailyReport, ReportError> {
        if !principal.sees(merchant, None) || self.store().merchant(merchant).await?.is_none() {
            return Err(ReportError::MerchantNotFound);
        }
        let zone: chrono_tz::Tz = match time_zone {
            Some(name) => crate::domain::accounts::parse_time_zone(name)
                .map_err(|_| ReportError::TimeZone(name.to_string()))?,
            None => self.merchant_zone(merchant).await?,
        };
        let (since, until) = day_bounds(zone, date);
        let settlements = self
            .settlements(
                principal,
                &SettlementFilter {
                    merchant: Some(merchant.clone()),
                    device: None,
                    since: Some(since),
                    until: Some(until),
                    limit: MAX_SETTLEMENTS,
                },
            )
            .await?
            .into_iter()
            .rev()
            .collect();
        let day = PeriodQuery {
            merchant: Some(merchant.clone()),
            device: None,
            since: Some(since),
            until: Some(until),
            limit: MAX_EXPORT_ROWS,
        };
        let transactions = self.store().completed_transactions(&day).await?;
        let follow_ups = self.store().follow_ups_of_completed(&day).await?;
        let cloud = reconciliation::cloud_batch(&transactions, &follow_ups, until);
        Ok(DailyReport {
            merchant_id: merchant.clone(),
            date,
            time_zone: zone.name().to_string(),
            since,
            until,
            settlements,
            totals: reconciliation::totals(&cloud.entries),
            transactions: transactions.len(),
        })
    }

    /// The zone a merchant's day is taken in: the one all its sites share, else UTC.
    async fn merchant_zone(&self, merchant: &MerchantId) -> Result<chrono_tz::Tz, EngineError> {
        let sites = self.store().sites(Some(merchant)).await?;
        let mut zones = sites
            .iter()
            .filter_map(|s| s.time_zone.parse::<chrono_tz::Tz>().ok());
        Ok(match zones.next() {
            Some(first) if zones.all(|z| z == first) => first,
            _ => chrono_tz::UTC,
        })
    }

    /// Completed transactions `principal` sees for an export, oldest first, each with what it
    /// settled for.
    pub async fn export_transactions(
        &self,
        principal: &Principal,
        merchant: Option<&MerchantId>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<ExportedTransaction>, EngineError> {
        if let (Some(own), Some(asked)) = (principal.merchant(), merchant) {
            if own != asked {
                return Ok(Vec::new());
            }
        }
        let q = PeriodQuery {
            merchant: principal.merchant().or(merchant).cloned(),
            device: None,
            since,
            until,
            limit: MAX_EXPORT_ROWS,
        };
        let transactions = self.store().completed_transactions(&q).await?;
        let follow_ups = self.store().follow_ups_of_completed(&q).await?;
        let now = self.now();
        let follow_ups = reconciliation::by_original(follow_ups);
        Ok(transactions
            .into_iter()
            .filter(|t| sees(principal, t))
            .map(|t| {
                let settled = (reconciliation::approved(&t)
                    && protocol::settlement::settles(t.request.function).is_some())
                .then(|| {
                    let of = follow_ups.get(&t.id).map_or(&[][..], Vec::as_slice);
                    reconciliation::settled_amount(&t, of, now)
                });
                ExportedTransaction {
                    transaction: t,
                    settled,
                }
            })
            .collect())
    }
}

/// The instants a day in `zone` begins and ends (inclusive, to the millisecond the store
/// keeps); a midnight a clock change skips starts the day at the earliest valid time.
pub fn day_bounds(zone: chrono_tz::Tz, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start_of = |d: NaiveDate| {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        zone.from_local_datetime(&midnight)
            .earliest()
            .or_else(|| {
                zone.from_local_datetime(&(midnight + Duration::hours(1)))
                    .earliest()
            })
            .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
    };
    let next = date.succ_opt().unwrap_or(date);
    (start_of(date), start_of(next) - Duration::milliseconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_midnight_to_midnight_in_its_zone() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap_or_default();
        let (s, u) = day_bounds(chrono_tz::UTC, d);
        assert_eq!(s.to_rfc3339(), "2026-12-04T00:00:00+00:00");
        assert_eq!(
            u.timestamp_millis() + 1,
            (s + Duration::days(1)).timestamp_millis()
        );
        // Sydney is UTC+11 in December.
        let (s, _) = day_bounds(chrono_tz::Australia::Sydney, d);
        assert_eq!(s.to_rfc3339(), "2026-12-03T13:00:00+00:00");
        // A day a clock change shortens (Sydney, first Sunday of April: 25 hours; October: 23).
        let april = NaiveDate::from_ymd_opt(2026, 4, 5).unwrap_or_default();
        let (s, u) = day_bounds(chrono_tz::Australia::Sydney, april);
        assert_eq!((u - s).num_hours(), 24, "25 hours less a millisecond");
        let october = NaiveDate::from_ymd_opt(2026, 10, 4).unwrap_or_default();
        let (s, u) = day_bounds(chrono_tz::Australia::Sydney, october);
        assert_eq!((u - s).num_hours(), 22, "23 hours less a millisecond");
    }
}
