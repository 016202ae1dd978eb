//! Reading Kubernetes objects: what a Node or Service means to the controllers, and its
//! translation into the cloud's terms ([`NodeInfo`], [`ServiceInfo`]).

use cloud_provider::{
    AddressType, IngressPoint, NodeAddress, NodeInfo, Protocol, ServiceInfo, ServicePort, TrafficPolicy,
};
use k8s_openapi::api::core::v1::{Node, Service};

/// The finalizer that keeps a Service until its load balancer is gone.
pub const LB_CLEANUP_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";
/// A Node with this label (unless its value parses as `false`) gets no load-balancer traffic.
pub const EXCLUDE_FROM_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The cluster autoscaler's "about to delete this Node" taint.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";
pub const SHUTDOWN_TAINT: &str = "node.cloudprovider.kubernetes.io/shutdown";
pub const PROVIDED_NODE_IP_ANNOTATION: &str = "alpha.kubernetes.io/provided-node-ip";

pub fn node_info(node: &Node) -> NodeInfo {
    let spec = node.spec.as_ref();
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        provider_id: spec.and_then(|s| s.provider_id.clone()).filter(|p| !p.is_empty()),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        addresses: node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|a| Some(NodeAddress::new(AddressType::parse(&a.type_)?, &a.address)))
            .collect(),
    }
}

pub fn has_taint(node: &Node, key: &str) -> bool {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == key))
}

/// `Ready=True`.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Upstream's stable load-balancer node set: not being deleted, not excluded by label, not
/// about to be removed by the cluster autoscaler. Readiness is deliberately not a criterion.
pub fn is_lb_eligible(node: &Node) -> bool {
    node.metadata.deletion_timestamp.is_none() && !has_taint(node, TO_BE_DELETED_TAINT) && is_lb_included(node)
}

/// Not excluded by the `node.kubernetes.io/exclude-from-external-load-balancers` label. Of the
/// eligibility rules, only this one (and a Node's arrival, departure or providerID) makes
/// upstream look at the load balancers again: the autoscaler's taint alone does not, so a Node
/// being drained keeps its connections until something else changes.
pub fn is_lb_included(node: &Node) -> bool {
    match node.metadata.labels.as_ref().and_then(|l| l.get(EXCLUDE_FROM_LB_LABEL)) {
        None => true,
        // Go's strconv.ParseBool: only a value that parses as false keeps the Node.
        Some(value) => matches!(value.as_str(), "false" | "False" | "FALSE" | "f" | "F" | "0"),
    }
}

/// `type: LoadBalancer` without a `loadBalancerClass` (a class means another controller).
pub fn wants_load_balancer(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none())
}

pub fn has_finalizer(service: &Service, finalizer: &str) -> bool {
    service.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == finalizer))
}

pub fn service_info(service: &Service) -> ServiceInfo {
    let spec = service.spec.clone().unwrap_or_default();
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| ServicePort {
            name: p.name,
            protocol: p.protocol.as_deref().and_then(Protocol::parse).unwrap_or(Protocol::Tcp),
            port: u16::try_from(p.port).unwrap_or_default(),
            node_port: p.node_port.and_then(|n| u16::try_from(n).ok()).unwrap_or_default(),
        })
        .collect();
    ServiceInfo {
        namespace: service.metadata.namespace.clone().unwrap_or_default(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        annotations: service.metadata.annotations.clone().unwrap_or_default(),
        ports,
        external_traffic_policy: match spec.external_traffic_policy.as_deref() {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        },
        health_check_node_port: spec.health_check_node_port.and_then(|p| u16::try_from(p).ok()),
        source_ranges: spec.load_balancer_source_ranges.unwrap_or_default(),
        session_affinity_client_ip: spec.session_affinity.as_deref() == Some("ClientIP"),
        load_balancer_ip: spec.load_balancer_ip,
        current_ingress: current_ingress(service),
        periodic: false,
    }
}

pub fn current_ingress(service: &Service) -> Vec<IngressPoint> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| IngressPoint { hostname: i.hostname.clone(), ip: i.ip.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, ServiceSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node_with_label(value: Option<&str>) -> Node {
        let labels = value.map(|v| [(EXCLUDE_FROM_LB_LABEL.to_string(), v.to_string())].into_iter().collect());
        Node { metadata: ObjectMeta { name: Some("n".into()), labels, ..Default::default() }, ..Default::default() }
    }

    #[test]
    fn lb_eligibility_follows_upstream() {
        assert!(is_lb_eligible(&node_with_label(None)));
        assert!(is_lb_eligible(&node_with_label(Some("false"))));
        assert!(!is_lb_eligible(&node_with_label(Some("true"))));
        assert!(!is_lb_eligible(&node_with_label(Some(""))), "unparsable excludes");
        let mut tainted = node_with_label(None);
        tainted.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: TO_BE_DELETED_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(!is_lb_eligible(&tainted));
    }

    #[test]
    fn load_balancer_class_means_not_ours() {
        let mut svc = Service {
            spec: Some(ServiceSpec { type_: Some("LoadBalancer".into()), ..Default::default() }),
            ..Default::default()
        };
        assert!(wants_load_balancer(&svc));
        svc.spec.as_mut().unwrap().load_balancer_class = Some("service.k8s.aws/nlb".into());
        assert!(!wants_load_balancer(&svc));
        svc.spec.as_mut().unwrap().load_balancer_class = None;
        svc.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        assert!(!wants_load_balancer(&svc));
    }
}
