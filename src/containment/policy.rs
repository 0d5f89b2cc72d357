//! Containment policies: which changes the configured `[[containment]]` policies ask for in
//! answer to the alerts a detection pass fires ([`plan`], pure), made through the providers
//! and recorded before the pass records its alerts ([`Containment::answer`]), so the
//! notification already says what was done.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use super::{act, Order};
use crate::budget::KeyMap;
use crate::config::{BudgetScope, Config, ContainmentPolicy, PolicyAction, Provider};
use crate::model::{ActionObject, Alert, AlertStatus};
use crate::providers::key_admin::KeyChange;
use crate::providers::ProviderClient;
use crate::store::{AlertChange, KeyAction, Store, StoreError};

/// A failed action is tried at most this many times per alert episode.
pub const MAX_ATTEMPTS: usize = 3;
/// At most this many keys are deactivated in one detection pass: a pass that fires on many
/// keys at once (a backfill after an outage, a price change) is more likely keywatch's own
/// misjudgement than many leaks, and switching off every key is an outage. The rest are
/// recorded as held (a dry run) and their alerts say so.
pub const MAX_PER_PASS: usize = 3;
/// What separates the rule's own summary from the containment sentence keywatch adds.
pub const MARKER: &str = " Containment: ";
/// The wait before trying again after the first failure; doubled after each.
pub const RETRY_AFTER_SECS: i64 = 60;

/// One change a policy asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub alert_id: String,
    pub policy: String,
    pub source: String,
    pub key_id: String,
    /// Record what would be done; call nothing.
    pub dry_run: bool,
    pub reason: String,
}

/// Whether `policy` covers the key `key_id` of `source`; never the whole organisation (the
/// config refuses such a scope).
fn covers(policy: &ContainmentPolicy, keys: &KeyMap, source: &str, key_id: &str) -> bool {
    !matches!(policy.scope, BudgetScope::Organisation)
        && crate::budget::covers(
            &policy.scope,
            policy.source.as_deref(),
            keys,
            source,
            key_id,
        )
}

/// The changes `policies` ask for in answer to the firing alerts `fired`, given what was
/// already done for each alert (`prior`, by alert id). Per alert: the first policy that acts
/// (`deactivate`) among those that cover its key and rule, else the first dry-run one; never
/// twice for one episode (an alert id) nor for one key in a pass; a temporary failure is tried
/// again on the first pass at least 1, then 2 minutes later, at most [`MAX_ATTEMPTS`] times,
/// and a refusal is not tried again; a key already inactive or gone is left alone; beyond
/// [`MAX_PER_PASS`] deactivations, the rest are held (recorded as dry runs). An OpenAI key
/// (which cannot be deactivated) is recorded as a dry run.
pub fn plan(
    policies: &[ContainmentPolicy],
    fired: &[&Alert],
    keys: &KeyMap,
    providers: &HashMap<String, Provider>,
    prior: &HashMap<String, Vec<KeyAction>>,
    now: i64,
) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::new();
    let mut acting = 0;
    for alert in fired {
        let (Some(source), Some(key_id)) = (&alert.source, &alert.key_id) else {
            continue;
        };
        if alert.status != AlertStatus::Firing {
            continue;
        }
        let matching: Vec<&ContainmentPolicy> = policies
            .iter()
            .filter(|p| p.rules.contains(&alert.rule) && covers(p, keys, source, key_id))
            .collect();
        let Some(policy) = matching
            .iter()
            .find(|p| p.action == PolicyAction::Deactivate)
            .or(matching.first())
        else {
            continue;
        };
        let before = prior.get(&alert.id).map(Vec::as_slice).unwrap_or_default();
        if before
            .iter()
            .any(|a| a.result == "done" || a.result == "dry-run")
        {
            continue;
        }
        let failures: Vec<&KeyAction> = before.iter().filter(|a| a.result == "failed").collect();
        if failures.len() >= MAX_ATTEMPTS || failures.last().is_some_and(|f| !f.temporary) {
            continue;
        }
        if out
            .iter()
            .any(|p| &p.source == source && &p.key_id == key_id)
        {
            continue;
        }
        if let Some(last) = failures.last() {
            let wait = RETRY_AFTER_SECS << (failures.len() - 1).min(10);
            if now - last.at < wait {
                continue;
            }
        }
        let status = keys
            .get(&(source.clone(), key_id.clone()))
            .map(|k| k.status.as_str());
        let contained = matches!(
            status,
            Some("inactive" | "deleted" | "archived" | "expired")
        );
        if contained && policy.action == PolicyAction::Deactivate {
            continue;
        }
        let openai = providers.get(source) == Some(&Provider::Openai);
        let mut reason = format!(
            "policy {}: {} alert {} fired: {}",
            policy.name,
            alert.rule.as_str(),
            alert.id,
            alert.summary.chars().take(300).collect::<String>()
        );
        if openai && policy.action == PolicyAction::Deactivate {
            reason.push_str(
                " (an OpenAI key cannot be deactivated: recorded only; delete it by hand)",
            );
        }
        let mut dry_run = policy.action == PolicyAction::DryRun || openai;
        if !dry_run {
            acting += 1;
            if acting > MAX_PER_PASS {
                dry_run = true;
                reason = format!(
                    "held: more than {MAX_PER_PASS} keys would be deactivated in one pass, which \
                     is more likely a misjudgement than as many leaks; {reason}"
                );
            }
        }
        out.push(Planned {
            alert_id: alert.id.clone(),
            policy: policy.name.clone(),
            source: source.clone(),
            key_id: key_id.clone(),
            dry_run,
            reason,
        });
    }
    out
}

/// The policies and a client for each source they may act on.
pub struct Containment {
    policies: Vec<ContainmentPolicy>,
    clients: HashMap<String, ProviderClient>,
    providers: HashMap<String, Provider>,
}

impl std::fmt::Debug for Containment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containment")
            .field("policies", &self.policies.len())
            .finish_non_exhaustive()
    }
}

impl Containment {
    /// `None` when no policy is configured (containment is opt-in).
    pub fn from_config(config: &Config) -> Option<Self> {
        if config.containment.is_empty() {
            return None;
        }
        let mut clients = HashMap::new();
        let mut providers = HashMap::new();
        for s in &config.sources {
            providers.insert(s.name.clone(), s.provider);
            match super::client(s, &config.poll) {
                Ok(c) => {
                    clients.insert(s.name.clone(), c);
                }
                Err(e) => tracing::error!(source = %s.name, error = %e,
                    "containment cannot reach this source: its keys are recorded, not changed"),
            }
        }
        Some(Self {
            policies: config.containment.clone(),
            clients,
            providers,
        })
    }

    /// Answers the alerts `changes` fires: makes and records what the policies ask for, then
    /// puts every action recorded for each fired alert on it (its `actions`, and a sentence in
    /// its summary), so the notification says what was done.
    pub async fn answer(
        &self,
        store: &Store,
        changes: &mut [AlertChange],
        keys: &KeyMap,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut fired: Vec<&Alert> = Vec::new();
        for c in changes.iter() {
            // A silenced alert is not notified, so keywatch does not act on it either.
            if let AlertChange::Fire(a) = c {
                if !store.is_silenced(a, now).await? {
                    fired.push(a.as_ref());
                }
            }
        }
        if fired.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = fired.iter().map(|a| a.id.clone()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut prior = store.alert_actions(&ids).await?;
        let planned = plan(&self.policies, &fired, keys, &self.providers, &prior, now);
        let cancel = CancellationToken::new();
        for p in &planned {
            let Some(key) = keys.get(&(p.source.clone(), p.key_id.clone())) else {
                continue;
            };
            let order = Order {
                key,
                change: KeyChange::Deactivate,
                by: format!("policy:{}", p.policy),
                reason: p.reason.clone(),
                alert_id: Some(p.alert_id.clone()),
                policy: Some(p.policy.clone()),
                dry_run: p.dry_run,
            };
            act(store, self.clients.get(&p.source), &order, now, &cancel).await?;
        }
        if !planned.is_empty() {
            prior = store.alert_actions(&ids).await?;
        }
        for c in changes.iter_mut() {
            if let AlertChange::Fire(a) = c {
                if let Some(done) = prior.get(&a.id) {
                    let alert: &mut Alert = a;
                    alert.actions = done.iter().map(ActionObject::from).collect();
                    // An open alert comes back with last pass's sentence: replaced, not added.
                    if let Some(i) = alert.summary.find(MARKER) {
                        alert.summary.truncate(i);
                    }
                    alert.summary = format!("{}{MARKER}{}", alert.summary, sentence(alert, done));
                }
            }
        }
        Ok(())
    }
}

/// What a reader of the alert needs to know about the actions taken: the latest outcome, and
/// how to undo it or finish the job by hand.
pub fn sentence(alert: &Alert, actions: &[KeyAction]) -> String {
    let Some(last) = actions.last() else {
        return String::new();
    };
    let name = alert
        .key_name
        .as_deref()
        .or(alert.key_id.as_deref())
        .unwrap_or("the key");
    let policy = last.policy.as_deref().unwrap_or("by hand");
    let hhmm = chrono::DateTime::<chrono::Utc>::from_timestamp(last.at, 0)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default();
    match last.result.as_str() {
        "done" => format!(
            "keywatch deactivated {name} at {hhmm} UTC (policy {policy}); undo: keywatch keys \
             activate --key {} --source {} --reason \"…\".",
            last.key_id, last.source
        ),
        "dry-run" if last.reason.starts_with("held:") => format!(
            "policy {policy} held back: more than {MAX_PER_PASS} keys would have been \
             deactivated in one pass, so none beyond the first {MAX_PER_PASS} was. Check, then \
             contain it by hand: keywatch keys deactivate --key {} --source {} --reason \"…\".",
            last.key_id, last.source
        ),
        "dry-run" => format!(
            "Policy {policy} (dry-run) would have deactivated {name}; nothing was changed. \
             Contain it by hand: keywatch keys deactivate --key {} --source {} --reason \"…\".",
            last.key_id, last.source
        ),
        _ => {
            let tries = actions.iter().filter(|a| a.result == "failed").count();
            let more = if !last.temporary {
                "the provider refused; not tried again".to_owned()
            } else if tries < MAX_ATTEMPTS {
                format!("tried {tries} of {MAX_ATTEMPTS} times, trying again")
            } else {
                format!("gave up after {tries} tries")
            };
            let why: String = last
                .answer
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect();
            format!(
                "keywatch could not deactivate {name} (policy {policy}; {more}): {why}. Contain it \
                 by hand: keywatch keys deactivate --key {} --source {} --reason \"…\".",
                last.key_id, last.source
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Rule, Severity};
    use crate::store::StoredKey;

    const NOW: i64 = 1_800_000_000;

    fn key(key_id: &str, name: &str, status: &str, _created: Option<i64>) -> StoredKey {
        StoredKey {
            source: "src".to_owned(),
            key_id: key_id.to_owned(),
            name: Some(name.to_owned()),
            status: status.to_owned(),
            created_at: None,
            workspace_id: None,
            partial_key_hint: None,
            first_seen: 0,
            last_seen: NOW,
            in_inventory: true,
            status_changed_at: None,
        }
    }

    fn policy(name: &str, glob: &str, action: PolicyAction) -> ContainmentPolicy {
        ContainmentPolicy {
            name: name.to_owned(),
            source: None,
            scope: BudgetScope::KeyName(glob::Pattern::new(glob).unwrap()),
            rules: vec![Rule::Spike],
            action,
        }
    }

    fn spike(key_id: &str) -> Alert {
        let mut a = Alert::firing(
            Rule::Spike,
            format!("spike/src/{key_id}"),
            "1",
            Severity::Critical,
            NOW,
        );
        a.source = Some("src".to_owned());
        a.key_id = Some(key_id.to_owned());
        a
    }

    fn failed(alert: &Alert, at: i64) -> KeyAction {
        KeyAction {
            id: 0,
            at,
            source: "src".to_owned(),
            key_id: alert.key_id.clone().unwrap(),
            action: "deactivate".to_owned(),
            result: "failed".to_owned(),
            by: "policy:p".to_owned(),
            reason: String::new(),
            alert_id: Some(alert.id.clone()),
            policy: Some("p".to_owned()),
            answer: "HTTP 503".to_owned(),
            temporary: true,
        }
    }

    #[test]
    fn the_acting_policy_wins_failures_wait_and_stop_and_other_keys_are_left_alone() {
        let keys: KeyMap = [
            key("k_dev", "dev-x", "active", None),
            key("k_prod", "prod-x", "active", None),
        ]
        .into_iter()
        .map(|k| ((k.source.clone(), k.key_id.clone()), k))
        .collect();
        let providers = HashMap::from([("src".to_owned(), Provider::Anthropic)]);
        let policies = [
            policy("watch", "*", PolicyAction::DryRun),
            policy("dev", "dev-*", PolicyAction::Deactivate),
        ];
        let (dev, prod) = (spike("k_dev"), spike("k_prod"));
        let fired = [&dev, &prod];
        let none = HashMap::new();
        let got = plan(&policies, &fired, &keys, &providers, &none, NOW);
        let short: Vec<(&str, &str, bool)> = got
            .iter()
            .map(|p| (p.key_id.as_str(), p.policy.as_str(), p.dry_run))
            .collect();
        assert_eq!(short, [("k_dev", "dev", false), ("k_prod", "watch", true)]);

        // One failure a minute ago: wait; after 60 s: again; two failures: wait 120 s.
        let once = HashMap::from([(dev.id.clone(), vec![failed(&dev, NOW - 30)])]);
        assert!(plan(&policies[1..], &[&dev], &keys, &providers, &once, NOW).is_empty());
        let once = HashMap::from([(dev.id.clone(), vec![failed(&dev, NOW - 60)])]);
        assert_eq!(
            plan(&policies[1..], &[&dev], &keys, &providers, &once, NOW).len(),
            1
        );
        let twice = HashMap::from([(
            dev.id.clone(),
            vec![failed(&dev, NOW - 200), failed(&dev, NOW - 100)],
        )]);
        assert!(plan(&policies[1..], &[&dev], &keys, &providers, &twice, NOW).is_empty());
        let thrice = HashMap::from([(
            dev.id.clone(),
            vec![
                failed(&dev, NOW - 900),
                failed(&dev, NOW - 800),
                failed(&dev, NOW - 700),
            ],
        )]);
        assert!(
            plan(&policies[1..], &[&dev], &keys, &providers, &thrice, NOW).is_empty(),
            "gave up"
        );

        // A key already inactive is left alone; an OpenAI key is only recorded.
        let mut off = keys.clone();
        off.get_mut(&("src".to_owned(), "k_dev".to_owned()))
            .unwrap()
            .status = "inactive".to_owned();
        assert!(plan(&policies[1..], &[&dev], &off, &providers, &none, NOW).is_empty());
        let openai = HashMap::from([("src".to_owned(), Provider::Openai)]);
        let got = plan(&policies[1..], &[&dev], &keys, &openai, &none, NOW);
        assert!(got[0].dry_run && got[0].reason.contains("cannot be deactivated"));

        // A refusal is not tried again.
        let mut refused = failed(&dev, NOW - 900);
        refused.temporary = false;
        let refused = HashMap::from([(dev.id.clone(), vec![refused])]);
        assert!(plan(&policies[1..], &[&dev], &keys, &providers, &refused, NOW).is_empty());

        // Five leaking keys at once: three are deactivated, two held; one key, one action.
        let many: KeyMap = (0..5)
            .map(|i| key(&format!("k{i}"), &format!("dev-{i}"), "active", None))
            .map(|k| ((k.source.clone(), k.key_id.clone()), k))
            .collect();
        let spikes: Vec<Alert> = (0..5).map(|i| spike(&format!("k{i}"))).collect();
        let mut fired: Vec<&Alert> = spikes.iter().collect();
        let mut twice = spike("k0");
        twice.rule = Rule::InactiveKeyUsage;
        twice.id = "kw_other".to_owned();
        let mut both = policies[1].clone();
        both.rules.push(Rule::InactiveKeyUsage);
        fired.push(&twice);
        let got = plan(&[both], &fired, &many, &providers, &none, NOW);
        assert_eq!(got.len(), 5, "k0 once");
        assert_eq!(got.iter().filter(|p| !p.dry_run).count(), MAX_PER_PASS);
        assert!(got[3].reason.starts_with("held:"));
    }
}
