//! Prices of usage counted in units other than tokens: OpenAI's images (per image and size),
//! speech (per character), transcription (per second of audio), and file and web search calls
//! (per call). Sources and dates are in `docs/prices.md`. These prices are built in; the
//! config's `[prices]` table sets token prices only.
//!
//! Where the provider's usage report leaves out what sets the price (an image's quality), the
//! lowest published price is used and the cost is an estimate that says so; a model without a
//! unit price is priced as its nearest sibling, also said. Never zero.

use super::Priced;

/// What one usage row counted, where it is not tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Units {
    /// Images made (generated, edited or varied), and their size (`1024x1024`) when reported.
    Images { count: i64, size: Option<String> },
    /// Characters turned into speech.
    Characters(i64),
    /// Seconds of audio transcribed.
    Seconds(i64),
    /// File search tool calls.
    FileSearches(i64),
    /// Web search tool calls.
    WebSearches(i64),
}

/// USD per file search call: $2.50 per 1,000.
pub const FILE_SEARCH_USD_PER_CALL: f64 = 0.0025;
/// USD per web search call: $10 per 1,000 (the `web_search` tool; content tokens are billed as
/// tokens on the model, in the completions report).
pub const WEB_SEARCH_USD_PER_CALL: f64 = 0.01;

/// USD per image by model and size, at standard (DALL·E 3) or low (GPT Image) quality.
const IMAGES: &[(&str, &[(&str, f64)])] = &[
    (
        "dall-e-2",
        &[("256x256", 0.016), ("512x512", 0.018), ("1024x1024", 0.020)],
    ),
    (
        "dall-e-3",
        &[
            ("1024x1024", 0.040),
            ("1024x1792", 0.080),
            ("1792x1024", 0.080),
        ],
    ),
    (
        "gpt-image-1",
        &[
            ("1024x1024", 0.011),
            ("1024x1536", 0.016),
            ("1536x1024", 0.016),
        ],
    ),
];

/// USD per million characters of speech.
const SPEECH: &[(&str, f64)] = &[
    ("tts-1", 15.0),
    ("tts-1-1106", 15.0),
    ("tts-1-hd", 30.0),
    ("tts-1-hd-1106", 30.0),
];

/// USD per minute of transcribed audio; `true` where the model is billed per token and the
/// per-minute figure is OpenAI's published estimate.
const TRANSCRIPTION: &[(&str, f64, bool)] = &[
    ("whisper-1", 0.006, false),
    ("gpt-4o-transcribe", 0.006, true),
    ("gpt-4o-mini-transcribe", 0.003, true),
];

/// What `units` of `model` cost.
pub fn cost(model: &str, units: &Units) -> Priced {
    match units {
        Units::FileSearches(n) => Priced::Usd(*n as f64 * FILE_SEARCH_USD_PER_CALL),
        Units::WebSearches(n) => Priced::Usd(*n as f64 * WEB_SEARCH_USD_PER_CALL),
        Units::Characters(n) => {
            let (rate, known) = find(SPEECH, model).map_or((15.0, false), |r| (r, true));
            let usd = *n as f64 * rate / 1e6;
            if known {
                Priced::Usd(usd)
            } else {
                assumed(
                    usd,
                    format!(
                    "speech on {model} has no per-character price in keywatch's table: priced as \
                     tts-1 ($15 per million characters), an estimate"
                ),
                )
            }
        }
        Units::Seconds(n) => {
            let minutes = *n as f64 / 60.0;
            match TRANSCRIPTION.iter().find(|(m, ..)| *m == base(model)) {
                Some((_, rate, false)) => Priced::Usd(minutes * rate),
                Some((_, rate, true)) => assumed(
                    minutes * rate,
                    format!(
                        "{model} is billed per token; its transcription is priced at OpenAI's \
                     per-minute estimate (${rate} a minute)"
                    ),
                ),
                None => assumed(
                    minutes * 0.006,
                    format!(
                        "transcription on {model} has no price in keywatch's table: priced as \
                     whisper-1 ($0.006 a minute), an estimate"
                    ),
                ),
            }
        }
        Units::Images { count, size } => image_cost(model, *count, size.as_deref()),
    }
}

fn image_cost(model: &str, count: i64, size: Option<&str>) -> Priced {
    let sizes = IMAGES
        .iter()
        .find(|(m, _)| *m == base(model))
        .map(|(_, s)| *s);
    let each = sizes.and_then(|s| {
        let size = size?;
        s.iter().find(|(z, _)| *z == size).map(|(_, usd)| *usd)
    });
    let n = count as f64;
    match (sizes, each) {
        (Some(_), Some(usd)) if base(model) == "dall-e-2" => Priced::Usd(n * usd),
        (Some(_), Some(usd)) => assumed(
            n * usd,
            format!(
                "image quality is not in OpenAI's usage report: {model} images are priced at the \
             lowest quality (standard or low), so their cost is a floor"
            ),
        ),
        (Some(s), None) => {
            let least = s.iter().map(|(_, usd)| *usd).fold(f64::INFINITY, f64::min);
            assumed(
                n * least,
                format!(
                    "{model} images of size {} have no price in keywatch's table: priced at the \
                 model's smallest, an estimate",
                    size.unwrap_or("(not reported)")
                ),
            )
        }
        (None, _) => assumed(
            n * 0.011,
            format!(
            "images on {model} have no price in keywatch's table: priced as gpt-image-1 at low \
             quality ($0.011 an image), an estimate"
        ),
        ),
    }
}

fn assumed(usd: f64, reason: String) -> Priced {
    Priced::Assumed { usd, reason }
}

/// The model a per-unit row names, without the label it is stored under (`dall-e-3/images`)
/// or a dated snapshot suffix (`gpt-4o-transcribe-2025-03-20` → `gpt-4o-transcribe`).
fn base(model: &str) -> &str {
    let model = ["/images", "/speech", "/transcription"]
        .iter()
        .find_map(|s| model.strip_suffix(s))
        .unwrap_or(model);
    super::snapshot_alias(model).unwrap_or(model)
}

fn find(table: &[(&str, f64)], model: &str) -> Option<f64> {
    let model = base(model);
    table.iter().find(|(m, _)| *m == model).map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(p: Priced) -> (f64, bool) {
        match p {
            Priced::Usd(u) => (u, true),
            Priced::Assumed { usd, .. } => (usd, false),
            Priced::Unpriced => panic!("unit usage is never unpriced"),
        }
    }

    #[test]
    fn each_unit_is_priced_at_its_published_rate_and_guesses_say_so() {
        let img = |m: &str, n, s: &str| {
            usd(cost(
                m,
                &Units::Images {
                    count: n,
                    size: Some(s.into()),
                },
            ))
        };
        assert_eq!(img("dall-e-2", 10, "512x512"), (0.18, true));
        assert_eq!(img("dall-e-2/images", 10, "512x512"), (0.18, true));
        let (u, exact) = img("dall-e-3", 2, "1792x1024");
        assert!(
            (u - 0.16).abs() < 1e-12 && !exact,
            "quality unknown: a floor"
        );
        let (u, exact) = img("gpt-image-1", 100, "1024x1024");
        assert!((u - 1.1).abs() < 1e-9 && !exact);
        let (u, exact) = img("gpt-image-9", 1, "1024x1024");
        assert!((u - 0.011).abs() < 1e-12 && !exact);
        assert_eq!(
            usd(cost("tts-1-hd", &Units::Characters(1_000_000))),
            (30.0, true)
        );
        let (u, exact) = usd(cost("whisper-1", &Units::Seconds(600)));
        assert!((u - 0.06).abs() < 1e-12 && exact, "ten minutes");
        assert!(!usd(cost("gpt-4o-mini-transcribe", &Units::Seconds(60))).1);
        assert_eq!(usd(cost("", &Units::FileSearches(1000))), (2.5, true));
        assert_eq!(usd(cost("", &Units::WebSearches(1000))), (10.0, true));
    }
}
