//! OpenAI usage counted in other units than tokens (#17): images, speech characters,
//! transcription seconds, file and web search calls, and free moderations — each endpoint read
//! beside completions, stored as its own rows and priced per unit, so a key's intraday dollars
//! (spikes, budgets) include them.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::this_hour;

fn cents(usd: Option<f64>) -> i64 {
    (usd.expect("a priced row") * 100.0).round() as i64
}

const IMAGES: &str = "/v1/organization/usage/images";

#[tokio::test]
async fn images_speech_transcription_and_tool_calls_are_priced_per_unit_on_their_key() {
    let (app, oa) = crate::helpers::spawn_with_openai().await;
    oa.add_key("proj_1", "key_u", "media-bot", "active", 30);
    let hour = this_hour();
    let key = |extra: serde_json::Value| {
        let mut v = json!({"project_id": null, "user_id": null, "api_key_id": "key_u"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    // DALL-E 2: 10 images at 512x512, $0.018 each = $0.18. GPT Image 1: 100 at 1024x1024,
    // $0.011 at low quality (quality is not reported: a floor) = $1.10.
    oa.add_more(
        IMAGES,
        hour,
        key(
            json!({"model": "dall-e-2", "size": "512x512", "source": null,
        "images": 10, "num_model_requests": 10}),
        ),
    );
    oa.add_more(
        IMAGES,
        hour,
        key(json!({"model": "gpt-image-1", "size": "1024x1024",
        "source": null, "images": 100, "num_model_requests": 25})),
    );
    // A million characters of tts-1-hd: $30.
    oa.add_more(
        "/v1/organization/usage/audio_speeches",
        hour,
        key(json!({"model": "tts-1-hd",
        "characters": 1_000_000, "num_model_requests": 300})),
    );
    // Ten minutes of whisper-1: $0.06.
    oa.add_more(
        "/v1/organization/usage/audio_transcriptions",
        hour,
        key(json!({
        "model": "whisper-1", "seconds": 600, "num_model_requests": 4})),
    );
    // Moderations are free.
    oa.add_more(
        "/v1/organization/usage/moderations",
        hour,
        key(json!({
        "model": "omni-moderation-latest", "input_tokens": 50_000, "num_model_requests": 70})),
    );
    // 1,000 file search calls ($2.50) and 1,000 web search calls ($10).
    oa.add_more(
        "/v1/organization/usage/file_search_calls",
        hour,
        key(json!({
        "vector_store_id": null, "num_requests": 1000})),
    );
    oa.add_more("/v1/organization/usage/web_search_calls", hour, key(json!({
        "model": "gpt-4o", "context_level": null, "num_requests": 1000, "num_model_requests": 900})));

    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty(), "{report:?}");
    let rows = app.stored_rows().await;
    let cost_of = |model: &str| {
        let r: Vec<_> = rows
            .iter()
            .filter(|r| r.key_id == "key_u" && r.model == model)
            .collect();
        assert_eq!(r.len(), 1, "{model}: {rows:#?}");
        cents(r[0].cost_usd)
    };
    assert_eq!(cost_of("dall-e-2/images"), 18);
    assert_eq!(cost_of("gpt-image-1/images"), 110);
    assert_eq!(cost_of("tts-1-hd/speech"), 3_000);
    assert_eq!(cost_of("whisper-1/transcription"), 6);
    assert_eq!(cost_of("omni-moderation-latest"), 0);
    assert_eq!(cost_of("file_search_calls"), 250);
    assert_eq!(cost_of("web_search_calls"), 1_000);
    let total: i64 = rows
        .iter()
        .filter(|r| r.key_id == "key_u")
        .map(|r| cents(r.cost_usd))
        .sum();
    assert_eq!(total, 4_384, "the key's dollars this hour");

    // The report (by model) shows each as its own line with its estimate.
    let json = app
        .cli_ok(&[
            "report",
            "--by",
            "model",
            "--last",
            "1",
            "--format",
            "json",
            "--timezone",
            "UTC",
        ])
        .await;
    let got: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(
        got.iter().any(|r| r["model"] == "web_search_calls"
            && (r["spend_usd"].as_f64().unwrap() - 10.0).abs() < 1e-9),
        "{json}"
    );

    // The images endpoint fails on the next poll: completions and the other endpoints are
    // stored, and what was stored of images stays.
    Mock::given(method("GET"))
        .and(path(IMAGES))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&oa.server)
        .await;
    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty(), "{report:?}");
    let rows = app.stored_rows().await;
    let kept: Vec<_> = rows
        .iter()
        .filter(|r| r.model == "gpt-image-1/images")
        .collect();
    assert_eq!(kept.len(), 1, "{rows:#?}");
    assert_eq!(cents(kept[0].cost_usd), 110);
}
