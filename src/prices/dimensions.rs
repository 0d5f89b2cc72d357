//! What a usage row's price dimensions (service tier, inference geo, speed) do to its model's
//! standard price (#17). Each factor multiplies every token class, cache classes included; each
//! carries its source in `docs/prices.md`.
//!
//! A dimension value keywatch has no published price for (a new tier, fast mode on a model the
//! table does not list) is priced at the standard rate and said so ([`Factor::Assumed`]): a
//! number finance can see is an estimate, never a silent zero.

/// The dimensions of a usage row that set its price beside the model and token classes: a
/// batch row costs half a standard one, US-only inference more, fast mode a multiple. `None`
/// where the provider does not report the dimension (then the standard price applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PriceDimensions {
    /// The service tier as the provider names it: Anthropic `standard`, `batch`, `flex`,
    /// `flex_discount`, `priority`, `priority_on_demand`; OpenAI `default`, `flex`, `scale`,
    /// `priority`, or `batch` for batch API rows.
    pub tier: Option<String>,
    /// Anthropic's `inference_geo` (`us` is US-only inference).
    pub geo: Option<String>,
    /// Anthropic's `speed` (`fast` is fast mode).
    pub speed: Option<String>,
}

/// How the dimensions scale a model's standard price.
#[derive(Debug, Clone, PartialEq)]
pub enum Factor {
    /// Known: multiply the standard cost by this.
    Known(f64),
    /// Partly unknown: the known part of the factor, and why the rest is assumed standard.
    Assumed(f64, String),
}

/// Batch (Anthropic Message Batches, OpenAI Batch API): half of every token class.
pub const BATCH: f64 = 0.5;
/// OpenAI Flex processing: the Batch API's rates.
pub const OPENAI_FLEX: f64 = 0.5;
/// Anthropic US-only inference (`inference_geo = "us"`) on Claude Opus 4.6, Sonnet 4.6 and
/// later models: 1.1x every token class.
pub const US_ONLY: f64 = 1.1;

/// OpenAI priority processing: each model's priority rates over its standard ones (the same
/// for input, cached input and output). Models without an entry have no published priority
/// price.
const OPENAI_PRIORITY: &[(&str, f64)] = &[
    ("gpt-5.5", 2.5),
    ("gpt-5.4", 2.0),
    ("gpt-5.4-mini", 2.0),
    ("gpt-5.2", 2.0),
    ("gpt-5.1", 2.0),
    ("gpt-5", 2.0),
    ("gpt-5-mini", 1.8),
    ("gpt-4.1", 1.75),
    ("gpt-4.1-mini", 1.75),
    ("gpt-4.1-nano", 2.0),
    ("gpt-4o", 1.7),
    ("gpt-4o-mini", 0.25 / 0.15),
    ("o3", 1.75),
    ("o4-mini", 2.0 / 1.1),
];

fn openai_priority(model: &str) -> Option<f64> {
    let find = |m: &str| OPENAI_PRIORITY.iter().find(|(id, _)| *id == m).map(|e| e.1);
    find(model).or_else(|| find(super::snapshot_alias(model)?))
}

/// A Claude model's family and (major, minor) version, from its id
/// (`claude-opus-4-6-20260205` is `("opus", (4, 6))`; the older `claude-3-5-haiku-20241022`
/// is `("haiku", (3, 5))`).
fn claude_version(model: &str) -> Option<(&str, (u32, u32))> {
    let rest = model.strip_prefix("claude-")?;
    let parts: Vec<&str> = rest.split('-').collect();
    let number = |s: &str| (s.len() <= 2).then(|| s.parse::<u32>().ok()).flatten();
    let family_at = parts
        .iter()
        .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphabetic()))?;
    let family = parts[family_at];
    // Newer ids put the version after the family, older ones before it.
    let digits: Vec<u32> = if family_at == 0 {
        parts[1..].iter().map_while(|p| number(p)).collect()
    } else {
        parts[..family_at].iter().map_while(|p| number(p)).collect()
    };
    let major = *digits.first()?;
    let minor = digits.get(1).copied().unwrap_or(0);
    Some((family, (major, minor)))
}

/// Fast mode's multiplier on `model`, where published: 6x on Opus 4.6 and 4.7, 2x on Opus 4.8
/// and Opus 5 and later.
fn fast_mode(model: &str) -> Option<f64> {
    match claude_version(model)? {
        ("opus", v) if ((4, 6)..(4, 8)).contains(&v) => Some(6.0),
        ("opus", v) if v >= (4, 8) => Some(2.0),
        _ => None,
    }
}

/// Whether US-only inference costs [`US_ONLY`] on `model`: Claude 4.6 and later.
fn us_only_applies(model: &str) -> bool {
    matches!(claude_version(model), Some((_, v)) if v >= (4, 6))
}

/// The factor `d` applies to the standard price of `model`.
pub fn factor(model: &str, d: &PriceDimensions) -> Factor {
    let mut known = 1.0;
    let mut unknown: Vec<String> = Vec::new();
    let claude = model.starts_with("claude");
    match d.tier.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("standard" | "default" | "auto" | "") => {}
        Some("batch") => known *= BATCH,
        Some("flex") if !claude => known *= OPENAI_FLEX,
        Some("priority") if !claude => match openai_priority(model) {
            Some(f) => known *= f,
            None => unknown.push("priority processing".to_owned()),
        },
        Some(other) => unknown.push(format!("service tier {other:?}")),
    }
    match d.geo.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("global" | "not_available" | "") => {}
        Some("us") if us_only_applies(model) => known *= US_ONLY,
        Some("us") => {}
        Some(other) => unknown.push(format!("inference geo {other:?}")),
    }
    match d.speed.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("standard" | "") => {}
        Some("fast") => match fast_mode(model) {
            Some(f) => known *= f,
            None => unknown.push("fast mode".to_owned()),
        },
        Some(other) => unknown.push(format!("speed {other:?}")),
    }
    if unknown.is_empty() {
        Factor::Known(known)
    } else {
        Factor::Assumed(
            known,
            format!(
                "{} on {model} has no published price in keywatch's table: priced at the \
                 standard rate, so its cost is an estimate; set the rate with \
                 [prices.\"{model}\"] or report it",
                unknown.join(" and ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(tier: Option<&str>, geo: Option<&str>, speed: Option<&str>) -> PriceDimensions {
        PriceDimensions {
            tier: tier.map(str::to_owned),
            geo: geo.map(str::to_owned),
            speed: speed.map(str::to_owned),
        }
    }

    #[test]
    fn claude_ids_give_family_and_version() {
        assert_eq!(
            claude_version("claude-opus-4-6-20260205"),
            Some(("opus", (4, 6)))
        );
        assert_eq!(claude_version("claude-opus-4"), Some(("opus", (4, 0))));
        assert_eq!(claude_version("claude-opus-5"), Some(("opus", (5, 0))));
        assert_eq!(claude_version("claude-opus-4-10"), Some(("opus", (4, 10))));
        assert_eq!(
            claude_version("claude-3-5-haiku-20241022"),
            Some(("haiku", (3, 5)))
        );
        assert_eq!(
            claude_version("claude-sonnet-4-20250514"),
            Some(("sonnet", (4, 0)))
        );
        assert_eq!(claude_version("gpt-4o"), None);
    }

    #[test]
    fn each_dimension_scales_the_standard_price() {
        let opus46 = "claude-opus-4-6";
        assert_eq!(factor(opus46, &dims(None, None, None)), Factor::Known(1.0));
        assert_eq!(
            factor(
                opus46,
                &dims(Some("standard"), Some("global"), Some("standard"))
            ),
            Factor::Known(1.0)
        );
        assert_eq!(
            factor(opus46, &dims(Some("batch"), None, None)),
            Factor::Known(0.5)
        );
        assert_eq!(
            factor(opus46, &dims(None, Some("us"), None)),
            Factor::Known(1.1)
        );
        assert_eq!(
            factor("claude-sonnet-4-5", &dims(None, Some("us"), None)),
            Factor::Known(1.0),
            "US-only costs more from Claude 4.6 on"
        );
        assert_eq!(
            factor(opus46, &dims(None, None, Some("fast"))),
            Factor::Known(6.0)
        );
        assert_eq!(
            factor("claude-opus-5", &dims(None, Some("us"), Some("fast"))),
            Factor::Known(2.0 * 1.1)
        );
        assert_eq!(
            factor("gpt-5", &dims(Some("flex"), None, None)),
            Factor::Known(0.5)
        );
        assert_eq!(
            factor("gpt-5.5-2026-04-23", &dims(Some("priority"), None, None)),
            Factor::Known(2.5)
        );
        assert_eq!(
            factor("gpt-4o-2024-08-06", &dims(Some("priority"), None, None)),
            Factor::Known(1.7)
        );
    }

    #[test]
    fn an_unknown_dimension_is_priced_standard_and_said_so() {
        let Factor::Assumed(f, why) = factor(
            "claude-sonnet-4-6",
            &dims(Some("priority_on_demand"), None, Some("fast")),
        ) else {
            panic!("assumed")
        };
        assert_eq!(f, 1.0);
        assert!(
            why.contains("service tier \"priority_on_demand\" and fast mode"),
            "{why}"
        );
        assert!(
            matches!(
                factor("claude-opus-4-6", &dims(Some("priority"), None, None)),
                Factor::Assumed(f, _) if f == 1.0
            ),
            "Anthropic's Priority Tier is a contract price"
        );
        assert!(matches!(
            factor("gpt-5-nano", &dims(Some("priority"), None, None)),
            Factor::Assumed(..)
        ));
    }
}
