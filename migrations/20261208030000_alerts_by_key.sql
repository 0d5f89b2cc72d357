-- The key page reads the alerts of one key.
CREATE INDEX alerts_by_key ON alerts (key_id);
