//! Which spend counts for a budget: its scope over the inventory, summed per period. Pure.

use std::collections::HashMap;

use crate::config::{Budget, BudgetScope};
use crate::store::{StoredKey, UnpricedUsage};

/// Spend per (source, key) for each distinct budget period, keyed by its (start, end) in Unix
/// seconds.
pub type Spends = HashMap<(i64, i64), Vec<(String, String, f64)>>;

/// Usage on models without a price per budget period (only periods with some), keyed as
/// [`Spends`].
pub type UnpricedSpends = HashMap<(i64, i64), Vec<UnpricedUsage>>;

/// The inventory by (source, key id): a budget scoped by key name or workspace needs it.
pub type KeyMap = HashMap<(String, String), StoredKey>;

/// Whether the spend of `key_id` on `source` counts for `budget`.
pub fn in_scope(keys: &KeyMap, budget: &Budget, source: &str, key_id: &str) -> bool {
    covers(
        &budget.scope,
        budget.source.as_deref(),
        keys,
        source,
        key_id,
    )
}

/// Whether `scope`, limited to `only_source` when given, covers the key `key_id` of `source`
/// (budgets and containment policies alike).
pub fn covers(
    scope: &BudgetScope,
    only_source: Option<&str>,
    keys: &KeyMap,
    source: &str,
    key_id: &str,
) -> bool {
    if only_source.is_some_and(|s| s != source) {
        return false;
    }
    let key = keys.get(&(source.to_owned(), key_id.to_owned()));
    match scope {
        BudgetScope::Organisation => true,
        BudgetScope::Key(id) => key_id == id,
        BudgetScope::KeyName(glob) => key
            .and_then(|k| k.name.as_deref())
            .is_some_and(|n| glob.matches(n)),
        BudgetScope::Workspace(ws) => {
            key.and_then(|k| k.workspace_id.as_deref()) == Some(ws.as_str())
        }
    }
}

/// Spend of `b`'s scope in the period `span`.
pub fn spend_in(spends: &Spends, span: (i64, i64), keys: &KeyMap, b: &Budget) -> f64 {
    crate::report::sum_usd(
        spends
            .get(&span)
            .into_iter()
            .flatten()
            .filter(|(s, k, _)| in_scope(keys, b, s, k))
            .map(|(_, _, c)| *c),
    )
}

/// Tokens on models without a price in `b`'s scope in the period `span`, per model (sorted):
/// what `b`'s dollars leave out.
pub fn unpriced_in(
    unpriced: &UnpricedSpends,
    span: (i64, i64),
    keys: &KeyMap,
    b: &Budget,
) -> Vec<(String, i64)> {
    let mut by_model: std::collections::BTreeMap<&str, i64> = Default::default();
    for u in unpriced.get(&span).into_iter().flatten() {
        if in_scope(keys, b, &u.source, &u.key_id) {
            let t = by_model.entry(u.model.as_str()).or_default();
            *t = t.saturating_add(u.tokens);
        }
    }
    by_model
        .into_iter()
        .map(|(m, t)| (m.to_owned(), t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(source: Option<&str>, scope: BudgetScope) -> Budget {
        Budget {
            name: "team".to_owned(),
            source: source.map(str::to_owned),
            scope,
            daily_usd: Some(100.0),
            monthly_usd: None,
            thresholds: vec![50, 100],
            timezone: chrono_tz::UTC,
        }
    }

    fn keys() -> KeyMap {
        let key = |source: &str, id: &str, name: &str, ws: &str| StoredKey {
            source: source.to_owned(),
            key_id: id.to_owned(),
            name: Some(name.to_owned()),
            status: "active".to_owned(),
            created_at: None,
            workspace_id: Some(ws.to_owned()),
            partial_key_hint: None,
            first_seen: 0,
            last_seen: 0,
            in_inventory: true,
            status_changed_at: None,
        };
        [
            key("a", "k1", "prod-rag", "ws1"),
            key("a", "k2", "dev-batch", "ws2"),
            key("b", "k3", "prod-chat", "ws1"),
        ]
        .into_iter()
        .map(|k| ((k.source.clone(), k.key_id.clone()), k))
        .collect()
    }

    /// The keys of `keys()` that count for `b`.
    fn counted(b: &Budget) -> Vec<&'static str> {
        let keys = keys();
        [("a", "k1"), ("a", "k2"), ("b", "k3"), ("b", "gone")]
            .into_iter()
            .filter(|(s, k)| in_scope(&keys, b, s, k))
            .map(|(_, k)| k)
            .collect()
    }

    #[test]
    fn a_scope_counts_its_keys_and_a_source_narrows_it() {
        assert_eq!(
            counted(&budget(None, BudgetScope::Organisation)),
            ["k1", "k2", "k3", "gone"]
        );
        assert_eq!(
            counted(&budget(Some("b"), BudgetScope::Organisation)),
            ["k3", "gone"]
        );
        assert_eq!(
            counted(&budget(None, BudgetScope::Key("k2".to_owned()))),
            ["k2"]
        );
        let prod = glob::Pattern::new("prod-*").unwrap();
        assert_eq!(
            counted(&budget(None, BudgetScope::KeyName(prod))),
            ["k1", "k3"]
        );
        assert_eq!(
            counted(&budget(Some("a"), BudgetScope::Workspace("ws1".to_owned()))),
            ["k1"]
        );
    }

    #[test]
    fn spend_in_sums_the_scope_of_one_span_only() {
        let span = (0, 86_400);
        let spends = Spends::from([
            (
                span,
                vec![
                    ("a".to_owned(), "k1".to_owned(), 1.25),
                    ("a".to_owned(), "k2".to_owned(), 2.0),
                    ("b".to_owned(), "k3".to_owned(), 4.0),
                ],
            ),
            (
                (86_400, 172_800),
                vec![("a".to_owned(), "k1".to_owned(), 8.0)],
            ),
        ]);
        let prod = budget(
            None,
            BudgetScope::KeyName(glob::Pattern::new("prod-*").unwrap()),
        );
        assert_eq!(spend_in(&spends, span, &keys(), &prod), 5.25);
        assert_eq!(spend_in(&spends, (1, 2), &keys(), &prod), 0.0);
    }
}
