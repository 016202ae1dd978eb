//! Node objects as a kubelet started with `--cloud-provider=external` registers them.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::seed::SeededInstance;

/// The taint a kubelet with an external cloud provider registers with; the cloud-node
/// controller removes it once the Node is initialized.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";
/// The annotation a kubelet sets when given `--node-ip` under an external cloud provider.
pub const PROVIDED_NODE_IP: &str = "alpha.kubernetes.io/provided-node-ip";

/// A Node to register.
#[derive(Debug, Clone)]
pub struct NodeRegistration {
    pub name: String,
    pub internal_ip: Option<String>,
    pub provided_node_ip: Option<String>,
    pub provider_id: Option<String>,
    pub pod_cidr: Option<String>,
    pub ready: bool,
    pub uninitialized: bool,
}

impl NodeRegistration {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            internal_ip: None,
            provided_node_ip: None,
            provider_id: None,
            pod_cidr: None,
            ready: true,
            uninitialized: true,
        }
    }

    /// The Node a kubelet on `instance` registers: named after its private DNS name (the
    /// default hostname on AWS), with its private IP, Ready, tainted uninitialized.
    pub fn for_instance(instance: &SeededInstance) -> Self {
        let mut node = Self::named(&instance.private_dns);
        node.internal_ip = Some(instance.private_ip.clone());
        node
    }

    pub fn with_internal_ip(mut self, ip: impl Into<String>) -> Self {
        self.internal_ip = Some(ip.into());
        self
    }

    /// kubelet `--node-ip`: the annotation the cloud-node controller must honour.
    pub fn with_provided_node_ip(mut self, ip: impl Into<String>) -> Self {
        self.provided_node_ip = Some(ip.into());
        self
    }

    /// kubelet `--provider-id`.
    pub fn with_provider_id(mut self, id: impl Into<String>) -> Self {
        self.provider_id = Some(id.into());
        self
    }

    pub fn with_pod_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.pod_cidr = Some(cidr.into());
        self
    }

    pub fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }

    /// Registered without the uninitialized taint (as if initialized long ago).
    pub fn initialized(mut self) -> Self {
        self.uninitialized = false;
        self
    }

    pub fn to_node(&self) -> Node {
        let labels = [
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let annotations =
            self.provided_node_ip.as_ref().map(|ip| [(PROVIDED_NODE_IP.to_string(), ip.clone())].into_iter().collect());
        let taints = self.uninitialized.then(|| {
            vec![Taint {
                key: UNINITIALIZED_TAINT.into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }]
        });
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                annotations,
                ..Default::default()
            },
            spec: Some(NodeSpec {
                provider_id: self.provider_id.clone(),
                pod_cidr: self.pod_cidr.clone(),
                pod_cidrs: self.pod_cidr.clone().map(|c| vec![c]),
                taints,
                ..Default::default()
            }),
            status: Some(self.status()),
        }
    }

    fn status(&self) -> NodeStatus {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let (status, reason) = if self.ready { ("True", "KubeletReady") } else { ("Unknown", "NodeStatusUnknown") };
        let mut addresses = vec![NodeAddress { type_: "Hostname".into(), address: self.name.clone() }];
        if let Some(ip) = &self.internal_ip {
            addresses.insert(0, NodeAddress { type_: "InternalIP".into(), address: ip.clone() });
        }
        NodeStatus {
            addresses: Some(addresses),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(format!("registered by the e2e test ground ({reason})")),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(now),
            }]),
            ..Default::default()
        }
    }

    /// Creates the Node, then writes its status through the status subresource as a kubelet
    /// does (the create may drop status).
    pub async fn register(&self, client: &kube::Client) -> Result<Node> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node = self.to_node();
        nodes.create(&PostParams::default(), &node).await.with_context(|| format!("creating Node {}", self.name))?;
        let status = serde_json::json!({ "status": node.status });
        nodes
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .with_context(|| format!("writing the status of Node {}", self.name))
    }
}
