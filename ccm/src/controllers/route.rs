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

/// What the route controller would change: routes to delete and (CIDR, Node) routes to create.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoutePlan {
    pub delete: Vec<Route>,
    pub create: Vec<(String, String)>,
}

/// Pod CIDR → (Node name, Node) that wants a route to it.
pub fn wanted_routes(nodes: &[Arc<Node>]) -> BTreeMap<String, (String, Arc<Node>)> {
    let mut wanted = BTreeMap::new();
    for node in nodes {
        for cidr in pod_cidrs(node) {
            wanted.insert(cidr, (node.name_any(), node.clone()));
        }
    }
    wanted
}

/// Routes that are blackholed or that no Node wants go (only inside the cluster CIDRs); each
/// wanted CIDR without a route to its Node gets one.
pub fn plan<T>(existing: &[Route], wanted: &BTreeMap<String, (String, T)>, cluster_cidrs: &[IpNet]) -> RoutePlan {
    let present: BTreeSet<(&str, &str)> = existing
        .iter()
        .filter(|r| !r.blackhole)
        .map(|r| (r.destination_cidr.as_str(), r.target_node.as_str()))
        .collect();
    let delete = existing
        .iter()
        .filter(|route| {
            let unwanted = wanted.get(&route.destination_cidr).is_none_or(|(n, _)| *n != route.target_node);
            (route.blackhole || unwanted) && is_responsible(cluster_cidrs, &route.destination_cidr)
        })
        .cloned()
        .collect();
    let create = wanted
        .iter()
        .filter(|(cidr, (name, _))| !present.contains(&(cidr.as_str(), name.as_str())))
        .map(|(cidr, (name, _))| (cidr.clone(), name.clone()))
        .collect();
    RoutePlan { delete, create }
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

    let wanted = wanted_routes(&nodes);
    let plan = plan(&existing, &wanted, &settings.cluster_cidrs);
    for route in &plan.delete {
        if let Err(err) = routes_api.delete(cluster, route).await {
            tracing::warn!(cidr = %route.destination_cidr, %err, "deleting route");
        }
    }

    let mut failed_nodes = BTreeSet::new();
    for (cidr, name) in &plan.create {
        let node = &wanted[cidr].1;
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

    fn route(cidr: &str, node: &str, blackhole: bool) -> Route {
        Route { name: String::new(), target_node: node.into(), destination_cidr: cidr.into(), blackhole }
    }

    #[test]
    fn the_plan_creates_missing_routes_and_deletes_only_unwanted_ones_it_owns() {
        let cidrs = vec!["10.244.0.0/16".parse().unwrap()];
        let wanted: BTreeMap<String, (String, ())> = [
            ("10.244.1.0/24".to_string(), ("a".to_string(), ())),
            ("10.244.2.0/24".to_string(), ("b".to_string(), ())),
            ("10.244.3.0/24".to_string(), ("c".to_string(), ())),
        ]
        .into();
        let existing = vec![
            route("10.244.1.0/24", "a", false),    // as wanted
            route("10.244.2.0/24", "old", false),  // to the wrong Node
            route("10.244.3.0/24", "c", true),     // blackholed
            route("10.244.9.0/24", "gone", false), // nobody's
            route("192.168.0.0/16", "nat", false), // outside the cluster CIDRs: not ours
        ];
        let plan = plan(&existing, &wanted, &cidrs);
        let deleted: Vec<&str> = plan.delete.iter().map(|r| r.destination_cidr.as_str()).collect();
        assert_eq!(deleted, ["10.244.2.0/24", "10.244.3.0/24", "10.244.9.0/24"]);
        assert_eq!(plan.create, [("10.244.2.0/24".into(), "b".into()), ("10.244.3.0/24".into(), "c".into())]);
        assert_eq!(
            super::plan(
                &[route("10.244.1.0/24", "a", false)],
                &wanted.iter().take(1).map(|(k, v)| (k.clone(), v.clone())).collect(),
                &cidrs
            ),
            RoutePlan::default()
        );
    }
}
