//! Per-object failure counting and backoff (kube-runtime has none built in, kube-rs#1916).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cloud_provider::Retry;

/// Exponential backoff per object key, reset on success.
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Default)]
struct Failures {
    count: u32,
    /// The next attempt is not before this, unless the object changed (`state`).
    until: Option<Instant>,
    /// What the object was when it last failed (a hash of what an attempt reads).
    state: u64,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, failures: Mutex::default() }
    }

    /// Records a failure of `key`, then in `state`, and returns how long to wait before the
    /// next attempt.
    pub fn next_delay(&self, key: &str, retry: Retry, state: u64) -> Option<Duration> {
        let mut failures = self.failures.lock().expect("backoff lock");
        let entry = failures.entry(key.to_string()).or_default();
        entry.count += 1;
        let delay = match retry {
            Retry::Never => None,
            Retry::After(delay) => Some(delay),
            Retry::Backoff => {
                let factor = 2u32.saturating_pow(entry.count.saturating_sub(1).min(16));
                Some(self.base.saturating_mul(factor).min(self.max))
            }
        };
        entry.until = delay.map(|d| Instant::now() + d);
        entry.state = state;
        delay
    }

    /// How long `key`, now in `state`, must still wait after its last failure: a trigger that
    /// is not a change of the object (a write of our own to it, an unrelated event) does not
    /// cut the backoff short. `None`: go ahead (no failure, the wait is over, or it changed).
    /// `state` is computed only for an object that is waiting.
    pub fn holding(&self, key: &str, now: Instant, state: impl FnOnce() -> u64) -> Option<Duration> {
        let (until, failed_in) = {
            let failures = self.failures.lock().expect("backoff lock");
            let entry = failures.get(key)?;
            (entry.until?, entry.state)
        };
        let left = until.checked_duration_since(now).filter(|d| !d.is_zero())?;
        (state() == failed_in).then_some(left)
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
        let delays: Vec<_> = (0..8).map(|_| b.next_delay("a", Retry::Backoff, 0).unwrap().as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.next_delay("b", Retry::Backoff, 0), Some(Duration::from_secs(5)), "per object");
        b.reset("a");
        assert_eq!(b.next_delay("a", Retry::Backoff, 0), Some(Duration::from_secs(5)));
        assert_eq!(b.next_delay("a", Retry::After(Duration::from_secs(30)), 0), Some(Duration::from_secs(30)));
        assert_eq!(b.next_delay("a", Retry::Never, 0), None);
    }

    #[test]
    fn holds_an_unchanged_object_until_its_delay_is_over() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        let now = Instant::now();
        assert_eq!(b.holding("a", now, || 1), None, "never failed");
        b.next_delay("a", Retry::Backoff, 1);
        let left = b.holding("a", now, || 1).expect("held");
        assert!(left > Duration::from_secs(4) && left < Duration::from_secs(6), "{left:?}");
        assert_eq!(b.holding("a", now, || 2), None, "changed since it failed");
        assert_eq!(b.holding("a", now + Duration::from_secs(6), || 1), None, "the wait is over");
        b.next_delay("a", Retry::Never, 1);
        assert_eq!(b.holding("a", now, || 1), None, "waits for a change, which the controller does");
        b.next_delay("a", Retry::Backoff, 1);
        b.reset("a");
        assert_eq!(b.holding("a", now, || 1), None, "succeeded since");
    }
}
