#!/usr/bin/env python3
"""The yardstick for #16: a plain cron job over sqlite3, standard library only.

What a competent engineer would write instead of keywatch: list the Anthropic API keys, fetch
the hourly usage report for the last 8 days grouped by key and model, upsert it into SQLite,
then flag each key whose latest complete hour used more than 10x the median hour of the 7 days
before it. Prints the number of flagged keys.

    python3 benches/plain_script.py --base-url http://127.0.0.1:PORT --db usage.db

The admin key comes from --admin-key or ANTHROPIC_ADMIN_KEY. `cargo bench --bench scale` runs
it against the same fake Admin API as keywatch when KEYWATCH_BENCH_PYTHON=1.
"""

import argparse
import json
import os
import sqlite3
import statistics
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

HOUR = 3600
LOOKBACK_DAYS = 8
BASELINE_HOURS = 7 * 24
SPIKE_FACTOR = 10

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    status     TEXT,
    created_at TEXT
);
CREATE TABLE IF NOT EXISTS usage_hourly (
    api_key_id              TEXT    NOT NULL,
    model                   TEXT    NOT NULL,
    bucket_start            INTEGER NOT NULL,
    uncached_input_tokens   INTEGER NOT NULL,
    cache_read_input_tokens INTEGER NOT NULL,
    cache_write_5m_tokens   INTEGER NOT NULL,
    cache_write_1h_tokens   INTEGER NOT NULL,
    output_tokens           INTEGER NOT NULL,
    web_search_requests     INTEGER NOT NULL,
    PRIMARY KEY (api_key_id, model, bucket_start)
);
"""

UPSERT = """
INSERT INTO usage_hourly VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (api_key_id, model, bucket_start) DO UPDATE SET
    uncached_input_tokens   = excluded.uncached_input_tokens,
    cache_read_input_tokens = excluded.cache_read_input_tokens,
    cache_write_5m_tokens   = excluded.cache_write_5m_tokens,
    cache_write_1h_tokens   = excluded.cache_write_1h_tokens,
    output_tokens           = excluded.output_tokens,
    web_search_requests     = excluded.web_search_requests
"""


def get(base_url, admin_key, path, params, timeout):
    """GET base_url + path with query params (a list of pairs); the decoded JSON body."""
    url = base_url.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(
        url,
        headers={
            "x-api-key": admin_key,
            "anthropic-version": "2023-06-01",
            "accept": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


def list_keys(args):
    keys = []
    params = [("limit", "1000")]
    while True:
        page = get(args.base_url, args.admin_key, "/v1/organizations/api_keys", params, args.timeout)
        keys.extend(page["data"])
        if not page.get("has_more"):
            return keys
        params = [("limit", "1000"), ("after_id", page["last_id"])]


def n(value):
    return value or 0


def usage_row(start, r):
    cache = r.get("cache_creation") or {}
    tools = r.get("server_tool_use") or {}
    return (
        r.get("api_key_id") or "workbench",
        r.get("model") or "unknown",
        start,
        n(r.get("uncached_input_tokens")),
        n(r.get("cache_read_input_tokens")),
        n(cache.get("ephemeral_5m_input_tokens")),
        n(cache.get("ephemeral_1h_input_tokens")),
        n(r.get("output_tokens")),
        n(tools.get("web_search_requests")),
    )


def store_page(args, conn, params):
    """One page of hourly buckets, upserted in one transaction: (rows, next page token or None)."""
    page = get(args.base_url, args.admin_key, "/v1/organizations/usage_report/messages", params, args.timeout)
    batch = []
    for bucket in page["data"]:
        start = int(datetime.fromisoformat(bucket["starting_at"].replace("Z", "+00:00")).timestamp())
        batch.extend(usage_row(start, r) for r in bucket["results"])
    with conn:
        conn.executemany(UPSERT, batch)
    return len(batch), page["next_page"] if page.get("has_more") else None


def fetch_usage(args, conn, since):
    """Hourly buckets from `since` to now, page by page (`next_page` while `has_more`)."""
    first = [
        ("starting_at", since.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("bucket_width", "1h"),
        ("limit", str(args.limit)),
        ("group_by[]", "api_key_id"),
        ("group_by[]", "model"),
    ]
    rows, token = store_page(args, conn, first)
    while token is not None:
        more, token = store_page(args, conn, first + [("page", token)])
        rows += more
    return rows


def spikes(conn, now):
    """Keys whose latest complete hour is over SPIKE_FACTOR x the median of the 7 days before."""
    latest = now // HOUR * HOUR - HOUR  # start of the last complete hour
    first = latest - BASELINE_HOURS * HOUR
    hours = {}  # key -> {bucket_start: tokens}
    for key, start, tokens in conn.execute(
        """
        SELECT api_key_id, bucket_start,
               SUM(uncached_input_tokens + cache_read_input_tokens + cache_write_5m_tokens
                   + cache_write_1h_tokens + output_tokens)
        FROM usage_hourly
        WHERE bucket_start >= ? AND bucket_start <= ?
        GROUP BY api_key_id, bucket_start
        """,
        (first, latest),
    ):
        hours.setdefault(key, {})[start] = tokens
    flagged = []
    for key, by_hour in hours.items():
        baseline = [by_hour.get(t, 0) for t in range(first, latest, HOUR)]  # idle hours count as 0
        median = statistics.median(baseline)
        current = by_hour.get(latest, 0)
        if current > SPIKE_FACTOR * median and current > 0:
            flagged.append((key, current, median))
    return flagged


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", default=os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"))
    ap.add_argument("--admin-key", default=os.environ.get("ANTHROPIC_ADMIN_KEY"))
    ap.add_argument("--db", default=os.environ.get("USAGE_DB", "usage.db"))
    ap.add_argument("--limit", type=int, default=24, help="hourly buckets per page (API default 24, max 168)")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    if not args.admin_key:
        sys.exit("no admin key: --admin-key or ANTHROPIC_ADMIN_KEY")

    conn = sqlite3.connect(args.db)
    conn.executescript(SCHEMA)

    keys = list_keys(args)
    with conn:
        conn.executemany(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " name = excluded.name, status = excluded.status, created_at = excluded.created_at",
            [(k["id"], k.get("name"), k.get("status"), k.get("created_at")) for k in keys],
        )

    now = datetime.now(timezone.utc)
    since = (now - timedelta(days=LOOKBACK_DAYS)).replace(minute=0, second=0, microsecond=0)
    rows = fetch_usage(args, conn, since)

    flagged = spikes(conn, int(now.timestamp()))
    conn.close()
    for key, current, median in flagged:
        print(f"spike: {key} {current} tokens in the last hour, median {median}")
    print(f"{len(keys)} keys, {rows} rows, {len(flagged)} flagged")


if __name__ == "__main__":
    main()
