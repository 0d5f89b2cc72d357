-- Billed cost per key and UTC day, as the provider reports it (OpenAI /costs), beside the
-- estimated cost in usage_buckets. Re-polling a day overwrites it.
CREATE TABLE billed_costs (
    source     TEXT    NOT NULL,
    day_start  INTEGER NOT NULL,  -- Unix seconds, UTC midnight
    key_id     TEXT    NOT NULL,
    amount_usd REAL    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, day_start, key_id)
) WITHOUT ROWID;
