-- Usage pages of a long catch-up (the first backfill, or a poll after downtime), held in arrival
-- order until they are moved into usage_buckets in the table's key order, many hours at once
-- (#16). A page holds one hour of every key; written straight into usage_buckets, each page
-- rewrote every key's last leaf, so a 10,000-key backfill wrote the table about 200 times over.
-- The stream's cursor moves only when staged rows are moved, in the same transaction, so rows
-- left here by a crash are discarded and read again. Columns as in usage_buckets; seq keeps
-- arrival order, so of two rows with one natural key the later wins.
CREATE TABLE usage_staging (
    seq                     INTEGER PRIMARY KEY,
    source                  TEXT    NOT NULL,
    bucket_width            INTEGER NOT NULL,
    key_id                  TEXT    NOT NULL,
    bucket_start            INTEGER NOT NULL,
    model                   TEXT    NOT NULL,
    uncached_input_tokens   INTEGER NOT NULL,
    cache_read_input_tokens INTEGER NOT NULL,
    cache_write_5m_tokens   INTEGER NOT NULL,
    cache_write_1h_tokens   INTEGER NOT NULL,
    output_tokens           INTEGER NOT NULL,
    web_search_requests     INTEGER NOT NULL,
    requests                INTEGER,
    cost_usd                REAL,
    updated_at              INTEGER NOT NULL
);
