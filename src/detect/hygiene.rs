//! Key hygiene: keys older than the rotation policy, and usage on deactivated keys.

const DAY: i64 = 86_400;

/// Statuses under which a key must not be used any more.
pub fn is_deactivated(status: &str) -> bool {
    matches!(status, "inactive" | "archived" | "expired" | "deleted")
}

/// A key's age in whole days.
pub fn age_days(created_at: i64, now: i64) -> i64 {
    (now - created_at).div_euclid(DAY)
}

/// An active key older than `max_days` (a key exactly `max_days` old is not yet over).
pub fn over_age(status: &str, created_at: Option<i64>, now: i64, max_days: u32) -> bool {
    status == "active" && created_at.is_some_and(|c| now - c > i64::from(max_days) * DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_exactly_at_the_age_limit_is_not_over_it() {
        let now = 1_800_000_000;
        assert!(!over_age("active", Some(now - 90 * DAY), now, 90));
        assert!(over_age("active", Some(now - 90 * DAY - 1), now, 90));
        assert!(!over_age("inactive", Some(now - 200 * DAY), now, 90));
        assert!(!over_age("active", None, now, 90));
        assert_eq!(age_days(now - 209 * DAY - 5, now), 209);
    }

    #[test]
    fn deactivated_statuses() {
        assert!(
            is_deactivated("inactive") && is_deactivated("archived") && is_deactivated("expired")
        );
        assert!(!is_deactivated("active") && !is_deactivated("unknown"));
    }
}
