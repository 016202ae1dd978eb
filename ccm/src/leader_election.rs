//! Leader election on a `coordination.k8s.io/v1` Lease, compatible with client-go's
//! `leaselock`: the same fields and the same rules, so this process and an upstream
//! cloud-controller-manager can hand the same Lease (`kube-system/cloud-controller-manager`)
//! to each other during a migration.
//!
//! - A candidate takes the Lease when it is free or when its holder has not renewed it for
//!   `lease_duration`, judged by this process's own clock since it last *saw the record
//!   change* (as client-go does, so clock skew between machines does not matter).
//! - The leader renews every `retry_period`; if it cannot renew for `renew_deadline`, it has
//!   lost the Lease, and the process exits (upstream behaviour: a former leader must not keep
//!   writing). Each renewal is bounded by what is left of the renew deadline, so a stalled
//!   apiserver connection cannot hold it up.
//! - Fencing: the provider's [`Fence`] is open only until the moment the last successful renewal
//!   was *sent* plus the renew deadline. A standby cannot take the Lease before it has seen that
//!   renewal unchanged for the lease duration (longer), so mutating cloud calls stop before a
//!   successor can start, even while this process still waits on its apiserver.
//! - On a graceful shutdown the leader releases the Lease, so the next one takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use cloud_provider::Fence;

use crate::events::Events;
use crate::options::LeaderElection as Settings;

pub struct LeaderElector {
    api: Api<Lease>,
    settings: Settings,
    identity: String,
    events: Events,
    observed: Option<(LeaseSpec, Instant)>,
    fence: Option<Fence>,
    /// When the last successful acquire or renewal was sent.
    last_renewed: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
#[error("lost the leader Lease {namespace}/{name}: not renewed within {deadline:?}")]
pub struct LostLease {
    pub namespace: String,
    pub name: String,
    pub deadline: Duration,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 + 0.2 * fastrand::f64())
}

impl LeaderElector {
    pub fn new(client: kube::Client, settings: Settings, identity: String) -> Self {
        let events = Events::new(client.clone(), "cloud-controller-manager", &identity);
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            identity,
            events,
            observed: None,
            fence: None,
            last_renewed: None,
        }
    }

    /// Moves `fence` with this process's leadership: closed now, open after each renewal until
    /// the renewal's send time plus the renew deadline, closed when the Lease is lost or given up.
    pub fn with_fence(mut self, fence: Option<Fence>) -> Self {
        if let Some(fence) = &fence {
            fence.close();
        }
        self.fence = fence;
        self
    }

    /// Closes the fence: no more cloud writes from this process.
    pub fn fence_off(&self) {
        if let Some(fence) = &self.fence {
            fence.close();
        }
    }

    /// One acquire-or-renew, bounded by `limit`; on success, the fence opens until the
    /// attempt's start plus the renew deadline. Returns the start when it succeeded.
    async fn attempt(&mut self, limit: Duration) -> Option<Instant> {
        let sent = Instant::now();
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(Ok(true)) => {
                if let Some(fence) = &self.fence {
                    fence.open_until(sent + self.settings.renew_deadline);
                }
                Some(sent)
            }
            Ok(Ok(false)) => None,
            Ok(Err(err)) => {
                tracing::warn!(%err, "acquiring or renewing the leader Lease");
                None
            }
            Err(_) => {
                tracing::warn!(?limit, "acquiring or renewing the leader Lease: no answer in time");
                None
            }
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this process holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            if let Some(sent) = self.attempt(self.settings.renew_deadline).await {
                self.last_renewed = Some(sent);
                tracing::info!(identity = %self.identity, lease = %self.settings.name, "became leader");
                if let Ok(lease) = self.api.get(&self.settings.name).await {
                    let note = format!("{} became leader", self.identity);
                    self.events.normal(&lease.object_ref(&()), "LeaderElection", note).await;
                }
                return;
            }
            tokio::time::sleep(jittered(self.settings.retry_period)).await;
        }
    }

    /// Renews the Lease until renewal fails for longer than the renew deadline. Each attempt
    /// gets only what is left of the deadline.
    pub async fn hold(&mut self) -> LostLease {
        let mut last_renewed = self.last_renewed.unwrap_or_else(Instant::now);
        loop {
            tokio::time::sleep(self.settings.retry_period).await;
            let left = self.settings.renew_deadline.saturating_sub(last_renewed.elapsed());
            if let Some(sent) = self.attempt(left).await {
                last_renewed = sent;
            }
            if last_renewed.elapsed() >= self.settings.renew_deadline {
                self.fence_off();
                return LostLease {
                    namespace: self.settings.namespace.clone(),
                    name: self.settings.name.clone(),
                    deadline: self.settings.renew_deadline,
                };
            }
        }
    }

    /// Gives the Lease up (graceful shutdown), so a successor need not wait for it to expire.
    pub async fn release(&mut self) {
        self.fence_off();
        let Ok(mut lease) = self.api.get(&self.settings.name).await else { return };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        match self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!("released the leader Lease"),
            Err(err) => tracing::warn!(%err, "releasing the leader Lease"),
        }
    }

    async fn try_acquire_or_renew(&mut self) -> kube::Result<bool> {
        let duration_secs = i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.settings.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != spec) {
            self.observed = Some((spec.clone(), Instant::now()));
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        let held_for = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
        let observed_at = self.observed.as_ref().map_or_else(Instant::now, |(_, at)| *at);
        if !holder.is_empty() && !ours && observed_at.elapsed() < held_for {
            return Ok(false);
        }

        let mut next = spec.clone();
        next.holder_identity = Some(self.identity.clone());
        next.lease_duration_seconds = Some(duration_secs);
        next.renew_time = Some(now());
        if !ours {
            next.acquire_time = Some(now());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next.clone());
        match self.api.replace(&lease.name_any(), &PostParams::default(), &lease).await {
            Ok(_) => {
                self.observed = Some((next, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// `<hostname>_<random>`, as upstream forms its identity.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}_{:016x}", fastrand::u64(..))
}
