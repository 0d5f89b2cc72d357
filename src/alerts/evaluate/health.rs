//! The `source_unhealthy` rule. Each stream of a source — usage, the key listing, the cost
//! report — is judged on its own poll state, and the alert says which one fails: usage
//! failing makes keywatch blind to the source; a failing key listing or cost report does not
//! stop leak detection and says so. Resolution does not depend on a pass having seen the
//! success: every open `source_unhealthy` alert of the source that is not the current episode
//! is resolved.

use super::{AlertChange, Pass, Rule, Severity, Store, StoreError};
use crate::store::{usage_stream, PollState, COSTS_STREAM, KEYS_STREAM};

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

fn judge(stream: Stream, state: PollState, now: i64, interval: i64) -> Option<Failing> {
    if state.consecutive_failures < 1 {
        return None;
    }
    let error = state.last_error.as_deref().unwrap_or("");
    let rejected = error.contains(": HTTP 401") || error.contains(": HTTP 403");
    // A paging loop does not heal by itself: say so at once.
    let paging = error.contains("paging did not end");
    let since = state.last_success_at.unwrap_or(0);
    let failing = match stream {
        // A rejected admin key does not heal by itself either.
        Stream::Usage => {
            rejected || paging || (state.consecutive_failures >= 3 && now - since > 3 * interval)
        }
        Stream::Keys => error.contains(": HTTP 401") || paging || state.consecutive_failures >= 3,
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
                    super::super::rfc3339(t),
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
            Some(t) => format!("last success {}", super::super::rfc3339(t)),
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
    pub(super) async fn source_health(&mut self, store: &Store) -> Result<(), StoreError> {
        let interval = self.config.poll.interval.0.as_secs() as i64;
        let open = store.alerts(false).await?;
        for source in &self.config.sources {
            let scope = format!("source_unhealthy/{}", source.name);
            let mut failing = Vec::new();
            for (stream, name) in [
                (Stream::Usage, usage_stream(self.width)),
                (Stream::Keys, KEYS_STREAM.to_owned()),
                (Stream::Costs, COSTS_STREAM.to_owned()),
            ] {
                let state = store.poll_state(&source.name, &name).await?;
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
        Ok(())
    }
}
