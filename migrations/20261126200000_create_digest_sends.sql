-- Digest outbox: one row per digest, period and notifier. The primary key makes a digest go out
-- once per period, across restarts; rows are retried like alert deliveries.
CREATE TABLE digest_sends (
    digest          TEXT    NOT NULL,
    period          TEXT    NOT NULL,  -- e.g. 2026-11-25 or 2026-W47
    notifier        TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,  -- plain text
    payload         TEXT    NOT NULL,  -- JSON, for webhooks
    csv             TEXT    NOT NULL,  -- the period's report, attached to emails
    state           TEXT    NOT NULL,  -- pending | delivered | expired
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_result     TEXT,
    PRIMARY KEY (digest, period, notifier)
) WITHOUT ROWID;
