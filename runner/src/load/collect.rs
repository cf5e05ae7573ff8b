//! Collects the workers' one-second buckets into the time series, reports progress once a
//! second, and turns the user's stop into the engine's stop.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{figures::SecondRow, tally::SecondBucket, Progress};

/// Merges the buckets of every worker, second by second.
pub struct Collector<'a> {
    workers: usize,
    start: Instant,
    total: Option<Duration>,
    user_stop: Arc<AtomicBool>,
    engine_stop: Arc<AtomicBool>,
    progress: &'a mut dyn FnMut(&Progress),
    /// Seconds some workers have not reported yet: (workers reported, merged bucket).
    pending: BTreeMap<u64, (usize, SecondBucket)>,
    rows: Vec<SecondRow>,
    ok: u64,
    errors: u64,
    interrupted: bool,
}

impl<'a> Collector<'a> {
    pub fn new(
        workers: usize,
        start: Instant,
        total: Option<Duration>,
        user_stop: Arc<AtomicBool>,
        engine_stop: Arc<AtomicBool>,
        progress: &'a mut dyn FnMut(&Progress),
    ) -> Self {
        Self {
            workers,
            start,
            total,
            user_stop,
            engine_stop,
            progress,
            pending: BTreeMap::new(),
            rows: Vec::new(),
            ok: 0,
            errors: 0,
            interrupted: false,
        }
    }

    /// Stops the engine if the user asked to; the run is then marked interrupted.
    pub fn check_stop(&mut self) {
        if self.user_stop.load(Ordering::Relaxed) && !self.engine_stop.load(Ordering::Relaxed) {
            self.interrupted = true;
            self.engine_stop.store(true, Ordering::Relaxed);
        }
    }

    /// Takes one worker's bucket; once every worker has sent a second, it becomes a row.
    pub fn take(&mut self, bucket: SecondBucket) {
        let second = bucket.second;
        let entry = self
            .pending
            .entry(second)
            .or_insert_with(|| (0, SecondBucket::new(second)));
        merge_bucket(&mut entry.1, &bucket);
        entry.0 += 1;
        if entry.0 == self.workers {
            let (_, merged) = self.pending.remove(&second).expect("present");
            let row = row_of(&merged);
            self.ok += row.ok;
            self.errors += row.errors;
            (self.progress)(&Progress {
                elapsed: self.start.elapsed(),
                total: self.total,
                last_second: row.clone(),
                ok: self.ok,
                errors: self.errors,
            });
            self.rows.push(row);
        }
    }

    /// The time series of a run that lasted `elapsed`, and whether the user stopped it.
    pub fn finish(mut self, elapsed: Duration) -> (Vec<SecondRow>, bool) {
        for (_, (_, merged)) in std::mem::take(&mut self.pending) {
            self.rows.push(row_of(&merged));
        }
        let mut rows = self.rows;
        rows.sort_by_key(|r| r.second);
        // Buckets are labelled by the second they cover, from 0; the last may be partial.
        rows.retain(|r| r.ok + r.errors > 0 || r.second < elapsed.as_secs());
        (rows, self.interrupted)
    }
}

fn merge_bucket(into: &mut SecondBucket, from: &SecondBucket) {
    into.hist.add(&from.hist).expect("same bounds");
    into.ok += from.ok;
    into.errors += from.errors;
    into.bytes += from.bytes;
}

fn row_of(bucket: &SecondBucket) -> SecondRow {
    let quantile = |q| {
        if bucket.hist.is_empty() {
            0
        } else {
            bucket.hist.value_at_quantile(q)
        }
    };
    SecondRow {
        second: bucket.second,
        ok: bucket.ok,
        errors: bucket.errors,
        bytes: bucket.bytes,
        p50_us: quantile(0.5),
        p99_us: quantile(0.99),
    }
}
