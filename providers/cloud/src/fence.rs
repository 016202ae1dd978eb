//! Fencing: whether this process may change the cloud right now.
//!
//! With leader election, only the leader may write, and "the leader" is a belief that ages: it
//! was true when the Lease was last renewed. A standby takes the Lease over once it has seen
//! no renewal for the lease duration, so a leader that can no longer renew (its apiserver
//! connection stalls, say) must stop writing *before* that can happen, even while its own
//! renewal call still hangs. The leader elector opens the fence until "the moment the last
//! successful renewal was sent + the renew deadline" (shorter than the lease duration), and a
//! provider checks it in front of every mutating call, and again before each retry of one.
//!
//! Without leader election the fence stays open.

use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Until(Instant),
    Closed,
}

/// Shared by the leader elector (which moves it) and a provider (which checks it); clones
/// share one state.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Mutex<State>>);

/// A mutating call refused because this process may not be the leader any more.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not sure to hold the leader Lease any more: no changes to the cloud (the fence closed {0})")]
pub struct Fenced(String);

impl Default for Fence {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(State::Open)))
    }
}

impl Fence {
    fn set(&self, state: State) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    fn state(&self) -> State {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes allowed until `until` (a renewal extends it).
    pub fn open_until(&self, until: Instant) {
        self.set(State::Until(until));
    }

    /// No writes (waiting for the Lease, or it is lost).
    pub fn close(&self) {
        self.set(State::Closed);
    }

    /// `Ok` when a mutating call may go out now.
    pub fn check(&self) -> Result<(), Fenced> {
        match self.state() {
            State::Open => Ok(()),
            State::Until(until) => {
                let now = Instant::now();
                if now < until { Ok(()) } else { Err(Fenced(format!("{:?} ago", now.duration_since(until)))) }
            }
            State::Closed => Err(Fenced("while not the leader".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Fence;

    #[test]
    fn open_closed_and_expiring() {
        let fence = Fence::default();
        assert!(fence.check().is_ok(), "open without leader election");
        let shared = fence.clone();
        shared.close();
        assert!(fence.check().is_err(), "clones share the state");
        fence.open_until(std::time::Instant::now() + Duration::from_secs(60));
        assert!(shared.check().is_ok());
        fence.open_until(std::time::Instant::now() - Duration::from_millis(1));
        let err = shared.check().unwrap_err();
        assert!(err.to_string().contains("ago"), "{err}");
    }
}
