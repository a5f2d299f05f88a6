//! Latency summaries, rates and process memory readings shared by every scenario.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// Latency samples in microseconds, summarized as medians and tails.
#[derive(Debug, Default, Clone)]
pub(crate) struct Samples {
    micros: Vec<u64>,
}

impl Samples {
    /// An empty set with room for `capacity` samples.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            micros: Vec::with_capacity(capacity),
        }
    }

    /// Adds one sample.
    pub(crate) fn push(&mut self, sample: Duration) {
        self.micros
            .push(u64::try_from(sample.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub(crate) fn extend(&mut self, other: Self) {
        self.micros.extend(other.micros);
    }

    /// How many samples there are.
    pub(crate) fn len(&self) -> usize {
        self.micros.len()
    }

    /// The `q` quantile (0.0..=1.0) in milliseconds by the nearest-rank method; 0 when empty.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = (q * sorted.len() as f64).ceil() as usize;
        let index = rank.clamp(1, sorted.len()) - 1;
        sorted[index] as f64 / 1000.0
    }

    /// `{"n", "p50_ms", "p90_ms", "p99_ms", "max_ms"}`.
    pub(crate) fn summary(&self) -> Value {
        json!({
            "n": self.len(),
            "p50_ms": round3(self.quantile_ms(0.50)),
            "p90_ms": round3(self.quantile_ms(0.90)),
            "p99_ms": round3(self.quantile_ms(0.99)),
            "max_ms": round3(self.quantile_ms(1.0)),
        })
    }
}

/// Rounds to three decimals for readable JSON.
pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Operations per second.
pub(crate) fn rate(count: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs == 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// The median of a few values (for repeated limit measurements).
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// Memory of a running process from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    /// Resident set size now.
    pub(crate) rss_kib: u64,
    /// Peak resident set size.
    pub(crate) hwm_kib: u64,
}

impl Memory {
    /// Reads `VmRSS` and `VmHWM` of `pid`.
    ///
    /// Fails when the process is gone or the file lacks the fields.
    pub(crate) fn of(pid: u32) -> Result<Self> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok(Self {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }

    /// `{"rss_mib", "peak_rss_mib"}`.
    pub(crate) fn to_json(self) -> Value {
        json!({
            "rss_mib": round3(self.rss_kib as f64 / 1024.0),
            "peak_rss_mib": round3(self.hwm_kib as f64 / 1024.0),
        })
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
///
/// Fails when the process is gone. Assumes the usual 100 ticks per second of Linux.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields we want follow its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/pid/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page, so utime (14) and stime (15) sit at 11 and 12.
    let ticks =
        |i: usize| -> Result<u64> { Ok(fields.get(i).context("short /proc/pid/stat")?.parse()?) };
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// The uid this process runs as, from the owner of `/proc/self` (no `unsafe` needed).
///
/// Fails when `/proc` is not mounted.
pub(crate) fn own_uid() -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut samples = Samples::default();
        for ms in 1..=100 {
            samples.push(Duration::from_millis(ms));
        }
        assert_eq!(samples.quantile_ms(0.5), 50.0);
        assert_eq!(samples.quantile_ms(0.99), 99.0);
        assert_eq!(samples.quantile_ms(1.0), 100.0);
        assert_eq!(Samples::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
    }

    #[test]
    fn reads_own_memory() {
        let memory = Memory::of(std::process::id()).expect("own status");
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib);
    }
}
