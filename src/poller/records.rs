//! A usage page's rows as the store takes them: snapped to the bucket width and priced, with
//! one warning per model without a price.
//!
//! The usage report is grouped by what sets a row's price (service tier, inference geo, speed:
//! #17), so one key's bucket of one model may arrive as several rows (its batch and its
//! standard traffic). Each row is priced at its own rates and the rows are stored as one, their
//! tokens and dollars added up: a bucket's cost is what the provider bills for it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::schedule::floor_to;
use super::Poller;
use crate::prices::{PriceDimensions, Priced, TokenCounts};
use crate::providers::UsagePage;
use crate::store::{SplitRecord, UsageRecord};

/// The price class of a row's dimensions: its tier (`standard` for the default tiers), then
/// `/us` and `/fast` where they apply; `None` for plain standard traffic.
pub fn price_class(d: &PriceDimensions) -> Option<String> {
    let tier = match d.tier.as_deref() {
        None | Some("standard" | "default" | "auto" | "") => "standard",
        Some(t) => t,
    };
    let mut class = tier.to_ascii_lowercase();
    if let Some(geo) = d
        .geo
        .as_deref()
        .filter(|g| !matches!(*g, "global" | "not_available" | ""))
    {
        class = format!("{class}/{}", geo.to_ascii_lowercase());
    }
    if let Some(speed) = d
        .speed
        .as_deref()
        .filter(|s| !matches!(*s, "standard" | ""))
    {
        class = format!("{class}/{}", speed.to_ascii_lowercase());
    }
    (class != "standard").then_some(class)
}

impl Poller {
    /// The page's rows as stored (merged per bucket, key and model) and the parts of them that
    /// ran at a price class other than standard.
    pub(super) fn records(
        &self,
        page: &UsagePage,
        width: i64,
    ) -> (Vec<UsageRecord>, Vec<SplitRecord>) {
        let mut splits: Vec<SplitRecord> = Vec::new();
        let mut split_at: HashMap<(i64, String, String, String), usize> = HashMap::new();
        let mut out: Vec<UsageRecord> = Vec::new();
        let mut at: HashMap<(i64, &str, &str), usize> = HashMap::new();
        for bucket in &page.buckets {
            // Snapped: a provider may start the first bucket at the raw start time.
            let start = floor_to(bucket.start.timestamp(), width);
            for row in &bucket.rows {
                let priced = match &row.units {
                    Some(units) => crate::prices::units::cost(&row.model, units),
                    None => self.prices.cost_of(
                        &row.model,
                        &row.tokens,
                        row.web_search_requests,
                        &row.pricing,
                        &row.media,
                    ),
                };
                let cost = match priced {
                    Priced::Usd(usd) => Some(usd),
                    Priced::Assumed { usd, reason } => {
                        self.warn_once(&row.model, &reason);
                        Some(usd)
                    }
                    Priced::Unpriced => {
                        self.warn_once(
                            &row.model,
                            &format!(
                                "model has no price: its tokens are stored but its cost is \
                                 unknown; add [prices.\"{}\"] to the config",
                                row.model
                            ),
                        );
                        None
                    }
                };
                if let Some(class) = price_class(&row.pricing) {
                    let id = (start, row.key_id.clone(), row.model.clone(), class.clone());
                    match split_at.entry(id) {
                        Entry::Occupied(i) => {
                            let s = &mut splits[*i.get()];
                            s.tokens = add_tokens(&s.tokens, &row.tokens);
                            s.cost_usd = s.cost_usd.zip(cost).map(|(a, b)| a + b);
                        }
                        Entry::Vacant(v) => {
                            v.insert(splits.len());
                            splits.push(SplitRecord {
                                key_id: row.key_id.clone(),
                                model: row.model.clone(),
                                bucket_start: start,
                                price_class: class,
                                tokens: row.tokens,
                                cost_usd: cost,
                            });
                        }
                    }
                }
                match at.entry((start, row.key_id.as_str(), row.model.as_str())) {
                    Entry::Occupied(i) => {
                        let r = &mut out[*i.get()];
                        r.tokens = add_tokens(&r.tokens, &row.tokens);
                        r.web_search_requests = r
                            .web_search_requests
                            .saturating_add(row.web_search_requests);
                        r.requests = match (r.requests, row.requests) {
                            (Some(a), Some(b)) => Some(a.saturating_add(b)),
                            (a, b) => a.or(b),
                        };
                        // A bucket with an unpriced part has no known cost.
                        r.cost_usd = r.cost_usd.zip(cost).map(|(a, b)| a + b);
                    }
                    Entry::Vacant(v) => {
                        v.insert(out.len());
                        out.push(UsageRecord {
                            key_id: row.key_id.clone(),
                            model: row.model.clone(),
                            bucket_start: start,
                            tokens: row.tokens,
                            web_search_requests: row.web_search_requests,
                            requests: row.requests,
                            cost_usd: cost,
                        });
                    }
                }
            }
        }
        (out, splits)
    }

    /// Logs `message` about `model` once per process.
    fn warn_once(&self, model: &str, message: &str) {
        let mut warned = self
            .warned_unpriced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if warned.insert(format!("{model}\u{0}{message}")) {
            tracing::warn!(model, "{message}");
        }
    }
}

fn add_tokens(a: &TokenCounts, b: &TokenCounts) -> TokenCounts {
    TokenCounts {
        uncached_input: a.uncached_input.saturating_add(b.uncached_input),
        cache_read: a.cache_read.saturating_add(b.cache_read),
        cache_write_5m: a.cache_write_5m.saturating_add(b.cache_write_5m),
        cache_write_1h: a.cache_write_1h.saturating_add(b.cache_write_1h),
        output: a.output.saturating_add(b.output),
    }
}
