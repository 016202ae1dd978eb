use std::collections::BTreeMap;
use std::future::Future;

use crate::CloudError;

/// A Node as a provider sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// `spec.providerID`, if set.
    pub provider_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub addresses: Vec<NodeAddress>,
}

impl NodeInfo {
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }
}

/// The kinds of `status.addresses` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressType {
    Hostname,
    InternalIp,
    ExternalIp,
    InternalDns,
    ExternalDns,
}

impl AddressType {
    /// The Kubernetes spelling (`InternalIP`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hostname => "Hostname",
            Self::InternalIp => "InternalIP",
            Self::ExternalIp => "ExternalIP",
            Self::InternalDns => "InternalDNS",
            Self::ExternalDns => "ExternalDNS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Hostname, Self::InternalIp, Self::ExternalIp, Self::InternalDns, Self::ExternalDns]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    pub kind: AddressType,
    pub address: String,
}

impl NodeAddress {
    pub fn new(kind: AddressType, address: impl Into<String>) -> Self {
        Self { kind, address: address.into() }
    }
}

/// What the cloud knows about the instance behind a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceMetadata {
    /// `<provider>://<id>`; written to `spec.providerID` only if that is empty.
    pub provider_id: String,
    pub instance_type: String,
    /// In the order they should appear in `status.addresses`.
    pub addresses: Vec<NodeAddress>,
    pub zone: String,
    pub region: String,
    /// Extra labels; the node controller drops keys in Kubernetes' own namespaces and never
    /// overwrites a label the Node already has.
    pub additional_labels: BTreeMap<String, String>,
}

/// Instances: what the cloud-node and cloud-node-lifecycle controllers need.
pub trait Instances: Send + Sync + 'static {
    /// Whether the instance behind the Node still exists. Terminated counts as gone; stopped
    /// does not. `Ok(false)` gets the Node deleted by the lifecycle controller.
    fn instance_exists(&self, node: &NodeInfo) -> impl Future<Output = Result<bool, CloudError>> + Send;

    /// Whether the instance is shut down (stopped) but still exists.
    fn instance_shutdown(&self, node: &NodeInfo) -> impl Future<Output = Result<bool, CloudError>> + Send;

    /// The Node's providerID, addresses, type, zone, region and additional labels.
    fn instance_metadata(&self, node: &NodeInfo) -> impl Future<Output = Result<InstanceMetadata, CloudError>> + Send;
}
