//! A limit on how many authentication failures are logged, so that a flood
//! of bad tokens cannot flood the logs.

/// Allows at most `max_per_window` log lines per window of `window_secs`
/// seconds and counts the ones it suppresses. Time comes in as an argument.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    max_per_window: u32,
    window_secs: u64,
    window_start: u64,
    logged: u32,
    suppressed: u64,
}

/// Whether to write a log line now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Write it, with the count of lines suppressed since the last one written.
    Log {
        /// Lines suppressed since the last one written.
        suppressed: u64,
    },
    /// Skip it; it was counted.
    Suppress,
}

impl LogLimiter {
    /// Creates a limiter of `max_per_window` lines per `window_secs` seconds.
    pub const fn new(max_per_window: u32, window_secs: u64) -> LogLimiter {
        LogLimiter {
            max_per_window,
            window_secs,
            window_start: 0,
            logged: 0,
            suppressed: 0,
        }
    }

    /// Decides about one log line at `now_secs`.
    pub fn check(&mut self, now_secs: u64) -> LogDecision {
        if now_secs >= self.window_start.saturating_add(self.window_secs) {
            self.window_start = now_secs;
            self.logged = 0;
        }
        if self.logged < self.max_per_window {
            self.logged += 1;
            let suppressed = std::mem::take(&mut self.suppressed);
            LogDecision::Log { suppressed }
        } else {
            self.suppressed += 1;
            LogDecision::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_lines_per_window() {
        let mut limiter = LogLimiter::new(2, 60);
        assert_eq!(limiter.check(100), LogDecision::Log { suppressed: 0 });
        assert_eq!(limiter.check(101), LogDecision::Log { suppressed: 0 });
        assert_eq!(limiter.check(102), LogDecision::Suppress);
        assert_eq!(limiter.check(159), LogDecision::Suppress);
        assert_eq!(limiter.check(160), LogDecision::Log { suppressed: 2 });
        assert_eq!(limiter.check(161), LogDecision::Log { suppressed: 0 });
    }
}
