//! Model prices in USD per million tokens, and the cost of a bucket's token classes.
//!
//! The built-in table covers current Claude models; `[prices."model"]` in the config overrides
//! or extends it. A model without a price is never priced at 0: its cost is `None`, the bucket is
//! flagged, and `check-config` and `history` report it.

use std::collections::BTreeMap;

mod dimensions;
mod media;
pub mod units;

pub use dimensions::{factor, Factor, PriceDimensions};
pub use media::MediaTokens;

/// Anthropic's web search server tool: $10 per 1,000 searches, on top of the tokens, whatever
/// the model, tier or speed (`docs/prices.md`).
pub const WEB_SEARCH_USD_PER_SEARCH: f64 = 10.0 / 1_000.0;

/// The cost of one usage row.
#[derive(Debug, Clone, PartialEq)]
pub enum Priced {
    /// At the published rates of its model and dimensions.
    Usd(f64),
    /// At the standard rate for a dimension without a published price ([`Factor::Assumed`]).
    Assumed { usd: f64, reason: String },
    /// The model has no price.
    Unpriced,
}

/// When the built-in table was last compared with the providers' published pricing (stored
/// copies of the pages; verify new model ids against a real account).
pub const PRICES_CHECKED: &str = "2026-12-06";

/// USD per million tokens for each token class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

impl Price {
    /// A price with Anthropic's usual cache multipliers (write 5m 1.25x, write 1h 2x, read 0.1x).
    const fn standard(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cache_write_5m: input * 1.25,
            cache_write_1h: input * 2.0,
            cache_read: input * 0.1,
        }
    }

    /// An OpenAI price: cached input has its own rate, cache writes cost the input price.
    const fn openai(input: f64, cached: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cache_write_5m: input,
            cache_write_1h: input,
            cache_read: cached,
        }
    }

    /// The first field that is negative or not a number, if any.
    pub fn invalid_field(&self) -> Option<(&'static str, f64)> {
        [
            ("input", self.input),
            ("output", self.output),
            ("cache_write_5m", self.cache_write_5m),
            ("cache_write_1h", self.cache_write_1h),
            ("cache_read", self.cache_read),
        ]
        .into_iter()
        .find(|(_, v)| !(v.is_finite() && *v >= 0.0))
    }

    /// The cost in USD of these token counts.
    pub fn cost(&self, t: &TokenCounts) -> f64 {
        let per_token = |count: i64, usd_per_million: f64| count as f64 * usd_per_million / 1e6;
        per_token(t.uncached_input, self.input)
            + per_token(t.output, self.output)
            + per_token(t.cache_write_5m, self.cache_write_5m)
            + per_token(t.cache_write_1h, self.cache_write_1h)
            + per_token(t.cache_read, self.cache_read)
    }
}

/// Token counts of one usage row, by price class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub uncached_input: i64,
    pub cache_read: i64,
    pub cache_write_5m: i64,
    pub cache_write_1h: i64,
    pub output: i64,
}

impl TokenCounts {
    /// Each class's name in CSV headers and JSON, in the order CSV columns list them.
    pub const NAMES: [&'static str; 5] = [
        "uncached_input_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    ];

    /// The counts in the order of [`Self::NAMES`].
    pub fn values(&self) -> [i64; 5] {
        [
            self.uncached_input,
            self.cache_write_5m,
            self.cache_write_1h,
            self.cache_read,
            self.output,
        ]
    }

    /// `(name, count)` per class, for JSON objects.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, i64)> {
        Self::NAMES.into_iter().zip(self.values())
    }

    /// Adds `name: count` per class to the JSON object `item` (anything else is left as is).
    pub fn add_to(&self, item: &mut serde_json::Value) {
        if let Some(map) = item.as_object_mut() {
            map.extend(self.named().map(|(k, v)| (k.to_owned(), v.into())));
        }
    }

    /// The counts as CSV fields, comma-separated, in the order of [`Self::NAMES`].
    pub fn csv_fields(&self) -> String {
        self.values().map(|v| v.to_string()).join(",")
    }

    pub fn total(&self) -> i64 {
        // Saturating: a sum of provider numbers must never abort the daemon.
        self.uncached_input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write_5m)
            .saturating_add(self.cache_write_1h)
            .saturating_add(self.output)
    }
}

/// Built-in prices: Anthropic and OpenAI list prices at the standard tier, each with its source
/// in `docs/prices.md`. Batch, US-only inference, fast mode and OpenAI's flex and priority
/// processing scale them per usage row (`dimensions`). Haiku 5.5's band above 100,000 prompt
/// tokens and OpenAI's above 272,000 are not visible in the usage reports and not modelled.
const BUILTIN: &[(&str, Price)] = &[
    // Released 2026-11-09; checked against third-party copies of the pricing page only.
    (
        "claude-fable-5-2",
        Price {
            cache_read: 0.20,
            ..Price::standard(8.0, 40.0)
        },
    ),
    (
        "claude-mythos-5-2",
        Price {
            cache_read: 0.20,
            ..Price::standard(8.0, 40.0)
        },
    ),
    (
        "claude-fable-5-1",
        Price {
            cache_read: 0.25,
            ..Price::standard(10.0, 50.0)
        },
    ),
    (
        "claude-mythos-5-1",
        Price {
            cache_read: 0.25,
            ..Price::standard(10.0, 50.0)
        },
    ),
    (
        "claude-fable-5",
        Price {
            cache_read: 1.0,
            ..Price::standard(10.0, 50.0)
        },
    ),
    (
        "claude-mythos-5",
        Price {
            cache_read: 1.0,
            ..Price::standard(10.0, 50.0)
        },
    ),
    (
        "claude-opus-5-5",
        Price {
            cache_read: 0.20,
            ..Price::standard(4.0, 20.0)
        },
    ),
    ("claude-opus-5", Price::standard(5.0, 25.0)),
    ("claude-opus-4-8", Price::standard(5.0, 25.0)),
    ("claude-opus-4-7", Price::standard(5.0, 25.0)),
    ("claude-opus-4-6", Price::standard(5.0, 25.0)),
    ("claude-opus-4-5", Price::standard(5.0, 25.0)),
    ("claude-opus-4-1", Price::standard(15.0, 75.0)),
    ("claude-opus-4-0", Price::standard(15.0, 75.0)),
    ("claude-opus-4", Price::standard(15.0, 75.0)),
    (
        "claude-sonnet-5-5",
        Price {
            cache_read: 0.10,
            ..Price::standard(2.0, 10.0)
        },
    ),
    ("claude-sonnet-5", Price::standard(2.0, 10.0)),
    ("claude-sonnet-4-6", Price::standard(3.0, 15.0)),
    ("claude-sonnet-4-5", Price::standard(3.0, 15.0)),
    ("claude-sonnet-4-0", Price::standard(3.0, 15.0)),
    ("claude-sonnet-4", Price::standard(3.0, 15.0)),
    ("claude-3-7-sonnet", Price::standard(3.0, 15.0)),
    ("claude-3-5-sonnet", Price::standard(3.0, 15.0)),
    ("claude-haiku-5-5", Price::standard(0.10, 0.50)),
    ("claude-haiku-4-5", Price::standard(1.0, 5.0)),
    (
        "claude-3-5-haiku",
        Price {
            cache_write_5m: 1.0,
            cache_write_1h: 1.6,
            ..Price::standard(0.80, 4.0)
        },
    ),
    ("claude-3-opus", Price::standard(15.0, 75.0)),
    (
        "claude-3-haiku",
        Price {
            cache_write_5m: 0.30,
            cache_write_1h: 0.50,
            cache_read: 0.03,
            ..Price::standard(0.25, 1.25)
        },
    ),
    // OpenAI: (input, cached input, output); cache writes cost the input price.
    // The pro models have no cached-input rate: cached input costs the input price.
    ("gpt-5.5-pro", Price::openai(30.00, 30.00, 180.00)),
    ("gpt-5.4-pro", Price::openai(30.00, 30.00, 180.00)),
    ("gpt-5.2-pro", Price::openai(21.00, 21.00, 168.00)),
    ("gpt-5.5", Price::openai(5.00, 0.50, 30.00)),
    ("gpt-5.4", Price::openai(2.50, 0.25, 15.00)),
    ("gpt-5.4-mini", Price::openai(0.75, 0.075, 4.50)),
    ("gpt-5.4-nano", Price::openai(0.20, 0.02, 1.25)),
    ("gpt-5.2", Price::openai(1.75, 0.175, 14.00)),
    // Text rates of the audio and image models; their audio and image tokens are priced in
    // `media`. Without a cached rate, cached input costs the input price.
    ("gpt-realtime", Price::openai(4.00, 0.40, 16.00)),
    ("gpt-realtime-mini", Price::openai(0.60, 0.06, 2.40)),
    ("gpt-4o-realtime-preview", Price::openai(5.00, 2.50, 20.00)),
    (
        "gpt-4o-mini-realtime-preview",
        Price::openai(0.60, 0.30, 2.40),
    ),
    ("gpt-audio", Price::openai(2.50, 2.50, 10.00)),
    ("gpt-audio-mini", Price::openai(0.60, 0.60, 2.40)),
    ("gpt-4o-audio-preview", Price::openai(2.50, 2.50, 10.00)),
    ("gpt-4o-mini-audio-preview", Price::openai(0.15, 0.15, 0.60)),
    // Their output is the picture: without an image breakdown, output is priced as image.
    ("gpt-image-1", Price::openai(5.00, 1.25, 40.00)),
    ("gpt-image-1-mini", Price::openai(2.00, 0.20, 8.00)),
    // Moderations (`/v1/organization/usage/moderations`): free.
    ("omni-moderation-latest", Price::openai(0.0, 0.0, 0.0)),
    ("omni-moderation-2024-09-26", Price::openai(0.0, 0.0, 0.0)),
    ("text-moderation-latest", Price::openai(0.0, 0.0, 0.0)),
    ("text-moderation-stable", Price::openai(0.0, 0.0, 0.0)),
    ("text-moderation-007", Price::openai(0.0, 0.0, 0.0)),
    // Embeddings (`/v1/organization/usage/embeddings`): input tokens only.
    ("text-embedding-3-small", Price::openai(0.02, 0.02, 0.0)),
    ("text-embedding-3-large", Price::openai(0.13, 0.13, 0.0)),
    ("text-embedding-ada-002", Price::openai(0.10, 0.10, 0.0)),
    ("gpt-5.1", Price::openai(1.25, 0.125, 10.00)),
    ("gpt-5", Price::openai(1.25, 0.125, 10.00)),
    ("gpt-5-mini", Price::openai(0.25, 0.025, 2.00)),
    ("gpt-5-nano", Price::openai(0.05, 0.005, 0.40)),
    ("gpt-4.1", Price::openai(2.00, 0.50, 8.00)),
    ("gpt-4.1-mini", Price::openai(0.40, 0.10, 1.60)),
    ("gpt-4.1-nano", Price::openai(0.10, 0.025, 0.40)),
    ("gpt-4o", Price::openai(2.50, 1.25, 10.00)),
    ("gpt-4o-mini", Price::openai(0.15, 0.075, 0.60)),
    ("o1", Price::openai(15.00, 7.50, 60.00)),
    ("o3", Price::openai(2.00, 0.50, 8.00)),
    ("o3-mini", Price::openai(1.10, 0.55, 4.40)),
    ("o4-mini", Price::openai(1.10, 0.275, 4.40)),
];

/// The alias a dated snapshot id names (`claude-sonnet-4-5-20250929` is `claude-sonnet-4-5`,
/// `gpt-4o-mini-2024-07-18` is `gpt-4o-mini`), or `None` for an id without a date.
pub(crate) fn snapshot_alias(model: &str) -> Option<&str> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((alias, suffix)) = model.rsplit_once('-') {
        if digits(suffix, 8) {
            return Some(alias);
        }
    }
    let mut parts = model.rsplitn(4, '-');
    let (day, month, year, alias) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (digits(year, 4) && digits(month, 2) && digits(day, 2)).then_some(alias)
}

/// Prices by model id.
#[derive(Debug, Clone)]
pub struct PriceTable {
    entries: BTreeMap<String, Price>,
    overridden: Vec<String>,
}

impl PriceTable {
    pub fn builtin() -> Self {
        Self {
            entries: BUILTIN.iter().map(|(m, p)| ((*m).to_owned(), *p)).collect(),
            overridden: Vec::new(),
        }
    }

    /// Sets (overrides or adds) the price of `model`.
    pub fn set(&mut self, model: &str, price: Price) {
        self.entries.insert(model.to_owned(), price);
        self.overridden.push(model.to_owned());
    }

    /// Models whose price came from the config file.
    pub fn overridden(&self) -> &[String] {
        &self.overridden
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The price of `model`: an exact entry, else the entry it is a dated snapshot of
    /// (`claude-sonnet-4-5-20250929` takes `claude-sonnet-4-5`, `gpt-4o-mini-2024-07-18` takes
    /// `gpt-4o-mini`). No looser matching: an unknown model is better reported as unpriced than
    /// priced as its older sibling.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.entries.get(model) {
            return Some(*p);
        }
        self.entries.get(snapshot_alias(model)?).copied()
    }

    /// The cost of `tokens` on `model` at standard rates, or `None` when the model has no
    /// price.
    pub fn cost(&self, model: &str, tokens: &TokenCounts) -> Option<f64> {
        self.lookup(model).map(|p| p.cost(tokens))
    }

    /// The cost of one usage row: its text tokens at its model's rates and its audio and image
    /// tokens (`media`, parts of `tokens`) at theirs, scaled by its price dimensions, and its
    /// web searches. Media without a rate are priced as text and said so.
    pub fn cost_of(
        &self,
        model: &str,
        tokens: &TokenCounts,
        web_searches: i64,
        dims: &PriceDimensions,
        media: &MediaTokens,
    ) -> Priced {
        let Some(price) = self.lookup(model) else {
            return Priced::Unpriced;
        };
        let (standard, media_unknown) = if media.is_empty() {
            (price.cost(tokens), None)
        } else {
            match media.cost(model) {
                Ok(usd) => (price.cost(&media.text_of(tokens)) + usd, None),
                Err(what) => (price.cost(tokens), Some(what)),
            }
        };
        let searches = web_searches as f64 * WEB_SEARCH_USD_PER_SEARCH;
        match (factor(model, dims), media_unknown) {
            (Factor::Known(f), None) => Priced::Usd(standard * f + searches),
            (Factor::Known(f), Some(what)) => Priced::Assumed {
                usd: standard * f + searches,
                reason: format!(
                    "{what} on {model} have no price in keywatch's table: priced as text, so \
                     the cost is an estimate"
                ),
            },
            (Factor::Assumed(f, reason), _) => Priced::Assumed {
                usd: standard * f + searches,
                reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_snapshot_takes_alias_price() {
        let t = PriceTable::builtin();
        assert_eq!(
            t.lookup("claude-sonnet-4-20250514"),
            t.lookup("claude-sonnet-4")
        );
        assert_eq!(t.lookup("claude-opus-4-5-20251101").unwrap().input, 5.0);
        assert_eq!(t.lookup("claude-opus-4-1-20250805").unwrap().input, 15.0);
    }

    #[test]
    fn openai_dated_snapshots_and_cached_input() {
        let t = PriceTable::builtin();
        let p = t.lookup("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!((p.input, p.cache_read, p.output), (0.15, 0.075, 0.60));
        assert_eq!(t.lookup("gpt-4o-mini-2024-07"), None);
    }

    #[test]
    fn unknown_model_is_unpriced_not_sibling_priced() {
        let t = PriceTable::builtin();
        assert_eq!(t.lookup("claude-opus-4-9"), None);
        assert_eq!(t.lookup("claude-sonnet-4-5-preview"), None);
        assert_eq!(t.cost("mistral-large", &TokenCounts::default()), None);
    }

    #[test]
    fn cost_prices_each_class() {
        let t = PriceTable::builtin();
        let tokens = TokenCounts {
            uncached_input: 1_000_000,
            cache_read: 1_000_000,
            cache_write_5m: 1_000_000,
            cache_write_1h: 1_000_000,
            output: 1_000_000,
        };
        let cost = t.cost("claude-sonnet-4-20250514", &tokens).unwrap();
        assert!(
            (cost - (3.0 + 0.30 + 3.75 + 6.0 + 15.0)).abs() < 1e-9,
            "{cost}"
        );
    }

    #[test]
    fn config_override_wins() {
        let mut t = PriceTable::builtin();
        t.set("claude-sonnet-4", Price::standard(1.0, 2.0));
        assert_eq!(t.lookup("claude-sonnet-4-20250514").unwrap().output, 2.0);
        assert_eq!(t.overridden(), ["claude-sonnet-4".to_owned()]);
    }
}
