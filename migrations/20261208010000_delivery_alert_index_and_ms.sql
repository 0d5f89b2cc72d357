-- What was delivered for an alert to a notifier is read when an Alertmanager is told which label
-- sets an alert no longer has; and the delivery latency is measured in milliseconds.
CREATE INDEX deliveries_by_alert ON deliveries (alert_id, notifier);
-- Wall-clock milliseconds when the delivery was queued (NULL for rows queued before this).
ALTER TABLE deliveries ADD COLUMN queued_at_ms INTEGER;
