//! A small log-bucketed latency histogram: ~3% resolution from 1 µs to ~20 minutes in 700
//! counters. The counters are allocated at the first sample, so a histogram nothing was recorded
//! in costs nothing.

/// Bucket growth factor: each bucket is 3% wider than the last.
const GROWTH: f64 = 1.03;
const BUCKETS: usize = 700;

#[derive(Clone, Default)]
pub struct Histogram {
    counts: Vec<u32>,
    total: u64,
    max_us: u64,
}

fn bucket_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    (((us as f64).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1)
}

fn upper_of(bucket: usize) -> u64 {
    GROWTH.powi(bucket as i32 + 1).ceil() as u64
}

impl Histogram {
    /// The counters, allocated on first use.
    fn counts_mut(&mut self) -> &mut [u32] {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        &mut self.counts
    }

    pub fn record(&mut self, us: u64) {
        self.counts_mut()[bucket_of(us)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts_mut().iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The latency below which `q` (0..1) of the samples fall, to bucket resolution.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c as u64;
            if seen >= rank {
                return upper_of(i).min(self.max_us);
            }
        }
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_bucket_resolution() {
        let mut h = Histogram::default();
        for us in 1..=10_000 {
            h.record(us);
        }
        for (q, want) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = h.quantile_us(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max_us(), 10_000);
        let mut other = Histogram::default();
        other.record(50_000);
        h.merge(&other);
        assert_eq!((h.count(), h.max_us()), (10_001, 50_000));
    }

    #[test]
    fn an_empty_histogram_allocates_nothing_and_merges_either_way() {
        let mut empty = Histogram::default();
        assert_eq!((empty.counts.capacity(), empty.quantile_us(0.99)), (0, 0));
        let mut one = Histogram::default();
        one.record(700);
        empty.merge(&one);
        one.merge(&Histogram::default());
        for h in [&empty, &one] {
            assert_eq!((h.count(), h.max_us()), (1, 700));
            assert!((h.quantile_us(0.5) as f64 - 700.0).abs() / 700.0 < 0.04);
        }
    }
}
