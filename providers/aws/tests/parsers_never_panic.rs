//! Everything a user or a kubelet writes goes through a parser that must answer with a value or
//! a clear error, never a panic: Service annotations and ports, the cloud-config, providerIDs and
//! node names. Property tests over arbitrary input, plus input shaped like the real thing (known
//! keys with hostile values), which finds far more than random bytes.
//!
//! Cases per property: `PROPTEST_CASES` (proptest's own variable), 2,000 by default here; the
//! long mode, `PARSERS_LONG=1`, runs 1,000,000 each.

use std::collections::BTreeMap;

use cloud_provider::{Protocol, ServiceInfo, ServicePort, TrafficPolicy};
use cloud_provider_aws::config::CloudConfig;
use cloud_provider_aws::load_balancers::annotations::REGISTRY;
use cloud_provider_aws::load_balancers::service_config::{Parsed, parse};
use cloud_provider_aws::provider_id;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = if std::env::var_os("PARSERS_LONG").is_some() {
        1_000_000
    } else {
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000)
    };
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Values that break naive parsers: empty, spaces, commas, `=`, signs, huge numbers, unicode.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just(",,,".to_string()),
        Just("=".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("*".to_string()),
        Just("0.0.0.0/0,::/0".to_string()),
        Just("a=b=c, =x,k=".to_string()),
        "[ -~]{0,40}",
        "\\PC{0,20}",
        "[0-9]{1,12}",
        "(sg|subnet|eipalloc|arn:aws)-?[a-z0-9:/]{0,20}(,[a-z0-9 ]{0,10}){0,3}",
    ]
}

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    let keys: Vec<String> = REGISTRY.iter().map(|a| a.key.to_string()).collect();
    let key = prop_oneof![
        4 => proptest::sample::select(keys),
        1 => "service\\.beta\\.kubernetes\\.io/aws-load-balancer-[a-z-]{1,20}",
        1 => "[a-z./-]{1,30}",
    ];
    proptest::collection::btree_map(key, hostile(), 0..12)
}

fn ports() -> impl Strategy<Value = Vec<ServicePort>> {
    let protocol = prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp), Just(Protocol::Sctp)];
    let port = (proptest::option::of("[a-z0-9-]{0,10}"), protocol, any::<u16>(), prop_oneof![Just(0u16), any::<u16>()])
        .prop_map(|(name, protocol, port, node_port)| ServicePort { name, protocol, port, node_port });
    proptest::collection::vec(port, 0..5)
}

fn service() -> impl Strategy<Value = ServiceInfo> {
    (
        annotations(),
        ports(),
        any::<bool>(),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(hostile(), 0..3),
        any::<bool>(),
        proptest::option::of(hostile()),
    )
        .prop_map(|(annotations, ports, local, hc, ranges, affinity, ip)| ServiceInfo {
            namespace: "default".into(),
            name: "s".into(),
            uid: "0b7e1c2a-0000-4000-8000-000000000000".into(),
            annotations,
            ports,
            external_traffic_policy: if local { TrafficPolicy::Local } else { TrafficPolicy::Cluster },
            health_check_node_port: hc,
            source_ranges: ranges,
            session_affinity_client_ip: affinity,
            load_balancer_ip: ip,
            current_ingress: Vec::new(),
            periodic: false,
        })
}

/// cloud-config text: known sections and keys with hostile values, and stray lines.
fn cloud_config() -> impl Strategy<Value = String> {
    let keys = [
        "Zone",
        "Region",
        "VPC",
        "SubnetID",
        "RouteTableID",
        "RoleARN",
        "SourceARN",
        "KubernetesClusterTag",
        "KubernetesClusterID",
        "DisableSecurityGroupIngress",
        "ElbSecurityGroup",
        "NodeIPFamilies",
        "ClusterServiceLoadBalancerHealthProbeMode",
        "ClusterServiceSharedLoadBalancerHealthProbePort",
        "ClusterServiceSharedLoadBalancerHealthProbePath",
        "SupportedTopologyInstanceTypePattern",
        "NLBSecurityGroupMode",
        "Service",
        "URL",
        "SigningRegion",
        "SigningName",
        "SigningMethod",
        "Bogus",
    ];
    let line = prop_oneof![
        (proptest::sample::select(keys.to_vec()), hostile()).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[Global]".to_string()),
        "\\[ServiceOverride \"[a-z0-9 \"]{0,6}\"\\]",
        "\\[[A-Za-z ]{0,12}\\]?",
        "[;#]?[ -~]{0,30}",
        "\\PC{0,20}",
    ];
    proptest::collection::vec(line, 0..20).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn service_annotations(svc in service()) {
        match parse(&svc) {
            Parsed::Invalid(errors) => prop_assert!(!errors.is_empty() && errors.iter().all(|e| !e.is_empty())),
            Parsed::Ok { config, .. } => prop_assert!(!config.ports.is_empty() && !config.source_ranges.is_empty()),
            Parsed::Elsewhere => {}
        }
    }

    #[test]
    fn cloud_configs(text in cloud_config()) {
        if let Err(errors) = CloudConfig::parse(&text) {
            prop_assert!(!errors.to_string().is_empty());
        }
    }

    #[test]
    fn arbitrary_cloud_config_bytes(text in "\\PC{0,200}") {
        let _ = CloudConfig::parse(&text);
    }

    #[test]
    fn provider_ids(id in prop_oneof!["\\PC{0,40}", "(aws|gce|kind|eks-hybrid)://[a-z0-9/.-]{0,30}", "i-[a-z0-9/.]{0,20}"]) {
        if let Some(instance) = provider_id::instance_id(&id) {
            prop_assert!(provider_id::is_instance_id(&instance));
        }
        if let Some(instance) = provider_id::instance_id_from_node_name(&id) {
            prop_assert!(provider_id::is_instance_id(&instance));
        }
    }
}
