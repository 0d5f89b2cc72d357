//! OpenAI audio and image tokens (#17): a completions row's `input_tokens` and `output_tokens`
//! include them, and they cost more than text (gpt-realtime: $4 a million text input tokens,
//! $32 audio). keywatch keeps the row's token totals as they are and prices the audio and image
//! parts at their own rates (`docs/prices.md`).

use super::TokenCounts;

/// The audio and image parts of a row's tokens (each part of the matching total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MediaTokens {
    /// Audio input tokens, cached ones included.
    pub audio_input: i64,
    pub audio_cached: i64,
    pub audio_output: i64,
    /// Image input tokens, cached ones included.
    pub image_input: i64,
    pub image_cached: i64,
    pub image_output: i64,
}

/// USD per million tokens of one medium: input, cached input, output.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    input: f64,
    cached: f64,
    output: f64,
}

const fn rates(input: f64, cached: f64, output: f64) -> Rates {
    Rates {
        input,
        cached,
        output,
    }
}

/// Audio rates. A model without a cached-audio rate is given its input rate.
const AUDIO: &[(&str, Rates)] = &[
    ("gpt-realtime", rates(32.0, 0.40, 64.0)),
    ("gpt-realtime-mini", rates(10.0, 0.30, 20.0)),
    ("gpt-4o-realtime-preview", rates(40.0, 2.50, 80.0)),
    ("gpt-4o-mini-realtime-preview", rates(10.0, 0.30, 20.0)),
    ("gpt-audio", rates(32.0, 32.0, 64.0)),
    ("gpt-audio-mini", rates(10.0, 10.0, 20.0)),
    ("gpt-4o-audio-preview", rates(40.0, 40.0, 80.0)),
    ("gpt-4o-mini-audio-preview", rates(10.0, 10.0, 20.0)),
];

/// Image rates (gpt-image-1's image output is the generated picture).
const IMAGE: &[(&str, Rates)] = &[
    ("gpt-realtime", rates(5.0, 0.50, 0.0)),
    ("gpt-realtime-mini", rates(0.80, 0.08, 0.0)),
    ("gpt-image-1", rates(10.0, 2.50, 40.0)),
    ("gpt-image-1-mini", rates(2.50, 0.25, 8.0)),
];

fn find(table: &[(&str, Rates)], model: &str) -> Option<Rates> {
    let get = |m: &str| table.iter().find(|(id, _)| *id == m).map(|e| e.1);
    get(model).or_else(|| get(super::snapshot_alias(model)?))
}

impl MediaTokens {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `tokens` without the audio and image parts (the text a model's own price applies to);
    /// never below zero where a provider's parts exceed its totals.
    pub fn text_of(&self, tokens: &TokenCounts) -> TokenCounts {
        let uncached =
            (self.audio_input - self.audio_cached) + (self.image_input - self.image_cached);
        TokenCounts {
            uncached_input: (tokens.uncached_input - uncached.max(0)).max(0),
            cache_read: (tokens.cache_read - self.audio_cached - self.image_cached).max(0),
            output: (tokens.output - self.audio_output - self.image_output).max(0),
            ..*tokens
        }
    }

    /// The USD of the audio and image parts on `model`, or the media without a rate.
    pub fn cost(&self, model: &str) -> Result<f64, &'static str> {
        let part = |table, input: i64, cached: i64, output: i64, what: &'static str| {
            if input == 0 && cached == 0 && output == 0 {
                return Ok::<f64, &'static str>(0.0);
            }
            let r: Rates = find(table, model).ok_or(what)?;
            Ok(((input - cached).max(0) as f64 * r.input
                + cached as f64 * r.cached
                + output as f64 * r.output)
                / 1e6)
        };
        Ok(part(
            AUDIO,
            self.audio_input,
            self.audio_cached,
            self.audio_output,
            "audio tokens",
        )? + part(
            IMAGE,
            self.image_input,
            self.image_cached,
            self.image_output,
            "image tokens",
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_is_priced_apart_from_the_text_it_is_counted_in() {
        let tokens = TokenCounts {
            uncached_input: 1_000_000,
            cache_read: 200_000,
            output: 500_000,
            ..TokenCounts::default()
        };
        let media = MediaTokens {
            audio_input: 600_000,
            audio_cached: 100_000,
            audio_output: 300_000,
            ..MediaTokens::default()
        };
        let text = media.text_of(&tokens);
        assert_eq!(
            (text.uncached_input, text.cache_read, text.output),
            (500_000, 100_000, 200_000)
        );
        // 500k x $32 + 100k x $0.40 + 300k x $64 on gpt-realtime.
        let usd = media.cost("gpt-realtime-2025-08-28").unwrap();
        assert!((usd - (16.0 + 0.04 + 19.2)).abs() < 1e-9, "{usd}");
        assert_eq!(media.cost("gpt-4o"), Err("audio tokens"));
    }
}
