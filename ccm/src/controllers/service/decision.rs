//! What a sync of a Service does, decided without side effects: delete, a full ensure, only a
//! host update, or nothing until the next periodic re-ensure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::Resource;

use crate::objects::{self, LB_CLEANUP_FINALIZER};

/// The eligible Nodes as the load balancer saw them: name and providerID.
pub type NodeSet = BTreeSet<(String, Option<String>)>;

/// What was last pushed to the cloud for a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub fingerprint: u64,
    pub nodes: NodeSet,
    /// When the last *full* ensure finished (a host update does not move it).
    pub at: Instant,
    /// The last full ensure found the Service invalid: only host updates until it changes.
    pub invalid: bool,
}

/// Periodic re-ensures (`--load-balancer-resync-period`) happen on ticks shared by every
/// Service, multiples of the period since the controller started, so the provider can batch
/// the describes of all Services due on one tick. A Service is due once a tick has passed
/// since its last full ensure.
#[derive(Debug, Clone, Copy)]
pub struct ResyncClock {
    started: Instant,
    period: Option<Duration>,
}

impl ResyncClock {
    pub fn new(started: Instant, period: Option<Duration>) -> Self {
        Self { started, period }
    }

    fn tick(&self, period: Duration, at: Instant) -> u128 {
        at.saturating_duration_since(self.started).as_nanos() / period.as_nanos().max(1)
    }

    /// Whether a Service last fully ensured at `last` is due at `now`.
    pub fn due(&self, last: Instant, now: Instant) -> bool {
        self.period.is_some_and(|p| self.tick(p, last) < self.tick(p, now))
    }

    /// The time from `now` until just after the next tick; `None` without periodic re-ensures.
    pub fn until_next_tick(&self, now: Instant) -> Option<Duration> {
        self.period.map(|period| {
            let elapsed = now.saturating_duration_since(self.started).as_nanos();
            let period_ns = period.as_nanos().max(1);
            let left = period_ns - elapsed % period_ns;
            // A small margin, so the requeue lands after the tick.
            Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX)) + Duration::from_millis(5)
        })
    }

    /// When to look at a Service last fully ensured at `last` again: zero when it is due.
    pub fn next(&self, last: Instant, now: Instant) -> Option<Duration> {
        if self.due(last, now) { Some(Duration::ZERO) } else { self.until_next_tick(now) }
    }
}

/// What one sync of a Service does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// It has the finalizer and is being deleted or no longer wants a load balancer.
    Delete,
    /// It wants a load balancer: see [`ensure`].
    Ensure,
    /// Neither: forget it.
    Forget,
}

pub fn sync(service: &Service) -> Sync {
    let deleting = service.meta().deletion_timestamp.is_some();
    let wants = objects::wants_load_balancer(service);
    if objects::has_finalizer(service, LB_CLEANUP_FINALIZER) && (deleting || !wants) {
        Sync::Delete
    } else if wants && !deleting {
        Sync::Ensure
    } else {
        Sync::Forget
    }
}

/// What a Service that wants a load balancer needs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensure {
    /// A full ensure: first time, a relevant field changed, or the finalizer is missing.
    Full,
    /// A full ensure because the periodic re-ensure is due, nothing in the Service changed.
    Periodic,
    /// Only the node set changed (or the Service is invalid, which a re-ensure cannot fix):
    /// update the hosts, then look again after this long (`None`: on the next change).
    Hosts(Option<Duration>),
    /// Nothing to do: look again after this long (`None`: on the next change).
    Nothing(Option<Duration>),
}

pub fn ensure(
    previous: Option<&Synced>,
    fingerprint: u64,
    has_finalizer: bool,
    nodes: &NodeSet,
    clock: &ResyncClock,
    now: Instant,
) -> Ensure {
    let Some(prev) = previous.filter(|p| p.fingerprint == fingerprint && has_finalizer) else { return Ensure::Full };
    let due = clock.due(prev.at, now);
    if prev.nodes != *nodes && (!due || prev.invalid) {
        return Ensure::Hosts(clock.next(prev.at, now));
    }
    if due { Ensure::Periodic } else { Ensure::Nothing(clock.next(prev.at, now)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> NodeSet {
        names.iter().map(|n| (n.to_string(), Some(format!("aws:///{n}")))).collect()
    }

    #[test]
    fn the_clock_ticks_on_shared_multiples_of_the_period() {
        let t0 = Instant::now();
        let clock = ResyncClock::new(t0, Some(Duration::from_secs(60)));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!clock.due(at(10), at(59)), "same tick");
        assert!(clock.due(at(59), at(61)), "a tick passed, however short ago the ensure was");
        assert_eq!(clock.next(at(10), at(30)), Some(Duration::from_secs(30) + Duration::from_millis(5)));
        assert_eq!(clock.next(at(10), at(70)), Some(Duration::ZERO));
        let never = ResyncClock::new(t0, None);
        assert!(!never.due(at(0), at(100_000)));
        assert_eq!(never.next(at(0), at(5)), None);
    }

    #[test]
    fn a_service_needs_a_full_ensure_a_host_update_or_nothing() {
        let t0 = Instant::now();
        let clock = ResyncClock::new(t0, Some(Duration::from_secs(60)));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let prev = Synced { fingerprint: 7, nodes: nodes(&["a", "b"]), at: at(5), invalid: false };
        let same = nodes(&["a", "b"]);
        let grown = nodes(&["a", "b", "c"]);
        // First sight, a changed field, a lost finalizer: full.
        assert_eq!(ensure(None, 7, true, &same, &clock, at(6)), Ensure::Full);
        assert_eq!(ensure(Some(&prev), 8, true, &same, &clock, at(6)), Ensure::Full);
        assert_eq!(ensure(Some(&prev), 7, false, &same, &clock, at(6)), Ensure::Full);
        // Unchanged: nothing until the next tick.
        assert_eq!(
            ensure(Some(&prev), 7, true, &same, &clock, at(30)),
            Ensure::Nothing(Some(Duration::from_millis(30_005)))
        );
        // Nodes changed: hosts only.
        assert!(matches!(ensure(Some(&prev), 7, true, &grown, &clock, at(30)), Ensure::Hosts(Some(_))));
        // A tick passed: a full (periodic) ensure, and it takes the node change along.
        assert_eq!(ensure(Some(&prev), 7, true, &grown, &clock, at(61)), Ensure::Periodic);
        assert_eq!(ensure(Some(&prev), 7, true, &same, &clock, at(61)), Ensure::Periodic);
        // An invalid Service gets host updates even when a re-ensure is due.
        let invalid = Synced { invalid: true, ..prev.clone() };
        assert!(matches!(ensure(Some(&invalid), 7, true, &grown, &clock, at(61)), Ensure::Hosts(_)));
        // Without periodic re-ensures: nothing, until a change.
        let no_resync = ResyncClock::new(t0, None);
        assert_eq!(ensure(Some(&prev), 7, true, &same, &no_resync, at(10_000)), Ensure::Nothing(None));
    }

    #[test]
    fn deleting_and_unwanted_services_with_the_finalizer_are_deleted() {
        use k8s_openapi::api::core::v1::ServiceSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let lb = |finalizer: bool, deleting: bool, type_: &str| Service {
            metadata: kube::api::ObjectMeta {
                finalizers: finalizer.then(|| vec![LB_CLEANUP_FINALIZER.to_string()]),
                deletion_timestamp: deleting.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            },
            spec: Some(ServiceSpec { type_: Some(type_.into()), ..Default::default() }),
            status: None,
        };
        assert_eq!(sync(&lb(false, false, "LoadBalancer")), Sync::Ensure);
        assert_eq!(sync(&lb(true, false, "LoadBalancer")), Sync::Ensure);
        assert_eq!(sync(&lb(true, true, "LoadBalancer")), Sync::Delete);
        assert_eq!(sync(&lb(true, false, "ClusterIP")), Sync::Delete);
        assert_eq!(sync(&lb(false, false, "ClusterIP")), Sync::Forget);
        assert_eq!(sync(&lb(false, true, "LoadBalancer")), Sync::Forget);
    }
}
