//! What a run measured: latency samples, their percentiles, and errors counted by kind.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// p50, p90, p99 and max of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Summarises `samples` (sorted in place); all zero when there are none.
    pub fn of(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |p: f64| {
            // Nearest rank: the smallest sample with at least p of the samples at or below it.
            let rank = (p * samples.len() as f64).ceil() as usize;
            ms(samples[rank.clamp(1, samples.len()) - 1])
        };
        Self {
            samples: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: ms(samples[samples.len() - 1]),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Errors by kind, shared by the workers and the simulated devices of one run.
#[derive(Debug, Default)]
pub struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    /// Counts one error of `kind`.
    pub fn add(&self, kind: impl Into<String>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(kind.into()).or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The latency figures of one load run, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latencies {
    /// POST sent → its response received.
    pub post_response: Percentiles,
    /// POST sent → the device received the `transaction` frame.
    pub post_to_device: Percentiles,
    /// POST sent → the POS holds the completed result.
    pub post_to_completed: Percentiles,
}

/// Raw samples of one load run.
#[derive(Debug, Default)]
pub struct Samples {
    pub post_response: Vec<Duration>,
    pub post_to_device: Vec<Duration>,
    pub post_to_completed: Vec<Duration>,
}

impl Samples {
    /// Adds another worker's samples.
    pub fn merge(&mut self, other: Samples) {
        self.post_response.extend(other.post_response);
        self.post_to_device.extend(other.post_to_device);
        self.post_to_completed.extend(other.post_to_completed);
    }

    /// The percentiles.
    pub fn summarise(mut self) -> Latencies {
        Latencies {
            post_response: Percentiles::of(&mut self.post_response),
            post_to_device: Percentiles::of(&mut self.post_to_device),
            post_to_completed: Percentiles::of(&mut self.post_to_completed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&mut []).samples, 0);
    }
}
