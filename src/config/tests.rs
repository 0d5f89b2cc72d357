//! Each kind of config mistake is an error that names its key.

use std::collections::HashMap;
use std::path::Path;

use secrecy::ExposeSecret;

use super::*;

const SOURCE: &str = r#"
[[sources]]
name = "anthropic-prod"
provider = "anthropic"
admin_key_env = "ADMIN"
"#;

fn env() -> HashMap<String, String> {
    HashMap::from([
        ("ADMIN".to_owned(), "sk-ant-admin01-TEST".to_owned()),
        (
            "HOOK".to_owned(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        ),
        ("BADHOOK".to_owned(), "whsec_not base64!".to_owned()),
    ])
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("/etc/keywatch/keywatch.toml"), &env())
}

/// The error message for `text`, which must fail.
fn error(text: &str) -> String {
    load(text)
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn minimal_config_takes_the_documented_defaults() {
    let c = load(SOURCE).unwrap();
    assert_eq!(c.poll.interval.0.as_secs(), 120);
    assert_eq!(c.poll.bucket_width, BucketWidth::Hour);
    assert_eq!(c.poll.lookback.0.as_secs(), 8 * 86_400);
    assert_eq!(c.poll.settle.0.as_secs(), 600);
    assert_eq!(c.spike.factor, 10.0);
    assert_eq!(c.rotation.max_key_age_days, 90);
    assert_eq!(
        c.storage.sqlite_path(),
        Some(Path::new("/etc/keywatch/keywatch.db"))
    );
    assert_eq!(
        c.sources[0].admin_key.expose_secret(),
        "sk-ant-admin01-TEST"
    );
    assert_eq!(c.sources[0].base_url.as_str(), "https://api.anthropic.com/");
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let e = error(&format!("[poll]\nintervall = \"2m\"\n{SOURCE}"));
    assert!(
        e.contains("poll.intervall") || e.contains("unknown field `intervall`"),
        "{e}"
    );
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn unknown_key_in_an_array_table_is_named() {
    let e = error(&format!("{SOURCE}provder = \"x\"\n"));
    assert!(e.contains("sources[0]"), "{e}");
    assert!(e.contains("provder"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = error(&format!("[detect.spike]\nfactor = \"ten\"\n{SOURCE}"));
    assert!(e.contains("detect.spike.factor"), "{e}");
}

#[test]
fn bad_duration_is_named_with_an_example() {
    let e = error(&format!("[poll]\ninterval = \"2 minuts\"\n{SOURCE}"));
    assert!(e.contains("poll.interval"), "{e}");
    assert!(e.contains("\"5m\""), "{e}");
}

#[test]
fn bad_bucket_width_is_named() {
    let e = error(&format!("[poll]\nbucket_width = \"2h\"\n{SOURCE}"));
    assert!(e.contains("poll.bucket_width"), "{e}");
}

#[test]
fn duplicate_source_names_are_refused() {
    let e = error(&format!("{SOURCE}{SOURCE}"));
    assert!(e.contains("sources[1].name"), "{e}");
    assert!(e.contains("used twice"), "{e}");
}

#[test]
fn unknown_time_zone_is_named() {
    let e = error(&format!(
        "{SOURCE}[[budgets]]\nname = \"b\"\ndaily_usd = 5.0\ntimezone = \"Europe/Berln\"\n"
    ));
    assert!(e.contains("budgets[0].timezone"), "{e}");
    assert!(e.contains("Europe/Berln"), "{e}");
}

#[test]
fn missing_env_var_is_named() {
    let e = error(&SOURCE.replace("\"ADMIN\"", "\"NOT_SET_ANYWHERE\""));
    assert!(e.contains("sources[0].admin_key_env"), "{e}");
    assert!(e.contains("NOT_SET_ANYWHERE"), "{e}");
}

#[test]
fn literal_secrets_are_refused_with_what_to_write_instead() {
    let e = error(
        "[[sources]]\nname = \"a\"\nprovider = \"anthropic\"\nadmin_key = \"sk-ant-admin01-X\"\n",
    );
    assert!(e.contains("sources[0].admin_key"), "{e}");
    assert!(e.contains("admin_key_env"), "{e}");
    assert!(
        !e.contains("sk-ant-admin01-X"),
        "the error must not echo the secret: {e}"
    );

    let e = error(&format!(
        "{SOURCE}[[notifiers]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\npassword = \"hunter2\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n"
    ));
    assert!(e.contains("notifiers[0].password"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn no_source_is_an_error() {
    assert!(error("").contains("sources"));
}

#[test]
fn openai_sources_are_accepted_with_their_default_base_url() {
    let c = load(&SOURCE.replace("\"anthropic\"", "\"openai\"")).unwrap();
    assert_eq!(c.sources[0].base_url.as_str(), "https://api.openai.com/");
}

#[test]
fn a_budget_scoped_to_an_unknown_source_is_named() {
    let e = error(&format!(
        "{SOURCE}[[budgets]]\nname = \"b\"\nsource = \"openai-prod\"\ndaily_usd = 5.0\n"
    ));
    assert!(
        e.contains("budgets[0].source") && e.contains("anthropic-prod"),
        "{e}"
    );
}

#[test]
fn unknown_provider_is_named() {
    let e = error(&SOURCE.replace("\"anthropic\"", "\"antropic\""));
    assert!(e.contains("sources[0].provider"), "{e}");
}

#[test]
fn budget_with_two_scopes_or_no_limit_is_refused() {
    let e = error(&format!(
        "{SOURCE}[[budgets]]\nname = \"b\"\nkey_id = \"k\"\nworkspace_id = \"w\"\ndaily_usd = 1.0\n"
    ));
    assert!(e.contains("budgets[0]") && e.contains("one scope"), "{e}");
    let e = error(&format!("{SOURCE}[[budgets]]\nname = \"b\"\n"));
    assert!(e.contains("daily_usd"), "{e}");
    let e = error(&format!(
        "{SOURCE}[[budgets]]\nname = \"b\"\ndaily_usd = -3.0\n"
    ));
    assert!(e.contains("budgets[0].daily_usd"), "{e}");
}

#[test]
fn budget_thresholds_must_be_distinct_percentages() {
    let e = error(&format!(
        "{SOURCE}[[budgets]]\nname = \"b\"\ndaily_usd = 1.0\nthresholds = [50, 50]\n"
    ));
    assert!(e.contains("budgets[0].thresholds"), "{e}");
}

#[test]
fn non_loopback_http_needs_a_token() {
    let e = error(&format!("[http]\nlisten = \"0.0.0.0:9464\"\n{SOURCE}"));
    assert!(e.contains("http.token_env"), "{e}");
}

#[test]
fn json_webhook_needs_a_whsec_secret() {
    let hook = "[[notifiers]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"https://x.example/h\"\n";
    let e = error(&format!("{SOURCE}{hook}"));
    assert!(e.contains("notifiers[0].secret_env"), "{e}");
    let ok = load(&format!("{SOURCE}{hook}secret_env = \"HOOK\"\n")).unwrap();
    assert_eq!(ok.notifiers.len(), 1);
    // A secret that would fail every signature is refused up front.
    let bad = format!("{SOURCE}{hook}secret_env = \"BADHOOK\"\n");
    let e = error(&bad);
    assert!(e.contains("not valid base64"), "{e}");
}

#[test]
fn email_addresses_are_checked_as_delivery_parses_them() {
    let mail = |to: &str| {
        format!("{SOURCE}[[notifiers]]\nname = \"n\"\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"keywatch <kw@example.com>\"\nto = [\"{to}\"]\n")
    };
    assert!(load(&mail("oncall@example.com")).is_ok());
    // Accepted before, refused by every delivery afterwards (retried until expiry).
    for bad in ["a@@example.com", "a@example", "@example.com"] {
        let e = error(&mail(bad));
        assert!(e.contains("notifiers[0].to"), "{bad}: {e}");
    }
}

#[test]
fn duplicate_notifier_names_are_refused() {
    let mail = "[[notifiers]]\nname = \"n\"\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n";
    let e = error(&format!("{SOURCE}{mail}{mail}"));
    assert!(e.contains("notifiers[1].name"), "{e}");
}

#[test]
fn spike_tunables_are_range_checked() {
    let e = error(&format!(
        "[detect.spike]\nbaseline_quantile = 1.5\n{SOURCE}"
    ));
    assert!(e.contains("detect.spike.baseline_quantile"), "{e}");
}

#[test]
fn prices_override_and_extend_the_builtin_table() {
    let c = load(&format!(
        "{SOURCE}[prices.\"my-model\"]\ninput = 1.0\noutput = 2.0\n"
    ))
    .unwrap();
    let p = c.prices.lookup("my-model").unwrap();
    assert_eq!((p.input, p.output, p.cache_read), (1.0, 2.0, 0.1));
    let e = error(&format!(
        "{SOURCE}[prices.\"m\"]\ninput = -1.0\noutput = 2.0\n"
    ));
    assert!(e.contains("prices.m.input"), "{e}");
}

#[test]
fn storage_url_resolves_relative_paths_and_refuses_other_databases() {
    let c = load(&format!(
        "[storage]\nurl = \"sqlite://data/kw.db\"\n{SOURCE}"
    ))
    .unwrap();
    assert_eq!(
        c.storage.sqlite_path(),
        Some(Path::new("/etc/keywatch/data/kw.db"))
    );
    let e = error(&format!("[storage]\nurl = \"postgres://x\"\n{SOURCE}"));
    assert!(e.contains("storage.url"), "{e}");
}

#[test]
fn a_containment_policy_is_opt_in_scoped_and_never_deletes() {
    let ok = load(&format!(
        "{SOURCE}[[containment]]\nname = \"dev-keys\"\nkey_name = \"dev-*\"\naction = \"deactivate\"\n\
         [[containment]]\nname = \"watch\"\nworkspace_id = \"wrkspc_1\"\nrules = [\"spike\", \"inactive_key_usage\"]\n"
    ))
    .unwrap();
    assert!(
        load(SOURCE).unwrap().containment.is_empty(),
        "off unless configured"
    );
    assert_eq!(ok.containment[0].action, PolicyAction::Deactivate);
    assert_eq!(
        ok.containment[1].action,
        PolicyAction::DryRun,
        "the default"
    );
    assert_eq!(ok.containment[0].rules, [crate::model::Rule::Spike]);
    let policy = |body: &str| error(&format!("{SOURCE}[[containment]]\nname = \"p\"\n{body}"));
    let e = policy("");
    assert!(
        e.contains("containment[0]") && e.contains("exactly one scope"),
        "{e}"
    );
    let e = policy("key_id = \"a\"\nkey_name = \"b\"\n");
    assert!(e.contains("exactly one scope"), "{e}");
    let e = policy("key_id = \"a\"\naction = \"delete\"\n");
    assert!(
        e.contains("containment[0].action") && e.contains("never automatic"),
        "{e}"
    );
    let e = policy("key_id = \"a\"\nrules = [\"budget\"]\n");
    assert!(
        e.contains("containment[0].rules") && e.contains("not a rule about one key"),
        "{e}"
    );
    let e = policy("key_id = \"a\"\nsource = \"nope\"\n");
    assert!(e.contains("containment[0].source"), "{e}");
    let e = policy("key_id = \"a\"\nrules = [\"key_age\"]\naction = \"deactivate\"\n");
    assert!(
        e.contains("containment[0].rules") && e.contains("dry-run"),
        "{e}"
    );
    let e = policy("key_name = \"[\"\n");
    assert!(e.contains("containment[0].key_name"), "{e}");
}
