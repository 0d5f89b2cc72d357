-- The notification outbox: one row per alert state change and notifier, written in the same
-- transaction as the state change, so an alert is never lost between detection and delivery.
CREATE TABLE deliveries (
    -- Sent as `webhook-id`: the same on every retry, so receivers can de-duplicate.
    id              TEXT    PRIMARY KEY,
    event_seq       INTEGER NOT NULL REFERENCES alert_events (seq),
    alert_id        TEXT    NOT NULL,
    notifier        TEXT    NOT NULL,
    -- The alert object as it was at the state change (JSON): what is delivered.
    payload         TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    -- pending | delivered | expired
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    -- What the receiver answered last (SMTP reply, HTTP status) or why it failed.
    last_result     TEXT,
    UNIQUE (event_seq, notifier)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
