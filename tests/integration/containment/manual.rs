//! By hand: `keywatch keys` lists the inventory; `keys deactivate`/`activate` (Anthropic) and
//! `keys delete --yes` (OpenAI) change a key at the provider, print its answer and record it.

use serde_json::Value;

use crate::fake_anthropic::key_new_shape;
use crate::fake_openai::FakeOpenAi;
use crate::helpers::TestApp;

async fn with_keys() -> (TestApp, FakeOpenAi) {
    let (app, oa) = crate::helpers::spawn_with_openai().await;
    app.fake.add_key(key_new_shape(
        "apikey_dev1",
        "dev-playground-2026-11-01",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    app.fake.add_key(key_new_shape(
        "apikey_odd",
        "my test key",
        "active",
        "2026-10-01T00:00:00Z",
        None,
    ));
    oa.add_key("proj_1", "key_leak", "dev-bot-2026-11-02", "active", 30);
    app.cli_ok(&["run", "--once"]).await;
    (app, oa)
}

fn listed(app_out: &str) -> Vec<Value> {
    serde_json::from_str(app_out).unwrap()
}

fn status_of(keys: &[Value], id: &str) -> String {
    keys.iter()
        .find(|k| k["key_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {keys:#?}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_anthropic_key_is_deactivated_and_activated_by_hand_and_both_are_recorded() {
    let (app, _oa) = with_keys().await;
    let table = app.cli_ok(&["keys"]).await;
    assert!(
        table.contains("apikey_dev1")
            && table.contains("key_leak")
            && table.contains("source anthropic-test"),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");

    let out = app
        .cli_ok(&[
            "keys",
            "deactivate",
            "--key",
            "apikey_dev1",
            "--reason",
            "leaked in a gist",
        ])
        .await;
    assert!(
        out.contains("deactivated dev-playground-2026-11-01 (apikey_dev1) at anthropic-test")
            && out.contains("\"status\":\"inactive\"")
            && out.contains("undo: keywatch keys activate --key apikey_dev1"),
        "{out}"
    );
    let provider_status = app.fake.data.lock().unwrap().keys[0]["status"].clone();
    assert_eq!(provider_status, "inactive");
    let keys = listed(&app.cli_ok(&["keys", "--format", "json"]).await);
    assert_eq!(
        status_of(&keys, "apikey_dev1"),
        "inactive",
        "recorded at once"
    );

    app.cli_ok(&[
        "keys",
        "activate",
        "--key",
        "apikey_dev1",
        "--reason",
        "rotated; false alarm",
    ])
    .await;
    assert_eq!(app.fake.data.lock().unwrap().keys[0]["status"], "active");

    let store = app.store().await;
    let actions = store.actions_for_key("apikey_dev1", None).await.unwrap();
    store.close().await;
    let got: Vec<(&str, &str, &str)> = actions
        .iter()
        .map(|a| (a.action.as_str(), a.result.as_str(), a.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("deactivate", "done", "leaked in a gist"),
            ("activate", "done", "rotated; false alarm")
        ]
    );
    assert!(
        actions.iter().all(|a| a.by.starts_with("cli:")),
        "{actions:#?}"
    );
}

#[tokio::test]
async fn a_refused_change_says_why_once_without_retries_and_is_recorded_as_failed() {
    let (app, _oa) = with_keys().await;
    app.fake.data.lock().unwrap().refuse_key_changes = true;
    let out = app
        .cli(
            &[
                "keys",
                "deactivate",
                "--key",
                "apikey_dev1",
                "--reason",
                "leak",
            ],
            &[],
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HTTP 403") && stderr.contains("may read but not change keys"),
        "{stderr}"
    );
    assert_eq!(
        app.fake.data.lock().unwrap().key_changes,
        1,
        "no retry storm"
    );
    let store = app.store().await;
    let actions = store.actions_for_key("apikey_dev1", None).await.unwrap();
    store.close().await;
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].result, "failed");
    assert!(actions[0].answer.contains("403"), "{:?}", actions[0].answer);

    // An unknown key and an OpenAI key cannot be deactivated: each says so, exit 1.
    let out = app
        .cli(
            &[
                "keys",
                "deactivate",
                "--key",
                "apikey_nope",
                "--reason",
                "x",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key"));
    let out = app
        .cli(
            &["keys", "deactivate", "--key", "key_leak", "--reason", "x"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only delete it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_openai_key_is_deleted_only_with_yes() {
    let (app, oa) = with_keys().await;
    let out = app
        .cli(
            &[
                "keys",
                "delete",
                "--key",
                "key_leak",
                "--source",
                "openai-test",
                "--reason",
                "leak",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be undone"));
    assert_eq!(oa.data.lock().unwrap().key_changes, 0, "nothing was called");

    let out = app
        .cli_ok(&[
            "keys",
            "delete",
            "--key",
            "key_leak",
            "--source",
            "openai-test",
            "--reason",
            "leak",
            "--yes",
        ])
        .await;
    assert!(
        out.contains("deleted dev-bot-2026-11-02 (key_leak)") && out.contains("\"deleted\":true"),
        "{out}"
    );
    assert!(
        oa.data.lock().unwrap().keys.is_empty(),
        "gone at the provider"
    );
    let keys = listed(
        &app.cli_ok(&["keys", "--source", "openai-test", "--format", "json"])
            .await,
    );
    assert_eq!(status_of(&keys, "key_leak"), "deleted");
}

#[tokio::test]
async fn lint_lists_names_that_break_the_convention() {
    let (app, _oa) = with_keys().await;
    let out = app.cli_ok(&["keys", "--lint"]).await;
    assert!(
        out.contains("apikey_odd") && out.contains("does not start with an environment"),
        "{out}"
    );
    assert!(!out.contains("apikey_dev1"), "{out}");
}
