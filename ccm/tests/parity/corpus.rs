//! The differential corpus: Services as users write them, for both load-balancer types, every
//! annotation key, the combinations that interact (certificates × ports × backend protocol,
//! health checks × traffic policy, source ranges in the annotation and the spec), values upstream
//! reads loosely, keys of the other type, and invalid values.
//!
//! Values may hold placeholders filled per cluster: `{sg:user-a}`, `{sg:user-b}`, `{sg:shared}`
//! (security groups made before the test, not by a CCM), `{subnet:public-0}`,
//! `{subnet-name:public-0}`, `{eip:0}`, `{eip:1}`, `{private-ip:0}`, `{private-ip:1}`.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const P: &str = "service.beta.kubernetes.io/aws-load-balancer-";
/// An IAM server certificate: moto checks ACM ARNs against its ACM, IAM ones not at all.
pub const CERT: &str = "arn:aws:iam::123456789012:server-certificate/e2e-parity";

#[derive(Debug, Clone)]
pub struct PortSpec {
    pub name: String,
    pub port: i32,
    pub protocol: &'static str,
    /// `None`: no nodePort (with `allocateLoadBalancerNodePorts: false`).
    pub node_port: bool,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: &'static str,
    pub annotations: Vec<(String, String)>,
    pub ports: Vec<PortSpec>,
    pub local: bool,
    pub spec_ranges: Vec<&'static str>,
    pub client_ip_affinity: bool,
    pub load_balancer_ip: Option<&'static str>,
    /// `allocateLoadBalancerNodePorts: false`.
    pub no_node_port_allocation: bool,
    /// Left to another controller (`nlb-ip`, `external`): neither CCM makes anything.
    pub elsewhere: bool,
}

fn spec(name: &'static str) -> Spec {
    Spec {
        name,
        annotations: Vec::new(),
        ports: Vec::new(),
        local: false,
        spec_ranges: Vec::new(),
        client_ip_affinity: false,
        load_balancer_ip: None,
        no_node_port_allocation: false,
        elsewhere: false,
    }
}

/// A Classic-ELB Service (no type annotation) with port 80 unless ports are added.
pub fn clb(name: &'static str) -> Spec {
    spec(name)
}

/// `aws-load-balancer-type: nlb`.
pub fn nlb(name: &'static str) -> Spec {
    spec(name).ann("type", "nlb")
}

impl Spec {
    /// An `aws-load-balancer-<key>` annotation (or a full key containing `/`).
    pub fn ann(mut self, key: &str, value: &str) -> Self {
        let key = if key.contains('/') { key.to_string() } else { format!("{P}{key}") };
        self.annotations.push((key, value.to_string()));
        self
    }

    pub fn port(self, port: i32) -> Self {
        self.named_port(&format!("p{port}"), port, "TCP")
    }

    pub fn udp(self, port: i32) -> Self {
        self.named_port(&format!("u{port}"), port, "UDP")
    }

    pub fn named_port(mut self, name: &str, port: i32, protocol: &'static str) -> Self {
        self.ports.push(PortSpec { name: name.to_string(), port, protocol, node_port: true });
        self
    }

    /// A port given no nodePort (needs [`Spec::no_node_ports`]).
    pub fn port_without_node_port(mut self, port: i32) -> Self {
        self.ports.push(PortSpec { name: format!("p{port}"), port, protocol: "TCP", node_port: false });
        self
    }

    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    pub fn ranges(mut self, ranges: &[&'static str]) -> Self {
        self.spec_ranges = ranges.to_vec();
        self
    }

    pub fn client_ip_affinity(mut self) -> Self {
        self.client_ip_affinity = true;
        self
    }

    pub fn load_balancer_ip(mut self, ip: &'static str) -> Self {
        self.load_balancer_ip = Some(ip);
        self
    }

    pub fn no_node_ports(mut self) -> Self {
        self.no_node_port_allocation = true;
        self
    }

    pub fn elsewhere(mut self) -> Self {
        self.elsewhere = true;
        self
    }

    /// The Service, with nodePorts from `base` (`base + i` per port, `base + 9` for the health
    /// check), so the two clusters' Services are identical.
    pub fn to_service(&self, base: i32, fill: &dyn Fn(&str) -> String) -> Service {
        let mut ports = self.ports.clone();
        if ports.is_empty() {
            ports.push(PortSpec { name: "p80".into(), port: 80, protocol: "TCP", node_port: true });
        }
        Service {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                namespace: Some("default".into()),
                annotations: Some(self.annotations.iter().map(|(k, v)| (k.clone(), fill(v))).collect()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                selector: Some([("app".to_string(), self.name.to_string())].into_iter().collect()),
                ports: Some(
                    ports
                        .iter()
                        .enumerate()
                        .map(|(i, p)| ServicePort {
                            name: Some(p.name.clone()),
                            port: p.port,
                            protocol: Some(p.protocol.into()),
                            node_port: p.node_port.then_some(base + i32::try_from(i).unwrap_or(0)),
                            ..Default::default()
                        })
                        .collect(),
                ),
                external_traffic_policy: self.local.then(|| "Local".to_string()),
                health_check_node_port: self.local.then_some(base + 9),
                load_balancer_source_ranges: (!self.spec_ranges.is_empty())
                    .then(|| self.spec_ranges.iter().map(|s| s.to_string()).collect()),
                session_affinity: self.client_ip_affinity.then(|| "ClientIP".to_string()),
                load_balancer_ip: self.load_balancer_ip.map(String::from),
                allocate_load_balancer_node_ports: self.no_node_port_allocation.then_some(false),
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// Services reconciled together under one cloud-config.
pub struct Batch {
    pub name: &'static str,
    /// Lines added to `[Global]` (placeholders allowed).
    pub global: &'static str,
    /// How the node security group is tagged.
    pub node_group: NodeGroup,
    pub specs: Vec<Spec>,
}

/// The tags on the Nodes' security group: upstream puts node rules on a group tagged for the
/// cluster either way, and on an instance's only group when none is tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeGroup {
    /// `kubernetes.io/cluster/<id>=owned` (the seed's).
    Tagged,
    /// Only the legacy `KubernetesCluster=<id>`.
    Legacy,
    /// No cluster tag at all.
    Untagged,
}

impl Batch {
    fn new(name: &'static str, global: &'static str, specs: Vec<Spec>) -> Self {
        Self { name, global, node_group: NodeGroup::Tagged, specs }
    }
}

const RANGES: &str = "10.0.0.0/8,192.168.0.0/16";
const HC_THRESHOLDS: [(&str, &str); 4] = [
    ("healthcheck-healthy-threshold", "3"),
    ("healthcheck-unhealthy-threshold", "4"),
    ("healthcheck-interval", "15"),
    ("healthcheck-timeout", "6"),
];

fn with_all(mut s: Spec, pairs: &[(&str, &str)]) -> Spec {
    for (k, v) in pairs {
        s = s.ann(k, v);
    }
    s
}

/// Classic ELBs with the default cloud-config.
fn classic() -> Vec<Spec> {
    vec![
        clb("c-basic"),
        clb("c-two-ports").port(80).port(443),
        clb("c-internal").ann("internal", "true"),
        clb("c-internal-any").ann("internal", "0.0.0.0/0"),
        clb("c-internal-false").ann("internal", "false"),
        clb("c-subnet-ids").ann("subnets", "{subnet:public-0},{subnet:public-1}"),
        clb("c-subnet-names").ann("subnets", "{subnet-name:public-0}, {subnet-name:public-1}"),
        clb("c-sg").ann("security-groups", "{sg:user-a}"),
        clb("c-extra-sg").ann("extra-security-groups", "{sg:user-b}"),
        clb("c-sg-and-extra").ann("security-groups", "{sg:user-a}").ann("extra-security-groups", "{sg:user-b}"),
        clb("c-tags").ann("additional-resource-tags", "team=web, env=prod,solo"),
        clb("c-ssl-all").port(80).port(443).ann("ssl-cert", CERT),
        clb("c-ssl-named")
            .named_port("http", 80, "TCP")
            .named_port("https", 443, "TCP")
            .ann("ssl-cert", CERT)
            .ann("ssl-ports", "https"),
        clb("c-ssl-number").port(80).port(443).ann("ssl-cert", CERT).ann("ssl-ports", "443"),
        clb("c-ssl-http")
            .port(80)
            .port(443)
            .ann("ssl-cert", CERT)
            .ann("ssl-ports", "443")
            .ann("backend-protocol", "http"),
        clb("c-ssl-https").port(443).ann("ssl-cert", CERT).ann("backend-protocol", "https"),
        clb("c-ssl-ssl").port(443).ann("ssl-cert", CERT).ann("backend-protocol", "ssl"),
        clb("c-ssl-unmatched").port(80).ann("ssl-cert", CERT).ann("ssl-ports", "8443"),
        clb("c-http").ann("backend-protocol", "http"),
        clb("c-https-no-cert").ann("backend-protocol", "https"),
        clb("c-ssl-policy")
            .port(443)
            .ann("ssl-cert", CERT)
            .ann("ssl-negotiation-policy", "ELBSecurityPolicy-TLS-1-2-2017-01"),
        clb("c-proxy").port(80).port(81).ann("proxy-protocol", "*"),
        with_all(
            clb("c-access-log"),
            &[
                ("access-log-enabled", "true"),
                ("access-log-emit-interval", "5"),
                ("access-log-s3-bucket-name", "logs"),
                ("access-log-s3-bucket-prefix", "clb"),
            ],
        ),
        clb("c-access-log-off").ann("access-log-enabled", "false").ann("access-log-s3-bucket-name", "logs"),
        clb("c-draining").ann("connection-draining-enabled", "true").ann("connection-draining-timeout", "30"),
        clb("c-idle").ann("connection-idle-timeout", "120"),
        clb("c-cross-zone").ann("cross-zone-load-balancing-enabled", "true"),
        with_all(
            clb("c-hc-http"),
            &[("healthcheck-protocol", "HTTP"), ("healthcheck-path", "/ready"), ("healthcheck-port", "traffic-port")],
        ),
        clb("c-hc-port").ann("healthcheck-port", "8080"),
        with_all(clb("c-hc-thresholds"), &HC_THRESHOLDS),
        clb("c-local").local(),
        clb("c-local-traffic-port").local().ann("healthcheck-port", "traffic-port"),
        clb("c-ranges-annotation").ann("service.beta.kubernetes.io/load-balancer-source-ranges", RANGES),
        clb("c-ranges-spec")
            .ranges(&["10.0.0.0/8"])
            .ann("service.beta.kubernetes.io/load-balancer-source-ranges", "192.168.0.0/16"),
        clb("c-node-labels").ann("target-node-labels", "role=edge"),
        clb("c-type-upper-nlb").ann("type", "NLB"),
        clb("c-type-clb").ann("type", "clb"),
        clb("c-unknown-key").ann("scheme", "internal"),
        clb("c-nlb-keys").ann("eip-allocations", "{eip:0}").ann("private-ipv4-addresses", "10.1.2.3"),
        clb("c-tg-attributes").ann("target-group-attributes", "preserve_client_ip.enabled=false"),
        clb("c-backend-upper").ann("backend-protocol", "HTTP"),
        clb("c-internal-upper-false").ann("internal", "False"),
        clb("c-node-port-missing").no_node_ports().port(80).port_without_node_port(81),
        // Invalid values.
        clb("c-bad-interval").ann("healthcheck-interval", "often"),
        clb("c-bad-cross-zone").ann("cross-zone-load-balancing-enabled", "yes"),
        clb("c-bad-backend").ann("backend-protocol", "grpc"),
        clb("c-bad-proxy").ann("proxy-protocol", "80"),
        clb("c-affinity").client_ip_affinity(),
        clb("c-udp").udp(53),
        clb("c-lb-ip").load_balancer_ip("203.0.113.10"),
    ]
}

/// NLBs with the default cloud-config (two batches: each NLB adds rules to the node group,
/// which holds 60).
fn network_a() -> Vec<Spec> {
    vec![
        nlb("n-basic"),
        nlb("n-two-ports").port(80).port(443),
        nlb("n-udp").udp(53),
        nlb("n-internal").ann("internal", "true"),
        nlb("n-subnets").ann("subnets", "{subnet:public-0}"),
        nlb("n-tags").ann("additional-resource-tags", "team=net,env=prod"),
        nlb("n-tls").port(80).port(443).ann("ssl-cert", CERT).ann("ssl-ports", "443"),
        nlb("n-tls-backend").port(443).ann("ssl-cert", CERT).ann("backend-protocol", "ssl"),
        nlb("n-tls-policy")
            .port(443)
            .ann("ssl-cert", CERT)
            .ann("ssl-negotiation-policy", "ELBSecurityPolicy-TLS13-1-2-2021-06"),
        with_all(
            nlb("n-access-log"),
            &[
                ("access-log-enabled", "true"),
                ("access-log-s3-bucket-name", "logs"),
                ("access-log-s3-bucket-prefix", "nlb"),
            ],
        ),
        nlb("n-cross-zone").ann("cross-zone-load-balancing-enabled", "true"),
        with_all(
            nlb("n-hc-http"),
            &[("healthcheck-protocol", "HTTP"), ("healthcheck-path", "/ready"), ("healthcheck-port", "8080")],
        ),
        with_all(nlb("n-hc-thresholds"), &HC_THRESHOLDS),
        nlb("n-local").local(),
        nlb("n-ip").ann("type", "nlb-ip").elsewhere(),
        nlb("n-external").ann("type", "external").elsewhere(),
    ]
}

fn network_b() -> Vec<Spec> {
    vec![
        nlb("n-ranges-annotation").ann("service.beta.kubernetes.io/load-balancer-source-ranges", RANGES),
        nlb("n-ranges-spec").ranges(&["10.0.0.0/8"]),
        nlb("n-node-labels").ann("target-node-labels", "role=edge"),
        nlb("n-tga-set")
            .ann("target-group-attributes", "preserve_client_ip.enabled=false,proxy_protocol_v2.enabled=true"),
        nlb("n-tga-default").ann("target-group-attributes", "proxy_protocol_v2.enabled=false"),
        nlb("n-eip").ann("eip-allocations", "{eip:0},{eip:1}"),
        nlb("n-private-ips")
            .ann("internal", "true")
            .ann("subnets", "{subnet:private-0},{subnet:private-1}")
            .ann("private-ipv4-addresses", "{private-ip:0},{private-ip:1}"),
        with_all(
            nlb("n-clb-keys"),
            &[
                ("proxy-protocol", "*"),
                ("connection-draining-enabled", "true"),
                ("connection-draining-timeout", "30"),
                ("connection-idle-timeout", "120"),
                ("access-log-emit-interval", "5"),
            ],
        ),
        nlb("n-backend-http").ann("backend-protocol", "http"),
        nlb("n-sg-unmanaged").ann("security-groups", "{sg:user-a}"),
        nlb("n-local-hc-port").local().ann("healthcheck-port", "traffic-port"),
        // Invalid values.
        nlb("n-extra-sg").ann("extra-security-groups", "{sg:user-b}"),
        nlb("n-bad-tg-attribute").ann("target-group-attributes", "stickiness.enabled=true"),
        nlb("n-bad-hc-protocol").ann("healthcheck-protocol", "UDP"),
        nlb("n-mixed").port(80).udp(53),
        nlb("n-udp-no-preserve").udp(53).ann("target-group-attributes", "preserve_client_ip.enabled=false"),
    ]
}

/// Every batch, in the order they run.
pub fn batches() -> Vec<Batch> {
    vec![
        Batch::new("classic", "", classic()),
        Batch::new("nlb-a", "", network_a()),
        Batch::new("nlb-b", "", network_b()),
        Batch {
            node_group: NodeGroup::Legacy,
            ..Batch::new(
                "legacy-node-group",
                "",
                vec![clb("l-clb"), nlb("l-nlb").port(80).port(443), nlb("l-nlb-local").local()],
            )
        },
        Batch {
            node_group: NodeGroup::Untagged,
            ..Batch::new(
                "untagged-node-group",
                "",
                vec![clb("u-clb"), nlb("u-nlb"), nlb("u-nlb-ranges").ranges(&["10.0.0.0/8"])],
            )
        },
        Batch::new(
            "elb-security-group",
            "ElbSecurityGroup = {sg:shared}\n",
            vec![clb("e-one"), clb("e-two").port(443), clb("e-extra").ann("extra-security-groups", "{sg:user-b}")],
        ),
        Batch::new(
            "nlb-managed-groups",
            "NLBSecurityGroupMode = Managed\n",
            vec![
                nlb("m-basic"),
                nlb("m-byo").ann("security-groups", "{sg:user-a}"),
                nlb("m-ranges")
                    .port(80)
                    .port(443)
                    .ann("service.beta.kubernetes.io/load-balancer-source-ranges", RANGES),
                nlb("m-udp").udp(53),
            ],
        ),
        Batch::new(
            "no-ingress-rules",
            "DisableSecurityGroupIngress = true\n",
            vec![clb("d-clb"), nlb("d-nlb"), nlb("d-nlb-local").local()],
        ),
        Batch::new(
            "shared-health-probe",
            "ClusterServiceLoadBalancerHealthProbeMode = Shared\n",
            vec![
                clb("s-clb"),
                clb("s-clb-annotated").ann("healthcheck-protocol", "TCP"),
                clb("s-clb-local").local(),
                nlb("s-nlb"),
                nlb("s-nlb-annotated").ann("healthcheck-path", "/ready").ann("healthcheck-protocol", "HTTP"),
                nlb("s-nlb-local").local(),
            ],
        ),
    ]
}
