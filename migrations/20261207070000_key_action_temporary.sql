-- Whether a failed key action may succeed if tried again (a timeout, a rate limit, a server
-- error): only those are retried by a containment policy; a refusal (403, 404, a change the
-- provider does not have) is reported once.
ALTER TABLE key_actions ADD COLUMN temporary INTEGER NOT NULL DEFAULT 0;
