//! Which Service changes need the load balancer re-ensured: upstream's `needsUpdate` triggers.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::Service;

/// A hash of everything that, when changed, needs a full ensure: the ports (name, protocol,
/// port, nodePort, targetPort, appProtocol, in order), `loadBalancerSourceRanges`,
/// `sessionAffinity` and its config, `loadBalancerIP`, `externalIPs`, every annotation, the
/// UID, `externalTrafficPolicy`, `healthCheckNodePort` and the number of IP families. Labels,
/// `ipFamilyPolicy`, `internalTrafficPolicy` and the like are deliberately left out, as
/// upstream leaves them out.
pub fn fingerprint(service: &Service) -> u64 {
    let mut h = DefaultHasher::new();
    let spec = service.spec.clone().unwrap_or_default();
    service.metadata.uid.hash(&mut h);
    service.metadata.annotations.hash(&mut h);
    spec.type_.hash(&mut h);
    for p in spec.ports.unwrap_or_default() {
        (p.name, p.protocol, p.port, p.node_port, p.app_protocol).hash(&mut h);
        serde_json::to_string(&p.target_port).unwrap_or_default().hash(&mut h);
    }
    spec.load_balancer_source_ranges.hash(&mut h);
    spec.session_affinity.hash(&mut h);
    serde_json::to_string(&spec.session_affinity_config).unwrap_or_default().hash(&mut h);
    spec.load_balancer_ip.hash(&mut h);
    spec.external_ips.hash(&mut h);
    spec.external_traffic_policy.hash(&mut h);
    spec.health_check_node_port.hash(&mut h);
    spec.ip_families.map(|f| f.len()).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn service() -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                ports: Some(vec![ServicePort { port: 80, node_port: Some(30080), ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn triggers_and_non_triggers() {
        let base = fingerprint(&service());
        let mut labelled = service();
        labelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into_iter().collect());
        assert_eq!(fingerprint(&labelled), base, "labels are not a trigger");
        let mut policy = service();
        policy.spec.as_mut().unwrap().internal_traffic_policy = Some("Local".into());
        assert_eq!(fingerprint(&policy), base, "internalTrafficPolicy is not a trigger");

        let mut annotated = service();
        annotated.metadata.annotations = Some([("x".to_string(), "y".to_string())].into_iter().collect());
        assert_ne!(fingerprint(&annotated), base);
        let mut ports = service();
        ports.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(30081);
        assert_ne!(fingerprint(&ports), base);
        let mut etp = service();
        etp.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
        assert_ne!(fingerprint(&etp), base);
        let mut ranges = service();
        ranges.spec.as_mut().unwrap().load_balancer_source_ranges = Some(vec!["10.0.0.0/8".into()]);
        assert_ne!(fingerprint(&ranges), base);
    }
}
