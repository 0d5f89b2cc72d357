//! How many buckets one usage page asks for: keywatch's choice, not the API's maximum. A page of
//! 168 hourly buckets for 10,000 keys is about a gigabyte; one bucket is a few megabytes. The
//! size starts from what the stream needs (the buckets from the cursor to now, and an estimate
//! from the number of keys), follows the bytes per bucket the pages actually carry, is halved
//! when a page is refused as too large (asked again at once) or is slow (more than half the
//! timeout, or timed out: the next poll asks for fewer), and is remembered per stream. The
//! daily cost report is sized the same way (at 10,000 OpenAI keys, 31 days of per-key costs are
//! about 60 MB). [`PageSize`] is pure; [`PageSizes::outcome`] turns what a fetch returned into
//! what the paging loop does next, the one place both loops take that decision.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::BucketWidth;
use crate::providers::PollError;

/// A paged stream whose page size adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The usage report at one bucket width.
    Usage(BucketWidth),
    /// The daily cost report.
    Costs,
}

impl Stream {
    /// The most buckets one request may ask for: the API's page maximum, and never more than
    /// 31 days (the documented range of the analytics endpoints; both cost reports allow 31).
    fn max_page(self) -> u32 {
        match self {
            Self::Usage(width) => width.max_page(),
            Self::Costs => 31,
        }
    }
}

/// What the paging loop does with a fetch's outcome (see [`PageSizes::outcome`]).
#[derive(Debug)]
pub enum Next<T> {
    /// The page arrived: store it.
    Page(T),
    /// Refused for its size: ask again from the same bucket, a new chain of pages sized by
    /// [`PageSizes::next`] (which now gives fewer buckets).
    Smaller,
    /// The poll fails with this error.
    Fail(PollError),
}

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
    sizes: Mutex<HashMap<Stream, PageSize>>,
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

    fn with<R>(&self, stream: Stream, f: impl FnOnce(&mut PageSize) -> R) -> R {
        let mut sizes = self.sizes.lock().unwrap_or_else(|p| p.into_inner());
        let size = sizes
            .entry(stream)
            .or_insert_with(|| PageSize::new(stream.max_page(), self.cap));
        f(size)
    }

    /// See [`PageSize::next`]; `needed` is the buckets from the resume point to now.
    pub fn next(&self, stream: Stream, needed: i64) -> u32 {
        let keys = self.keys.load(Ordering::Relaxed);
        let needed = u32::try_from(needed.max(1)).unwrap_or(u32::MAX);
        self.with(stream, |s| s.next(needed, keys))
    }

    /// What to do with the outcome of asking `stream` for a page of `asked` buckets, which took
    /// `took` against the request `timeout`; `buckets` says how many buckets a page holds.
    /// - A page is kept, and its bytes per bucket size the next; one slower than half the
    ///   timeout lowers the size for the next chain of pages.
    /// - A page refused as larger than the cap is asked again at once with half the buckets,
    ///   down to one bucket; a single bucket over the cap fails the poll.
    /// - A timeout (after the client's retries) fails the poll in bounded time (the server may
    ///   be down, not slow), and the next poll asks for half the buckets.
    /// - Any other error fails the poll.
    pub fn outcome<T>(
        &self,
        stream: Stream,
        asked: u32,
        fetched: Result<(T, usize), PollError>,
        buckets: impl FnOnce(&T) -> usize,
        took: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Next<T> {
        match fetched {
            Ok((page, bytes)) => {
                let n = buckets(&page);
                self.with(stream, |s| {
                    s.read(n, bytes);
                    if took > timeout / 2 {
                        s.failed(asked);
                    }
                });
                Next::Page(page)
            }
            Err(e @ PollError::TooLarge { .. }) => match self.with(stream, |s| s.failed(asked)) {
                Shrink::Retry(smaller) => {
                    tracing::warn!(error = %e, ?stream, buckets = asked, retry_with = smaller,
                        "page too large; asking for fewer buckets");
                    Next::Smaller
                }
                Shrink::GiveUp => Next::Fail(e),
            },
            Err(e @ PollError::Timeout { .. }) => {
                self.with(stream, |s| s.failed(asked));
                Next::Fail(e)
            }
            Err(e) => Next::Fail(e),
        }
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

    #[test]
    fn each_stream_keeps_its_own_size_and_costs_ask_for_at_most_31_days() {
        let sizes = PageSizes::new(32 * MIB);
        sizes.keys_listed(5);
        let costs = Stream::Costs;
        let hourly = Stream::Usage(BucketWidth::Hour);
        assert_eq!(
            sizes.next(costs, 90),
            31,
            "never more than 31 days a request"
        );
        let refused: Result<((), usize), PollError> = Err(PollError::TooLarge {
            endpoint: "cost report".into(),
            cap: 32 * MIB,
        });
        let second = std::time::Duration::from_secs(1);
        let next = sizes.outcome(costs, 31, refused, |_| 0, second, 60 * second);
        assert!(matches!(next, Next::Smaller));
        assert_eq!(sizes.next(costs, 90), 15);
        assert_eq!(sizes.next(hourly, 168), 168, "usage keeps its own size");
        let timed_out: Result<((), usize), PollError> = Err(PollError::Timeout {
            endpoint: "usage report".into(),
            timeout: 60 * second,
        });
        let next = sizes.outcome(hourly, 168, timed_out, |_| 0, second, 60 * second);
        assert!(matches!(next, Next::Fail(PollError::Timeout { .. })));
        assert_eq!(sizes.next(hourly, 168), 84, "the next poll asks for half");
        // A page slower than half the timeout arrives and is kept, and the next chain is smaller.
        let slow = sizes.outcome(
            hourly,
            84,
            Ok(((), 1_000)),
            |_| 84,
            40 * second,
            60 * second,
        );
        assert!(matches!(slow, Next::Page(())));
        assert_eq!(sizes.next(hourly, 168), 42);
    }
}
