//! What a person reads: subjects, bodies and chat messages made from alert objects.

use serde_json::{json, Value};

use crate::model::{AlertObject, AlertStatus};

/// An alert object (docs/contract.md) as messages show it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertView {
    pub alert: AlertObject,
    /// The dashboard page with the alert's evidence, when `http.external_url` is set.
    pub link: Option<String>,
    /// For a later firing of an alert this receiver was already told about (it escalated, or
    /// re-opened): the state change's sequence number. An email answers the first one.
    pub follow_up: Option<i64>,
}

/// The dashboard page with `a`'s evidence under `base` (`http.external_url`): the key's page for
/// an alert about a key (its source as a query), else the alert's row in the alert list.
pub fn link(base: &str, a: &AlertObject) -> Option<String> {
    let mut url = reqwest::Url::parse(base).ok()?;
    {
        let mut path = url.path_segments_mut().ok()?;
        path.pop_if_empty();
        match &a.key_id {
            Some(key) => path.push("keys").push(key),
            None => path.push("alerts"),
        };
    }
    if a.key_id.is_some() {
        if let Some(source) = &a.source {
            url.query_pairs_mut().append_pair("source", source);
        }
    }
    url.set_fragment(Some(&format!("alert-{}", a.id)));
    Some(url.into())
}

impl AlertView {
    /// The alert object in `payload`, its text made safe to show (see [`AlertView::new`]).
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok().map(Self::new)
    }

    /// `alert` with its text made safe to show: configured secrets redacted and control
    /// characters escaped in every field (a key named with a newline or an ESC sequence cannot
    /// add lines to an email or drive a terminal).
    pub fn new(mut alert: AlertObject) -> Self {
        alert.map_texts(|s| crate::text::clean(&crate::config::secret::redact(s)).into_owned());
        Self {
            alert,
            link: None,
            follow_up: None,
        }
    }

    /// The view with its [`link`] under `base` (`http.external_url`), if one is configured.
    pub fn linked(mut self, base: Option<&str>) -> Self {
        self.link = base.and_then(|b| link(b, &self.alert));
        self
    }

    pub fn id(&self) -> &str {
        &self.alert.id
    }

    pub fn rule(&self) -> &str {
        &self.alert.rule
    }

    pub fn severity(&self) -> &str {
        self.alert.severity.as_str()
    }

    pub fn resolved(&self) -> bool {
        self.alert.status == AlertStatus::Resolved
    }

    pub fn summary(&self) -> &str {
        &self.alert.summary
    }

    /// Who or what the alert is about: the key's name, its id, the budget or the source.
    pub fn subject(&self) -> String {
        let a = &self.alert;
        if let Some(b) = &a.budget {
            return format!("budget {b}");
        }
        a.key_name
            .as_deref()
            .or(a.key_id.as_deref())
            .or(a.source.as_deref())
            .unwrap_or("keywatch")
            .to_owned()
    }

    /// A number in the alert's unit, as a person reads it: `$7.41`, `209 days`, `12m`.
    fn value(&self, v: f64) -> String {
        match self.alert.unit.as_str() {
            "usd" if v.abs() < 0.1 && v != 0.0 => format!("${v:.4}"),
            "usd" => format!("${v:.2}"),
            "days" => format!("{v:.0} days"),
            "tokens" => format!("{v:.0} tokens"),
            "seconds" => {
                humantime::format_duration(std::time::Duration::from_secs(v.max(0.0) as u64))
                    .to_string()
            }
            _ => format!("{v}"),
        }
    }

    /// The key numbers in a few words, e.g. `$7.41/h vs $0.49/h baseline`.
    pub fn numbers(&self) -> Option<String> {
        let observed = self.alert.observed?;
        let value = |v: f64| self.value(v);
        Some(
            match (self.rule(), self.alert.baseline, self.alert.threshold) {
                ("spike", Some(b), _) => {
                    let per = self.per_bucket();
                    format!("{}{per} vs {}{per} baseline", value(observed), value(b))
                }
                ("budget", Some(limit), Some(t)) => {
                    format!("{} of {} ({t:.0}% crossed)", value(observed), value(limit))
                }
                ("budget_forecast", Some(limit), _) => {
                    format!("month projected at {} of {}", value(observed), value(limit))
                }
                ("key_age", _, Some(t)) => format!("{} old, policy {t:.0} days", value(observed)),
                _ => value(observed),
            },
        )
    }

    /// `/h`, `/min` or `/d` from the length of the alert's period.
    fn per_bucket(&self) -> &'static str {
        let seconds = self
            .alert
            .period
            .as_deref()
            .and_then(|p| p.split_once('/'))
            .and_then(|(a, b)| {
                let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
                let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
                Some((b - a).num_seconds())
            });
        match seconds {
            Some(60) => "/min",
            Some(3_600) => "/h",
            Some(86_400) => "/d",
            _ => "",
        }
    }

    /// One line: `[keywatch] CRITICAL spike: prod-rag-service — $7.41/h vs $0.49/h baseline`.
    pub fn title(&self) -> String {
        let state = if self.resolved() {
            "RESOLVED".to_owned()
        } else {
            self.severity().to_uppercase()
        };
        let numbers = self
            .numbers()
            .map(|n| format!(" — {n}"))
            .unwrap_or_default();
        format!(
            "[keywatch] {state} {}: {}{numbers}",
            self.rule(),
            self.subject()
        )
    }

    /// What the person on call should do.
    pub fn advice(&self) -> &'static str {
        if self.resolved() {
            return "Nothing to do: the condition no longer holds. Check that the cause is understood.";
        }
        crate::model::Rule::parse(self.rule())
            .map_or("Review the alert.", crate::alerts::rules::advice)
    }

    /// The alert's fields as (label, value) rows, as emails show them.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        let a = &self.alert;
        for (label, field) in [
            ("Status", Some(a.status.as_str())),
            ("Rule", Some(a.rule.as_str())),
            ("Severity", Some(a.severity.as_str())),
            ("Source", a.source.as_deref()),
            ("Key id", a.key_id.as_deref()),
            ("Key name", a.key_name.as_deref()),
            ("Budget", a.budget.as_deref()),
            ("Period", a.period.as_deref()),
            ("Started", Some(a.starts_at.as_str())),
            ("Ended", a.ends_at.as_deref()),
        ] {
            if let Some(v) = field {
                rows.push((label, v.to_owned()));
            }
        }
        if let Some(v) = a.observed {
            rows.push(("Observed", self.value(v)));
        }
        if let Some(v) = a.baseline {
            let label = if self.rule() == "budget" {
                "Limit"
            } else {
                "Baseline"
            };
            rows.push((label, self.value(v)));
        }
        if let Some(v) = a.threshold {
            let threshold = match self.rule() {
                "spike" => format!("{v}x the baseline"),
                "budget" | "budget_forecast" => format!("{v:.0}% of the limit"),
                "key_age" => format!("{v:.0} days"),
                _ => format!("{v}"),
            };
            rows.push(("Threshold", threshold));
        }
        rows
    }

    /// A plain-text section for one alert.
    pub fn text(&self) -> String {
        let mut t = format!("{}\n\n{}\n", self.title(), self.summary());
        for (label, value) in self.fields() {
            t.push_str(&format!("{label:<10} {value}\n"));
        }
        t.push_str(&format!("\nWhat to do: {}\n", self.advice()));
        if let Some(link) = &self.link {
            t.push_str(&format!("Evidence:   {link}\n"));
        }
        t.push_str(&format!("\nAlert id: {}\n", self.id()));
        t
    }
}

/// Subject and body of one email for one or several alerts.
pub fn email(alerts: &[AlertView]) -> (String, String) {
    if let [one] = alerts {
        return (one.title(), one.text() + FOOTER);
    }
    let firing = alerts.iter().filter(|a| !a.resolved()).count();
    let subject = format!(
        "[keywatch] {} alerts: {firing} firing, {} resolved",
        alerts.len(),
        alerts.len() - firing
    );
    let mut body = String::new();
    for a in alerts {
        body.push_str(&format!("• {}\n", a.title()));
    }
    for a in alerts {
        body.push_str("\n----------------------------------------------------------------\n\n");
        body.push_str(&a.text());
    }
    (subject, body + FOOTER)
}

const FOOTER: &str = "\n--\nSent by keywatch. List open alerts with `keywatch alerts`; silence with `keywatch silence`.\n";

/// A Slack incoming-webhook message: text for notifications, blocks for reading. Every piece
/// of alert text is escaped for Slack (`&`, `<`, `>`), so a key name cannot mention
/// `<!channel>` or plant a link.
pub fn slack(a: &AlertView) -> Value {
    let emoji = match (a.resolved(), a.severity()) {
        (true, _) => ":white_check_mark:",
        (_, "critical") => ":rotating_light:",
        (_, "warning") => ":warning:",
        _ => ":information_source:",
    };
    let title = a.title();
    let esc = crate::text::slack;
    let mut message = json!({
        "text": esc(&title),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{emoji} *{}*\n{}",
                esc(title.trim_start_matches("[keywatch] ")), esc(a.summary()))}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*What to do:* {}", esc(a.advice()))}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("alert `{}` · source {} · key `{}`",
                esc(a.id()), esc(a.alert.source.as_deref().unwrap_or("-")), esc(a.alert.key_id.as_deref().unwrap_or("-")))}]}
        ]
    });
    if let (Some(link), Some(blocks)) = (&a.link, message["blocks"].as_array_mut()) {
        let label = if a.alert.key_id.is_some() {
            "Open the key in keywatch"
        } else {
            "Open in keywatch"
        };
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "url": link,
            "action_id": "keywatch-open",
        }]}));
    }
    message
}

/// A PagerDuty Events API v2 event. The routing key is added by the caller.
pub fn pagerduty(a: &AlertView) -> Value {
    let mut summary = format!(
        "{} — {}",
        a.title().trim_start_matches("[keywatch] "),
        a.summary()
    );
    if summary.len() > 1024 {
        let cut = (0..=1020)
            .rev()
            .find(|i| summary.is_char_boundary(*i))
            .unwrap_or(0);
        summary.truncate(cut);
        summary.push('…');
    }
    // When the condition was detected: its start, or its end for a resolve.
    let timestamp = if a.resolved() {
        a.alert.ends_at.as_deref()
    } else {
        None
    }
    .unwrap_or(&a.alert.starts_at);
    let mut details = serde_json::to_value(&a.alert).unwrap_or_default();
    if let Some(d) = details.as_object_mut() {
        d.insert("numbers".into(), a.numbers().into());
        d.insert("what_to_do".into(), a.advice().into());
        d.insert("url".into(), a.link.clone().into());
    }
    let mut event = json!({
        "event_action": if a.resolved() { "resolve" } else { "trigger" },
        "dedup_key": a.id(),
        "payload": {
            "summary": summary,
            "severity": a.severity(),
            "source": format!("keywatch/{}", a.alert.source.as_deref().unwrap_or("keywatch")),
            "component": a.alert.key_id,
            "class": a.rule(),
            "timestamp": timestamp,
            "custom_details": details,
        },
        "client": "keywatch",
    });
    if let Some(group) = a.alert.budget.as_deref().or(a.alert.source.as_deref()) {
        event["payload"]["group"] = group.into();
    }
    if let Some(link) = &a.link {
        event["client_url"] = link.as_str().into();
        let text = if a.alert.key_id.is_some() {
            "The key in keywatch: usage, alerts and actions"
        } else {
            "The alert in keywatch"
        };
        event["links"] = json!([{"href": link, "text": text}]);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spike() -> AlertView {
        AlertView::parse(r#"{"version":1,"id":"kw_1","status":"firing","rule":"spike","severity":"critical",
            "source":"anthropic-prod","key_id":"apikey_01","key_name":"prod-rag-service","budget":null,
            "summary":"prod-rag-service used $7.41","observed":7.41,"baseline":0.49,"threshold":10.0,
            "unit":"usd","period":"2026-11-26T14:00:00Z/2026-11-26T15:00:00Z","starts_at":"2026-11-26T14:00:00Z","ends_at":null}"#).unwrap()
    }

    #[test]
    fn title_names_severity_rule_key_and_numbers() {
        assert_eq!(
            spike().title(),
            "[keywatch] CRITICAL spike: prod-rag-service — $7.41/h vs $0.49/h baseline"
        );
    }

    #[test]
    fn body_has_numbers_advice_and_id() {
        let (subject, body) = email(&[spike()]);
        assert!(subject.contains("CRITICAL spike"));
        for needle in [
            "apikey_01",
            "anthropic-prod",
            "7.41",
            "deactivate the key",
            "Alert id: kw_1",
        ] {
            assert!(body.contains(needle), "{needle} missing from\n{body}");
        }
    }

    #[test]
    fn with_an_external_url_the_text_links_to_the_key_page() {
        let view = spike().linked(Some("https://ops.example/keywatch/"));
        assert_eq!(
            view.link.as_deref(),
            Some("https://ops.example/keywatch/keys/apikey_01?source=anthropic-prod#alert-kw_1")
        );
        assert!(view.text().contains(
            "Evidence:   https://ops.example/keywatch/keys/apikey_01?source=anthropic-prod#alert-kw_1\n"
        ));
        assert_eq!(spike().linked(None).link, None);
    }

    #[test]
    fn several_alerts_make_one_listed_email() {
        let (subject, body) = email(&[spike(), spike()]);
        assert_eq!(subject, "[keywatch] 2 alerts: 2 firing, 0 resolved");
        assert_eq!(body.matches("• [keywatch]").count(), 2);
    }

    #[test]
    fn provider_text_is_escaped_in_slack_and_made_printable() {
        let hostile = AlertView::parse(&spike().alert.to_json_string().replace(
            "prod-rag-service",
            "<!channel> \\u001b[2J & <https://evil.example|click here>\\nforged",
        ))
        .unwrap();
        let text = slack(&hostile).to_string();
        for raw in ["<!channel>", "<https://", "\\u001b"] {
            assert!(!text.contains(raw), "{raw} in {text}");
        }
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
        let (subject, body) = email(&[hostile]);
        assert!(
            !subject.contains('\n') && !subject.contains('\u{1b}'),
            "{subject}"
        );
        assert!(
            !body.contains("\nforged") && body.contains("\\nforged"),
            "{body}"
        );
    }

    #[test]
    fn pagerduty_event_dedups_on_the_alert_id() {
        let e = pagerduty(&spike());
        assert_eq!(e["event_action"], "trigger");
        assert_eq!(e["dedup_key"], "kw_1");
        assert_eq!(e["payload"]["severity"], "critical");
    }
}
