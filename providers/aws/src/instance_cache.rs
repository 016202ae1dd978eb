//! Instances by ID or private DNS name, at a fraction of one DescribeInstances per lookup.
//!
//! A snapshot of every cluster-tagged instance (one paged DescribeInstances) answers lookups
//! while it is younger than [`TTL`]; a lookup it cannot answer refreshes it, at most once per
//! [`MIN_REFRESH`]. Concurrent callers share one refresh (the snapshot's lock is held while it
//! runs). Instances the snapshot cannot know (not cluster-tagged) are asked for directly. So
//! 100 Nodes joining at once cost one or two calls, not 100, and the lifecycle controller's
//! checks of NotReady Nodes cost at most one call per [`TTL`] whatever their number.

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
        {
            let mut snapshot = self.snapshot.lock().await;
            let age = snapshot.age();
            if age.is_some_and(|a| a < TTL)
                && let Some(found) = snapshot.get(key)
            {
                return Ok(Some(found));
            }
            if age.is_none_or(|a| a >= MIN_REFRESH) {
                *snapshot = self.take_snapshot().await?;
                if let Some(found) = snapshot.get(key) {
                    return Ok(Some(found));
                }
            }
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
