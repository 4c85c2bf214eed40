//! Message stamps, delivery bookkeeping and percentiles.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// Bytes of the stamp at the start of every payload: publisher index (u32),
/// sequence number (u64) and send time (u64 nanoseconds), big-endian.
pub const STAMP_LEN: usize = 20;

/// Returns the process-wide clock origin that send and receive times count from.
/// Publishers and subscribers run in this one process, so one monotonic
/// clock serves both ends.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the clock origin.
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// Builds a payload of `size` bytes (at least [`STAMP_LEN`]) stamped with its
/// publisher, sequence number and the current time.
pub fn stamp(publisher: u32, sequence: u64, size: usize) -> Bytes {
    let mut payload = BytesMut::with_capacity(size.max(STAMP_LEN));
    payload.put_u32(publisher);
    payload.put_u64(sequence);
    payload.put_u64(now_ns());
    payload.resize(size.max(STAMP_LEN), b'x');
    payload.freeze()
}

/// Reads a stamp: publisher, sequence number, send time.
pub fn read_stamp(payload: &[u8]) -> Option<(u32, u64, u64)> {
    let stamp: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
    let publisher = u32::from_be_bytes(stamp[0..4].try_into().ok()?);
    let sequence = u64::from_be_bytes(stamp[4..12].try_into().ok()?);
    let sent = u64::from_be_bytes(stamp[12..20].try_into().ok()?);
    Some((publisher, sequence, sent))
}

/// The set of sequence numbers of one publisher that a subscriber has seen.
#[derive(Default)]
pub struct SeenSet {
    words: Vec<u64>,
    /// Distinct sequence numbers seen.
    pub unique: u64,
    /// Sequence numbers seen more than once, counted per extra copy.
    pub duplicates: u64,
}

impl SeenSet {
    /// Records `sequence`; returns false when it was a duplicate.
    pub fn insert(&mut self, sequence: u64) -> bool {
        let word = (sequence / 64) as usize;
        let bit = 1u64 << (sequence % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        self.words[word] |= bit;
        self.unique += 1;
        true
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Sorts `samples` (microseconds) and returns their percentiles.
pub fn percentiles(samples: &mut [u32]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_unstable();
    let at = |fraction: f64| {
        let index = ((samples.len() as f64 * fraction).ceil() as usize).clamp(1, samples.len()) - 1;
        f64::from(samples[index]) / 1000.0
    };
    Percentiles {
        samples: samples.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: f64::from(samples[samples.len() - 1]) / 1000.0,
    }
}

/// Percentiles of durations.
pub fn duration_percentiles(durations: &[Duration]) -> Percentiles {
    let mut micros: Vec<u32> = durations
        .iter()
        .map(|d| d.as_micros().min(u128::from(u32::MAX)) as u32)
        .collect();
    percentiles(&mut micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip() {
        let payload = stamp(7, 42, 64);
        assert_eq!(payload.len(), 64);
        let (publisher, sequence, _) = read_stamp(&payload).expect("stamp is readable");
        assert_eq!(publisher, 7);
        assert_eq!(sequence, 42);
    }

    #[test]
    fn seen_set_counts_duplicates() {
        let mut seen = SeenSet::default();
        assert!(seen.insert(3));
        assert!(seen.insert(200));
        assert!(!seen.insert(3));
        assert_eq!(seen.unique, 2);
        assert_eq!(seen.duplicates, 1);
    }

    #[test]
    fn percentiles_of_one_to_hundred() {
        let mut samples: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let result = percentiles(&mut samples);
        assert_eq!(result.p50_ms, 50.0);
        assert_eq!(result.p99_ms, 99.0);
        assert_eq!(result.max_ms, 100.0);
    }
}
