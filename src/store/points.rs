//! One key's buckets of one width, held densely: the daemon keeps every key's detection window
//! for its life (10,000 keys × 168 hours), and a `(start, value)` pair per bucket took 16
//! bytes where a value alone takes 8 (heaptrack: 27 MB of the daemon's 57 MB peak heap).

/// Buckets with data, oldest first: `values[i]` is the bucket starting at `first + i × width`;
/// a bucket without a row is NaN (values read from the store never are: they are integers
/// times a scale), so "no row" and "a row of 0" stay apart, as the rules need (the newest
/// minute with any row is a source's data edge). The first and last slots always hold data.
#[derive(Debug, Clone)]
pub struct Points {
    first: i64,
    width: i64,
    values: Vec<f64>,
}

/// No buckets.
impl Default for Points {
    fn default() -> Self {
        Self::from_rows(1, [])
    }
}

impl Points {
    /// Buckets of `width` seconds from `(start, value)` rows in any order; rows of one bucket
    /// (several models) are added up. The values are sized exactly.
    pub fn from_rows(width: i64, rows: impl IntoIterator<Item = (i64, f64)>) -> Self {
        let width = width.max(1);
        let rows: Vec<(i64, f64)> = rows.into_iter().collect();
        let (Some(lo), Some(hi)) = (
            rows.iter().map(|r| r.0).min(),
            rows.iter().map(|r| r.0).max(),
        ) else {
            return Self {
                first: 0,
                width,
                values: Vec::new(),
            };
        };
        let first = lo;
        let n = ((hi - first).div_euclid(width) + 1) as usize;
        let mut values = vec![f64::NAN; n];
        for (start, value) in rows {
            let slot = &mut values[(start - first).div_euclid(width) as usize];
            *slot = if slot.is_nan() { value } else { *slot + value };
        }
        Self {
            first,
            width,
            values,
        }
    }

    /// The buckets with data, oldest first: (start, value).
    pub fn iter(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, v)| (self.first + i as i64 * self.width, *v))
    }

    /// The oldest bucket with data.
    pub fn first(&self) -> Option<(i64, f64)> {
        self.values.first().map(|v| (self.first, *v))
    }

    /// The newest bucket with data.
    pub fn last(&self) -> Option<(i64, f64)> {
        let n = self.values.len().checked_sub(1)?;
        Some((self.first + n as i64 * self.width, self.values[n]))
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// How many buckets have data.
    pub fn len(&self) -> usize {
        self.values.iter().filter(|v| !v.is_nan()).count()
    }

    /// Buckets held, with or without data (the memory the series takes, in values).
    pub fn capacity(&self) -> usize {
        self.values.capacity()
    }

    /// One value per `width` from `from` to `to` (inclusive), 0 where there is no row (see
    /// `alerts::dense_values`).
    pub fn dense(&self, from: i64, to: i64, width: i64) -> Vec<f64> {
        let n = if to >= from {
            ((to - from) / width + 1) as usize
        } else {
            0
        };
        let mut values = vec![0.0; n];
        for (start, value) in self.iter() {
            if (from..=to).contains(&start) {
                values[((start - from) / width) as usize] = value;
            }
        }
        values
    }

    /// Drops the buckets that start before `from`.
    pub fn keep_from(&mut self, from: i64) {
        let drop = self
            .values
            .iter()
            .enumerate()
            .position(|(i, v)| !v.is_nan() && self.first + i as i64 * self.width >= from);
        let drop = drop.unwrap_or(self.values.len());
        self.values.drain(..drop);
        self.first += drop as i64 * self.width;
    }

    /// Drops the buckets that start at or after `lo`.
    pub fn keep_before(&mut self, lo: i64) {
        let keep = self
            .values
            .iter()
            .enumerate()
            .rposition(|(i, v)| !v.is_nan() && self.first + (i as i64) * self.width < lo);
        self.values.truncate(keep.map_or(0, |i| i + 1));
    }

    /// Adds `later`'s buckets, which all start after this series' last; the values grow by
    /// exactly what they need (the window is kept for the daemon's life: a growing Vec doubles
    /// its capacity). Buckets at or before this series' last are ignored.
    pub fn append(&mut self, later: Points) {
        let Some((after, _)) = self.last() else {
            *self = later;
            return;
        };
        let rows: Vec<(i64, f64)> = later.iter().filter(|r| r.0 > after).collect();
        let Some(&(end, _)) = rows.last() else {
            return;
        };
        let n = ((end - self.first).div_euclid(self.width) + 1) as usize;
        self.values.reserve_exact(n - self.values.len());
        self.values.resize(n, f64::NAN);
        for (start, value) in rows {
            self.values[(start - self.first).div_euclid(self.width) as usize] = value;
        }
    }
}

/// Equal when the same buckets hold the same values (gaps are NaN, which equals nothing).
impl PartialEq for Points {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::Points;

    fn rows(p: &Points) -> Vec<(i64, f64)> {
        p.iter().collect()
    }

    #[test]
    fn rows_of_one_bucket_add_up_and_gaps_are_not_zero_rows() {
        let p = Points::from_rows(10, [(40, 1.0), (10, 2.0), (40, 3.0), (30, 0.0)]);
        assert_eq!(rows(&p), [(10, 2.0), (30, 0.0), (40, 4.0)]);
        assert_eq!((p.first(), p.last()), (Some((10, 2.0)), Some((40, 4.0))));
        assert_eq!(p.len(), 3);
        assert_eq!(p.capacity(), 4);
        assert_eq!(p.dense(0, 50, 10), [0.0, 2.0, 0.0, 0.0, 4.0, 0.0]);
        assert_eq!(p.dense(20, 30, 10), [0.0, 0.0]);
        assert!(p.dense(30, 20, 10).is_empty());
        assert!(Points::from_rows(10, []).is_empty());
    }

    #[test]
    fn trimming_keeps_data_at_both_ends() {
        let mut p = Points::from_rows(10, [(10, 1.0), (40, 4.0), (60, 6.0)]);
        p.keep_from(20);
        assert_eq!(p.first(), Some((40, 4.0)));
        p.keep_before(60);
        assert_eq!(p.last(), Some((40, 4.0)));
        p.keep_before(40);
        assert!(p.is_empty() && p.first().is_none() && p.last().is_none());
        let mut q = Points::from_rows(10, [(10, 1.0)]);
        q.keep_from(11);
        assert!(q.is_empty());
    }

    #[test]
    fn appending_extends_exactly_and_ignores_what_is_not_later() {
        let mut p = Points::from_rows(10, (0..5).map(|i| (i * 10, 1.0)));
        p.keep_from(10);
        p.append(Points::from_rows(10, [(40, 9.0), (70, 7.0)]));
        assert_eq!(
            rows(&p),
            [(10, 1.0), (20, 1.0), (30, 1.0), (40, 1.0), (70, 7.0)]
        );
        assert_eq!(p.capacity(), 7);
        let mut empty = Points::from_rows(10, []);
        empty.append(Points::from_rows(10, [(5, 1.0)]));
        assert_eq!(rows(&empty), [(5, 1.0)]);
    }
}
