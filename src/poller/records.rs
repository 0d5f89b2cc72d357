//! A usage page's rows as the store takes them: snapped to the bucket width and priced, with
//! one warning per model without a price.

use super::schedule::floor_to;
use super::Poller;
use crate::providers::UsagePage;
use crate::store::UsageRecord;

impl Poller {
    pub(super) fn records(&self, page: &UsagePage, width: i64) -> Vec<UsageRecord> {
        let mut out = Vec::new();
        for bucket in &page.buckets {
            for row in &bucket.rows {
                let cost = self.prices.cost(&row.model, &row.tokens);
                if cost.is_none() {
                    self.warn_unpriced(&row.model);
                }
                out.push(UsageRecord {
                    key_id: row.key_id.clone(),
                    model: row.model.clone(),
                    // Snapped: a provider may start the first bucket at the raw start time.
                    bucket_start: floor_to(bucket.start.timestamp(), width),
                    tokens: row.tokens,
                    web_search_requests: row.web_search_requests,
                    requests: row.requests,
                    cost_usd: cost,
                });
            }
        }
        out
    }

    fn warn_unpriced(&self, model: &str) {
        let mut warned = self
            .warned_unpriced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if warned.insert(model.to_owned()) {
            tracing::warn!(model, "model has no price: its tokens are stored but its cost is unknown; add [prices.\"{model}\"] to the config");
        }
    }
}
