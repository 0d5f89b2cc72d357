//! Decoding the documented anthropic shapes.

use super::*;

#[test]
fn parses_documented_usage_page_with_null_key_and_empty_bucket() {
    let body = r#"{"data": [
      {"starting_at": "2026-05-01T10:00:00Z", "ending_at": "2026-05-01T11:00:00Z", "results": [
        {"api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT", "workspace_id": null, "model": "claude-sonnet-4-20250514",
         "service_tier": null, "context_window": null, "inference_geo": null,
         "uncached_input_tokens": 1200, "cache_read_input_tokens": 16549, "output_tokens": 448,
         "cache_creation": {"ephemeral_5m_input_tokens": 17355, "ephemeral_1h_input_tokens": 0},
         "server_tool_use": {"web_search_requests": 0}},
        {"api_key_id": null, "workspace_id": null, "model": "claude-3-5-haiku-20241022", "service_tier": null,
         "context_window": null, "inference_geo": null, "uncached_input_tokens": 50, "cache_read_input_tokens": 0,
         "output_tokens": 20, "cache_creation": null,
         "server_tool_use": {"web_search_requests": 0}}]},
      {"starting_at": "2026-05-01T11:00:00Z", "ending_at": "2026-05-01T12:00:00Z", "results": []}],
     "has_more": true, "next_page": "page_MjAyNi0wNS0wMVQxMjowMDowMFo="}"#;
    let report: UsageReport = serde_json::from_str(body).unwrap();
    let page = report.into_page().unwrap();
    assert_eq!(page.buckets.len(), 2);
    assert_eq!(page.buckets[0].rows[0].tokens.cache_write_5m, 17355);
    assert_eq!(page.buckets[0].rows[1].key_id, WORKBENCH_KEY_ID);
    assert_eq!(page.buckets[0].rows[1].tokens.cache_write_5m, 0);
    assert!(page.buckets[1].rows.is_empty());
    assert_eq!(
        page.next_page.as_deref(),
        Some("page_MjAyNi0wNS0wMVQxMjowMDowMFo=")
    );
}

#[test]
fn cost_report_amounts_are_cents_strings() {
    let body = r#"{"data": [{"starting_at": "2026-05-01T00:00:00Z", "ending_at": "2026-05-02T00:00:00Z", "results": [
       {"currency": "USD", "amount": "1234.5678", "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
        "description": "Claude Sonnet 4 Usage - Input Tokens", "cost_type": "tokens", "model": "claude-sonnet-4-20250514",
        "service_tier": "standard", "context_window": "0-200k", "token_type": "uncached_input_tokens", "inference_geo": null},
       {"currency": "USD", "amount": "50", "workspace_id": null, "description": "Web Search Usage", "cost_type": "web_search",
        "model": null, "service_tier": null, "context_window": null, "token_type": null, "inference_geo": null}]}],
     "has_more": false, "next_page": null}"#;
    let page = serde_json::from_str::<CostReport>(body)
        .unwrap()
        .into_page()
        .unwrap();
    let lines = &page.buckets[0].lines;
    assert!((lines[0].usd - 12.345678).abs() < 1e-9);
    assert_eq!(
        (lines[1].cost_type.as_str(), lines[1].usd),
        ("web_search", 0.5)
    );
}

#[test]
fn negative_counter_is_a_decode_error() {
    let body = r#"{"data":[{"starting_at":"2026-05-01T10:00:00Z","ending_at":"2026-05-01T11:00:00Z",
        "results":[{"api_key_id":"k","model":"m","output_tokens":-5}]}],"has_more":false,"next_page":null}"#;
    assert!(serde_json::from_str::<UsageReport>(body).is_err());
}

#[test]
fn both_key_shapes_give_the_workspace() {
    let old: KeyJson = serde_json::from_str(
        r#"{"id":"apikey_1","type":"api_key","name":"ci","status":"active",
            "workspace_id":"wrkspc_1","created_at":"2026-05-01T00:00:00Z","expires_at":null}"#,
    )
    .unwrap();
    let new: KeyJson = serde_json::from_str(
        r#"{"id":"apikey_2","type":"api_key","name":"ci","status":"active","principal":null,
            "scope":{"type":"workspace","workspace_id":"wrkspc_2"},"created_at":"2026-05-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(ApiKey::from(old).workspace_id.as_deref(), Some("wrkspc_1"));
    assert_eq!(ApiKey::from(new).workspace_id.as_deref(), Some("wrkspc_2"));
}
