//! Per-object failure counting and backoff (kube-runtime has none built in, kube-rs#1916).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cloud_provider::Retry;

/// Exponential backoff per object key, reset on success.
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, failures: Mutex::default() }
    }

    /// Records a failure of `key` and returns how long to wait before the next attempt.
    pub fn next_delay(&self, key: &str, retry: Retry) -> Option<Duration> {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry(key.to_string()).or_default();
        *count += 1;
        match retry {
            Retry::Never => None,
            Retry::After(delay) => Some(delay),
            Retry::Backoff => {
                let factor = 2u32.saturating_pow(count.saturating_sub(1).min(16));
                Some(self.base.saturating_mul(factor).min(self.max))
            }
        }
    }

    pub fn reset(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_to_max_and_resets() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay("a", Retry::Backoff).unwrap().as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.next_delay("b", Retry::Backoff), Some(Duration::from_secs(5)), "per object");
        b.reset("a");
        assert_eq!(b.next_delay("a", Retry::Backoff), Some(Duration::from_secs(5)));
        assert_eq!(b.next_delay("a", Retry::After(Duration::from_secs(30))), Some(Duration::from_secs(30)));
        assert_eq!(b.next_delay("a", Retry::Never), None);
    }
}
