-- Daily spend per key in each time zone keywatch reports in (the dashboard's, the budgets'),
-- kept current by triggers on usage_buckets so the overview and the budget checks read one row
-- per key and local day instead of every bucket. The rollup is always exactly the sum of the
-- buckets stored: inserts add, updates add the difference, deletes (retention) subtract.

-- The zones rolled up. keywatch adds the configured zones at start (backfilling from stored
-- buckets in the same transaction) and `keywatch run` drops zones no longer configured.
CREATE TABLE rollup_zones (
    zone TEXT NOT NULL PRIMARY KEY
) WITHOUT ROWID;

-- UTC offset of each zone from `from_ts` (Unix seconds) until the zone's next row. Every zone
-- has a first row at the smallest integer, so a lookup always finds an offset.
CREATE TABLE zone_offsets (
    zone        TEXT    NOT NULL,
    from_ts     INTEGER NOT NULL,
    offset_secs INTEGER NOT NULL,
    PRIMARY KEY (zone, from_ts)
) WITHOUT ROWID;

-- day: the local calendar day in `zone`, counted in days since 1970-01-01. The counters are the
-- sums of usage_buckets' columns of the same name over the day.
CREATE TABLE usage_daily (
    zone                    TEXT    NOT NULL,
    bucket_width            INTEGER NOT NULL,
    day                     INTEGER NOT NULL,
    source                  TEXT    NOT NULL,
    key_id                  TEXT    NOT NULL,
    model                   TEXT    NOT NULL,
    uncached_input_tokens   INTEGER NOT NULL,
    cache_read_input_tokens INTEGER NOT NULL,
    cache_write_5m_tokens   INTEGER NOT NULL,
    cache_write_1h_tokens   INTEGER NOT NULL,
    output_tokens           INTEGER NOT NULL,
    requests                INTEGER NOT NULL,  -- sum of the non-NULL request counts
    requests_buckets        INTEGER NOT NULL,  -- buckets with a request count (0: NULL)
    cost_usd                REAL    NOT NULL,  -- estimated USD of priced buckets
    unpriced_tokens         INTEGER NOT NULL,  -- tokens of buckets without a price
    buckets                 INTEGER NOT NULL,  -- buckets summed; 0 once retention removed them all
    PRIMARY KEY (zone, bucket_width, day, source, key_id, model)
) WITHOUT ROWID;

CREATE TRIGGER usage_daily_insert AFTER INSERT ON usage_buckets BEGIN
    INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model, uncached_input_tokens,
        cache_read_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens,
        requests, requests_buckets, cost_usd, unpriced_tokens, buckets)
    SELECT l.zone, NEW.bucket_width, l.t / 86400 - (l.t % 86400 < 0), NEW.source, NEW.key_id,
           NEW.model,
           NEW.uncached_input_tokens,
           NEW.cache_read_input_tokens,
           NEW.cache_write_5m_tokens,
           NEW.cache_write_1h_tokens,
           NEW.output_tokens,
           COALESCE(NEW.requests, 0), (NEW.requests IS NOT NULL),
           COALESCE(NEW.cost_usd, 0.0),
           CASE WHEN NEW.cost_usd IS NULL THEN NEW.uncached_input_tokens
                + NEW.cache_read_input_tokens + NEW.cache_write_5m_tokens
                + NEW.cache_write_1h_tokens + NEW.output_tokens ELSE 0 END,
           1
    FROM (SELECT z.zone AS zone,
                 NEW.bucket_start + (SELECT o.offset_secs FROM zone_offsets o
                                       WHERE o.zone = z.zone AND o.from_ts <= NEW.bucket_start
                                       ORDER BY o.from_ts DESC LIMIT 1) AS t
          FROM rollup_zones z) l
    WHERE true
    ON CONFLICT (zone, bucket_width, day, source, key_id, model) DO UPDATE SET
        uncached_input_tokens = uncached_input_tokens + excluded.uncached_input_tokens,
        cache_read_input_tokens = cache_read_input_tokens + excluded.cache_read_input_tokens,
        cache_write_5m_tokens = cache_write_5m_tokens + excluded.cache_write_5m_tokens,
        cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        requests = requests + excluded.requests,
        requests_buckets = requests_buckets + excluded.requests_buckets,
        cost_usd = cost_usd + excluded.cost_usd,
        unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens,
        buckets = buckets + excluded.buckets;
END;

CREATE TRIGGER usage_daily_delete AFTER DELETE ON usage_buckets BEGIN
    INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model, uncached_input_tokens,
        cache_read_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens,
        requests, requests_buckets, cost_usd, unpriced_tokens, buckets)
    SELECT l.zone, OLD.bucket_width, l.t / 86400 - (l.t % 86400 < 0), OLD.source, OLD.key_id,
           OLD.model,
           -OLD.uncached_input_tokens,
           -OLD.cache_read_input_tokens,
           -OLD.cache_write_5m_tokens,
           -OLD.cache_write_1h_tokens,
           -OLD.output_tokens,
           -COALESCE(OLD.requests, 0), -(OLD.requests IS NOT NULL),
           -COALESCE(OLD.cost_usd, 0.0),
           -CASE WHEN OLD.cost_usd IS NULL THEN OLD.uncached_input_tokens
                + OLD.cache_read_input_tokens + OLD.cache_write_5m_tokens
                + OLD.cache_write_1h_tokens + OLD.output_tokens ELSE 0 END,
           -1
    FROM (SELECT z.zone AS zone,
                 OLD.bucket_start + (SELECT o.offset_secs FROM zone_offsets o
                                       WHERE o.zone = z.zone AND o.from_ts <= OLD.bucket_start
                                       ORDER BY o.from_ts DESC LIMIT 1) AS t
          FROM rollup_zones z) l
    WHERE true
    ON CONFLICT (zone, bucket_width, day, source, key_id, model) DO UPDATE SET
        uncached_input_tokens = uncached_input_tokens + excluded.uncached_input_tokens,
        cache_read_input_tokens = cache_read_input_tokens + excluded.cache_read_input_tokens,
        cache_write_5m_tokens = cache_write_5m_tokens + excluded.cache_write_5m_tokens,
        cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        requests = requests + excluded.requests,
        requests_buckets = requests_buckets + excluded.requests_buckets,
        cost_usd = cost_usd + excluded.cost_usd,
        unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens,
        buckets = buckets + excluded.buckets;
END;

-- An update is the old row's removal and the new row's insertion.
CREATE TRIGGER usage_daily_update AFTER UPDATE ON usage_buckets BEGIN
    INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model, uncached_input_tokens,
        cache_read_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens,
        requests, requests_buckets, cost_usd, unpriced_tokens, buckets)
    SELECT l.zone, OLD.bucket_width, l.t / 86400 - (l.t % 86400 < 0), OLD.source, OLD.key_id,
           OLD.model,
           -OLD.uncached_input_tokens,
           -OLD.cache_read_input_tokens,
           -OLD.cache_write_5m_tokens,
           -OLD.cache_write_1h_tokens,
           -OLD.output_tokens,
           -COALESCE(OLD.requests, 0), -(OLD.requests IS NOT NULL),
           -COALESCE(OLD.cost_usd, 0.0),
           -CASE WHEN OLD.cost_usd IS NULL THEN OLD.uncached_input_tokens
                + OLD.cache_read_input_tokens + OLD.cache_write_5m_tokens
                + OLD.cache_write_1h_tokens + OLD.output_tokens ELSE 0 END,
           -1
    FROM (SELECT z.zone AS zone,
                 OLD.bucket_start + (SELECT o.offset_secs FROM zone_offsets o
                                       WHERE o.zone = z.zone AND o.from_ts <= OLD.bucket_start
                                       ORDER BY o.from_ts DESC LIMIT 1) AS t
          FROM rollup_zones z) l
    WHERE true
    ON CONFLICT (zone, bucket_width, day, source, key_id, model) DO UPDATE SET
        uncached_input_tokens = uncached_input_tokens + excluded.uncached_input_tokens,
        cache_read_input_tokens = cache_read_input_tokens + excluded.cache_read_input_tokens,
        cache_write_5m_tokens = cache_write_5m_tokens + excluded.cache_write_5m_tokens,
        cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        requests = requests + excluded.requests,
        requests_buckets = requests_buckets + excluded.requests_buckets,
        cost_usd = cost_usd + excluded.cost_usd,
        unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens,
        buckets = buckets + excluded.buckets;
    INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model, uncached_input_tokens,
        cache_read_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens,
        requests, requests_buckets, cost_usd, unpriced_tokens, buckets)
    SELECT l.zone, NEW.bucket_width, l.t / 86400 - (l.t % 86400 < 0), NEW.source, NEW.key_id,
           NEW.model,
           NEW.uncached_input_tokens,
           NEW.cache_read_input_tokens,
           NEW.cache_write_5m_tokens,
           NEW.cache_write_1h_tokens,
           NEW.output_tokens,
           COALESCE(NEW.requests, 0), (NEW.requests IS NOT NULL),
           COALESCE(NEW.cost_usd, 0.0),
           CASE WHEN NEW.cost_usd IS NULL THEN NEW.uncached_input_tokens
                + NEW.cache_read_input_tokens + NEW.cache_write_5m_tokens
                + NEW.cache_write_1h_tokens + NEW.output_tokens ELSE 0 END,
           1
    FROM (SELECT z.zone AS zone,
                 NEW.bucket_start + (SELECT o.offset_secs FROM zone_offsets o
                                       WHERE o.zone = z.zone AND o.from_ts <= NEW.bucket_start
                                       ORDER BY o.from_ts DESC LIMIT 1) AS t
          FROM rollup_zones z) l
    WHERE true
    ON CONFLICT (zone, bucket_width, day, source, key_id, model) DO UPDATE SET
        uncached_input_tokens = uncached_input_tokens + excluded.uncached_input_tokens,
        cache_read_input_tokens = cache_read_input_tokens + excluded.cache_read_input_tokens,
        cache_write_5m_tokens = cache_write_5m_tokens + excluded.cache_write_5m_tokens,
        cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        requests = requests + excluded.requests,
        requests_buckets = requests_buckets + excluded.requests_buckets,
        cost_usd = cost_usd + excluded.cost_usd,
        unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens,
        buckets = buckets + excluded.buckets;
END;
