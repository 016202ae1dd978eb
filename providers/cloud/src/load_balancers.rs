use std::collections::BTreeMap;
use std::future::Future;

use crate::{CloudError, NodeInfo};

/// A Service of type LoadBalancer, as a provider sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.healthCheckNodePort` (set by Kubernetes for `externalTrafficPolicy: Local`).
    pub health_check_node_port: Option<u16>,
    /// `spec.loadBalancerSourceRanges`.
    pub source_ranges: Vec<String>,
    /// `spec.sessionAffinity == ClientIP`.
    pub session_affinity_client_ip: bool,
    /// `spec.loadBalancerIP` (deprecated upstream, still read by some providers).
    pub load_balancer_ip: Option<String>,
    /// `status.loadBalancer.ingress` as currently recorded.
    pub current_ingress: Vec<IngressPoint>,
    /// This ensure is the periodic drift check of a Service unchanged since its last successful
    /// ensure (`--load-balancer-resync-period`): the provider may answer it from readings shared
    /// by the Services re-ensured on the same tick, seconds old, instead of reading per Service.
    pub periodic: bool,
}

impl ServiceInfo {
    /// `namespace/name`, for messages and tags.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePort {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
    /// 0 when Kubernetes allocated none (`allocateLoadBalancerNodePorts: false`).
    pub node_port: u16,
}

/// One entry of `status.loadBalancer.ingress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IngressPoint {
    pub hostname: Option<String>,
    pub ip: Option<String>,
}

impl IngressPoint {
    pub fn hostname(name: impl Into<String>) -> Self {
        Self { hostname: Some(name.into()), ip: None }
    }
    pub fn ip(ip: impl Into<String>) -> Self {
        Self { hostname: None, ip: Some(ip.into()) }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadBalancerStatus {
    pub ingress: Vec<IngressPoint>,
    /// Problems that did not stop the load balancer (e.g. annotations the provider does not
    /// know); the service controller reports them in a Warning event.
    pub warnings: Vec<String>,
}

/// One write a provider would make to bring a load balancer in line with its Service: what
/// `cloud-controller-manager plan` prints. `operation` is the cloud API call
/// (`aws/elb.CreateLoadBalancerListeners`), `target` the object it changes, `detail` its
/// parameters in short, `reason` why it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub operation: String,
    pub target: String,
    pub detail: String,
    pub reason: String,
}

impl std::fmt::Display for PlannedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.operation, self.target)?;
        if !self.detail.is_empty() {
            write!(f, " {}", self.detail)?;
        }
        write!(f, "  # {}", self.reason)
    }
}

/// Load balancers: what the service controller needs.
pub trait LoadBalancers: Send + Sync + 'static {
    /// The status of the load balancer this Service has, or `None` if it has none.
    fn get(
        &self,
        cluster_name: &str,
        service: &ServiceInfo,
    ) -> impl Future<Output = Result<Option<LoadBalancerStatus>, CloudError>> + Send;

    /// The cloud name of the Service's load balancer.
    fn name(&self, cluster_name: &str, service: &ServiceInfo) -> String;

    /// Creates or updates the load balancer so it matches the Service and targets `nodes`.
    fn ensure(
        &self,
        cluster_name: &str,
        service: &ServiceInfo,
        nodes: &[NodeInfo],
    ) -> impl Future<Output = Result<LoadBalancerStatus, CloudError>> + Send;

    /// The writes [`LoadBalancers::ensure`] would make now, without making them (only reads):
    /// empty when the load balancer already matches. `ImplementedElsewhere` as for `ensure`.
    fn plan(
        &self,
        _cluster_name: &str,
        _service: &ServiceInfo,
        _nodes: &[NodeInfo],
    ) -> impl Future<Output = Result<Vec<PlannedChange>, CloudError>> + Send {
        async { Err(CloudError::invalid("plan", "this cloud provider cannot plan load balancers")) }
    }

    /// Points the existing load balancer at `nodes` (the node set changed; nothing else did).
    fn update_hosts(
        &self,
        cluster_name: &str,
        service: &ServiceInfo,
        nodes: &[NodeInfo],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Deletes everything the Service's load balancer consists of. Idempotent: `Ok` when it is
    /// all gone, including when it never existed. Must not return `ImplementedElsewhere`.
    fn ensure_deleted(
        &self,
        cluster_name: &str,
        service: &ServiceInfo,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
}
