//! The `rotation_stalled` rule (#18): a rotation is create the new key, move the traffic,
//! deactivate the old key after 24–48 h. A key whose successor (the same name apart from a
//! later date suffix, `prod-api-gateway-2026-04-25` → `prod-api-gateway-2026-07-20`) has taken
//! traffic for 48 hours, and which still carries traffic itself, has a stalled rotation.

/// What the person on call should do when this rule fires (email, Slack, PagerDuty).
pub const ADVICE: &str = "Find what still calls the old key (its recent usage by model in keywatch history), move it to the new key, then deactivate the old one (keywatch keys deactivate).";

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;

use super::{money, Pass};
use crate::alerts::Rule;
use crate::config::Severity;
use crate::store::AlertChange;

/// How long the successor must have carried traffic before the old key's traffic counts as
/// stalled: 48 hours.
pub const GRACE_SECS: i64 = 48 * 3_600;
/// The old key still carries traffic when it was used within this span of buckets: 24 hours.
pub const STILL_USED_SECS: i64 = 24 * 3_600;

/// `name` split into its stem and its date suffix (`-YYYY-MM-DD` or `-YYYYMMDD`), if it has
/// one.
pub fn dated(name: &str) -> Option<(&str, NaiveDate)> {
    let try_suffix = |len: usize, fmt: &str| -> Option<(&str, NaiveDate)> {
        let cut = name.len().checked_sub(len + 1)?;
        if !name.is_char_boundary(cut) || name.as_bytes()[cut] != b'-' {
            return None;
        }
        let date = NaiveDate::parse_from_str(&name[cut + 1..], fmt).ok()?;
        Some((&name[..cut], date))
    };
    try_suffix(10, "%Y-%m-%d").or_else(|| try_suffix(8, "%Y%m%d"))
}

/// A key's use in the window: first and last bucket with traffic, and its traffic in the last
/// [`STILL_USED_SECS`].
#[derive(Clone, Copy)]
struct Use {
    first: Option<i64>,
    last: Option<i64>,
    recent: f64,
    /// The start of the latest run of use (after a gap of at least [`STILL_USED_SECS`]).
    run_start: Option<i64>,
}

/// A dated member of a key family: its date, id and name.
type Member<'a> = (NaiveDate, &'a str, &'a str);

impl Pass<'_> {
    /// The `rotation_stalled` rule: for each active key with a dated name whose newest active
    /// successor (same source, same stem, a later date) first carried traffic at least
    /// [`GRACE_SECS`] before the judged bucket, while the old key was used within the last
    /// [`STILL_USED_SECS`]; resolves when the old key goes quiet, is deactivated or is gone.
    pub fn rotations(&mut self) {
        let inputs = self.inputs;
        let used: HashMap<(&str, &str), Use> = inputs
            .series
            .iter()
            .map(|s| {
                let mut first = None;
                let mut last: Option<i64> = None;
                let mut recent = 0.0;
                let mut run_start = None;
                for (t, v) in s.points.iter() {
                    if v > 0.0 {
                        first = first.or(Some(t));
                        if last.is_none_or(|l| t - l >= STILL_USED_SECS) {
                            run_start = Some(t);
                        }
                        last = Some(t);
                        if t > self.judged - STILL_USED_SECS {
                            recent += v;
                        }
                    }
                }
                (
                    (s.source.as_str(), s.key_id.as_str()),
                    Use {
                        first,
                        last,
                        recent,
                        run_start,
                    },
                )
            })
            .collect();
        // Active dated keys by (source, stem).
        let mut families: HashMap<(&str, &str), Vec<Member>> = HashMap::new();
        // A successor whose traffic began at the window's start may be as old as the window
        // or older: two keys used side by side for good (blue/green, per region), not a
        // rotation. Only a successor that started within the window counts.
        let window_start = self.judged - inputs.window;
        for k in self.keys.values() {
            if k.status != "active" {
                continue;
            }
            if let Some((stem, date)) = k.name.as_deref().and_then(dated) {
                let name = k.name.as_deref().unwrap_or_default();
                families
                    .entry((k.source.as_str(), stem))
                    .or_default()
                    .push((date, k.key_id.as_str(), name));
            }
        }
        let mut firing = HashSet::new();
        for ((source, _), mut members) in families {
            if members.len() < 2 {
                continue;
            }
            members.sort();
            let Some(&(_, new_id, new_name)) = members.last() else {
                continue;
            };
            let Some(since) = used.get(&(source, new_id)).and_then(|u| u.first) else {
                continue;
            };
            if since <= window_start + self.width || self.judged - since < GRACE_SECS {
                continue;
            }
            let created = |id: &str| {
                self.keys
                    .get(&(source.to_owned(), id.to_owned()))
                    .and_then(|k| k.created_at)
            };
            for &(_, old_id, old_name) in &members[..members.len() - 1] {
                let Some(&Use {
                    last: Some(last),
                    recent,
                    run_start,
                    ..
                }) = used.get(&(source, old_id))
                else {
                    continue;
                };
                // A successor created before the old key is not its successor.
                if let (Some(old), Some(new)) = (created(old_id), created(new_id)) {
                    if new <= old {
                        continue;
                    }
                }
                if last <= self.judged - STILL_USED_SECS {
                    continue;
                }
                let scope = format!("rotation_stalled/{source}/{old_id}");
                firing.insert(scope.clone());
                let metric = if self.config.spike.metric == crate::detect::SpikeMetric::Cost {
                    money(recent)
                } else {
                    format!("{recent:.0} tokens")
                };
                let hours = (self.judged - since) / 3_600;
                let summary = format!(
                    "{old_name} ({source}) still carries traffic ({metric} in the last 24 h, last \
                     used {}) {hours} h after its successor {new_name} took its first request: \
                     move the remaining callers to {new_name}, then deactivate the old key \
                     (keywatch keys deactivate --key {old_id} --source {source} --reason \
                     \"rotated to {new_name}\")",
                    crate::alerts::rfc3339(last)
                );
                if let Some(mut a) = self.open.get(&scope).cloned() {
                    a.observed = Some(recent);
                    a.summary = summary;
                    self.changes.push(AlertChange::Fire(Box::new(a)));
                    continue;
                }
                // One episode per run of the old key's use: traffic that returns after a quiet
                // day is a new alert.
                let episode = format!("{new_id}@{}", run_start.unwrap_or(last));
                let mut a =
                    self.base_alert(Rule::RotationStalled, scope, &episode, Severity::Warning);
                a.summary = summary;
                a.source = Some(source.to_owned());
                a.key_id = Some(old_id.to_owned());
                a.key_name = Some(old_name.to_owned());
                a.observed = Some(recent);
                a.unit = if self.config.spike.metric == crate::detect::SpikeMetric::Cost {
                    "usd".to_owned()
                } else {
                    "tokens".to_owned()
                };
                a.period = Some((
                    self.judged + self.width - STILL_USED_SECS,
                    self.judged + self.width,
                ));
                a.starts_at = since + GRACE_SECS;
                self.changes.push(AlertChange::Fire(Box::new(a)));
            }
        }
        self.resolve_quiet(Rule::RotationStalled, &firing, self.now);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{config, fired, inputs, key, run, with_key, NOW};
    use super::super::Pass;
    use super::*;
    use crate::store::{KeySeries, Points};

    const H: i64 = 3_600;

    fn series(key_id: &str, from: i64, to: i64) -> KeySeries {
        KeySeries {
            source: "src".to_owned(),
            key_id: key_id.to_owned(),
            points: Points::from_rows(H, (from..=to).step_by(H as usize).map(|t| (t, 1.0))),
        }
    }

    #[test]
    fn names_split_into_stem_and_date() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            dated("prod-api-gateway-2026-04-25"),
            Some(("prod-api-gateway", d("2026-04-25")))
        );
        assert_eq!(dated("ci-bot-20260720"), Some(("ci-bot", d("2026-07-20"))));
        assert_eq!(dated("prod-api-gateway"), None);
        assert_eq!(dated("2026-04-25"), None, "no stem");
        assert_eq!(dated("x-2026-13-01"), None);
        assert_eq!(dated("é-2026-01-01ü"), None, "no panic on multibyte");
    }

    #[test]
    fn an_old_key_with_traffic_48_hours_after_its_successor_started_fires_once() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        with_key(
            &mut i,
            key(
                "k_old",
                "prod-gw-2026-04-25",
                "active",
                Some(NOW - 200 * 86_400),
            ),
        );
        with_key(
            &mut i,
            key(
                "k_new",
                "prod-gw-2026-07-20",
                "active",
                Some(NOW - 80 * 86_400),
            ),
        );
        let judged = i.judged;
        i.series = vec![
            series("k_old", judged - 100 * H, judged),
            series("k_new", judged - 50 * H, judged),
        ];
        let changes = run(&i, &c, Pass::rotations);
        let got = fired(&changes);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0].key_id.as_deref(), Some("k_old"));
        assert!(
            got[0]
                .summary
                .contains("keywatch keys deactivate --key k_old"),
            "{}",
            got[0].summary
        );

        // 47 hours in: not yet. The old key quiet for a day: nothing.
        i.series = vec![
            series("k_old", judged - 100 * H, judged),
            series("k_new", judged - 47 * H, judged),
        ];
        assert!(fired(&run(&i, &c, Pass::rotations)).is_empty());
        i.series = vec![
            series("k_old", judged - 100 * H, judged - 25 * H),
            series("k_new", judged - 50 * H, judged),
        ];
        assert!(fired(&run(&i, &c, Pass::rotations)).is_empty());
        // Both used through the whole window (blue/green): not a rotation.
        let start = judged - i.window;
        i.series = vec![
            series("k_old", start, judged),
            series("k_new", start, judged),
        ];
        assert!(fired(&run(&i, &c, Pass::rotations)).is_empty());
    }
}
