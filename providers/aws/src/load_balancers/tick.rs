//! Readings shared by the periodic re-ensures of one resync tick.
//!
//! The service controller re-ensures every load balancer on ticks shared by all Services
//! (`--load-balancer-resync-period`) and marks those syncs periodic. What AWS can answer for many
//! load balancers in one call is read once for such a tick and shared for [`TTL`]:
//!
//! - the VPC's security groups (one `DescribeSecurityGroups`);
//! - the VPC's Classic ELBs with their tags (one `DescribeLoadBalancers` per 400, one
//!   `DescribeTags` per 20).
//!
//! Attributes, which AWS reads one load balancer at a time, are compared on every
//! [`ATTRIBUTES_EVERY`]th periodic re-ensure of a load balancer (their drift is repaired within
//! that many resync periods); every other reading is compared on every tick.
//!
//! A Service change (a sync that is not periodic) always reads afresh. Every write this provider
//! makes is noted before and after it ([`TickReadings::written`]): a shared reading taken before
//! or during a write it may concern is not handed out after it, and an attribute write makes the
//! next re-ensure of that load balancer read its attributes again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_elasticloadbalancing::types::{LoadBalancerAttributes, LoadBalancerDescription};

use super::plan::{Action, ArnRef};

/// How long a shared reading serves the re-ensures of a tick.
pub const TTL: Duration = Duration::from_secs(10);
/// A load balancer's attributes are read on one of this many of its periodic re-ensures.
pub const ATTRIBUTES_EVERY: u32 = 2;

/// A Classic ELB of the VPC and its tags.
pub(crate) type ClassicEntry = (LoadBalancerDescription, Vec<(String, String)>);

/// One reading shared for [`TTL`], dropped by any write noted after it started (subnet
/// discovery uses one too, for every sync: nothing of ours writes subnets).
pub(crate) struct Shared<T> {
    writes: AtomicU64,
    slot: tokio::sync::Mutex<Option<(Instant, u64, T)>>,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self { writes: AtomicU64::new(0), slot: tokio::sync::Mutex::new(None) }
    }
}

impl<T: Clone> Shared<T> {
    /// The shared reading if it is fresh, else `read`'s (kept for the next callers unless a
    /// write was noted meanwhile). Concurrent callers wait for the one reading.
    pub async fn get<E, F, Fut>(&self, read: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        let writes = self.writes.load(Ordering::SeqCst);
        if let Some((at, seen, value)) = slot.as_ref()
            && *seen == writes
            && at.elapsed() < TTL
        {
            return Ok(value.clone());
        }
        let value = read().await?;
        *slot = (self.writes.load(Ordering::SeqCst) == writes).then(|| (Instant::now(), writes, value.clone()));
        Ok(value)
    }

    pub fn written(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Per load balancer: the attributes last read and how many periodic re-ensures used them.
pub(crate) struct Attributes<T>(Mutex<HashMap<String, (u32, T)>>);

impl<T> Default for Attributes<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Clone> Attributes<T> {
    /// For a periodic re-ensure: the attributes read before, unless this is the re-ensure that
    /// reads them again.
    pub fn reuse(&self, key: &str) -> Option<T> {
        let mut seen = self.0.lock().expect("attributes lock");
        let (uses, value) = seen.get_mut(key)?;
        if *uses + 1 >= ATTRIBUTES_EVERY {
            return None;
        }
        *uses += 1;
        Some(value.clone())
    }

    pub fn read(&self, key: &str, value: T) {
        self.0.lock().expect("attributes lock").insert(key.to_string(), (0, value));
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().expect("attributes lock").remove(key);
    }

    /// Reuses the attributes of `key` for a periodic re-ensure when due, else reads them.
    pub async fn get<E, Fut>(&self, key: &str, periodic: bool, read: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        if periodic && let Some(value) = self.reuse(key) {
            return Ok(value);
        }
        let value = read.await?;
        self.read(key, value.clone());
        Ok(value)
    }
}

#[derive(Default)]
pub(crate) struct TickReadings {
    pub groups: Shared<Arc<Vec<SecurityGroup>>>,
    pub classic: Shared<Arc<HashMap<String, ClassicEntry>>>,
    pub classic_attributes: Attributes<Option<LoadBalancerAttributes>>,
    /// By NLB ARN.
    pub nlb_attributes: Attributes<Vec<(String, String)>>,
}

impl TickReadings {
    /// Notes a write (called before and after it): the readings it may change are not reused.
    pub fn written(&self, action: &Action) {
        match action {
            Action::CreateSecurityGroup { .. }
            | Action::TagSecurityGroup { .. }
            | Action::AuthorizeIngress { .. }
            | Action::RevokeIngress { .. }
            | Action::AdmitGroup { .. }
            | Action::DeleteSecurityGroup { .. } => self.groups.written(),
            Action::ElbModifyAttributes { name, .. } | Action::ElbDelete { name } => {
                self.classic_attributes.forget(name);
                self.classic.written();
            }
            Action::NlbModifyAttributes { load_balancer: ArnRef::Arn(arn), .. }
            | Action::NlbDelete { load_balancer: arn } => self.nlb_attributes.forget(arn),
            action if action.operation().name.starts_with("aws/elb.") => self.classic.written(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn a_reading_is_shared_until_a_write_is_noted() {
        let shared: Shared<u32> = Shared::default();
        let reads = AtomicUsize::new(0);
        let read = || async { Ok::<_, ()>(u32::try_from(reads.fetch_add(1, Ordering::SeqCst)).unwrap()) };
        assert_eq!(shared.get(read).await, Ok(0));
        assert_eq!(shared.get(read).await, Ok(0), "fresh: shared");
        shared.written();
        assert_eq!(shared.get(read).await, Ok(1), "a write drops it");
        // A write noted while a reading is under way: that reading is its reader's alone.
        shared.written();
        let during = shared.get(|| async {
            shared.written();
            Ok::<_, ()>(7)
        });
        assert_eq!(during.await, Ok(7));
        assert_eq!(shared.get(read).await, Ok(2));
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn attributes_are_read_on_every_second_periodic_re_ensure_and_after_a_write() {
        let attributes: Attributes<u32> = Attributes::default();
        let reads = AtomicUsize::new(0);
        let read = || async { Ok::<_, ()>(u32::try_from(reads.fetch_add(1, Ordering::SeqCst)).unwrap()) };
        // A Service change reads; the first tick after reuses; the second reads.
        assert_eq!(attributes.get("lb", false, read()).await, Ok(0));
        assert_eq!(attributes.get("lb", true, read()).await, Ok(0));
        assert_eq!(attributes.get("lb", true, read()).await, Ok(1));
        assert_eq!(attributes.get("lb", true, read()).await, Ok(1));
        // A change always reads.
        assert_eq!(attributes.get("lb", false, read()).await, Ok(2));
        // A write of the attributes: the next tick reads.
        let written =
            Action::ElbModifyAttributes { name: "lb".into(), attributes: LoadBalancerAttributes::builder().build() };
        let ticks = TickReadings::default();
        ticks.classic_attributes.read("lb", None);
        ticks.written(&written);
        assert!(ticks.classic_attributes.reuse("lb").is_none());
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn writes_drop_what_they_change() {
        let ticks = TickReadings::default();
        let group = Action::RevokeIngress { group: super::super::plan::GroupRef::Id("sg-1".into()), rules: Vec::new() };
        ticks.written(&group);
        assert_eq!(ticks.groups.writes.load(Ordering::SeqCst), 1);
        assert_eq!(ticks.classic.writes.load(Ordering::SeqCst), 0);
        ticks.written(&Action::ElbRegister { name: "lb".into(), instances: Vec::new() });
        assert_eq!(ticks.classic.writes.load(Ordering::SeqCst), 1);
        assert_eq!(ticks.groups.writes.load(Ordering::SeqCst), 1);
        ticks.nlb_attributes.read("arn:nlb", Vec::new());
        ticks.written(&Action::NlbDelete { load_balancer: "arn:nlb".into() });
        assert!(ticks.nlb_attributes.reuse("arn:nlb").is_none());
    }
}
