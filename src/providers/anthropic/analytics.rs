//! Anthropic's Usage and Cost Analytics API (beta `analytics-usage-cost-2026-08-24`), read for
//! the one thing the legacy reports lack: cost per API key and UTC day, in the bill's dollars
//! (after discounts, before credits). Rows are flat: each carries its own `starting_at`,
//! `ending_at`, a `group` (here only `api_key_id`) and a `cost` whose `amount` is a decimal
//! string in cents. Where the beta is refused (an organisation without it, an older API, a
//! HIPAA-ready organisation) the client stops asking for the rest of the process and keys keep
//! their estimates.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::AnthropicClient;
use crate::providers::http::PollError;
use crate::providers::{collect_pages, CostBucket, UNATTRIBUTED_KEY_ID, WORKBENCH_KEY_ID};

pub const ANALYTICS_COST_ENDPOINT: &str = "/v1/organizations/analytics/cost";
pub const ANALYTICS_BETA: &str = "analytics-usage-cost-2026-08-24";
/// The API serves nothing before this instant (and nothing older than 365 days).
const FIRST_SERVED: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    data: Vec<Item>,
    #[serde(default)]
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    starting_at: DateTime<Utc>,
    ending_at: DateTime<Utc>,
    #[serde(default)]
    group: Group,
    cost: Metrics,
}

#[derive(Deserialize, Default)]
struct Group {
    api_key_id: Option<String>,
}

#[derive(Deserialize)]
struct Metrics {
    /// Fractional cents, as a decimal string.
    amount: Option<String>,
    currency: Option<String>,
}

/// USD per key for each UTC day (midnight, Unix seconds).
pub type KeyCosts = BTreeMap<i64, Vec<(String, f64)>>;

impl AnthropicClient {
    /// Cost per key and UTC day for whole days in `[start, end)` that have ended (only closed
    /// days count as billed), all pages; `None` where the analytics API is not available to this admin key (then, and for the rest of the
    /// process, not asked again). Cost with no key (the Console's Workbench) is under
    /// [`WORKBENCH_KEY_ID`], as its usage is.
    pub async fn key_costs(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<Option<KeyCosts>, PollError> {
        if !self.analytics.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let now = Utc::now().timestamp();
        // Whole days only: the first midnight inside the API's 365 days.
        let oldest = ((now - 364 * DAY).div_euclid(DAY) * DAY + DAY).max(FIRST_SERVED);
        let start = start.max(DateTime::from_timestamp(oldest, 0).unwrap_or(start));
        let end = end.min(DateTime::from_timestamp(now.div_euclid(DAY) * DAY, 0).unwrap_or(end));
        if start >= end {
            return Ok(Some(KeyCosts::new()));
        }
        let (from, to) = (
            start.to_rfc3339_opts(SecondsFormat::Secs, true),
            end.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        let read = collect_pages(ANALYTICS_COST_ENDPOINT, |page| {
            let (from, to) = (from.clone(), to.clone());
            async move {
                let p: Page = self
                    .http
                    .get_json(
                        ANALYTICS_COST_ENDPOINT,
                        || {
                            let mut q = vec![
                                ("starting_at", from.clone()),
                                ("ending_at", to.clone()),
                                ("time_bucket_width", "1d".to_owned()),
                                ("group_by[]", "api_key_id".to_owned()),
                            ];
                            if let Some(p) = &page {
                                q.push(("page", p.clone()));
                            }
                            self.http
                                .get(ANALYTICS_COST_ENDPOINT)
                                .header("anthropic-beta", ANALYTICS_BETA)
                                .query(&q)
                        },
                        cancel,
                    )
                    .await?;
                Ok((p.data, p.next_page.filter(|_| p.has_more)))
            }
        })
        .await;
        let read = read.and_then(|items| per_day(items, start.timestamp(), end.timestamp()));
        match read {
            Ok(days) => Ok(Some(days)),
            Err(e) if refused(&e) => {
                self.analytics.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e,
                    "Anthropic's cost analytics API (beta {ANALYTICS_BETA}) is not available to \
                     this admin key: Anthropic keys keep estimated cost only (reports say \
                     `estimated`); not asked again until restart");
                Ok(None)
            }
            // Worth asking again soon: the cost poll fails and is retried, as for the report.
            Err(
                e
                @ (PollError::Timeout { .. } | PollError::Transport { .. } | PollError::Cancelled),
            ) => Err(e),
            Err(
                e @ PollError::Api {
                    status: 429 | 500..=599,
                    ..
                },
            ) => Err(e),
            // A reply keywatch cannot use (a row it refuses, a page over the cap): the report's
            // days are stored without a per-key split (what was stored per key stays), and the
            // next poll asks again.
            Err(e) => {
                tracing::warn!(error = %e,
                    "Anthropic's cost analytics API gave an answer keywatch cannot use: the cost \
                     report is stored without per-key cost for these days; asked again next poll");
                Ok(None)
            }
        }
    }
}

/// A refusal that asking again will not change: the endpoint or the beta is not available to
/// this admin key (403, 404; a 400 that names the beta, the analytics API or a HIPAA-ready
/// organisation). Any other 400 may be keywatch's own request and is not taken as a refusal.
fn refused(e: &PollError) -> bool {
    match e {
        PollError::Api {
            status: 403 | 404, ..
        } => true,
        PollError::Api {
            status: 400,
            message,
            ..
        } => {
            let m = message.to_ascii_lowercase();
            ["beta", "analytics", "hipaa", "not available", "not enabled"]
                .iter()
                .any(|w| m.contains(w))
        }
        _ => false,
    }
}

/// The largest amount one row may carry, in cents: $10^12. Larger is refused as garbage, so
/// sums stay finite.
const MAX_CENTS: f64 = 1e14;

/// USD per key for each UTC day in `[start, end)`; a day without rows is there, empty (the
/// API reported no cost per key for it).
fn per_day(items: Vec<Item>, start: i64, end: i64) -> Result<KeyCosts, PollError> {
    let bad = |message: String| PollError::Decode {
        endpoint: ANALYTICS_COST_ENDPOINT.to_owned(),
        message,
    };
    let mut days: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    let mut day = start.div_euclid(DAY) * DAY;
    while day < end {
        days.insert(day, BTreeMap::new());
        day += DAY;
    }
    for item in items {
        let (start, end) = (item.starting_at.timestamp(), item.ending_at.timestamp());
        if start.rem_euclid(DAY) != 0 || end - start != DAY {
            return Err(bad(format!(
                "a cost row covers {} to {}, not one UTC day",
                item.starting_at, item.ending_at
            )));
        }
        let currency = item.cost.currency.as_deref().unwrap_or("USD");
        if !currency.eq_ignore_ascii_case("usd") {
            return Err(bad(format!(
                "cost in {currency:?}; keywatch budgets are in USD"
            )));
        }
        let cents: f64 = match item.cost.amount.as_deref() {
            None => 0.0,
            Some(a) => a
                .trim()
                .parse()
                .map_err(|_| bad(format!("amount {a:?} is not a number")))?,
        };
        if !cents.is_finite() || cents.abs() > MAX_CENTS {
            return Err(bad(format!("amount {cents} cents is not a plausible cost")));
        }
        let key = item
            .group
            .api_key_id
            .unwrap_or_else(|| WORKBENCH_KEY_ID.to_owned());
        *days.entry(start).or_default().entry(key).or_default() += cents / 100.0;
    }
    Ok(days
        .into_iter()
        .map(|(day, keys)| (day, keys.into_iter().collect()))
        .collect())
}

/// Puts each day's cost per key on the cost report's days. What the report bills beyond the
/// keys' sum (the analytics API may leave out the smallest groups) is added to
/// [`UNATTRIBUTED_KEY_ID`], so a day's keys always add up to the bill. A day the analytics
/// API reported without rows gets only that remainder (its keys keep their estimates); a day
/// it was not asked about (today, not closed) keeps no split.
pub fn attach(buckets: &mut [CostBucket], mut costs: KeyCosts) {
    for b in buckets {
        let Some(mut rows) = costs.remove(&b.start.timestamp()) else {
            continue;
        };
        let keys: f64 = rows.iter().map(|(_, usd)| usd).sum();
        let billed: f64 = b.lines.iter().map(|l| l.usd).sum();
        // Half a cent: amounts are rounded to fractional cents on both sides.
        if billed - keys > 0.005 {
            match rows.iter_mut().find(|(k, _)| k == UNATTRIBUTED_KEY_ID) {
                Some((_, usd)) => *usd += billed - keys,
                None => rows.push((UNATTRIBUTED_KEY_ID.to_owned(), billed - keys)),
            }
        }
        b.rows = Some(rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::CostLine;

    fn item(day: i64, key: Option<&str>, cents: &str) -> Item {
        Item {
            starting_at: DateTime::from_timestamp(day, 0).unwrap(),
            ending_at: DateTime::from_timestamp(day + DAY, 0).unwrap(),
            group: Group {
                api_key_id: key.map(str::to_owned),
            },
            cost: Metrics {
                amount: Some(cents.to_owned()),
                currency: Some("USD".to_owned()),
            },
        }
    }

    #[test]
    fn rows_become_usd_per_key_and_day_and_the_bill_remainder_is_unattributed() {
        let day = 20_400 * DAY;
        let costs = per_day(
            vec![
                item(day, Some("apikey_a"), "123.5"),
                item(day, None, "10"),
                item(day + DAY, Some("apikey_a"), "50"),
            ],
            day,
            day + 3 * DAY,
        )
        .unwrap();
        assert_eq!(
            costs[&day],
            vec![
                ("apikey_a".to_owned(), 1.235),
                (WORKBENCH_KEY_ID.to_owned(), 0.1)
            ]
        );
        let line = |usd| CostLine {
            workspace_id: None,
            cost_type: "tokens".to_owned(),
            model: None,
            usd,
        };
        let bucket = |d: i64, usd| CostBucket {
            start: DateTime::from_timestamp(d, 0).unwrap(),
            end: DateTime::from_timestamp(d + DAY, 0).unwrap(),
            rows: None,
            lines: vec![line(usd)],
        };
        let mut buckets = vec![
            bucket(day, 2.0),
            bucket(day + DAY, 0.5),
            bucket(day + 2 * DAY, 1.0),
            bucket(day + 3 * DAY, 4.0),
        ];
        attach(&mut buckets, costs);
        let unattributed = |b: &CostBucket| {
            b.rows
                .iter()
                .flatten()
                .find(|(k, _)| k == UNATTRIBUTED_KEY_ID)
                .map(|(_, u)| *u)
        };
        assert!((unattributed(&buckets[0]).unwrap() - 0.665).abs() < 1e-9);
        assert_eq!(buckets[1].rows, Some(vec![("apikey_a".to_owned(), 0.5)]));
        assert_eq!(
            buckets[2].rows,
            Some(vec![(UNATTRIBUTED_KEY_ID.to_owned(), 1.0)]),
            "a day without analytics rows: the whole bill is unattributed"
        );
        assert_eq!(
            buckets[3].rows, None,
            "a day not asked about keeps no split"
        );
    }

    #[test]
    fn a_row_that_is_not_one_utc_day_or_not_usd_is_refused_naming_it() {
        let mut wide = item(0, Some("k"), "1");
        wide.ending_at = DateTime::from_timestamp(2 * DAY, 0).unwrap();
        assert!(per_day(vec![wide], 0, DAY).is_err());
        let mut eur = item(0, Some("k"), "1");
        eur.cost.currency = Some("EUR".to_owned());
        let e = per_day(vec![eur], 0, DAY).err().unwrap().to_string();
        assert!(e.contains("EUR"), "{e}");
        assert!(per_day(vec![item(0, Some("k"), "NaN")], 0, DAY).is_err());
        assert!(per_day(vec![item(0, Some("k"), "1e300")], 0, DAY).is_err());
    }
}
