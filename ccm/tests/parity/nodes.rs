//! Node parity: the cloud-node, cloud-node-lifecycle and route controllers of upstream's CCM and
//! ours on the same kubelet-registered Nodes, compared Node by Node.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_ec2::types::InstanceAttributeName;
use ccm_e2e::lb_state::{ClusterState, Normalizer};
use ccm_e2e::{ControlPlane, NodeRegistration, SeedOptions, TestCluster};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams};

use super::Side;

/// What each seeded instance's Node is, as a kubelet would have registered it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A plain Node with a pod CIDR.
    Plain,
    /// kubelet `--node-ip` = its private IP.
    ProvidedIp,
    /// kubelet `--node-ip` = its private IP and an IPv6 address the instance does not have.
    ProvidedDualStackUnknown,
    /// kubelet `--provider-id`, and no pod CIDR.
    ProviderIdNoPodCidr,
    /// Initialized long ago, NotReady, its instance terminated since.
    Terminated,
    /// Initialized long ago, NotReady, its instance stopped.
    Stopped,
}

pub const NODES: [Kind; 6] = [
    Kind::Plain,
    Kind::ProvidedIp,
    Kind::ProvidedDualStackUnknown,
    Kind::ProviderIdNoPodCidr,
    Kind::Terminated,
    Kind::Stopped,
];

pub const CONTROLLERS: &str = "cloud-node,cloud-node-lifecycle,route";
pub const FLAGS: [&str; 4] = [
    "--cluster-cidr=10.244.0.0/16",
    "--configure-cloud-routes=true",
    "--node-monitor-period=2s",
    "--route-reconciliation-period=2s",
];

impl Side {
    /// A fresh cluster whose Nodes are registered as kubelets with `--cloud-provider=external`
    /// register them (one of each [`Kind`]).
    pub async fn for_nodes(label: &'static str, plane: ControlPlane) -> Result<Self> {
        let client = plane.client().await?;
        super::clean(&client).await?;
        let cluster = TestCluster::new(&format!("nodes-{label}")).await?;
        let vpc = cluster.seed(SeedOptions::default().with_instances(NODES.len()).without_brownfield()).await?;
        let ec2 = &cluster.direct.ec2;
        for (i, (kind, instance)) in NODES.iter().zip(&vpc.instances).enumerate() {
            let cidr = format!("10.244.{i}.0/24");
            let provider_id = format!("aws:///{}/{}", instance.zone, instance.id);
            let node = NodeRegistration::for_instance(instance);
            let node = match kind {
                Kind::Plain => node.with_pod_cidr(cidr),
                Kind::ProvidedIp => node.with_pod_cidr(cidr).with_provided_node_ip(&instance.private_ip),
                Kind::ProvidedDualStackUnknown => {
                    node.with_pod_cidr(cidr).with_provided_node_ip(format!("{},fd00::1", instance.private_ip))
                }
                Kind::ProviderIdNoPodCidr => node.with_provider_id(provider_id),
                Kind::Terminated | Kind::Stopped => {
                    node.with_pod_cidr(cidr).with_provider_id(provider_id).initialized().not_ready()
                }
            };
            node.register(&client).await?;
            match kind {
                Kind::Terminated => {
                    ec2.terminate_instances().instance_ids(&instance.id).send().await?;
                }
                Kind::Stopped => {
                    ec2.stop_instances().instance_ids(&instance.id).send().await?;
                }
                _ => {}
            }
        }
        let norm = Normalizer::for_vpc(&vpc);
        Ok(Self { label, plane, client, cluster, vpc, fill: BTreeMap::new(), norm, ccm: None, global: String::new() })
    }

    /// Each Node (by instance index): whether it exists, its providerID, labels, taints,
    /// addresses in order, NetworkUnavailable, and the controllers' event reasons; then the
    /// routes in the cluster route table and each instance's source/destination check.
    pub async fn node_state(&self) -> Result<ClusterState> {
        let mut state = ClusterState::default();
        let nodes: Api<Node> = Api::all(self.client.clone());
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let norm = &self.norm;
        for (i, instance) in self.vpc.instances.iter().enumerate() {
            let entry = format!("node-{i}");
            let Some(node) = nodes.get_opt(&instance.private_dns).await? else {
                state.set(&entry, "exists", "no");
                continue;
            };
            state.set(&entry, "exists", "yes");
            let spec = node.spec.clone().unwrap_or_default();
            state.set(&entry, "providerID", norm.apply(spec.provider_id.as_deref().unwrap_or("-")));
            for (k, v) in node.metadata.labels.clone().unwrap_or_default() {
                state.set(&entry, format!("label {k}"), norm.apply(&v));
            }
            let mut taints: Vec<String> =
                spec.taints.unwrap_or_default().iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
            taints.sort();
            state.set(&entry, "taints", taints.join(","));
            let status = node.status.clone().unwrap_or_default();
            let addresses: Vec<String> = status
                .addresses
                .unwrap_or_default()
                .iter()
                .map(|a| format!("{}={}", a.type_, norm.apply(&a.address)))
                .collect();
            state.set(&entry, "addresses", addresses.join(" "));
            if let Some(c) = status.conditions.unwrap_or_default().iter().find(|c| c.type_ == "NetworkUnavailable") {
                state.set(
                    &entry,
                    "NetworkUnavailable",
                    format!("{} {}", c.status, c.reason.clone().unwrap_or_default()),
                );
            }
            let list = events
                .list(&ListParams::default().fields(&format!("involvedObject.name={}", instance.private_dns)))
                .await?;
            for e in list.items {
                let source = e.source.and_then(|s| s.component).or(e.reporting_component).unwrap_or_default();
                if source.contains("node") || source.contains("route") {
                    state.set(
                        &entry,
                        format!("event {} {}", e.type_.unwrap_or_default(), e.reason.unwrap_or_default()),
                        "emitted",
                    );
                }
            }
        }
        let ec2 = &self.cluster.direct.ec2;
        let tables = ec2.describe_route_tables().route_table_ids(&self.vpc.cluster_route_table_id).send().await?;
        for table in tables.route_tables() {
            for r in table.routes() {
                if r.gateway_id() == Some("local") {
                    continue;
                }
                let target = r.instance_id().or(r.gateway_id()).unwrap_or("-");
                state.set("(routes)", norm.apply(r.destination_cidr_block().unwrap_or_default()), norm.apply(target));
            }
        }
        for (i, instance) in self.vpc.instances.iter().enumerate() {
            let attr = ec2
                .describe_instance_attribute()
                .instance_id(&instance.id)
                .attribute(InstanceAttributeName::SourceDestCheck)
                .send()
                .await
                .context("DescribeInstanceAttribute")?;
            let check = attr.source_dest_check().and_then(|v| v.value()).map_or("-".to_string(), |v| v.to_string());
            state.set(&format!("node-{i}"), "instance sourceDestCheck", check);
        }
        Ok(state)
    }
}
