//! The route controller: a cloud route for every Node's pod CIDR.
//!
//! # Expected flow
//! Every `--route-reconciliation-period` (10 s): list the cloud's routes; create a route for
//! each pod CIDR of each Node that lacks one (Warning `FailedToCreateRoute` on the Node when
//! that fails); delete routes that are blackholed or that no Node wants, **only** when their
//! destination lies inside a `--cluster-cidr` (routes outside are never touched); then set each
//! Node's `NetworkUnavailable` condition: `False`/`RouteCreated` when all its routes exist,
//! `True`/`NoRouteCreated` otherwise. Nodes without a pod CIDR are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cloud_provider::{CloudProvider, Route, Routes};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::Shared;
use crate::events::Events;

pub const NAME: &str = "route";
pub const EVENT_SOURCE: &str = "route_controller";

#[derive(Debug, Clone)]
pub struct Settings {
    pub cluster_name: String,
    pub cluster_cidrs: Vec<IpNet>,
    pub period: Duration,
}

pub async fn run<P: CloudProvider>(
    shared: Shared,
    cloud: Arc<P>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let events = Events::new(shared.client.clone(), EVENT_SOURCE, &shared.instance);
    super::every_period_over_nodes(&shared, NAME, settings.period, shutdown, |store| {
        let (shared, cloud, settings, events) = (&shared, cloud.clone(), &settings, &events);
        async move {
            if let Err(err) = reconcile(shared, cloud.as_ref(), settings, &store, events).await {
                shared.metrics.failed(NAME, err.kind());
                tracing::warn!(%err, "route reconciliation");
            }
            shared.metrics.route_sync.inc();
        }
    })
    .await;
}

/// Whether this controller may delete a route to `cidr`: only inside the cluster CIDRs.
pub fn is_responsible(cluster_cidrs: &[IpNet], cidr: &str) -> bool {
    cidr.parse::<IpNet>().is_ok_and(|net| cluster_cidrs.iter().any(|c| c.contains(&net)))
}

async fn reconcile<P: CloudProvider>(
    shared: &Shared,
    cloud: &P,
    settings: &Settings,
    store: &Store<Node>,
    events: &Events,
) -> Result<(), super::ReconcileError> {
    let Some(routes_api) = cloud.routes() else { return Ok(()) };
    let cluster = &settings.cluster_name;
    let nodes = store.state();
    let node_infos: Vec<_> = nodes.iter().map(|n| crate::objects::node_info(n)).collect();
    let existing = routes_api.list(cluster, &node_infos).await?;

    // CIDR → Node that wants it.
    let mut wanted: BTreeMap<String, Arc<Node>> = BTreeMap::new();
    for node in &nodes {
        for cidr in pod_cidrs(node) {
            wanted.insert(cidr, node.clone());
        }
    }
    let present: BTreeSet<(String, String)> =
        existing.iter().filter(|r| !r.blackhole).map(|r| (r.destination_cidr.clone(), r.target_node.clone())).collect();

    for route in &existing {
        let unwanted = wanted.get(&route.destination_cidr).is_none_or(|n| n.name_any() != route.target_node);
        if (route.blackhole || unwanted)
            && is_responsible(&settings.cluster_cidrs, &route.destination_cidr)
            && let Err(err) = routes_api.delete(cluster, route).await
        {
            tracing::warn!(cidr = %route.destination_cidr, %err, "deleting route");
        }
    }

    let mut failed_nodes = BTreeSet::new();
    for (cidr, node) in &wanted {
        let name = node.name_any();
        if present.contains(&(cidr.clone(), name.clone())) {
            continue;
        }
        let route =
            Route { name: String::new(), target_node: name.clone(), destination_cidr: cidr.clone(), blackhole: false };
        let uid = node.uid().unwrap_or_default();
        if let Err(err) = routes_api.create(cluster, &uid, &route, &crate::objects::node_info(node)).await {
            failed_nodes.insert(name.clone());
            events
                .warning(
                    &node.object_ref(&()),
                    "FailedToCreateRoute",
                    format!("Could not create route {cidr} for node {name}: {err}"),
                )
                .await;
        }
    }

    // A Node without a pod CIDR is none of this controller's business: its condition is left
    // alone (Kubernetes' route controller skips it too).
    let api: Api<Node> = Api::all(shared.client.clone());
    for node in nodes.iter().filter(|n| !pod_cidrs(n).is_empty()) {
        let name = node.name_any();
        let routed = !failed_nodes.contains(&name);
        if let Err(err) = set_network_unavailable(&api, node, !routed).await {
            tracing::warn!(node = %name, %err, "updating NetworkUnavailable");
        }
    }
    Ok(())
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let cidrs = spec.and_then(|s| s.pod_cidrs.clone()).filter(|c| !c.is_empty());
    cidrs.or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c])).unwrap_or_default()
}

async fn set_network_unavailable(api: &Api<Node>, node: &Node, unavailable: bool) -> kube::Result<()> {
    let (status, reason, message) = if unavailable {
        ("True", "NoRouteCreated", "RouteController failed to create a route")
    } else {
        ("False", "RouteCreated", "RouteController created a route")
    };
    let current = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "NetworkUnavailable"));
    if current.is_some_and(|c| c.status == status && c.reason.as_deref() == Some(reason)) {
        return Ok(());
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({ "status": { "conditions": [{
        "type": "NetworkUnavailable", "status": status, "reason": reason, "message": message,
        "lastTransitionTime": now, "lastHeartbeatTime": now,
    }] } });
    // Conditions merge by type under a strategic-merge patch, leaving Ready and the rest alone.
    api.patch_status(&node.name_any(), &PatchParams::default(), &Patch::Strategic(&patch)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responsible_only_inside_the_cluster_cidrs() {
        let cidrs = vec!["10.244.0.0/16".parse().unwrap()];
        assert!(is_responsible(&cidrs, "10.244.3.0/24"));
        assert!(!is_responsible(&cidrs, "10.245.0.0/24"));
        assert!(!is_responsible(&cidrs, "0.0.0.0/0"));
        assert!(!is_responsible(&cidrs, "not-a-cidr"));
    }
}
