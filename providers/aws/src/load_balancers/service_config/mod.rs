//! A Service's annotations and spec, parsed once, first thing, into a typed config. Every
//! problem is collected and reported together before any AWS call; unknown
//! `aws-load-balancer-*` keys are returned as warnings (they do not block).

use std::collections::{BTreeMap, BTreeSet};

use cloud_provider::{Protocol, ServiceInfo, TrafficPolicy};

use super::annotations as a;
use values::{Values, map};

mod values;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Classic,
    Nlb,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Classic => "Classic ELB",
            Kind::Nlb => "NLB",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendProtocol {
    Tcp,
    Ssl,
    Http,
    Https,
}

/// `healthcheck-port`: the traffic port, or a fixed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthPort {
    TrafficPort,
    Port(u16),
}

impl std::fmt::Display for HealthPort {
    /// As AWS takes it: `traffic-port` or the number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TrafficPort => f.write_str("traffic-port"),
            Self::Port(p) => write!(f, "{p}"),
        }
    }
}

/// `healthcheck-protocol` (SSL for Classic ELBs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthProtocol {
    Tcp,
    Http,
    Https,
    Ssl,
}

impl HealthProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::Ssl => "SSL",
        }
    }

    /// HTTP and HTTPS checks have a path.
    pub fn has_path(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOverrides {
    pub protocol: Option<HealthProtocol>,
    pub port: Option<HealthPort>,
    pub path: Option<String>,
    pub healthy: Option<i32>,
    pub unhealthy: Option<i32>,
    pub interval: Option<i32>,
    pub timeout: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: u16,
}

/// Everything the Service asks of its load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConfig {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub internal: bool,
    pub subnets: Option<Vec<String>>,
    pub security_groups: Vec<String>,
    pub extra_security_groups: Vec<String>,
    pub additional_tags: BTreeMap<String, String>,
    pub ssl_cert: Option<String>,
    /// `None`: all ports.
    pub ssl_ports: Option<BTreeSet<String>>,
    pub ssl_negotiation_policy: Option<String>,
    pub backend_protocol: Option<BackendProtocol>,
    /// A Classic ELB's default health check is SSL: backend-protocol is `https` or `ssl` in any case.
    pub backend_ssl_health: bool,
    pub proxy_protocol: bool,
    pub access_log_enabled: bool,
    /// `None`: not annotated (upstream then sends none).
    pub access_log_interval: Option<i32>,
    pub access_log_bucket: Option<String>,
    pub access_log_prefix: Option<String>,
    pub draining_enabled: bool,
    /// `None`: not annotated (upstream then sends none; AWS keeps its 300 s).
    pub draining_timeout: Option<i32>,
    pub idle_timeout: i32,
    pub cross_zone: bool,
    pub health: HealthOverrides,
    pub target_node_labels: BTreeMap<String, String>,
    pub target_group_attributes: BTreeMap<String, bool>,
    pub eip_allocations: Vec<String>,
    pub private_ipv4_addresses: Vec<String>,
    pub source_ranges: Vec<String>,
    pub ports: Vec<Port>,
    /// Every Service port, also those without a nodePort: upstream opens them all on a Classic
    /// ELB's own security group.
    pub all_ports: Vec<u16>,
    pub local_traffic: bool,
    pub health_check_node_port: Option<u16>,
}

/// The outcome of reading a Service.
#[derive(Debug)]
pub enum Parsed {
    /// `nlb-ip` / `external`: the AWS Load Balancer Controller's.
    Elsewhere,
    Ok {
        config: Box<LbConfig>,
        warnings: Vec<String>,
    },
    Invalid(Vec<String>),
}

/// The load balancer type a Service asks for, from its annotation alone, read exactly as
/// upstream reads it: only `nlb` is an NLB, only `nlb-ip` / `external` are another
/// controller's, anything else (`NLB`, ` nlb`, `clb`) is a Classic ELB. A looser reading would
/// replace a working load balancer on migration.
pub fn requested_kind(annotations: &BTreeMap<String, String>) -> Option<Kind> {
    match annotations.get(a::TYPE).map(String::as_str) {
        Some("nlb") => Some(Kind::Nlb),
        Some("nlb-ip" | "external") => None,
        _ => Some(Kind::Classic),
    }
}

/// `target-node-labels`, read on its own (for host updates of a Service whose other
/// annotations are invalid).
pub fn target_node_labels(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations.get(a::TARGET_NODE_LABELS).map(|v| map(v)).unwrap_or_default()
}

/// What parsing found wrong (blocks the Service) or worth saying (a Warning event).
#[derive(Default)]
struct Problems {
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// Keys upstream rejects on the other type (its validation); every other key of the other type
/// is ignored there, with a Warning here.
fn rejected_on_other_type(key: &str) -> bool {
    key == a::EXTRA_SECURITY_GROUPS || key == a::TARGET_GROUP_ATTRIBUTES
}

pub fn parse(service: &ServiceInfo) -> Parsed {
    let ann = &service.annotations;
    let Some(kind) = requested_kind(ann) else { return Parsed::Elsewhere };
    let mut p = Problems::default();
    check_keys(ann, kind, &mut p);
    let v = Values::read(ann, kind, &mut p.errors);
    let mut config = LbConfig {
        kind,
        namespace: service.namespace.clone(),
        name: service.name.clone(),
        uid: service.uid.clone(),
        internal: false,
        subnets: v.list(a::SUBNETS),
        security_groups: v.list(a::SECURITY_GROUPS).unwrap_or_default(),
        extra_security_groups: v.list(a::EXTRA_SECURITY_GROUPS).unwrap_or_default(),
        additional_tags: v.map(a::ADDITIONAL_RESOURCE_TAGS),
        ssl_cert: v.text(a::SSL_CERT).map(String::from),
        ssl_ports: None,
        ssl_negotiation_policy: v
            .text(a::SSL_NEGOTIATION_POLICY)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from),
        backend_protocol: None,
        backend_ssl_health: v
            .text(a::BACKEND_PROTOCOL)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "https" | "ssl")),
        proxy_protocol: false,
        access_log_enabled: v.bool(a::ACCESS_LOG_ENABLED),
        access_log_interval: v.text(a::ACCESS_LOG_EMIT_INTERVAL).and_then(|n| n.parse().ok()),
        access_log_bucket: v.text(a::ACCESS_LOG_S3_BUCKET_NAME).map(String::from),
        access_log_prefix: v.text(a::ACCESS_LOG_S3_BUCKET_PREFIX).map(String::from),
        draining_enabled: v.bool(a::CONNECTION_DRAINING_ENABLED),
        draining_timeout: v.int(a::CONNECTION_DRAINING_TIMEOUT),
        idle_timeout: v.int(a::CONNECTION_IDLE_TIMEOUT).unwrap_or(60),
        cross_zone: v.bool(a::CROSS_ZONE),
        health: HealthOverrides {
            healthy: v.int(a::HEALTHCHECK_HEALTHY_THRESHOLD),
            unhealthy: v.int(a::HEALTHCHECK_UNHEALTHY_THRESHOLD),
            interval: v.int(a::HEALTHCHECK_INTERVAL),
            ..HealthOverrides::default()
        },
        target_node_labels: v.map(a::TARGET_NODE_LABELS),
        target_group_attributes: BTreeMap::new(),
        eip_allocations: v.list(a::EIP_ALLOCATIONS).unwrap_or_default(),
        private_ipv4_addresses: v.list(a::PRIVATE_IPV4_ADDRESSES).unwrap_or_default(),
        source_ranges: Vec::new(),
        ports: Vec::new(),
        all_ports: service.ports.iter().map(|p| p.port).collect(),
        local_traffic: service.external_traffic_policy == TrafficPolicy::Local,
        health_check_node_port: service.health_check_node_port,
    };
    read_internal(v.text(a::INTERNAL), &mut config, &mut p);
    read_own_attributes(&v, &mut config, &mut p.errors);
    read_health(&v, &mut config, &mut p.errors);
    if v.read.contains_key(a::TARGET_GROUP_ATTRIBUTES) {
        read_target_group_attributes(v.map(a::TARGET_GROUP_ATTRIBUTES), service, &mut config, &mut p.errors);
    }
    check_addresses(&config, &mut p.errors);
    read_source_ranges(service, v.list(a::SOURCE_RANGES), &mut config, &mut p.errors);
    read_spec(service, &mut config, &mut p);
    read_tls(&v, &mut config, &mut p);

    if p.errors.is_empty() {
        Parsed::Ok { config: Box::new(config), warnings: p.warnings }
    } else {
        Parsed::Invalid(p.errors)
    }
}

/// Unknown `aws-load-balancer-*` keys and keys of the other type: a Warning (they are ignored,
/// as upstream ignores them), except the two upstream rejects.
fn check_keys(ann: &BTreeMap<String, String>, kind: Kind, p: &mut Problems) {
    if let Some(t) = ann.get(a::TYPE)
        && !matches!(t.as_str(), "nlb" | "nlb-ip" | "external")
        && !matches!(t.trim().to_ascii_lowercase().as_str(), "" | "clb" | "elb" | "classic")
    {
        let hint = if matches!(t.trim().to_ascii_lowercase().as_str(), "nlb" | "nlb-ip" | "external") {
            format!(
                " (upstream reads only the exact lowercase {:?}; fix the value to change the type)",
                t.trim().to_ascii_lowercase()
            )
        } else {
            String::new()
        };
        p.warnings.push(format!("{}: {t:?} is not nlb, nlb-ip or external, so this is a Classic ELB{hint}", a::TYPE));
    }
    for key in ann.keys() {
        match a::find(key) {
            Some(annotation) => {
                if annotation.applies.to_nlb(kind == Kind::Nlb) {
                    continue;
                }
                let what =
                    format!("{key} applies to {} only, not to this {}", annotation.applies.label(), kind.label());
                if rejected_on_other_type(key) {
                    p.errors.push(what);
                } else {
                    p.warnings.push(format!("{what}; ignored"));
                }
            }
            None if key.starts_with(a::AWS_PREFIX) => p.warnings.push(format!(
                "{key} is not an annotation this controller knows (the AWS Load Balancer Controller's?); ignored"
            )),
            None => {}
        }
    }
}

/// Upstream: internal unless the value is empty or exactly `false`.
fn read_internal(value: Option<&str>, config: &mut LbConfig, p: &mut Problems) {
    let Some(v) = value else { return };
    config.internal = !v.is_empty() && v != "false";
    if config.internal && v.trim().eq_ignore_ascii_case("false") {
        p.warnings.push(format!(
            "{}: {v:?} is read as internal, as upstream reads it (only the exact value false is not)",
            a::INTERNAL
        ));
    }
}

/// Proxy protocol (Classic) and the access-log bucket the logs need.
fn read_own_attributes(v: &Values<'_>, config: &mut LbConfig, errors: &mut Vec<String>) {
    match v.text(a::PROXY_PROTOCOL) {
        Some("*") => config.proxy_protocol = true,
        Some("") | None => {}
        Some(other) => errors.push(format!("{}: {other:?}: only `*` (all ports) is supported", a::PROXY_PROTOCOL)),
    }
    if config.access_log_enabled && config.access_log_bucket.is_none() {
        errors.push(format!("{} is true but {} is missing", a::ACCESS_LOG_ENABLED, a::ACCESS_LOG_S3_BUCKET_NAME));
    }
}

fn read_health(r: &Values<'_>, config: &mut LbConfig, errors: &mut Vec<String>) {
    let kind = config.kind;
    if let Some(v) = r.text(a::HEALTHCHECK_PROTOCOL) {
        use HealthProtocol::{Http, Https, Ssl, Tcp};
        let allowed: &[HealthProtocol] =
            if kind == Kind::Classic { &[Tcp, Http, Https, Ssl] } else { &[Tcp, Http, Https] };
        match allowed.iter().find(|p| p.as_str() == v.to_ascii_uppercase()) {
            Some(p) => config.health.protocol = Some(*p),
            None => {
                let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
                errors.push(format!("{}: {v:?} is not one of {names:?}", a::HEALTHCHECK_PROTOCOL));
            }
        }
    }
    if let Some(v) = r.text(a::HEALTHCHECK_PORT) {
        config.health.port = match v {
            "traffic-port" => Some(HealthPort::TrafficPort),
            other => match other.parse::<u16>() {
                Ok(p) if p > 0 => Some(HealthPort::Port(p)),
                _ => {
                    errors.push(format!("{}: {v:?} is not traffic-port or a port number", a::HEALTHCHECK_PORT));
                    None
                }
            },
        };
    }
    if let Some(v) = r.text(a::HEALTHCHECK_PATH).filter(|v| !v.is_empty()) {
        if v.starts_with('/') {
            config.health.path = Some(v.to_string());
        } else {
            errors.push(format!("{}: {v:?} must start with /", a::HEALTHCHECK_PATH));
        }
    }
    // An NLB's timeout is read but, as upstream, never sent: AWS picks it from the protocol.
    if let Some(v) = r.text(a::HEALTHCHECK_TIMEOUT) {
        let (min, max) = if kind == Kind::Classic { (2, 120) } else { (i32::MIN, i32::MAX) };
        config.health.timeout = match v.parse::<i32>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let key = a::HEALTHCHECK_TIMEOUT;
                errors.push(format!("{key}: {v:?} is not a whole number from {min} to {max}"));
                None
            }
        };
    }
    if kind == Kind::Classic
        && let (Some(t), Some(i)) = (config.health.timeout, config.health.interval)
        && t >= i
    {
        errors.push(format!("{} ({t}) must be less than {} ({i})", a::HEALTHCHECK_TIMEOUT, a::HEALTHCHECK_INTERVAL));
    }
}

/// Upstream's validation: only these two keys, exactly `true` or `false`, each once.
fn read_target_group_attributes(
    attributes: BTreeMap<String, String>,
    service: &ServiceInfo,
    config: &mut LbConfig,
    errors: &mut Vec<String>,
) {
    for (k, val) in attributes {
        if !matches!(k.as_str(), "preserve_client_ip.enabled" | "proxy_protocol_v2.enabled") {
            errors.push(format!(
                "{}: {k:?} is not supported (preserve_client_ip.enabled, proxy_protocol_v2.enabled)",
                a::TARGET_GROUP_ATTRIBUTES
            ));
            continue;
        }
        let b = match val.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                errors.push(format!("{} {k}: {val:?} is not true or false", a::TARGET_GROUP_ATTRIBUTES));
                continue;
            }
        };
        config.target_group_attributes.insert(k, b);
    }
    if config.target_group_attributes.get("preserve_client_ip.enabled") == Some(&false)
        && service.ports.iter().any(|p| p.protocol == Protocol::Udp)
    {
        errors.push("preserve_client_ip.enabled=false is not allowed with UDP ports".into());
    }
}

/// Elastic IPs only on an internet-facing NLB, private addresses only on an internal one.
fn check_addresses(config: &LbConfig, errors: &mut Vec<String>) {
    if !config.eip_allocations.is_empty() && config.internal {
        errors.push(format!("{} needs an internet-facing NLB, but {} is set", a::EIP_ALLOCATIONS, a::INTERNAL));
    }
    if !config.private_ipv4_addresses.is_empty() && !config.internal {
        errors.push(format!("{} needs an internal NLB ({})", a::PRIVATE_IPV4_ADDRESSES, a::INTERNAL));
    }
}

/// The spec wins over the annotation; IPv4 CIDRs only (rules use CidrIp), host bits dropped as
/// Kubernetes' own parser does.
fn read_source_ranges(
    service: &ServiceInfo,
    annotation: Option<Vec<String>>,
    config: &mut LbConfig,
    errors: &mut Vec<String>,
) {
    let ranges =
        if !service.source_ranges.is_empty() { service.source_ranges.clone() } else { annotation.unwrap_or_default() };
    for range in &ranges {
        match range.trim().parse::<ipnet::Ipv4Net>() {
            Ok(net) => {
                let net = net.trunc().to_string();
                if !config.source_ranges.contains(&net) {
                    config.source_ranges.push(net);
                }
            }
            Err(_) => errors.push(format!("source range {range:?} is not an IPv4 CIDR")),
        }
    }
    if config.source_ranges.is_empty() {
        config.source_ranges.push("0.0.0.0/0".into());
    }
}

/// Affinity, loadBalancerIP, ports and protocols. Ports without a nodePort are skipped with a
/// Warning, as upstream skips them.
fn read_spec(service: &ServiceInfo, config: &mut LbConfig, p: &mut Problems) {
    let kind = config.kind;
    if service.session_affinity_client_ip {
        p.errors.push("sessionAffinity ClientIP is not supported by AWS load balancers".into());
    }
    if service.load_balancer_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
        p.errors.push("spec.loadBalancerIP is not supported on AWS (use eip-allocations for an NLB)".into());
    }
    if service.ports.is_empty() {
        p.errors.push("the Service has no ports".into());
    }
    let protocols: BTreeSet<Protocol> = service.ports.iter().map(|p| p.protocol).collect();
    if protocols.len() > 1 {
        p.errors.push("ports of different protocols are not supported".into());
    }
    for port in &service.ports {
        match (kind, port.protocol) {
            (Kind::Classic, Protocol::Tcp) | (Kind::Nlb, Protocol::Tcp | Protocol::Udp) => {}
            (_, other) => {
                p.errors.push(format!("port {}: {} is not supported by a {}", port.port, other.as_str(), kind.label()))
            }
        }
        if port.node_port == 0 {
            p.warnings.push(format!("port {} has no nodePort, so the load balancer does not serve it", port.port));
            continue;
        }
        config.ports.push(Port {
            name: port.name.clone(),
            protocol: port.protocol,
            port: port.port,
            node_port: port.node_port,
        });
    }
    if config.ports.is_empty() && !service.ports.is_empty() {
        p.errors.push("no port has a nodePort (allocateLoadBalancerNodePorts: false); nothing to balance".into());
    }
}

/// The certificate, its ports and the backend protocol, read as upstream reads them.
fn read_tls(r: &Values<'_>, config: &mut LbConfig, p: &mut Problems) {
    if let Some(cert) = &config.ssl_cert
        && !cert.starts_with("arn:")
    {
        p.errors.push(format!("{}: {cert:?} is not an ARN", a::SSL_CERT));
    }
    if config.kind == Kind::Nlb
        && config.ssl_cert.is_some()
        && config.ports.iter().all(|port| port.protocol == Protocol::Udp)
        && !config.ports.is_empty()
    {
        p.warnings.push(format!("{} does not apply to UDP ports; ignored", a::SSL_CERT));
    }
    // Upstream splits at commas without trimming: " 443" names no port.
    if let Some(v) = r.text(a::SSL_PORTS).filter(|v| !v.is_empty() && *v != "*") {
        let set: BTreeSet<String> = v.split(',').map(String::from).collect();
        for wanted in &set {
            let known = config
                .ports
                .iter()
                .any(|port| port.name.as_deref() == Some(wanted.as_str()) || port.port.to_string() == *wanted);
            if !known {
                p.warnings
                    .push(format!("{}: {wanted:?} is not a port of this Service; no certificate for it", a::SSL_PORTS));
            }
        }
        config.ssl_ports = Some(set);
    }
    let Some(v) = r.text(a::BACKEND_PROTOCOL) else { return };
    let exact = match v {
        "tcp" => Some(BackendProtocol::Tcp),
        "ssl" => Some(BackendProtocol::Ssl),
        "http" => Some(BackendProtocol::Http),
        "https" => Some(BackendProtocol::Https),
        _ => None,
    };
    let any_ssl_port = config.ports.iter().any(|port| config.is_ssl_port(port));
    match (config.kind, exact) {
        (Kind::Classic, Some(b)) => config.backend_protocol = Some(b),
        // Upstream: an unknown value errors on a port with a certificate; elsewhere it is TCP.
        (Kind::Classic, None)
            if any_ssl_port || !matches!(v.trim().to_ascii_lowercase().as_str(), "tcp" | "ssl" | "http" | "https") =>
        {
            p.errors.push(format!("{}: {v:?} is not tcp, ssl, http or https", a::BACKEND_PROTOCOL))
        }
        (Kind::Classic, None) => p.warnings.push(format!(
            "{}: {v:?} is read as tcp, as upstream reads it (only the exact lowercase values count)",
            a::BACKEND_PROTOCOL
        )),
        (Kind::Nlb, Some(BackendProtocol::Ssl)) => config.backend_protocol = Some(BackendProtocol::Ssl),
        (Kind::Nlb, Some(BackendProtocol::Tcp)) => {}
        (Kind::Nlb, _) => p.warnings.push(format!(
            "{}: {v:?} has no effect on an NLB (only ssl does: TLS to the targets); ignored",
            a::BACKEND_PROTOCOL
        )),
    }
}

impl LbConfig {
    /// Whether `port` takes the certificate.
    pub fn is_ssl_port(&self, port: &Port) -> bool {
        self.ssl_cert.is_some()
            && self.ssl_ports.as_ref().is_none_or(|set| {
                set.contains(&port.port.to_string()) || port.name.as_ref().is_some_and(|n| set.contains(n))
            })
    }

    /// `namespace/name`.
    pub fn service_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests;
