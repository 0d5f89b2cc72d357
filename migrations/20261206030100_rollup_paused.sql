-- Moving staged usage (#16) keeps the daily rollup per batch instead of per row: inside its
-- transaction it inserts a row into rollup_paused, writes the buckets, adds up their days in
-- one statement, and deletes the row before committing, so no other connection ever sees the
-- pause. Every other write (a page stored directly, an edit by hand) still goes through the
-- row triggers, which are otherwise those of 20261126210000_daily_rollup.sql. The delete
-- trigger (retention) is never paused.
CREATE TABLE rollup_paused (
    paused INTEGER NOT NULL PRIMARY KEY
) WITHOUT ROWID;

DROP TRIGGER usage_daily_insert;
DROP TRIGGER usage_daily_update;

CREATE TRIGGER usage_daily_insert AFTER INSERT ON usage_buckets
    WHEN NOT EXISTS (SELECT 1 FROM rollup_paused) BEGIN
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

-- An update is the old row's removal and the new row's insertion.
CREATE TRIGGER usage_daily_update AFTER UPDATE ON usage_buckets
    WHEN NOT EXISTS (SELECT 1 FROM rollup_paused) BEGIN
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
