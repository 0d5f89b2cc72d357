//! Month-end forecasts of budget spend.
//!
//! Method: the month-to-date spend plus the *median* daily spend of the last seven complete
//! days times the days left in the month. The median ignores a single spike day (a mean would
//! carry it to the month's end) while following a lasting change in the run rate within a few
//! days.

use statrs::statistics::{Data, OrderStatistics};

const DAY: f64 = 86_400.0;

/// A month-end projection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// USD per day: the median of the recent complete days.
    pub daily_rate: f64,
    /// Month-to-date spend plus the rate over the rest of the month.
    pub projected: f64,
    /// When the limit is (or will be, at this pace) reached; `None` if not this month.
    pub crosses_at: Option<i64>,
}

/// Projects `spent` (month to date, at `now`) to `month_end` from `recent_days` (daily spend of
/// the last complete days, any order).
pub fn project(spent: f64, recent_days: &[f64], now: i64, month_end: i64, limit: f64) -> Forecast {
    let daily_rate = if recent_days.is_empty() {
        0.0
    } else {
        Data::new(recent_days.to_vec()).median().max(0.0)
    };
    let days_left = ((month_end - now) as f64 / DAY).max(0.0);
    let projected = spent + daily_rate * days_left;
    let crosses_at = if spent >= limit {
        Some(now)
    } else if daily_rate > 0.0 {
        let at = now + ((limit - spent) / daily_rate * DAY) as i64;
        (at < month_end).then_some(at)
    } else {
        None
    };
    Forecast {
        daily_rate,
        projected,
        crosses_at,
    }
}

/// Whether the `budget_forecast` rule fires: the limit will be crossed more than three days
/// before the month ends (and has not been crossed yet — the budget rule reports that).
pub fn warns(f: &Forecast, spent: f64, limit: f64, month_end: i64) -> bool {
    spent < limit && f.crosses_at.is_some_and(|at| month_end - at > 3 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = 86_400;

    #[test]
    fn a_linear_series_projects_to_the_month_end() {
        // Day 10 of a 30-day month at midnight: $100 spent, $10 a day.
        let f = project(100.0, &[10.0; 7], 10 * D, 30 * D, 250.0);
        assert!((f.projected - 300.0).abs() < 1e-9);
        assert_eq!(f.crosses_at, Some(25 * D));
        assert!(warns(&f, 100.0, 250.0, 30 * D));
    }

    #[test]
    fn one_spike_day_does_not_carry_to_the_month_end() {
        let f = project(
            600.0,
            &[10.0, 10.0, 500.0, 10.0, 10.0, 10.0, 10.0],
            10 * D,
            30 * D,
            1_000.0,
        );
        assert!((f.daily_rate - 10.0).abs() < 1e-9);
        assert!((f.projected - 800.0).abs() < 1e-9);
        assert_eq!(f.crosses_at, None);
        assert!(!warns(&f, 600.0, 1_000.0, 30 * D));
    }

    #[test]
    fn crossing_in_the_last_three_days_does_not_warn() {
        let f = project(100.0, &[10.0; 7], 10 * D, 30 * D, 280.0);
        assert_eq!(f.crosses_at, Some(28 * D));
        assert!(!warns(&f, 100.0, 280.0, 30 * D));
    }
}
