//! One key's buckets of one width, held in whichever form is smaller: the daemon keeps every
//! key's detection windows for its life. The hourly window of a busy key has a row every hour,
//! where a value per bucket (8 bytes) beats a `(start, value)` pair per row (16 bytes; heaptrack:
//! 27 MB of the daemon's 57 MB peak heap at 10,000 keys × 168 hours); the minute window of a
//! key busy one minute in ten is better kept as pairs.

/// Buckets with data, oldest first; "no row" and "a row of 0" stay apart, as the rules need
/// (the newest minute with any row is a source's data edge).
#[derive(Debug, Clone)]
pub struct Points {
    width: i64,
    slots: Slots,
}

#[derive(Debug, Clone)]
enum Slots {
    /// `values[i]` is the bucket starting at `first + i × width`; a bucket without a row is NaN
    /// (values read from the store never are: they are integers times a scale). The first and
    /// last values always hold data.
    Dense { first: i64, values: Vec<f64> },
    /// `(start, value)` of each bucket with data, by start.
    Sparse(Vec<(i64, f64)>),
}

/// No buckets.
impl Default for Points {
    fn default() -> Self {
        Self::from_rows(1, [])
    }
}

impl Points {
    /// Buckets of `width` seconds from `(start, value)` rows in any order; rows of one bucket
    /// (several models) are added up. Dense when at least half the buckets between the first
    /// and the last have data, else sparse; sized exactly either way.
    pub fn from_rows(width: i64, rows: impl IntoIterator<Item = (i64, f64)>) -> Self {
        let width = width.max(1);
        let mut rows: Vec<(i64, f64)> = rows.into_iter().collect();
        rows.sort_by_key(|r| r.0);
        rows.dedup_by(|later, first| {
            if later.0 != first.0 {
                return false;
            }
            first.1 += later.1;
            true
        });
        let (Some(&(lo, _)), Some(&(hi, _))) = (rows.first(), rows.last()) else {
            return Self {
                width,
                slots: Slots::Sparse(Vec::new()),
            };
        };
        let n = (hi - lo).div_euclid(width).saturating_add(1);
        if usize::try_from(n).map_or(true, |n| rows.len() * 2 < n) {
            rows.shrink_to_fit();
            return Self {
                width,
                slots: Slots::Sparse(rows),
            };
        }
        let mut values = vec![f64::NAN; n as usize];
        for (start, value) in rows {
            let slot = &mut values[(start - lo).div_euclid(width) as usize];
            *slot = if slot.is_nan() { value } else { *slot + value };
        }
        Self {
            width,
            slots: Slots::Dense { first: lo, values },
        }
    }

    /// The buckets with data, oldest first: (start, value).
    pub fn iter(&self) -> Box<dyn Iterator<Item = (i64, f64)> + '_> {
        match &self.slots {
            Slots::Dense { first, values } => Box::new(
                values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_nan())
                    .map(move |(i, v)| (first + i as i64 * self.width, *v)),
            ),
            Slots::Sparse(rows) => Box::new(rows.iter().copied()),
        }
    }

    /// The oldest bucket with data.
    pub fn first(&self) -> Option<(i64, f64)> {
        match &self.slots {
            Slots::Dense { first, values } => values.first().map(|v| (*first, *v)),
            Slots::Sparse(rows) => rows.first().copied(),
        }
    }

    /// The newest bucket with data.
    pub fn last(&self) -> Option<(i64, f64)> {
        match &self.slots {
            Slots::Dense { first, values } => {
                let n = values.len().checked_sub(1)?;
                Some((first + n as i64 * self.width, values[n]))
            }
            Slots::Sparse(rows) => rows.last().copied(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.first().is_none()
    }

    /// How many buckets have data.
    pub fn len(&self) -> usize {
        match &self.slots {
            Slots::Dense { values, .. } => values.iter().filter(|v| !v.is_nan()).count(),
            Slots::Sparse(rows) => rows.len(),
        }
    }

    /// The bytes the buckets take (what a key's window costs the daemon).
    pub fn bytes(&self) -> usize {
        match &self.slots {
            Slots::Dense { values, .. } => values.capacity() * 8,
            Slots::Sparse(rows) => rows.capacity() * 16,
        }
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
        let width = self.width;
        match &mut self.slots {
            Slots::Dense { first, values } => {
                let at = *first;
                let drop = values
                    .iter()
                    .enumerate()
                    .position(|(i, v)| !v.is_nan() && at + i as i64 * width >= from)
                    .unwrap_or(values.len());
                values.drain(..drop);
                *first += drop as i64 * width;
            }
            Slots::Sparse(rows) => {
                let drop = rows.partition_point(|r| r.0 < from);
                rows.drain(..drop);
            }
        }
    }

    /// Drops the buckets that start at or after `lo`.
    pub fn keep_before(&mut self, lo: i64) {
        let width = self.width;
        match &mut self.slots {
            Slots::Dense { first, values } => {
                let at = *first;
                let keep = values
                    .iter()
                    .enumerate()
                    .rposition(|(i, v)| !v.is_nan() && at + (i as i64) * width < lo);
                values.truncate(keep.map_or(0, |i| i + 1));
            }
            Slots::Sparse(rows) => rows.truncate(rows.partition_point(|r| r.0 < lo)),
        }
    }

    /// Adds `later`'s buckets that start after this series' last. A dense series grows by
    /// exactly what it needs (the window is kept for the daemon's life: a growing Vec doubles
    /// its capacity); otherwise the series is built again in the smaller form.
    pub fn append(&mut self, later: Points) {
        let Some((after, _)) = self.last() else {
            *self = later;
            return;
        };
        let rows: Vec<(i64, f64)> = later.iter().filter(|r| r.0 > after).collect();
        let Some(&(end, _)) = rows.last() else {
            return;
        };
        let width = self.width;
        if let Slots::Dense { first, values } = &mut self.slots {
            let n = ((end - *first).div_euclid(width) + 1) as usize;
            let kept = values.len();
            if (kept + rows.len()) * 2 >= n {
                values.reserve_exact(n - kept);
                values.resize(n, f64::NAN);
                for (start, value) in rows {
                    values[(start - *first).div_euclid(width) as usize] = value;
                }
                return;
            }
        }
        let all: Vec<(i64, f64)> = self.iter().chain(rows).collect();
        *self = Points::from_rows(width, all);
    }
}

/// Equal when the same buckets hold the same values, whatever the form.
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
        // Three buckets with data of four: dense, a value each.
        assert_eq!(p.bytes(), 4 * 8);
        assert_eq!(p.dense(0, 50, 10), [0.0, 2.0, 0.0, 0.0, 4.0, 0.0]);
        assert_eq!(p.dense(20, 30, 10), [0.0, 0.0]);
        assert!(p.dense(30, 20, 10).is_empty());
        assert!(Points::from_rows(10, []).is_empty());
    }

    #[test]
    fn a_key_busy_one_bucket_in_ten_is_kept_as_pairs() {
        let p = Points::from_rows(60, (0..12).map(|i| (i * 600, 1.0)));
        assert_eq!(p.bytes(), 12 * 16);
        assert_eq!(p.len(), 12);
        assert_eq!(p.last(), Some((6_600, 1.0)));
        assert_eq!(p.dense(0, 1_200, 60)[10], 1.0);
        assert_eq!(p, Points::from_rows(600, (0..12).map(|i| (i * 600, 1.0))));
    }

    #[test]
    fn trimming_keeps_data_at_both_ends_in_either_form() {
        for width in [10, 1] {
            let mut p = Points::from_rows(width, [(10, 1.0), (40, 4.0), (60, 6.0)]);
            p.keep_from(20);
            assert_eq!(p.first(), Some((40, 4.0)), "{width}");
            p.keep_before(60);
            assert_eq!(p.last(), Some((40, 4.0)), "{width}");
            p.keep_before(40);
            assert!(p.is_empty() && p.first().is_none() && p.last().is_none());
        }
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
        assert_eq!(p.bytes(), 7 * 8);
        // Far later: kept as pairs instead of a long run of empty buckets.
        p.append(Points::from_rows(10, [(1_000, 2.0)]));
        assert_eq!(p.len(), 6);
        assert_eq!(p.bytes(), 6 * 16);
        assert_eq!(p.last(), Some((1_000, 2.0)));
        let mut empty = Points::from_rows(10, []);
        empty.append(Points::from_rows(10, [(5, 1.0)]));
        assert_eq!(rows(&empty), [(5, 1.0)]);
    }
}
