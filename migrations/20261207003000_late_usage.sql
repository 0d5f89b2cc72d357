-- Usage that arrived late (#17): what a re-read of `poll.late_window` found in buckets the
-- cursor had already passed, per source and UTC day: the change in estimated dollars and
-- tokens, added up over re-reads. `report --reconcile` shows it beside each day.
CREATE TABLE late_usage (
    source      TEXT    NOT NULL,
    day_start   INTEGER NOT NULL,  -- Unix seconds, UTC midnight
    usd         REAL    NOT NULL,
    tokens      INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (source, day_start)
) WITHOUT ROWID;
