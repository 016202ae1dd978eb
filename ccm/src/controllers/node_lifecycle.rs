//! The cloud-node-lifecycle controller: removes Nodes whose instance is gone and marks Nodes
//! whose instance is shut down.
//!
//! # Expected flow
//! Every `--node-monitor-period` (5 s), for every Node in the cache:
//! - `Ready=True`: the taint `node.cloudprovider.kubernetes.io/shutdown:NoSchedule` is removed
//!   if present;
//! - otherwise, if the instance no longer exists (terminated or unknown): Event `DeletingNode`
//!   and the Node is deleted (Warning `DeletingNodeFailed` if that fails);
//! - otherwise, if the instance is shut down (stopped): the shutdown taint is added.
//!
//! # Errors
//! Logged and skipped; the next pass tries again. A Node the cloud says is not its own (another
//! provider's providerID: hybrid nodes, virtual kubelets, Fargate) is never deleted or
//! tainted; that is logged once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_provider::{CloudProvider, Instances, Retry};
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::Shared;
use crate::events::Events;
use crate::objects::{self, SHUTDOWN_TAINT};

pub const NAME: &str = "cloud-node-lifecycle";
pub const EVENT_SOURCE: &str = "cloud-node-lifecycle-controller";

pub async fn run<P: CloudProvider>(
    shared: Shared,
    cloud: Arc<P>,
    period: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let events = Events::new(shared.client.clone(), EVENT_SOURCE, &shared.instance);
    let told = Mutex::new(HashSet::new());
    super::every_period_over_nodes(&shared, NAME, period, shutdown, |store| {
        let (shared, cloud, events, told) = (&shared, cloud.clone(), &events, &told);
        async move { pass(shared, cloud.as_ref(), &store, events, told).await }
    })
    .await;
}

async fn pass<P: CloudProvider>(
    shared: &Shared,
    cloud: &P,
    store: &Store<Node>,
    events: &Events,
    told: &Mutex<HashSet<String>>,
) {
    let Some(instances) = cloud.instances() else { return };
    let api: Api<Node> = Api::all(shared.client.clone());
    for node in store.state() {
        let name = node.name_any();
        let has_shutdown_taint = objects::has_taint(&node, SHUTDOWN_TAINT);
        if objects::is_ready(&node) {
            if has_shutdown_taint && let Err(err) = set_shutdown_taint(&api, &name, false).await {
                shared.metrics.failed(NAME, "kube_api");
                tracing::warn!(node = %name, %err, "removing the shutdown taint");
            }
            continue;
        }
        let info = objects::node_info(&node);
        match instances.instance_exists(&info).await {
            Ok(false) => {
                let object = node.object_ref(&());
                events
                    .normal(
                        &object,
                        "DeletingNode",
                        format!("Deleting node {name} because it does not exist in the cloud provider"),
                    )
                    .await;
                if let Err(err) = api.delete(&name, &DeleteParams::default()).await {
                    events.warning(&object, "DeletingNodeFailed", format!("Error deleting node {name}: {err}")).await;
                }
                continue;
            }
            Ok(true) => {}
            // Another provider's Node (its providerID names no instance of this cloud): left
            // alone, said once.
            Err(err) if err.retry() == Retry::Never => {
                if told.lock().expect("lock").insert(name.clone()) {
                    tracing::warn!(node = %name, %err, "not this cloud's Node; the lifecycle controller leaves it alone");
                }
                continue;
            }
            Err(err) => {
                shared.metrics.failed(NAME, err.kind());
                tracing::warn!(node = %name, %err, "checking whether the instance exists");
                continue;
            }
        }
        match instances.instance_shutdown(&info).await {
            Ok(true) if !has_shutdown_taint => {
                if let Err(err) = set_shutdown_taint(&api, &name, true).await {
                    shared.metrics.failed(NAME, "kube_api");
                    tracing::warn!(node = %name, %err, "adding the shutdown taint");
                }
            }
            Ok(_) => {}
            Err(err) => {
                shared.metrics.failed(NAME, err.kind());
                tracing::warn!(node = %name, %err, "checking whether the instance is shut down");
            }
        }
    }
}

/// Adds or removes the shutdown taint with a read-modify-write under optimistic concurrency
/// (a conflict is left to the next pass).
async fn set_shutdown_taint(api: &Api<Node>, name: &str, present: bool) -> kube::Result<()> {
    let mut node = api.get(name).await?;
    let taints = node.spec.get_or_insert_with(Default::default).taints.get_or_insert_with(Vec::new);
    let has = taints.iter().any(|t| t.key == SHUTDOWN_TAINT);
    if has == present {
        return Ok(());
    }
    if present {
        taints.push(Taint { key: SHUTDOWN_TAINT.into(), effect: "NoSchedule".into(), value: None, time_added: None });
    } else {
        taints.retain(|t| t.key != SHUTDOWN_TAINT);
    }
    api.replace(name, &PostParams::default(), &node).await.map(|_| ())
}
