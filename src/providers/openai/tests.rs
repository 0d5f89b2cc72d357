//! Decoding the documented openai shapes.

use super::*;

#[test]
fn cached_tokens_are_split_out_of_input_tokens() {
    let with: UsageResult = serde_json::from_str(
        r#"{"object":"organization.usage.completions.result","input_tokens":1000,"input_cached_tokens":400,
           "input_cache_write_tokens":100,"input_uncached_tokens":500,"output_tokens":500,"num_model_requests":5,
           "project_id":"proj_abc","user_id":null,"api_key_id":"key_abc","model":"gpt-4o-mini-2024-07-18","batch":null,"service_tier":null}"#,
    )
    .unwrap();
    let row = with.into_row(DateTime::UNIX_EPOCH).unwrap();
    assert_eq!(
        (
            row.tokens.uncached_input,
            row.tokens.cache_read,
            row.tokens.cache_write_5m
        ),
        (500, 400, 100)
    );
    assert_eq!(row.requests, Some(5));
    // An older response without the optional fields: uncached = input - cached.
    let without: UsageResult = serde_json::from_str(
        r#"{"input_tokens":1000,"input_cached_tokens":300,"output_tokens":5,"num_model_requests":1,"api_key_id":"key_abc","model":"gpt-4o"}"#,
    )
    .unwrap();
    assert_eq!(
        without
            .into_row(DateTime::UNIX_EPOCH)
            .unwrap()
            .tokens
            .uncached_input,
        700
    );
}

#[test]
fn keys_of_archived_projects_are_archived() {
    let k: KeyJson = serde_json::from_str(
        r#"{"object":"organization.project.api_key","id":"key_abc","name":"ci-bot","redacted_value":"sk-abc...def",
           "created_at":1711471533,"last_used_at":1711471534,"owner_project_access":"active"}"#,
    )
    .unwrap();
    let key = k.into_api_key("proj_1", true);
    assert_eq!(key.status, "archived");
    assert_eq!(key.workspace_id.as_deref(), Some("proj_1"));
    assert_eq!(key.partial_key_hint.as_deref(), Some("sk-abc...def"));
}
