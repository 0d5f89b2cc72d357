//! How many buckets one usage page asks for: keywatch's choice, not the API's maximum. A page of
//! 168 hourly buckets for 10,000 keys is about a gigabyte; one bucket is a few megabytes. The
//! size starts from what the stream needs (the buckets from the cursor to now, and an estimate
//! from the number of keys), follows the bytes per bucket the pages actually carry, is halved
//! when a page is refused as too large (asked again at once) or is slow (more than half the
//! timeout, or timed out: the next poll asks for fewer), and is remembered per stream. Pure: the
//! poller reports what happened and asks for the next size.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::BucketWidth;

/// The body size a page aims at: a quarter of the cap, so a bucket twice as busy as the last
/// still fits.
pub const TARGET_FRACTION: usize = 4;
/// An estimate of one usage row's JSON, in bytes, for sizing the first page (a row of the
/// documented shape with every field is about 350 bytes; pages correct the estimate).
const ROW_BYTES: usize = 400;
/// Rows per key and bucket assumed before any page was read (two models per key).
const ROWS_PER_KEY: usize = 2;

/// The page size of one usage stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PageSize {
    /// The API's largest page for this width (buckets).
    max: u32,
    /// The cap on one response body, bytes.
    cap: usize,
    /// Observed body bytes per bucket (the largest of the recent pages), once a page was read.
    per_bucket: Option<usize>,
    /// A ceiling set by a refused page: never asked again until pages show it fits.
    ceiling: u32,
}

/// What to do after a page failed for its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shrink {
    /// Ask again from the same bucket with this many buckets per page.
    Retry(u32),
    /// A single bucket is already too large or too slow: the poll fails with the error.
    GiveUp,
}

impl PageSize {
    pub fn new(max: u32, cap: usize) -> Self {
        Self {
            max: max.max(1),
            cap: cap.max(1),
            per_bucket: None,
            ceiling: max.max(1),
        }
    }

    /// The buckets to ask for next: at most `needed` (the buckets from the cursor to now), and
    /// as many as fit the target body size by what pages carried so far, or by `keys` x two
    /// models x a row's size before any page was read.
    pub fn next(&self, needed: u32, keys: usize) -> u32 {
        let target = self.cap / TARGET_FRACTION;
        let per_bucket = self
            .per_bucket
            .unwrap_or_else(|| keys.max(1) * ROWS_PER_KEY * ROW_BYTES)
            .max(1);
        let fits = u32::try_from(target / per_bucket).unwrap_or(u32::MAX);
        fits.min(self.ceiling).min(needed.max(1)).clamp(1, self.max)
    }

    /// A page of `buckets` buckets arrived with a body of `bytes`.
    pub fn read(&mut self, buckets: usize, bytes: usize) {
        if buckets == 0 {
            return;
        }
        let per_bucket = bytes.div_ceil(buckets).max(1);
        // Follow growth at once, shrinkage slowly (a quiet night is not the norm).
        self.per_bucket = Some(match self.per_bucket {
            Some(old) if per_bucket < old => (old + per_bucket) / 2,
            _ => per_bucket,
        });
        // A page that fitted well lifts the ceiling a refusal set.
        if bytes < self.cap / TARGET_FRACTION {
            self.ceiling = self.ceiling.saturating_mul(2).min(self.max);
        }
    }

    /// A page of `asked` buckets was refused (larger than the cap), timed out or was slow.
    pub fn failed(&mut self, asked: u32) -> Shrink {
        if asked <= 1 {
            return Shrink::GiveUp;
        }
        let half = asked / 2;
        self.ceiling = half;
        Shrink::Retry(half)
    }
}

/// The page sizes of a source's usage streams, and the number of keys its last listing held
/// (for sizing a stream's first page).
#[derive(Debug)]
pub struct PageSizes {
    cap: usize,
    keys: AtomicUsize,
    sizes: Mutex<HashMap<BucketWidth, PageSize>>,
}

impl PageSizes {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            keys: AtomicUsize::new(0),
            sizes: Mutex::new(HashMap::new()),
        }
    }

    /// The key listing held `n` keys.
    pub fn keys_listed(&self, n: usize) {
        self.keys.store(n, Ordering::Relaxed);
    }

    fn with<R>(&self, width: BucketWidth, f: impl FnOnce(&mut PageSize) -> R) -> R {
        let mut sizes = self.sizes.lock().unwrap_or_else(|p| p.into_inner());
        let size = sizes
            .entry(width)
            .or_insert_with(|| PageSize::new(width.max_page(), self.cap));
        f(size)
    }

    /// See [`PageSize::next`]; `needed` is the buckets from the resume point to now.
    pub fn next(&self, width: BucketWidth, needed: i64) -> u32 {
        let keys = self.keys.load(Ordering::Relaxed);
        let needed = u32::try_from(needed.max(1)).unwrap_or(u32::MAX);
        self.with(width, |s| s.next(needed, keys))
    }

    pub fn read(&self, width: BucketWidth, buckets: usize, bytes: usize) {
        self.with(width, |s| s.read(buckets, bytes));
    }

    pub fn failed(&self, width: BucketWidth, asked: u32) -> Shrink {
        self.with(width, |s| s.failed(asked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn the_first_page_is_sized_from_the_keys_and_what_the_stream_needs() {
        let p = PageSize::new(168, 32 * MIB);
        // 10,000 keys x 2 rows x 400 bytes = 8 MB a bucket: one bucket a page.
        assert_eq!(p.next(168, 10_000), 1);
        // 300 keys: 240 kB a bucket, 34 buckets fit 8 MiB.
        assert_eq!(p.next(168, 300), 34);
        // A handful of keys: the API's maximum; a steady poll needs two.
        assert_eq!(p.next(168, 5), 168);
        assert_eq!(p.next(2, 5), 2);
    }

    #[test]
    fn pages_correct_the_estimate_both_ways() {
        let mut p = PageSize::new(168, 32 * MIB);
        p.read(34, 34 * 10_000); // 10 kB a bucket: far fewer rows than keys x 2
        assert_eq!(p.next(168, 300), 168);
        p.read(10, 10 * 4 * MIB); // a busy stretch: 4 MiB a bucket
        assert_eq!(p.next(168, 300), 2);
    }

    #[test]
    fn a_refused_page_halves_down_to_one_bucket_then_gives_up() {
        let mut p = PageSize::new(168, 32 * MIB);
        assert_eq!(p.failed(168), Shrink::Retry(84));
        assert_eq!(p.next(168, 5), 84, "remembered for the stream");
        assert_eq!(p.failed(84), Shrink::Retry(42));
        assert_eq!(p.failed(2), Shrink::Retry(1));
        assert_eq!(p.failed(1), Shrink::GiveUp);
    }

    #[test]
    fn small_pages_grow_the_size_back() {
        let mut p = PageSize::new(168, 32 * MIB);
        p.failed(168);
        p.failed(84);
        assert_eq!(p.next(168, 5), 42);
        for _ in 0..4 {
            p.read(42, 42 * 1_000);
        }
        assert_eq!(p.next(168, 5), 168);
    }
}
