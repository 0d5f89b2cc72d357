-- The HTTP status a provider answered a stream's last failed poll with (401, 403, 429, 5xx…),
-- NULL after a success and after a failure without an answer (timeout, network, paging).
-- The source_unhealthy rule reads it instead of searching the error text. Rows written before
-- this migration have NULL here until their stream is polled again.
ALTER TABLE poll_state ADD COLUMN last_status INTEGER;
