//! The `source_unhealthy` rule. Each stream of a source — usage, the key listing, the cost
//! report — is judged on its own poll state, and the alert says which one fails: usage
//! failing makes keywatch blind to the source; a failing key listing or cost report does not
//! stop leak detection and says so. Resolution does not depend on a pass having seen the
//! success: every open `source_unhealthy` alert of the source that is not the current episode
//! is resolved.

/// What the person on call should do when this rule fires (email, Slack, PagerDuty).
pub const ADVICE: &str = "Check the source's admin key and network access to the provider: until polling recovers keywatch cannot see this source's keys.";

use super::Pass;
use crate::alerts::{rfc3339, Rule};
use crate::config::Severity;
use crate::store::{usage_stream, AlertChange, PollState, COSTS_STREAM, KEYS_STREAM};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Usage,
    Keys,
    Costs,
}

/// One failing stream and why it counts.
struct Failing {
    stream: Stream,
    state: PollState,
    rejected: bool,
    paging: bool,
}

/// The HTTP status the provider answered the stream's last failed poll with.
fn failed_status(state: &PollState) -> Option<u16> {
    state.last_status.or_else(|| {
        // Legacy: rows written before `last_status` was recorded (migration
        // 20261202090000_poll_state_last_status) carry the status only in the error text
        // `PollError::Api` wrote (`<endpoint>: HTTP 401 …`). Such a row lasts until its stream is
        // polled again (a day at most, for the cost report); this fallback can go after that.
        let error = state.last_error.as_deref()?;
        [401, 403]
            .into_iter()
            .find(|s| error.contains(&format!(": HTTP {s}")))
    })
}

fn judge(stream: Stream, state: PollState, now: i64, interval: i64) -> Option<Failing> {
    if state.consecutive_failures < 1 {
        return None;
    }
    let error = state.last_error.as_deref().unwrap_or("");
    let status = failed_status(&state);
    let rejected = matches!(status, Some(401 | 403));
    // A paging loop does not heal by itself: say so at once.
    let paging = error.contains("paging did not end");
    let since = state.last_success_at.unwrap_or(0);
    let failing = match stream {
        // A rejected admin key does not heal by itself either.
        Stream::Usage => {
            rejected || paging || (state.consecutive_failures >= 3 && now - since > 3 * interval)
        }
        Stream::Keys => status == Some(401) || paging || state.consecutive_failures >= 3,
        Stream::Costs => paging || state.consecutive_failures >= 3,
    };
    failing.then_some(Failing {
        stream,
        state,
        rejected,
        paging,
    })
}

fn polls(n: i64) -> String {
    if n == 1 {
        "1 failed poll".to_owned()
    } else {
        format!("{n} failed polls")
    }
}

impl Failing {
    /// What fails and why. `first` starts the summary (names the source); `usage_ok` says
    /// whether usage, and so leak detection, still works.
    fn sentence(&self, source: &str, first: bool, usage_ok: bool) -> String {
        let s = &self.state;
        let n = s.consecutive_failures;
        let last = s.last_error.as_deref().unwrap_or("unknown error");
        let cause = if self.paging {
            " The provider's paging did not end (a next-page token repeated, or too many pages): a provider fault; keywatch stops following it and tries again on the next poll."
        } else if self.rejected && self.stream == Stream::Costs {
            " The provider refuses the cost report to this admin key: it may lack permission to read costs; only billed costs and reconciliation are missing."
        } else if self.rejected {
            " The provider rejected the admin key: it was most likely revoked, expired or is not an organisation admin key. Create a new admin key and update the source's admin_key_env/admin_key_file."
        } else {
            ""
        };
        if self.stream == Stream::Usage {
            return match s.last_success_at {
                Some(t) => format!(
                    "Source {source} has not been polled successfully since {} ({}): keywatch is blind to it.{cause} Last error: {last}",
                    rfc3339(t),
                    polls(n)
                ),
                None => format!(
                    "Source {source} has never been polled successfully ({}): keywatch is blind to it.{cause} Last error: {last}",
                    polls(n)
                ),
            };
        }
        let what = if self.stream == Stream::Keys {
            "key listing"
        } else {
            "cost report"
        };
        let subject = if first {
            format!("Source {source}: the {what}")
        } else {
            format!("Its {what}")
        };
        let since = match s.last_success_at {
            Some(t) => format!("last success {}", rfc3339(t)),
            None => "never succeeded".to_owned(),
        };
        let still = if usage_ok && first {
            " Usage is still polled and watched."
        } else {
            ""
        };
        format!(
            "{subject} failed {n} time{} in a row ({since}).{cause}{still} Last error: {last}",
            if n == 1 { "" } else { "s" },
        )
    }
}

impl Pass<'_> {
    pub fn source_health(&mut self) {
        let interval = self.config.poll.interval.0.as_secs() as i64;
        let open = &self.inputs.open;
        for source in &self.config.sources {
            let scope = format!("source_unhealthy/{}", source.name);
            let mut failing = Vec::new();
            for (stream, name) in [
                (Stream::Usage, usage_stream(self.width)),
                (Stream::Keys, KEYS_STREAM.to_owned()),
                (Stream::Costs, COSTS_STREAM.to_owned()),
            ] {
                let state = self
                    .inputs
                    .poll_states
                    .get(&(source.name.clone(), name))
                    .cloned()
                    .unwrap_or_default();
                failing.extend(judge(stream, state, self.now, interval));
            }
            // The episode starts at the last success of the usage stream when it fails, else
            // of the earliest failing stream.
            let current = failing.first().map(|f| {
                let since = f.state.last_success_at.unwrap_or(0);
                let mut a = self.base_alert(
                    Rule::SourceUnhealthy,
                    scope.clone(),
                    &since.to_string(),
                    Severity::Warning,
                );
                let usage_ok = failing.iter().all(|f| f.stream != Stream::Usage);
                a.summary = failing
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let mut text = f.sentence(&source.name, i == 0, usage_ok);
                        if !text.ends_with('.') {
                            text.push('.');
                        }
                        text
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                a.source = Some(source.name.clone());
                a.observed = Some((self.now - since) as f64);
                a.unit = "seconds".to_owned();
                a.starts_at = f.state.last_success_at.unwrap_or(self.now);
                a
            });
            // Every other open alert of this source is over, whether or not a pass saw the
            // success that ended it.
            for old in open.iter().filter(|a| {
                a.rule == Rule::SourceUnhealthy
                    && a.scope == scope
                    && current.as_ref().is_none_or(|c| c.id != a.id)
            }) {
                self.changes.push(AlertChange::Resolve {
                    id: old.id.clone(),
                    at: self.now,
                });
            }
            if let Some(mut a) = current {
                if let Some(same) = open.iter().find(|o| o.id == a.id) {
                    a.starts_at = same.starts_at;
                }
                self.changes.push(AlertChange::Fire(Box::new(a)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{config, fired, inputs, open, run, NOW};
    use super::super::{Inputs, Pass};
    use crate::alerts::{alert_id, Rule};
    use crate::store::{usage_stream, AlertChange, PollState, KEYS_STREAM};

    fn usage_state(i: &mut Inputs, failures: i64, last_success: Option<i64>, error: &str) {
        i.poll_states.insert(
            ("src".to_owned(), usage_stream(i.width)),
            PollState {
                last_success_at: last_success,
                consecutive_failures: failures,
                last_error: Some(error.to_owned()),
                ..PollState::default()
            },
        );
    }

    /// The usage stream failed once with HTTP `status` and the error text `error`.
    fn refused(i: &mut Inputs, status: Option<u16>, error: &str) {
        usage_state(i, 1, Some(NOW - 120), error);
        let key = ("src".to_owned(), usage_stream(i.width));
        i.poll_states.get_mut(&key).unwrap().last_status = status;
    }

    fn rejected_key(i: &Inputs, c: &crate::config::Config) -> bool {
        let changes = run(i, c, Pass::source_health);
        fired(&changes)
            .first()
            .is_some_and(|a| a.summary.contains("The provider rejected the admin key"))
    }

    #[test]
    fn three_failures_fire_only_past_three_intervals() {
        // The default interval is 2 minutes.
        let c = config("");
        let mut i = inputs(&c, NOW);
        usage_state(&mut i, 3, Some(NOW - 360), "usage: connection refused");
        assert!(run(&i, &c, Pass::source_health).is_empty());
        usage_state(&mut i, 2, Some(NOW - 3600), "usage: connection refused");
        assert!(run(&i, &c, Pass::source_health).is_empty());

        usage_state(&mut i, 3, Some(NOW - 361), "usage: connection refused");
        let changes = run(&i, &c, Pass::source_health);
        let a = fired(&changes);
        assert_eq!(a.len(), 1, "{changes:?}");
        assert_eq!(
            a[0].id,
            alert_id(
                Rule::SourceUnhealthy,
                "source_unhealthy/src",
                &(NOW - 361).to_string()
            )
        );
        assert_eq!(
            a[0].summary,
            "Source src has not been polled successfully since 2027-01-15T07:53:59Z (3 failed polls): keywatch is blind to it. Last error: usage: connection refused."
        );
        assert_eq!((a[0].observed, a[0].starts_at), (Some(361.0), NOW - 361));
    }

    #[test]
    fn a_rejected_admin_key_fires_at_once() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        refused(
            &mut i,
            Some(401),
            "usage: HTTP 401 authentication_error: invalid x-api-key",
        );
        let changes = run(&i, &c, Pass::source_health);
        let a = fired(&changes);
        assert_eq!(a.len(), 1, "{changes:?}");
        assert!(
            a[0].summary.contains("(1 failed poll)")
                && a[0].summary.contains("The provider rejected the admin key"),
            "{}",
            a[0].summary
        );
    }

    #[test]
    fn the_recorded_status_decides_not_the_error_text() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        refused(&mut i, Some(403), "usage: permission denied");
        assert!(rejected_key(&i, &c));
        // A 500 whose message happens to quote a 401 is not a rejected key.
        refused(
            &mut i,
            Some(500),
            "usage: HTTP 500: upstream said: HTTP 401",
        );
        assert!(!rejected_key(&i, &c));
        refused(&mut i, None, "usage: connection refused");
        assert!(!rejected_key(&i, &c));
    }

    #[test]
    fn a_row_from_before_the_status_was_recorded_is_read_from_its_text() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        refused(&mut i, None, "usage: HTTP 401 Unauthorized");
        assert!(rejected_key(&i, &c));
        refused(
            &mut i,
            None,
            "usage: HTTP 403 permission_error: not an admin key",
        );
        assert!(rejected_key(&i, &c));
    }

    #[test]
    fn a_key_listing_refused_with_401_fires_at_once() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        let listing = |status| PollState {
            consecutive_failures: 1,
            last_error: Some("keys: HTTP 4xx".to_owned()),
            last_status: Some(status),
            ..PollState::default()
        };
        let key = ("src".to_owned(), KEYS_STREAM.to_owned());
        i.poll_states.insert(key.clone(), listing(401));
        assert_eq!(fired(&run(&i, &c, Pass::source_health)).len(), 1);
        // A 403 on the listing waits for three failures, as before.
        i.poll_states.insert(key, listing(403));
        assert!(run(&i, &c, Pass::source_health).is_empty());
    }

    #[test]
    fn a_failing_key_listing_says_usage_is_still_watched() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        i.poll_states.insert(
            ("src".to_owned(), KEYS_STREAM.to_owned()),
            PollState {
                last_success_at: None,
                consecutive_failures: 3,
                last_error: Some("keys: timed out".to_owned()),
                ..PollState::default()
            },
        );
        let changes = run(&i, &c, Pass::source_health);
        assert_eq!(
            fired(&changes)[0].summary,
            "Source src: the key listing failed 3 times in a row (never succeeded). Usage is still polled and watched. Last error: keys: timed out."
        );
    }

    #[test]
    fn a_success_resolves_every_open_episode() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        usage_state(&mut i, 0, Some(NOW - 60), "");
        let old = open(Rule::SourceUnhealthy, "source_unhealthy/src", "1");
        let older = open(Rule::SourceUnhealthy, "source_unhealthy/src", "2");
        i.open.extend([old.clone(), older.clone()]);
        assert_eq!(
            run(&i, &c, Pass::source_health),
            vec![
                AlertChange::Resolve {
                    id: old.id,
                    at: NOW
                },
                AlertChange::Resolve {
                    id: older.id,
                    at: NOW
                },
            ]
        );
    }
}
