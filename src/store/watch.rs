//! Which usage buckets changed since a reader last looked, so a reader that keeps a window of
//! buckets in memory (the detector) re-reads only what was written, not the whole window.
//!
//! Only one `keywatch run` writes a database (see [`StoreError::Locked`](super::StoreError)),
//! and every write of `usage_buckets` goes through this process's [`Store`]: the store marks
//! each write here after it commits, so a mark can arrive late but is never missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::Store;

/// Per bucket width, what changed since the last [`UsageWatch::take`].
type Marks = Mutex<HashMap<i64, Changed>>;

/// What changed in one width's buckets since a reader last looked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// The earliest bucket start written (inserted or updated).
    pub written_from: Option<i64>,
    /// Rows starting before this were deleted (retention).
    pub deleted_before: Option<i64>,
}

impl Changed {
    fn add(&mut self, other: Changed) {
        let min = |a: Option<i64>, b: Option<i64>| a.into_iter().chain(b).min();
        let max = |a: Option<i64>, b: Option<i64>| a.into_iter().chain(b).max();
        self.written_from = min(self.written_from, other.written_from);
        self.deleted_before = max(self.deleted_before, other.deleted_before);
    }
}

/// The watchers of one database (shared by the store's clones).
#[derive(Debug, Default, Clone)]
pub(super) struct Watchers(Arc<Mutex<Vec<Weak<Marks>>>>);

impl Watchers {
    fn mark(&self, width_secs: i64, changed: Changed) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| match w.upgrade() {
            Some(marks) => {
                let mut m = marks.lock().unwrap_or_else(PoisonError::into_inner);
                m.entry(width_secs).or_default().add(changed);
                true
            }
            None => false,
        });
    }
}

/// A reader's view of what was written to `usage_buckets` since it last looked.
#[derive(Debug)]
pub struct UsageWatch(Arc<Marks>);

impl UsageWatch {
    /// What changed in buckets of `width_secs` since the last call, and forgets it.
    pub fn take(&self, width_secs: i64) -> Changed {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&width_secs)
            .unwrap_or_default()
    }
}

impl Store {
    /// Starts watching writes of `usage_buckets`: whatever commits after this call is reported
    /// by the returned watch.
    pub fn watch_usage(&self) -> UsageWatch {
        let marks = Arc::new(Marks::default());
        self.watchers
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&marks));
        UsageWatch(marks)
    }

    /// Records that buckets of `width_secs` from `earliest` on were written.
    pub(super) fn usage_written(&self, width_secs: i64, earliest: i64) {
        let changed = Changed {
            written_from: Some(earliest),
            deleted_before: None,
        };
        self.watchers.mark(width_secs, changed);
    }

    /// Records that buckets of `width_secs` starting before `before` were deleted.
    pub(super) fn usage_deleted(&self, width_secs: i64, before: i64) {
        let changed = Changed {
            written_from: None,
            deleted_before: Some(before),
        };
        self.watchers.mark(width_secs, changed);
    }
}
