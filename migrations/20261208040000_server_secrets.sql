-- Random secrets keywatch makes for itself (never configured, never printed): the browser
-- sessions' key is derived from one and the dashboard token, so a session cookie cannot be
-- used to guess the token offline.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    -- 32 random bytes, hex.
    value TEXT NOT NULL
) WITHOUT ROWID;
