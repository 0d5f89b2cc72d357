//! The `[[containment]]` checks (#18): opt-in policies that change a key at its provider when
//! an alert fires for it. Strict: a policy's scope is exactly one key, key-name glob or
//! workspace (never the whole organisation), its rules are known rules about keys, and its
//! action is `deactivate` or `dry-run` (deletion is never automatic).

use std::collections::HashSet;

use super::{check_name, Result};
use crate::config::schema::ContainmentSection;
use crate::config::SourceConfig;
use crate::config::{BudgetScope, ConfigError, ContainmentPolicy, PolicyAction, Provider};
use crate::model::Rule;

/// Rules whose alerts are about one key (the only ones a policy can answer).
const KEY_RULES: [Rule; 5] = [
    Rule::Spike,
    Rule::InactiveKeyUsage,
    Rule::KeyAge,
    Rule::UnpricedUsage,
    Rule::RotationStalled,
];

pub(super) fn build(
    raw: &[ContainmentSection],
    sources: &[SourceConfig],
) -> Result<Vec<ContainmentPolicy>> {
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("containment[{i}]");
            check_name(&format!("{at}.name"), &c.name, &mut seen)?;
            let scope =
                match super::scope(&at, &c.key_id, &c.key_name, &c.workspace_id)? {
                    Some(BudgetScope::Organisation) | None => return Err(ConfigError::invalid(
                        &at,
                        "give exactly one scope: key_id, key_name (a glob such as \"dev-*\") or \
                         workspace_id; a policy never covers the whole organisation",
                    )),
                    Some(scope) => scope,
                };
            let action = match c.action.as_deref() {
                None | Some("dry-run") => PolicyAction::DryRun,
                Some("deactivate") => PolicyAction::Deactivate,
                Some("delete") => {
                    return Err(ConfigError::invalid(
                        format!("{at}.action"),
                        "deletion is never automatic: use \"deactivate\" or \"dry-run\", and \
                         delete by hand (keywatch keys delete --yes)",
                    ))
                }
                Some(other) => {
                    return Err(ConfigError::invalid(
                        format!("{at}.action"),
                        format!("{other:?}: use \"deactivate\" or \"dry-run\" (the default)"),
                    ))
                }
            };
            let names = c.rules.clone().unwrap_or_else(|| vec!["spike".to_owned()]);
            if names.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.rules"),
                    "name at least one rule (default [\"spike\"])",
                ));
            }
            let key_rules: Vec<&str> = KEY_RULES.iter().map(|r| r.as_str()).collect();
            let rules = names
                .iter()
                .map(|n| {
                    Rule::parse(n)
                        .filter(|r| KEY_RULES.contains(r))
                        .ok_or_else(|| {
                            ConfigError::invalid(
                                format!("{at}.rules"),
                                format!(
                                    "{n:?} is not a rule about one key: use any of {}",
                                    key_rules.join(", ")
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<Rule>>>()?;
            if action == PolicyAction::Deactivate {
                if let Some(r) = rules.iter().find(|r| **r != Rule::Spike) {
                    return Err(ConfigError::invalid(
                        format!("{at}.rules"),
                        format!(
                            "{:?} fires on keys still in normal use, so only a dry-run policy may \
                             answer it; \"deactivate\" answers \"spike\" only",
                            r.as_str()
                        ),
                    ));
                }
            }
            if let Some(source) = &c.source {
                let Some(s) = sources.iter().find(|s| &s.name == source) else {
                    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
                    return Err(ConfigError::invalid(
                        format!("{at}.source"),
                        format!("no source named {source:?} (sources: {})", names.join(", ")),
                    ));
                };
                if s.provider == Provider::Openai && action == PolicyAction::Deactivate {
                    return Err(ConfigError::invalid(
                        format!("{at}.action"),
                        format!(
                            "source {source:?} is OpenAI, whose keys cannot be deactivated (only \
                             deleted, never automatically): use \"dry-run\""
                        ),
                    ));
                }
            }
            Ok(ContainmentPolicy {
                name: c.name.clone(),
                source: c.source.clone(),
                scope,
                rules,
                action,
            })
        })
        .collect()
}
