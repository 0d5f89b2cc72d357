-- The unpriced_usage rule and the spike rule's token fallback read the rows without a price
-- of the baseline window on every detection pass: a partial index keeps that read to the few
-- unpriced rows instead of the whole window.
CREATE INDEX usage_buckets_unpriced ON usage_buckets (bucket_width, bucket_start)
    WHERE cost_usd IS NULL;
