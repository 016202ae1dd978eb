//! Slowing every call down while the account is being throttled, as upstream's
//! `CrossRequestRetryDelay` does: the recent share of throttled calls (decaying by 0.8 every
//! 20 s) above 10 % adds a delay before each call. Upstream sleeps up to 60 s per call, which
//! stalls whole workers; here the delay is at most [`MAX_DELAY`], because the SDK's own retries
//! (standard mode) already back off each throttled request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_DELAY: Duration = Duration::from_secs(2);
const DECAY_EVERY: Duration = Duration::from_secs(20);
const DECAY: f64 = 0.8;
const THRESHOLD: f64 = 0.1;

struct Window {
    requests: f64,
    throttled: f64,
    decayed_at: Instant,
}

/// Shared by every client of one region.
pub struct ThrottleTracker {
    window: Mutex<Window>,
}

impl Default for ThrottleTracker {
    fn default() -> Self {
        // A small initial bias of successful requests, as upstream, so one early throttle does
        // not slow everything down.
        Self { window: Mutex::new(Window { requests: 4.0, throttled: 0.0, decayed_at: Instant::now() }) }
    }
}

impl ThrottleTracker {
    fn with_window<T>(&self, f: impl FnOnce(&mut Window) -> T) -> T {
        let mut w = self.window.lock().expect("throttle lock");
        while w.decayed_at.elapsed() >= DECAY_EVERY {
            w.requests *= DECAY;
            w.throttled *= DECAY;
            w.decayed_at += DECAY_EVERY;
        }
        f(&mut w)
    }

    /// How long to wait before the next call.
    pub fn delay(&self) -> Duration {
        self.with_window(|w| {
            let share = if w.requests > 0.0 { w.throttled / w.requests } else { 0.0 };
            if share >= THRESHOLD { MAX_DELAY.mul_f64(share.min(1.0)) } else { Duration::ZERO }
        })
    }

    pub fn record(&self, throttled: bool) {
        self.with_window(|w| {
            w.requests += 1.0;
            if throttled {
                w.throttled += 1.0;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slows_down_only_past_the_threshold_and_at_most_max() {
        let t = ThrottleTracker::default();
        assert_eq!(t.delay(), Duration::ZERO);
        for _ in 0..10 {
            t.record(false);
        }
        t.record(true);
        assert_eq!(t.delay(), Duration::ZERO, "1 in 15 is below 10 %");
        for _ in 0..20 {
            t.record(true);
        }
        let d = t.delay();
        assert!(d > Duration::ZERO && d <= MAX_DELAY, "{d:?}");
    }
}
