//! Instances: the Node ↔ EC2 instance mapping, addresses, and metadata.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Instance, InstanceStateName};
use cloud_provider::{AddressType, CloudError, InstanceMetadata, Instances, NodeAddress, NodeInfo};

use crate::config::IpFamily;
use crate::ec2::Ec2;
use crate::instance_cache::{InstanceCache, InstanceKey};
use crate::provider_id;
use crate::topology::{self, Found, NETWORK_NODE_LABEL_PREFIX, Topology};

/// The label with the AZ's ID (e.g. `use1-az6`), as upstream adds it.
pub const ZONE_ID_LABEL: &str = "topology.k8s.aws/zone-id";

pub struct AwsInstances {
    pub(crate) cache: Arc<InstanceCache>,
    ec2: Ec2,
    topology: Topology,
    region: String,
    families: Vec<IpFamily>,
    zones: tokio::sync::Mutex<(Option<Instant>, HashMap<String, String>)>,
}

impl AwsInstances {
    pub fn new(
        cache: Arc<InstanceCache>,
        ec2: Ec2,
        region: String,
        families: Vec<IpFamily>,
        topology: Topology,
    ) -> Self {
        Self { cache, ec2, topology, region, families, zones: tokio::sync::Mutex::default() }
    }

    /// How the Node's instance is found: providerID first, then a resource-based name, then
    /// the private DNS name (upstream's fallback). `None`: the Node's providerID names something
    /// that is not an EC2 instance (`eks-hybrid://`, `kind://`, a Fargate pod, a virtual
    /// kubelet): it is another provider's Node and never looked up by name.
    pub fn key_for(node: &NodeInfo) -> Option<InstanceKey> {
        match node.provider_id.as_deref().filter(|p| !p.is_empty()) {
            Some(pid) => provider_id::instance_id(pid).map(InstanceKey::Id),
            None => Some(match provider_id::instance_id_from_node_name(&node.name) {
                Some(id) => InstanceKey::Id(id),
                None => InstanceKey::PrivateDns(node.name.clone()),
            }),
        }
    }

    /// The error for a Node that is not this provider's: never "not found" (which would get
    /// the Node deleted), and never retried until the Node changes.
    pub fn foreign(node: &NodeInfo) -> CloudError {
        CloudError::Failed {
            op: "aws/instances.provider_id",
            message: format!(
                "Node {} has providerID {:?}, which names no EC2 instance; it is another provider's Node and is left alone",
                node.name,
                node.provider_id.as_deref().unwrap_or_default()
            ),
            retry: cloud_provider::Retry::Never,
            kind: "foreign_provider_id",
        }
    }

    pub(crate) async fn find(&self, node: &NodeInfo) -> Result<Option<Instance>, CloudError> {
        let key = Self::key_for(node).ok_or_else(|| Self::foreign(node))?;
        Ok(self.cache.get(&key).await?)
    }

    /// Zone name → zone ID, from DescribeAvailabilityZones (asked again, at most once a
    /// minute, for a zone it does not know).
    async fn zone_id(&self, zone: &str) -> Result<Option<String>, CloudError> {
        let mut zones = self.zones.lock().await;
        if !zones.1.contains_key(zone) && zones.0.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            let listed = self.ec2.availability_zones().await?;
            zones.1 =
                listed.iter().filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string()))).collect();
            zones.0 = Some(Instant::now());
        }
        Ok(zones.1.get(zone).cloned())
    }
}

fn state(instance: &Instance) -> Option<&InstanceStateName> {
    instance.state().and_then(|s| s.name())
}

/// Upstream's address order: InternalIP (every private IP of every in-use ENI, primary ENI
/// first), ExternalIP, InternalDNS and Hostname (both the private DNS name), ExternalDNS; IPv6
/// adds the first IPv6 address of each ENI as an InternalIP.
pub fn addresses(instance: &Instance, families: &[IpFamily]) -> Vec<NodeAddress> {
    let mut enis: Vec<_> =
        instance.network_interfaces().iter().filter(|n| n.status().is_none_or(|s| s.as_str() == "in-use")).collect();
    enis.sort_by_key(|n| n.attachment().and_then(|a| a.device_index()).unwrap_or(0));
    let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    let mut out = Vec::new();
    for family in families {
        match family {
            IpFamily::V4 => {
                let mut internal: Vec<String> = enis
                    .iter()
                    .flat_map(|n| n.private_ip_addresses().iter().filter_map(|a| non_empty(a.private_ip_address())))
                    .collect();
                if internal.is_empty() {
                    internal.extend(non_empty(instance.private_ip_address()));
                }
                out.extend(internal.into_iter().map(|ip| NodeAddress::new(AddressType::InternalIp, ip)));
                if let Some(ip) = non_empty(instance.public_ip_address()) {
                    out.push(NodeAddress::new(AddressType::ExternalIp, ip));
                }
                if let Some(dns) = non_empty(instance.private_dns_name()) {
                    out.push(NodeAddress::new(AddressType::InternalDns, dns.clone()));
                    out.push(NodeAddress::new(AddressType::Hostname, dns));
                }
                if let Some(dns) = non_empty(instance.public_dns_name()) {
                    out.push(NodeAddress::new(AddressType::ExternalDns, dns));
                }
            }
            IpFamily::V6 => {
                for eni in &enis {
                    if let Some(ip) = eni.ipv6_addresses().iter().find_map(|a| non_empty(a.ipv6_address())) {
                        out.push(NodeAddress::new(AddressType::InternalIp, ip));
                    }
                }
            }
        }
    }
    out
}

impl Instances for AwsInstances {
    async fn instance_exists(&self, node: &NodeInfo) -> Result<bool, CloudError> {
        let instance = self.find(node).await?;
        Ok(instance.is_some_and(|i| state(&i).is_some_and(|s| *s != InstanceStateName::Terminated)))
    }

    async fn instance_shutdown(&self, node: &NodeInfo) -> Result<bool, CloudError> {
        let instance = self.find(node).await?;
        Ok(instance
            .is_some_and(|i| matches!(state(&i), Some(InstanceStateName::Stopped | InstanceStateName::Stopping))))
    }

    async fn instance_metadata(&self, node: &NodeInfo) -> Result<InstanceMetadata, CloudError> {
        let instance = self
            .find(node)
            .await?
            .filter(|i| state(i).is_some_and(|s| *s != InstanceStateName::Terminated))
            .ok_or(CloudError::InstanceNotFound)?;
        let id = instance.instance_id().unwrap_or_default();
        let zone = instance.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_string();
        let instance_type = instance.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default();
        let mut additional_labels = BTreeMap::new();
        if let Some(zone_id) = self.zone_id(&zone).await? {
            additional_labels.insert(ZONE_ID_LABEL.to_string(), zone_id);
        }
        if !node.labels.contains_key(&format!("{NETWORK_NODE_LABEL_PREFIX}1")) {
            match self.topology.get(&self.region, id, &instance_type).await {
                Ok(Found::Layers(layers)) => additional_labels.extend(topology::labels(&layers)),
                Ok(Found::Nothing) => {}
                Err(err) if self.topology.required(&instance_type) => return Err(err.into()),
                Err(err) => {
                    tracing::warn!(%err, instance = id, "no network-node labels (not required for {instance_type})")
                }
            }
        }
        Ok(InstanceMetadata {
            provider_id: provider_id::provider_id(&zone, id),
            instance_type,
            addresses: addresses(&instance, &self.families),
            zone,
            region: self.region.clone(),
            additional_labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{
        InstanceIpv6Address, InstanceNetworkInterface, InstanceNetworkInterfaceAttachment, InstancePrivateIpAddress,
        NetworkInterfaceStatus,
    };

    fn eni(index: i32, ips: &[&str], ipv6: Option<&str>, status: NetworkInterfaceStatus) -> InstanceNetworkInterface {
        InstanceNetworkInterface::builder()
            .status(status)
            .attachment(InstanceNetworkInterfaceAttachment::builder().device_index(index).build())
            .set_private_ip_addresses(Some(
                ips.iter().map(|ip| InstancePrivateIpAddress::builder().private_ip_address(*ip).build()).collect(),
            ))
            .set_ipv6_addresses(ipv6.map(|ip| vec![InstanceIpv6Address::builder().ipv6_address(ip).build()]))
            .build()
    }

    #[test]
    fn addresses_in_upstream_order() {
        let instance = Instance::builder()
            .network_interfaces(eni(1, &["10.0.1.5"], Some("2600::2"), NetworkInterfaceStatus::InUse))
            .network_interfaces(eni(0, &["10.0.0.5", "10.0.0.6"], Some("2600::1"), NetworkInterfaceStatus::InUse))
            .network_interfaces(eni(2, &["10.0.2.5"], None, NetworkInterfaceStatus::Detaching))
            .private_ip_address("10.0.0.5")
            .public_ip_address("203.0.113.5")
            .private_dns_name("ip-10-0-0-5.ec2.internal")
            .public_dns_name("ec2-203-0-113-5.compute-1.amazonaws.com")
            .build();
        let v4: Vec<(AddressType, String)> =
            addresses(&instance, &[IpFamily::V4]).into_iter().map(|a| (a.kind, a.address)).collect();
        assert_eq!(
            v4,
            [
                (AddressType::InternalIp, "10.0.0.5".into()),
                (AddressType::InternalIp, "10.0.0.6".into()),
                (AddressType::InternalIp, "10.0.1.5".into()),
                (AddressType::ExternalIp, "203.0.113.5".into()),
                (AddressType::InternalDns, "ip-10-0-0-5.ec2.internal".into()),
                (AddressType::Hostname, "ip-10-0-0-5.ec2.internal".into()),
                (AddressType::ExternalDns, "ec2-203-0-113-5.compute-1.amazonaws.com".into()),
            ]
        );
        let v6: Vec<String> = addresses(&instance, &[IpFamily::V6]).into_iter().map(|a| a.address).collect();
        assert_eq!(v6, ["2600::1", "2600::2"]);
    }

    #[test]
    fn lookup_keys() {
        let mut node = NodeInfo::named("ip-10-0-0-5.ec2.internal");
        assert_eq!(AwsInstances::key_for(&node), Some(InstanceKey::PrivateDns("ip-10-0-0-5.ec2.internal".into())));
        node.provider_id = Some("aws:///us-east-1a/i-0abc".into());
        assert_eq!(AwsInstances::key_for(&node), Some(InstanceKey::Id("i-0abc".into())));
        assert_eq!(
            AwsInstances::key_for(&NodeInfo::named("i-0def.ec2.internal")),
            Some(InstanceKey::Id("i-0def".into()))
        );
        // Another provider's Node is never looked up by its name.
        for foreign in [
            "eks-hybrid:///us-east-1/c/mi-0abc",
            "kind://docker/kind/node",
            "aws:///us-east-1a/fargate-10.0.0.1",
            "virtual-kubelet://x",
        ] {
            node.provider_id = Some(foreign.into());
            assert_eq!(AwsInstances::key_for(&node), None, "{foreign}");
        }
        node.provider_id = Some(String::new());
        assert!(AwsInstances::key_for(&node).is_some(), "an empty providerID is no providerID");
    }
}
