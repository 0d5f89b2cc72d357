-- The key page's incident view reads an alert's state changes by alert.
CREATE INDEX alert_events_by_alert ON alert_events (alert_id, seq);
