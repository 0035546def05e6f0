//! Commit failures on demand, for the tests and the soak: the SQLite writer asks this before
//! each commit, and a failed commit is the real one (the batch ran, then was rolled back and
//! every caller told so), exactly as a full disk fails it. Nothing fails unless a test says so;
//! `eftcloud serve` never sets it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// A switch shared between a test and the store it opened.
#[derive(Debug, Default)]
pub struct StoreFaults {
    /// Every commit fails while set (a full disk, a database that went away).
    failing: AtomicBool,
    /// Otherwise one commit in this many fails at random (0: none).
    one_in: AtomicU32,
    /// Commits failed on purpose so far.
    injected: AtomicU64,
}

impl StoreFaults {
    /// Every commit fails from now on, until [`Self::heal`].
    pub fn fail_commits(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    /// Commits succeed again (random failures, if set, go on).
    pub fn heal(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }

    /// One commit in `n` fails at random; 0 turns random failures off.
    pub fn fail_one_in(&self, n: u32) {
        self.one_in.store(n, Ordering::SeqCst);
    }

    /// How many commits were failed on purpose.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Whether the commit about to happen must fail; counts it if so.
    pub(crate) fn commit_fails(&self) -> bool {
        let fail = self.failing.load(Ordering::SeqCst) || {
            let n = self.one_in.load(Ordering::Relaxed);
            n != 0 && rand::Rng::gen_ratio(&mut rand::thread_rng(), 1, n)
        };
        if fail {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        fail
    }
}
