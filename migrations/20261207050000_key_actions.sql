-- Every change keywatch made (or, for a dry-run policy, would have made) to a key at its
-- provider (#18): by hand (`keywatch keys deactivate|activate|delete`) or by a containment
-- policy in answer to a firing alert. Kept like alerts; shown by `keywatch alerts`, the alert
-- object's `actions`, `keywatch export` and the dashboard's key page.
CREATE TABLE key_actions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,  -- Unix seconds
    source    TEXT    NOT NULL,
    key_id    TEXT    NOT NULL,
    action    TEXT    NOT NULL,  -- deactivate | activate | delete
    result    TEXT    NOT NULL,  -- done | failed | dry-run
    by        TEXT    NOT NULL,  -- "policy:NAME" or "cli:USER"
    reason    TEXT    NOT NULL,
    alert_id  TEXT,              -- the alert a policy answered
    policy    TEXT,              -- the policy's name
    answer    TEXT    NOT NULL   -- what the provider answered (redacted, at most 2,000 chars)
);

CREATE INDEX key_actions_by_key ON key_actions (source, key_id, at);
CREATE INDEX key_actions_by_alert ON key_actions (alert_id, policy);
