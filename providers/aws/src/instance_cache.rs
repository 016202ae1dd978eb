//! Instances by ID or private DNS name, at a fraction of one DescribeInstances per lookup.
//!
//! A snapshot of every cluster-tagged instance (one paged DescribeInstances) answers lookups
//! while it is younger than [`TTL`]; a lookup it cannot answer refreshes it, at most once per
//! [`MIN_REFRESH`]: a lookup that misses sooner waits for the next refresh, which it shares with
//! every other lookup missing meanwhile (the snapshot's lock is held while a refresh runs).
//! Instances a fresh snapshot does not hold (not cluster-tagged, or gone) are asked for
//! directly. So 500 Nodes joining at once cost a few calls, not 500, and the lifecycle
//! controller's checks of NotReady Nodes cost at most one call per [`TTL`] whatever their number.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Instance;

use crate::ec2::{Ec2, filter};
use crate::errors::AwsError;
use crate::tags::{ClusterTags, LEGACY_CLUSTER_TAG};

pub const TTL: Duration = Duration::from_secs(10);
pub const MIN_REFRESH: Duration = Duration::from_secs(2);

/// How an instance is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceKey {
    Id(String),
    PrivateDns(String),
}

#[derive(Default)]
struct Snapshot {
    taken: Option<Instant>,
    by_id: HashMap<String, Instance>,
    id_by_dns: HashMap<String, String>,
}

impl Snapshot {
    fn get(&self, key: &InstanceKey) -> Option<Instance> {
        let id = match key {
            InstanceKey::Id(id) => id,
            InstanceKey::PrivateDns(name) => self.id_by_dns.get(name)?,
        };
        self.by_id.get(id).cloned()
    }

    fn age(&self) -> Option<Duration> {
        self.taken.map(|t| t.elapsed())
    }
}

pub struct InstanceCache {
    ec2: Ec2,
    cluster: ClusterTags,
    snapshot: tokio::sync::Mutex<Snapshot>,
}

impl InstanceCache {
    pub fn new(ec2: Ec2, cluster: ClusterTags) -> Self {
        Self { ec2, cluster, snapshot: tokio::sync::Mutex::default() }
    }

    pub async fn get(&self, key: &InstanceKey) -> Result<Option<Instance>, AwsError> {
        let mut seen = None;
        loop {
            let wait = {
                let mut snapshot = self.snapshot.lock().await;
                let age = snapshot.age();
                if age.is_some_and(|a| a < TTL)
                    && let Some(found) = snapshot.get(key)
                {
                    return Ok(Some(found));
                }
                // A snapshot taken since this lookup first missed has answered it already.
                if seen.is_some() && snapshot.taken != seen {
                    break;
                }
                match age {
                    Some(age) if age < MIN_REFRESH => MIN_REFRESH - age,
                    _ => {
                        *snapshot = self.take_snapshot().await?;
                        if let Some(found) = snapshot.get(key) {
                            return Ok(Some(found));
                        }
                        break;
                    }
                }
            };
            // Too soon to refresh: every lookup that misses meanwhile (Nodes joining together)
            // waits for the one refresh that comes when the snapshot is old enough.
            seen = self.snapshot.lock().await.taken;
            tokio::time::sleep(wait).await;
        }
        self.direct(key).await
    }

    async fn take_snapshot(&self) -> Result<Snapshot, AwsError> {
        let keys = vec![self.cluster.key(), LEGACY_CLUSTER_TAG.to_string()];
        let instances = self.ec2.instances(Vec::new(), vec![filter("tag-key", keys)]).await?;
        let mut snapshot = Snapshot { taken: Some(Instant::now()), ..Snapshot::default() };
        for instance in instances {
            let tags = instance.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
            if !self.cluster.is_cluster(tags) {
                continue;
            }
            let Some(id) = instance.instance_id().map(str::to_string) else { continue };
            if let Some(dns) = instance.private_dns_name().filter(|d| !d.is_empty()) {
                snapshot.id_by_dns.insert(dns.to_string(), id.clone());
            }
            snapshot.by_id.insert(id, instance);
        }
        tracing::debug!(instances = snapshot.by_id.len(), "instance snapshot refreshed");
        Ok(snapshot)
    }

    async fn direct(&self, key: &InstanceKey) -> Result<Option<Instance>, AwsError> {
        let result = match key {
            InstanceKey::Id(id) => self.ec2.instances(vec![id.clone()], Vec::new()).await,
            InstanceKey::PrivateDns(name) => {
                let alive = ["pending", "running", "shutting-down", "stopping", "stopped"];
                self.ec2
                    .instances(
                        Vec::new(),
                        vec![filter("private-dns-name", [name.clone()]), filter("instance-state-name", alive)],
                    )
                    .await
            }
        };
        match result {
            Ok(found) => Ok(found.into_iter().next()),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }
}
