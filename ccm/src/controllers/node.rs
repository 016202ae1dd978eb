//! The cloud-node controller: initializes Nodes from the cloud and keeps their addresses fresh.
//!
//! # Watches
//! Nodes, through the cache every controller shares ([`super::cache`]).
//!
//! # Expected flow
//! A Node carrying `node.cloudprovider.kubernetes.io/uninitialized` (a kubelet started with
//! `--cloud-provider=external` registers with it): the cloud's [`InstanceMetadata`] is read;
//! `alpha.kubernetes.io/provided-node-ip`, if set, must be one of the cloud's addresses; then,
//! in one optimistic-concurrency `Update`: `spec.providerID` (only if empty), the GA and beta
//! instance-type / zone / region labels, the provider's additional labels (never in a
//! `kubernetes.io` / `k8s.io` namespace, never overwriting an existing label), and the taint
//! removed. The addresses go to `status.addresses`; Event `Synced`.
//!
//! Initialized Nodes: a beta topology label that differs from its GA twin is copied to it,
//! and their addresses are refreshed from the cloud when this process starts and every
//! `--node-status-update-frequency`.
//!
//! # Errors
//! Any error keeps the taint and retries with per-Node exponential backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_provider::{AddressType, CloudError, CloudProvider, InstanceMetadata, Instances, NodeAddress};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeAddress as K8sAddress};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ReflectHandle;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::backoff::Backoff;
use super::{ReconcileError, Shared};
use crate::events::Events;
use crate::objects::{self, PROVIDED_NODE_IP_ANNOTATION, UNINITIALIZED_TAINT};

pub const NAME: &str = "cloud-node";
pub const EVENT_SOURCE: &str = "cloud-node-controller";

const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
const INSTANCE_TYPE_BETA: &str = "beta.kubernetes.io/instance-type";
const ZONE: &str = "topology.kubernetes.io/zone";
const ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
const REGION: &str = "topology.kubernetes.io/region";
const REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";

#[derive(Debug, Clone)]
pub struct Settings {
    pub workers: u16,
    pub status_update_frequency: Duration,
}

struct Context<P: CloudProvider> {
    shared: Shared,
    cloud: Arc<P>,
    settings: Settings,
    events: Events,
    backoff: Backoff,
    /// When each initialized Node's addresses were last refreshed.
    refreshed: Mutex<HashMap<String, Instant>>,
}

impl<P: CloudProvider> Context<P> {
    fn instances(&self) -> &P::Instances {
        self.cloud.instances().expect("the cloud-node controller runs only for clouds with instances")
    }
}

pub async fn run<P: CloudProvider>(
    shared: Shared,
    cloud: Arc<P>,
    settings: Settings,
    trigger: ReflectHandle<Node>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = shared.client.clone();
    let nodes = shared.nodes.store.clone();
    let ctx = Arc::new(Context {
        events: Events::new(client.clone(), EVENT_SOURCE, &shared.instance),
        shared,
        cloud,
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(300)),
        refreshed: Mutex::default(),
        settings: settings.clone(),
    });
    Controller::for_shared_stream(trigger, nodes)
        .with_config(ControllerConfig::default().concurrency(settings.workers))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile<P: CloudProvider>(node: Arc<Node>, ctx: Arc<Context<P>>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = if node.meta().deletion_timestamp.is_some() {
        Ok(Action::await_change())
    } else if objects::has_taint(&node, UNINITIALIZED_TAINT) {
        initialize(&node, &ctx).await
    } else {
        maintain(&node, &ctx).await
    };
    ctx.shared.metrics.reconciled(NAME, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.reset(&node.name_any());
    }
    result
}

fn error_policy<P: CloudProvider>(node: Arc<Node>, err: &ReconcileError, ctx: Arc<Context<P>>) -> Action {
    ctx.shared.metrics.failed(NAME, err.kind());
    tracing::warn!(node = %node.name_any(), %err, "node sync failed");
    // A Node is always retried: the taint must not stay because of one bad moment.
    let retry = match err.retry() {
        cloud_provider::Retry::Never => cloud_provider::Retry::Backoff,
        other => other,
    };
    ctx.backoff.next_delay(&node.name_any(), retry, 0).map_or_else(Action::await_change, Action::requeue)
}

async fn initialize<P: CloudProvider>(node: &Node, ctx: &Context<P>) -> Result<Action, ReconcileError> {
    let name = node.name_any();
    let info = objects::node_info(node);
    let meta = ctx.instances().instance_metadata(&info).await?;
    if meta.provider_id.is_empty() && info.provider_id.is_none() {
        return Err(CloudError::transient("node.initialize", "the cloud returned no providerID").into());
    }
    let addresses = node_addresses(node, &meta)?;

    let api: Api<Node> = Api::all(ctx.shared.client.clone());
    // Update under optimistic concurrency: re-read and retry on conflict.
    let mut attempt = 0;
    let updated = loop {
        let mut fresh = api.get(&name).await?;
        if !objects::has_taint(&fresh, UNINITIALIZED_TAINT) {
            break fresh;
        }
        apply_metadata(&mut fresh, &meta);
        match api.replace(&name, &PostParams::default(), &fresh).await {
            Ok(node) => break node,
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    patch_addresses(&api, &name, &addresses).await?;
    ctx.events.normal(&updated.object_ref(&()), "Synced", "Node synced successfully").await;
    if let Some(created) = &node.metadata.creation_timestamp {
        let delay = k8s_openapi::jiff::Timestamp::now().duration_since(created.0).as_secs_f64().max(0.0);
        ctx.shared.metrics.taint_removal_delay.observe(delay);
        ctx.shared.metrics.initial_node_sync_delay.observe(delay);
    }
    ctx.refreshed.lock().expect("lock").insert(name, Instant::now());
    Ok(Action::requeue(ctx.settings.status_update_frequency))
}

/// What this controller would change on `node` given the cloud's `meta`, in words (for
/// `cloud-controller-manager plan`): empty when nothing.
pub fn planned_changes(node: &Node, meta: &InstanceMetadata) -> Result<Vec<String>, ReconcileError> {
    let mut out = Vec::new();
    let mut updated = node.clone();
    if objects::has_taint(node, UNINITIALIZED_TAINT) {
        apply_metadata(&mut updated, meta);
        out.push(format!("remove the taint {UNINITIALIZED_TAINT}"));
        let provider_id = |n: &Node| n.spec.as_ref().and_then(|s| s.provider_id.clone());
        if let Some(id) = provider_id(&updated).filter(|id| provider_id(node).as_ref() != Some(id)) {
            out.push(format!("set providerID {id}"));
        }
    } else {
        let labels = updated.metadata.labels.get_or_insert_with(BTreeMap::new);
        for (beta, ga) in [(ZONE_BETA, ZONE), (REGION_BETA, REGION), (INSTANCE_TYPE_BETA, INSTANCE_TYPE)] {
            if let Some(value) = labels.get(beta).cloned() {
                labels.insert(ga.to_string(), value);
            }
        }
    }
    let before = node.labels();
    for (key, value) in updated.labels() {
        if before.get(key) != Some(value) {
            out.push(format!("set label {key}={value}"));
        }
    }
    let addresses = node_addresses(node, meta)?;
    if sorted(&addresses) != sorted(&objects::node_info(node).addresses) {
        let list: Vec<String> = addresses.iter().map(|a| format!("{}={}", a.kind.as_str(), a.address)).collect();
        out.push(format!("set addresses [{}]", list.join(", ")));
    }
    Ok(out)
}

/// Writes the cloud's view into the Node: providerID if empty, topology labels, additional
/// labels that are neither Kubernetes-namespaced nor already present; removes the taint.
fn apply_metadata(node: &mut Node, meta: &InstanceMetadata) {
    let spec = node.spec.get_or_insert_with(Default::default);
    if spec.provider_id.as_deref().unwrap_or("").is_empty() && !meta.provider_id.is_empty() {
        spec.provider_id = Some(meta.provider_id.clone());
    }
    if let Some(taints) = spec.taints.as_mut() {
        taints.retain(|t| t.key != UNINITIALIZED_TAINT);
    }
    let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (keys, value) in [
        ([INSTANCE_TYPE, INSTANCE_TYPE_BETA], &meta.instance_type),
        ([ZONE, ZONE_BETA], &meta.zone),
        ([REGION, REGION_BETA], &meta.region),
    ] {
        if !value.is_empty() {
            for key in keys {
                labels.insert(key.to_string(), value.clone());
            }
        }
    }
    for (key, value) in &meta.additional_labels {
        if !is_kubernetes_namespaced(key) && !labels.contains_key(key) {
            labels.insert(key.clone(), value.clone());
        }
    }
}

/// `kubernetes.io` and `k8s.io` label prefixes, and their subdomains, are Kubernetes' own.
fn is_kubernetes_namespaced(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else { return false };
    ["kubernetes.io", "k8s.io"].iter().any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")))
}

/// The Node's new addresses, as Kubernetes' cloud node controller computes them: the cloud's,
/// plus the Node's own Hostname when the cloud reports none; with the kubelet's provided node
/// IP(s) (`--node-ip`, one IP or a dual-stack pair), each must be one of the cloud's addresses
/// and becomes the only address of its type, first in the list.
fn node_addresses(node: &Node, meta: &InstanceMetadata) -> Result<Vec<NodeAddress>, ReconcileError> {
    let mut addresses = meta.addresses.clone();
    if !addresses.iter().any(|a| a.kind == AddressType::Hostname) {
        addresses.extend(objects::node_info(node).addresses.into_iter().filter(|a| a.kind == AddressType::Hostname));
    }
    let Some(provided) = node.annotations().get(PROVIDED_NODE_IP_ANNOTATION) else { return Ok(addresses) };
    let invalid = |why: String| -> ReconcileError {
        CloudError::transient("node.provided_node_ip", format!("{PROVIDED_NODE_IP_ANNOTATION} {provided:?}: {why}"))
            .into()
    };
    let ips = parse_node_ips(provided).map_err(invalid)?;
    let mut enforced = Vec::new();
    let mut kinds = Vec::new();
    for ip in &ips {
        let matching: Vec<&NodeAddress> =
            addresses.iter().filter(|a| a.address.parse::<std::net::IpAddr>().ok() == Some(*ip)).collect();
        if matching.is_empty() {
            return Err(invalid(format!(
                "{ip} (given to the kubelet with --node-ip) is not one of the instance's addresses"
            )));
        }
        for a in matching {
            enforced.push(a.clone());
            kinds.push(a.kind);
        }
    }
    enforced.extend(addresses.iter().filter(|a| !kinds.contains(&a.kind)).cloned());
    Ok(enforced)
}

/// The annotation as Kubernetes parses it: one IP, or two of different families, split at the
/// comma with nothing trimmed; a pair may not hold an unspecified address.
fn parse_node_ips(value: &str) -> Result<Vec<std::net::IpAddr>, String> {
    let mut ips = Vec::new();
    for part in value.split(',') {
        ips.push(part.parse::<std::net::IpAddr>().map_err(|_| format!("could not parse {part:?}"))?);
    }
    match ips.as_slice() {
        [_] => Ok(ips),
        [a, b] if a.is_ipv4() != b.is_ipv4() && !a.is_unspecified() && !b.is_unspecified() => Ok(ips),
        _ => Err("must contain either a single IP or a dual-stack pair of IPs".into()),
    }
}

async fn patch_addresses(api: &Api<Node>, name: &str, addresses: &[NodeAddress]) -> kube::Result<()> {
    let list: Vec<K8sAddress> = addresses
        .iter()
        .map(|a| K8sAddress { type_: a.kind.as_str().to_string(), address: a.address.clone() })
        .collect();
    // A merge patch replaces the whole list (a strategic one would merge by type and keep stale
    // entries).
    let patch = json!({ "status": { "addresses": list } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

async fn maintain<P: CloudProvider>(node: &Node, ctx: &Context<P>) -> Result<Action, ReconcileError> {
    let name = node.name_any();
    let api: Api<Node> = Api::all(ctx.shared.client.clone());
    let labels = node.labels();
    let mut fixes = serde_json::Map::new();
    for (beta, ga) in [(ZONE_BETA, ZONE), (REGION_BETA, REGION), (INSTANCE_TYPE_BETA, INSTANCE_TYPE)] {
        if let Some(value) = labels.get(beta)
            && labels.get(ga) != Some(value)
        {
            fixes.insert(ga.to_string(), json!(value));
        }
    }
    if !fixes.is_empty() {
        let patch = json!({ "metadata": { "labels": fixes } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }

    // A Node not refreshed since this process started is refreshed now (as upstream refreshes
    // every initialized Node when it starts), then every period.
    let period = ctx.settings.status_update_frequency;
    let left = ctx
        .refreshed
        .lock()
        .expect("lock")
        .get(&name)
        .map_or(Duration::ZERO, |last| period.saturating_sub(last.elapsed()));
    if !left.is_zero() {
        return Ok(Action::requeue(left));
    }
    let meta = match ctx.instances().instance_metadata(&objects::node_info(node)).await {
        Ok(meta) => meta,
        // Another provider's Node: nothing to refresh, and no retry can change that; looked at
        // again next period (as upstream does) rather than retried with backoff.
        Err(err) if err.retry() == cloud_provider::Retry::Never => {
            tracing::debug!(node = %name, %err, "addresses not refreshed");
            ctx.refreshed.lock().expect("lock").insert(name, Instant::now());
            return Ok(Action::requeue(period));
        }
        Err(err) => return Err(err.into()),
    };
    let addresses = node_addresses(node, &meta)?;
    let current = objects::node_info(node).addresses;
    if sorted(&addresses) != sorted(&current) {
        patch_addresses(&api, &name, &addresses).await?;
    }
    ctx.refreshed.lock().expect("lock").insert(name, Instant::now());
    Ok(Action::requeue(period))
}

fn sorted(addresses: &[NodeAddress]) -> Vec<(AddressType, String)> {
    let mut v: Vec<_> = addresses.iter().map(|a| (a.kind, a.address.clone())).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta() -> InstanceMetadata {
        InstanceMetadata {
            provider_id: "aws:///us-east-1a/i-1".into(),
            instance_type: "m5.large".into(),
            addresses: vec![
                NodeAddress::new(AddressType::InternalIp, "10.0.0.5"),
                NodeAddress::new(AddressType::InternalIp, "10.0.0.6"),
                NodeAddress::new(AddressType::InternalDns, "ip-10-0-0-5.ec2.internal"),
            ],
            zone: "us-east-1a".into(),
            region: "us-east-1".into(),
            additional_labels: [
                ("topology.k8s.aws/zone-id".to_string(), "use1-az6".to_string()),
                ("node.kubernetes.io/evil".to_string(), "x".to_string()),
                ("keep".to_string(), "cloud".to_string()),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn tainted_node() -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                labels: Some([("keep".to_string(), "mine".to_string())].into_iter().collect()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(vec![
                    Taint { key: UNINITIALIZED_TAINT.into(), effect: "NoSchedule".into(), ..Default::default() },
                    Taint { key: "other".into(), effect: "NoSchedule".into(), ..Default::default() },
                ]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn initialization_sets_labels_provider_id_and_removes_only_our_taint() {
        let mut node = tainted_node();
        apply_metadata(&mut node, &meta());
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[INSTANCE_TYPE], "m5.large");
        assert_eq!(labels[INSTANCE_TYPE_BETA], "m5.large");
        assert_eq!(labels[ZONE], "us-east-1a");
        assert_eq!(labels[ZONE_BETA], "us-east-1a");
        assert_eq!(labels[REGION_BETA], "us-east-1");
        assert_eq!(labels["topology.k8s.aws/zone-id"], "use1-az6");
        assert_eq!(labels["keep"], "mine", "never overwrite");
        assert!(!labels.contains_key("node.kubernetes.io/evil"), "never in k8s namespaces");
        let spec = node.spec.unwrap();
        assert_eq!(spec.provider_id.as_deref(), Some("aws:///us-east-1a/i-1"));
        let taints: Vec<_> = spec.taints.unwrap().into_iter().map(|t| t.key).collect();
        assert_eq!(taints, ["other"]);
    }

    #[test]
    fn an_existing_provider_id_is_kept() {
        let mut node = tainted_node();
        node.spec.as_mut().unwrap().provider_id = Some("aws:///zone/i-kubelet".into());
        apply_metadata(&mut node, &meta());
        assert_eq!(node.spec.unwrap().provider_id.as_deref(), Some("aws:///zone/i-kubelet"));
    }

    #[test]
    fn the_provided_node_ip_comes_first_and_alone_of_its_type() {
        let mut node = tainted_node();
        node.metadata.annotations =
            Some([(PROVIDED_NODE_IP_ANNOTATION.to_string(), "10.0.0.6".to_string())].into_iter().collect());
        let addresses = node_addresses(&node, &meta()).unwrap();
        assert_eq!(
            addresses,
            vec![
                NodeAddress::new(AddressType::InternalIp, "10.0.0.6"),
                NodeAddress::new(AddressType::InternalDns, "ip-10-0-0-5.ec2.internal"),
            ]
        );
        node.metadata.annotations =
            Some([(PROVIDED_NODE_IP_ANNOTATION.to_string(), "192.0.2.1".to_string())].into_iter().collect());
        assert!(node_addresses(&node, &meta()).is_err(), "an IP the instance lacks is an error");
    }

    #[test]
    fn a_dual_stack_provided_node_ip_enforces_both() {
        let mut meta = meta();
        meta.addresses.push(NodeAddress::new(AddressType::InternalIp, "2600:1f18::5"));
        let mut node = tainted_node();
        let with = |node: &mut Node, value: &str| {
            node.metadata.annotations =
                Some([(PROVIDED_NODE_IP_ANNOTATION.to_string(), value.to_string())].into_iter().collect());
        };
        with(&mut node, "10.0.0.6,2600:1f18:0::5");
        let addresses = node_addresses(&node, &meta).unwrap();
        assert_eq!(
            addresses,
            vec![
                NodeAddress::new(AddressType::InternalIp, "10.0.0.6"),
                NodeAddress::new(AddressType::InternalIp, "2600:1f18::5"),
                NodeAddress::new(AddressType::InternalDns, "ip-10-0-0-5.ec2.internal"),
            ],
            "IPs compare as IPs, not strings"
        );
        for bad in ["10.0.0.6, 2600:1f18::5", "10.0.0.5,10.0.0.6", "10.0.0.6,::", "", "not-an-ip"] {
            with(&mut node, bad);
            assert!(node_addresses(&node, &meta).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kubernetes_namespaces() {
        assert!(is_kubernetes_namespaced("kubernetes.io/arch"));
        assert!(is_kubernetes_namespaced("node.kubernetes.io/x"));
        assert!(is_kubernetes_namespaced("k8s.io/x"));
        assert!(!is_kubernetes_namespaced("topology.k8s.aws/zone-id"));
        assert!(!is_kubernetes_namespaced("plain"));
    }
}
