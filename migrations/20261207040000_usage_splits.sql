-- The part of a usage row (source, key, width, bucket, model) that ran at a price class other
-- than standard (#17): a service tier such as batch or priority, US-only inference, fast mode.
-- `price_class` is the tier, then `/us` and `/fast` where they apply (`batch`, `standard/us`,
-- `priority/fast`); the row's standard part is the row less its splits. Written with the row
-- on every read of its bucket (the row's old splits replaced); pruned with the row.
CREATE TABLE usage_splits (
    source                  TEXT    NOT NULL,
    key_id                  TEXT    NOT NULL,
    bucket_width            INTEGER NOT NULL,
    bucket_start            INTEGER NOT NULL,
    model                   TEXT    NOT NULL,
    price_class             TEXT    NOT NULL,
    uncached_input_tokens   INTEGER NOT NULL,
    cache_read_input_tokens INTEGER NOT NULL,
    cache_write_5m_tokens   INTEGER NOT NULL,
    cache_write_1h_tokens   INTEGER NOT NULL,
    output_tokens           INTEGER NOT NULL,
    cost_usd                REAL,              -- NULL when the model has no price
    updated_at              INTEGER NOT NULL,
    PRIMARY KEY (source, key_id, bucket_width, bucket_start, model, price_class)
) WITHOUT ROWID;

CREATE INDEX usage_splits_time ON usage_splits (bucket_width, bucket_start, source);
