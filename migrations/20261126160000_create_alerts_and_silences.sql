-- When keywatch saw a key's status change (NULL: the key had this status when first listed).
ALTER TABLE api_keys ADD COLUMN status_changed_at INTEGER;

-- Alerts: one row per condition episode. `id` is stable: derived from the rule, the scope and
-- the episode, so re-running detection over the same data finds the same row.
CREATE TABLE alerts (
    id                 TEXT    PRIMARY KEY,
    -- rule/source/key (or rule/budget/period/threshold …): what open alerts are matched by.
    scope              TEXT    NOT NULL,
    rule               TEXT    NOT NULL,
    severity           TEXT    NOT NULL,
    status             TEXT    NOT NULL,  -- firing | resolved
    source             TEXT,
    key_id             TEXT,
    key_name           TEXT,
    budget             TEXT,
    summary            TEXT    NOT NULL,
    observed           REAL,
    baseline           REAL,
    threshold          REAL,
    unit               TEXT    NOT NULL,
    period_start       INTEGER,
    period_end         INTEGER,
    starts_at          INTEGER NOT NULL,
    ends_at            INTEGER,
    first_evaluated_at INTEGER NOT NULL,
    last_evaluated_at  INTEGER NOT NULL
);
CREATE INDEX alerts_by_status ON alerts (status, scope);

-- Every state change of an alert (firing, resolved): what notifications are made of.
CREATE TABLE alert_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   TEXT    NOT NULL REFERENCES alerts (id),
    status     TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    -- 1 when a silence matched at the time: detection went on, notification does not.
    silenced   INTEGER NOT NULL DEFAULT 0
);

-- Operator silences: by key id or by rule, until they expire.
CREATE TABLE silences (
    id         TEXT    PRIMARY KEY,
    key_id     TEXT,
    rule       TEXT,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    removed_at INTEGER
);
