//! A Service's annotations and spec, parsed once, first thing, into a typed config. Every
//! problem is collected and reported together before any AWS call; unknown
//! `aws-load-balancer-*` keys are returned as warnings (they do not block).

use std::collections::{BTreeMap, BTreeSet};

use cloud_provider::{Protocol, ServiceInfo, TrafficPolicy};

use super::annotations::{self as a, Applies};

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

/// Comma-separated, each item trimmed, empty items dropped (upstream's list reading).
fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// `k1=v1,k2=,k3` as upstream reads it: each item trimmed, split at `=`, the first two parts
/// taken as they are (`a=b=c` is `a` → `b`; `k = v` keeps the spaces around `=`).
fn map(value: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in value.trim().split(',') {
        let parts: Vec<&str> = item.trim().split('=').collect();
        match parts.as_slice() {
            [key, value, ..] if !key.is_empty() => out.insert(key.to_string(), value.to_string()),
            [key] if !key.is_empty() => out.insert(key.to_string(), String::new()),
            _ => None,
        };
    }
    out
}

/// `target-node-labels`, read on its own (for host updates of a Service whose other
/// annotations are invalid).
pub fn target_node_labels(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations.get(a::TARGET_NODE_LABELS).map(|v| map(v)).unwrap_or_default()
}

/// Go's `strconv.ParseBool`, which upstream uses: exactly these spellings.
fn boolean(key: &str, value: &str, errors: &mut Vec<String>) -> bool {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
        "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
        _ => {
            errors.push(format!("{key}: {value:?} is not true or false"));
            false
        }
    }
}

/// A whole number in `min..=max` (no spaces, as Go's `strconv.ParseInt`).
fn number(key: &str, value: &str, min: i32, max: i32, errors: &mut Vec<String>) -> Option<i32> {
    match value.parse::<i32>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            errors.push(format!("{key}: {value:?} is not a whole number from {min} to {max}"));
            None
        }
    }
}

/// What parsing found wrong (blocks the Service) or worth saying (a Warning event).
#[derive(Default)]
struct Problems {
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// Reads the annotations that apply to the load balancer's type; the others were reported by
/// [`check_keys`] and are not read at all.
struct Reader<'a> {
    ann: &'a BTreeMap<String, String>,
    kind: Kind,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        let applies = a::find(key).is_none_or(|found| {
            matches!(
                (found.applies, self.kind),
                (Applies::Both, _) | (Applies::Classic, Kind::Classic) | (Applies::Nlb, Kind::Nlb)
            )
        });
        self.ann.get(key).map(String::as_str).filter(|_| applies)
    }
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
    let reader = Reader { ann, kind };
    let get = |key: &str| reader.get(key);
    let mut config = LbConfig {
        kind,
        namespace: service.namespace.clone(),
        name: service.name.clone(),
        uid: service.uid.clone(),
        internal: false,
        subnets: get(a::SUBNETS).map(list),
        security_groups: get(a::SECURITY_GROUPS).map(list).unwrap_or_default(),
        extra_security_groups: get(a::EXTRA_SECURITY_GROUPS).map(list).unwrap_or_default(),
        additional_tags: get(a::ADDITIONAL_RESOURCE_TAGS).map(map).unwrap_or_default(),
        ssl_cert: get(a::SSL_CERT).filter(|v| !v.is_empty()).map(String::from),
        ssl_ports: None,
        ssl_negotiation_policy: get(a::SSL_NEGOTIATION_POLICY)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from),
        backend_protocol: None,
        backend_ssl_health: get(a::BACKEND_PROTOCOL)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "https" | "ssl")),
        proxy_protocol: false,
        access_log_enabled: false,
        access_log_interval: None,
        access_log_bucket: get(a::ACCESS_LOG_S3_BUCKET_NAME).filter(|v| !v.is_empty()).map(String::from),
        access_log_prefix: get(a::ACCESS_LOG_S3_BUCKET_PREFIX).filter(|v| !v.is_empty()).map(String::from),
        draining_enabled: false,
        draining_timeout: None,
        idle_timeout: 60,
        cross_zone: false,
        health: HealthOverrides::default(),
        target_node_labels: get(a::TARGET_NODE_LABELS).map(map).unwrap_or_default(),
        target_group_attributes: BTreeMap::new(),
        eip_allocations: get(a::EIP_ALLOCATIONS).map(list).unwrap_or_default(),
        private_ipv4_addresses: get(a::PRIVATE_IPV4_ADDRESSES).map(list).unwrap_or_default(),
        source_ranges: Vec::new(),
        ports: Vec::new(),
        all_ports: service.ports.iter().map(|p| p.port).collect(),
        local_traffic: service.external_traffic_policy == TrafficPolicy::Local,
        health_check_node_port: service.health_check_node_port,
    };
    read_internal(get(a::INTERNAL), &mut config, &mut p);
    read_attributes(&reader, &mut config, &mut p.errors);
    read_health(&reader, &mut config, &mut p.errors);
    read_target_group_attributes(get(a::TARGET_GROUP_ATTRIBUTES), service, &mut config, &mut p.errors);
    read_ids(&config, &mut p.errors);
    read_source_ranges(service, get(a::SOURCE_RANGES), &mut config, &mut p.errors);
    read_spec(service, &mut config, &mut p);
    read_tls(&reader, &mut config, &mut p);

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
                let fits = matches!(
                    (annotation.applies, kind),
                    (Applies::Both, _) | (Applies::Classic, Kind::Classic) | (Applies::Nlb, Kind::Nlb)
                );
                if fits {
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

/// Access logs, connection draining and idle timeout (Classic), cross-zone (both), proxy
/// protocol (Classic).
fn read_attributes(r: &Reader<'_>, config: &mut LbConfig, errors: &mut Vec<String>) {
    config.access_log_enabled = r.get(a::ACCESS_LOG_ENABLED).is_some_and(|v| boolean(a::ACCESS_LOG_ENABLED, v, errors));
    config.draining_enabled =
        r.get(a::CONNECTION_DRAINING_ENABLED).is_some_and(|v| boolean(a::CONNECTION_DRAINING_ENABLED, v, errors));
    config.cross_zone = r.get(a::CROSS_ZONE).is_some_and(|v| boolean(a::CROSS_ZONE, v, errors));
    if let Some(v) = r.get(a::PROXY_PROTOCOL) {
        match v {
            "*" => config.proxy_protocol = true,
            "" => {}
            _ => errors.push(format!("{}: {v:?}: only `*` (all ports) is supported", a::PROXY_PROTOCOL)),
        }
    }
    if let Some(v) = r.get(a::ACCESS_LOG_EMIT_INTERVAL) {
        match v {
            "5" => config.access_log_interval = Some(5),
            "60" => config.access_log_interval = Some(60),
            _ => errors.push(format!("{}: {v:?} is not 5 or 60", a::ACCESS_LOG_EMIT_INTERVAL)),
        }
    }
    if config.access_log_enabled && config.access_log_bucket.is_none() {
        errors.push(format!("{} is true but {} is missing", a::ACCESS_LOG_ENABLED, a::ACCESS_LOG_S3_BUCKET_NAME));
    }
    if let Some(v) = r.get(a::CONNECTION_DRAINING_TIMEOUT) {
        config.draining_timeout = number(a::CONNECTION_DRAINING_TIMEOUT, v, 1, 3600, errors);
    }
    if let Some(v) = r.get(a::CONNECTION_IDLE_TIMEOUT) {
        config.idle_timeout = number(a::CONNECTION_IDLE_TIMEOUT, v, 1, 4000, errors).unwrap_or(60);
    }
}

fn read_health(r: &Reader<'_>, config: &mut LbConfig, errors: &mut Vec<String>) {
    let kind = config.kind;
    if let Some(v) = r.get(a::HEALTHCHECK_PROTOCOL) {
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
    if let Some(v) = r.get(a::HEALTHCHECK_PORT) {
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
    if let Some(v) = r.get(a::HEALTHCHECK_PATH).filter(|v| !v.is_empty()) {
        if v.starts_with('/') {
            config.health.path = Some(v.to_string());
        } else {
            errors.push(format!("{}: {v:?} must start with /", a::HEALTHCHECK_PATH));
        }
    }
    for (key, min, max, slot) in [
        (a::HEALTHCHECK_HEALTHY_THRESHOLD, 2, 10, &mut config.health.healthy),
        (a::HEALTHCHECK_UNHEALTHY_THRESHOLD, 2, 10, &mut config.health.unhealthy),
        (a::HEALTHCHECK_INTERVAL, 5, 300, &mut config.health.interval),
    ] {
        if let Some(v) = r.get(key) {
            *slot = number(key, v, min, max, errors);
        }
    }
    // An NLB's timeout is read but, as upstream, never sent: AWS picks it from the protocol.
    if let Some(v) = r.get(a::HEALTHCHECK_TIMEOUT) {
        config.health.timeout = match kind {
            Kind::Classic => number(a::HEALTHCHECK_TIMEOUT, v, 2, 120, errors),
            Kind::Nlb => number(a::HEALTHCHECK_TIMEOUT, v, i32::MIN, i32::MAX, errors),
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
    value: Option<&str>,
    service: &ServiceInfo,
    config: &mut LbConfig,
    errors: &mut Vec<String>,
) {
    let Some(v) = value else { return };
    for (k, val) in map(v) {
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

fn read_ids(config: &LbConfig, errors: &mut Vec<String>) {
    for (key, values, prefix) in [
        (a::SECURITY_GROUPS, &config.security_groups, "sg-"),
        (a::EXTRA_SECURITY_GROUPS, &config.extra_security_groups, "sg-"),
        (a::EIP_ALLOCATIONS, &config.eip_allocations, "eipalloc-"),
    ] {
        for v in values {
            if !v.starts_with(prefix) {
                errors.push(format!("{key}: {v:?} is not a {prefix}… ID"));
            }
        }
    }
    for ip in &config.private_ipv4_addresses {
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            errors.push(format!("{}: {ip:?} is not an IPv4 address", a::PRIVATE_IPV4_ADDRESSES));
        }
    }
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
    annotation: Option<&str>,
    config: &mut LbConfig,
    errors: &mut Vec<String>,
) {
    let ranges = if !service.source_ranges.is_empty() {
        service.source_ranges.clone()
    } else {
        annotation.map(list).unwrap_or_default()
    };
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
fn read_tls(r: &Reader<'_>, config: &mut LbConfig, p: &mut Problems) {
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
    if let Some(v) = r.get(a::SSL_PORTS).filter(|v| !v.is_empty() && *v != "*") {
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
    let Some(v) = r.get(a::BACKEND_PROTOCOL) else { return };
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
mod tests {
    use super::*;
    use cloud_provider::ServicePort;

    fn service(annotations: &[(&str, &str)]) -> ServiceInfo {
        ServiceInfo {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u-1".into(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ports: vec![ServicePort {
                name: Some("https".into()),
                protocol: Protocol::Tcp,
                port: 443,
                node_port: 30443,
            }],
            ..Default::default()
        }
    }

    fn ok(annotations: &[(&str, &str)]) -> LbConfig {
        match parse(&service(annotations)) {
            Parsed::Ok { config, .. } => *config,
            other => panic!("{annotations:?}: {other:?}"),
        }
    }

    fn errors(annotations: &[(&str, &str)]) -> Vec<String> {
        match parse(&service(annotations)) {
            Parsed::Invalid(errors) => errors,
            other => panic!("{annotations:?} should be invalid: {other:?}"),
        }
    }

    const NLB: (&str, &str) = (a::TYPE, "nlb");

    #[test]
    fn absent_annotations_give_upstream_defaults() {
        let c = ok(&[]);
        assert_eq!(c.kind, Kind::Classic);
        assert!(!c.internal && !c.cross_zone && !c.proxy_protocol && !c.access_log_enabled && !c.draining_enabled);
        assert_eq!((c.idle_timeout, c.draining_timeout, c.access_log_interval), (60, None, None));
        assert_eq!(c.source_ranges, ["0.0.0.0/0"]);
        assert_eq!(c.health, HealthOverrides::default());
        assert!(c.subnets.is_none() && c.security_groups.is_empty() && c.additional_tags.is_empty());
    }

    #[test]
    fn each_key_valid() {
        assert_eq!(ok(&[NLB]).kind, Kind::Nlb);
        assert!(matches!(parse(&service(&[(a::TYPE, "nlb-ip")])), Parsed::Elsewhere));
        assert!(matches!(parse(&service(&[(a::TYPE, "external")])), Parsed::Elsewhere));
        assert!(ok(&[(a::INTERNAL, "true")]).internal);
        assert!(ok(&[(a::INTERNAL, "0.0.0.0/0")]).internal, "upstream: any value but false");
        assert!(!ok(&[(a::INTERNAL, "false")]).internal);
        assert_eq!(ok(&[(a::SUBNETS, "subnet-1, my-subnet")]).subnets.unwrap(), ["subnet-1", "my-subnet"]);
        assert_eq!(ok(&[(a::SECURITY_GROUPS, "sg-1,sg-2")]).security_groups, ["sg-1", "sg-2"]);
        assert_eq!(ok(&[(a::EXTRA_SECURITY_GROUPS, "sg-3")]).extra_security_groups, ["sg-3"]);
        let tags = ok(&[(a::ADDITIONAL_RESOURCE_TAGS, "team=a, env=, solo")]).additional_tags;
        assert_eq!(tags.get("team").map(String::as_str), Some("a"));
        assert_eq!(tags.get("env").map(String::as_str), Some(""));
        assert_eq!(tags.get("solo").map(String::as_str), Some(""));
        let tls = ok(&[(a::SSL_CERT, "arn:aws:acm:us-east-1:1:certificate/x"), (a::SSL_PORTS, "https")]);
        assert!(tls.is_ssl_port(&tls.ports[0]));
        assert!(ok(&[(a::SSL_CERT, "arn:aws:acm:x"), (a::SSL_PORTS, "*")]).ssl_ports.is_none());
        assert_eq!(
            ok(&[(a::SSL_NEGOTIATION_POLICY, "ELBSecurityPolicy-TLS-1-2-2017-01")]).ssl_negotiation_policy.as_deref(),
            Some("ELBSecurityPolicy-TLS-1-2-2017-01")
        );
        assert_eq!(ok(&[(a::BACKEND_PROTOCOL, "http")]).backend_protocol, Some(BackendProtocol::Http));
        assert!(ok(&[(a::PROXY_PROTOCOL, "*")]).proxy_protocol);
        let logs = ok(&[
            (a::ACCESS_LOG_ENABLED, "true"),
            (a::ACCESS_LOG_S3_BUCKET_NAME, "b"),
            (a::ACCESS_LOG_S3_BUCKET_PREFIX, "p"),
            (a::ACCESS_LOG_EMIT_INTERVAL, "5"),
        ]);
        assert!(logs.access_log_enabled);
        assert_eq!(
            (logs.access_log_interval, logs.access_log_bucket.as_deref(), logs.access_log_prefix.as_deref()),
            (Some(5), Some("b"), Some("p"))
        );
        let drain = ok(&[
            (a::CONNECTION_DRAINING_ENABLED, "true"),
            (a::CONNECTION_DRAINING_TIMEOUT, "30"),
            (a::CONNECTION_IDLE_TIMEOUT, "120"),
        ]);
        assert_eq!((drain.draining_enabled, drain.draining_timeout, drain.idle_timeout), (true, Some(30), 120));
        assert!(ok(&[(a::CROSS_ZONE, "true")]).cross_zone);
        let hc = ok(&[
            (a::HEALTHCHECK_PROTOCOL, "http"),
            (a::HEALTHCHECK_PORT, "8080"),
            (a::HEALTHCHECK_PATH, "/ready"),
            (a::HEALTHCHECK_HEALTHY_THRESHOLD, "3"),
            (a::HEALTHCHECK_UNHEALTHY_THRESHOLD, "4"),
            (a::HEALTHCHECK_INTERVAL, "15"),
            (a::HEALTHCHECK_TIMEOUT, "6"),
        ])
        .health;
        assert_eq!(hc.protocol, Some(HealthProtocol::Http));
        assert_eq!(hc.port, Some(HealthPort::Port(8080)));
        assert_eq!((hc.healthy, hc.unhealthy, hc.interval, hc.timeout), (Some(3), Some(4), Some(15), Some(6)));
        assert_eq!(ok(&[(a::HEALTHCHECK_PORT, "traffic-port")]).health.port, Some(HealthPort::TrafficPort));
        assert_eq!(ok(&[(a::TARGET_NODE_LABELS, "pool=edge,gpu")]).target_node_labels.len(), 2);
        let attrs =
            ok(&[NLB, (a::TARGET_GROUP_ATTRIBUTES, "preserve_client_ip.enabled=true,proxy_protocol_v2.enabled=false")]);
        assert_eq!(attrs.target_group_attributes.get("proxy_protocol_v2.enabled"), Some(&false));
        assert_eq!(ok(&[NLB, (a::EIP_ALLOCATIONS, "eipalloc-1,eipalloc-2")]).eip_allocations.len(), 2);
        assert_eq!(
            ok(&[NLB, (a::INTERNAL, "true"), (a::PRIVATE_IPV4_ADDRESSES, "10.0.0.5")]).private_ipv4_addresses,
            ["10.0.0.5"]
        );
        assert_eq!(
            ok(&[(a::SOURCE_RANGES, "10.0.0.0/8, 192.168.1.0/24")]).source_ranges,
            ["10.0.0.0/8", "192.168.1.0/24"]
        );
    }

    #[test]
    fn each_key_invalid() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(a::SECURITY_GROUPS, "default")], "is not a sg-"),
            (&[(a::EXTRA_SECURITY_GROUPS, "web")], "is not a sg-"),
            (&[(a::SSL_CERT, "my-cert")], "is not an ARN"),
            (&[(a::BACKEND_PROTOCOL, "grpc")], "is not tcp, ssl, http or https"),
            (&[(a::PROXY_PROTOCOL, "80")], "only `*`"),
            (&[(a::ACCESS_LOG_ENABLED, "yes please")], "is not true or false"),
            (&[(a::ACCESS_LOG_ENABLED, "true")], "is missing"),
            (&[(a::ACCESS_LOG_EMIT_INTERVAL, "10")], "is not 5 or 60"),
            (&[(a::CONNECTION_DRAINING_ENABLED, "maybe")], "is not true or false"),
            (&[(a::CONNECTION_DRAINING_TIMEOUT, "0")], "from 1 to 3600"),
            (&[(a::CONNECTION_IDLE_TIMEOUT, "forever")], "from 1 to 4000"),
            (&[(a::CROSS_ZONE, "sometimes")], "is not true or false"),
            (&[(a::HEALTHCHECK_PROTOCOL, "UDP")], "is not one of"),
            (&[(a::HEALTHCHECK_PORT, "http")], "traffic-port or a port"),
            (&[(a::HEALTHCHECK_PATH, "healthz")], "must start with /"),
            (&[(a::HEALTHCHECK_HEALTHY_THRESHOLD, "1")], "from 2 to 10"),
            (&[(a::HEALTHCHECK_UNHEALTHY_THRESHOLD, "11")], "from 2 to 10"),
            (&[(a::HEALTHCHECK_INTERVAL, "1")], "from 5 to 300"),
            (&[(a::HEALTHCHECK_TIMEOUT, "1")], "from 2 to 120"),
            (&[(a::HEALTHCHECK_TIMEOUT, "20"), (a::HEALTHCHECK_INTERVAL, "10")], "must be less than"),
            (&[(a::TARGET_GROUP_ATTRIBUTES, "proxy_protocol_v2.enabled=true")], "applies to NLB only"),
            (&[NLB, (a::TARGET_GROUP_ATTRIBUTES, "stickiness.enabled=true")], "is not supported"),
            (&[NLB, (a::TARGET_GROUP_ATTRIBUTES, "proxy_protocol_v2.enabled=on")], "is not true or false"),
            (&[NLB, (a::EIP_ALLOCATIONS, "10.0.0.1")], "is not a eipalloc-"),
            (&[NLB, (a::EIP_ALLOCATIONS, "eipalloc-1"), (a::INTERNAL, "true")], "needs an internet-facing NLB"),
            (&[NLB, (a::PRIVATE_IPV4_ADDRESSES, "10.0.0.1")], "needs an internal NLB"),
            (&[NLB, (a::INTERNAL, "true"), (a::PRIVATE_IPV4_ADDRESSES, "ten")], "is not an IPv4 address"),
            (&[NLB, (a::EXTRA_SECURITY_GROUPS, "sg-1")], "applies to CLB only"),
            (&[(a::BACKEND_PROTOCOL, "HTTPS"), (a::SSL_CERT, "arn:x")], "is not tcp, ssl, http or https"),
            (&[(a::SOURCE_RANGES, "10.0.0.0/33")], "is not an IPv4 CIDR"),
            (&[(a::SOURCE_RANGES, "2001:db8::/32")], "is not an IPv4 CIDR"),
        ];
        for (annotations, needle) in cases {
            let errs = errors(annotations);
            assert!(errs.iter().any(|e| e.contains(needle)), "{annotations:?}: {needle:?} not in {errs:?}");
        }
    }

    fn warnings(annotations: &[(&str, &str)]) -> Vec<String> {
        match parse(&service(annotations)) {
            Parsed::Ok { warnings, .. } => warnings,
            other => panic!("{annotations:?} should be valid: {other:?}"),
        }
    }

    /// What upstream ignores or reads its own way is reconciled as upstream would, with a
    /// Warning saying so; never a blocked Service.
    #[test]
    fn other_type_keys_and_loose_values_warn_and_read_as_upstream() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[NLB, (a::PROXY_PROTOCOL, "*")], "applies to CLB only"),
            (&[NLB, (a::PROXY_PROTOCOL, "80")], "applies to CLB only"),
            (&[NLB, (a::CONNECTION_IDLE_TIMEOUT, "60")], "applies to CLB only"),
            (&[NLB, (a::CONNECTION_DRAINING_ENABLED, "true")], "applies to CLB only"),
            (&[NLB, (a::ACCESS_LOG_EMIT_INTERVAL, "5")], "applies to CLB only"),
            (&[NLB, (a::BACKEND_PROTOCOL, "http")], "no effect on an NLB"),
            (&[(a::EIP_ALLOCATIONS, "eipalloc-1")], "applies to NLB only"),
            (&[(a::PRIVATE_IPV4_ADDRESSES, "10.0.0.1")], "applies to NLB only"),
            (&[(a::SSL_CERT, "arn:x"), (a::SSL_PORTS, "8443")], "is not a port of this Service"),
            (&[(a::SSL_CERT, "arn:x"), (a::SSL_PORTS, "https, 443")], "\" 443\" is not a port"),
            (&[(a::BACKEND_PROTOCOL, "HTTP")], "read as tcp"),
            (&[(a::INTERNAL, "False")], "read as internal"),
            (&[(a::TYPE, "NLB")], "so this is a Classic ELB"),
        ];
        for (annotations, needle) in cases {
            let warns = warnings(annotations);
            assert!(warns.iter().any(|w| w.contains(needle)), "{annotations:?}: {needle:?} not in {warns:?}");
        }
        assert_eq!(ok(&[(a::TYPE, "NLB")]).kind, Kind::Classic, "only the exact `nlb` is an NLB");
        assert_eq!(ok(&[(a::TYPE, " nlb")]).kind, Kind::Classic);
        assert!(ok(&[(a::INTERNAL, "False")]).internal, "upstream: anything but the exact `false`");
        assert_eq!(ok(&[(a::BACKEND_PROTOCOL, "HTTP")]).backend_protocol, None);
        assert!(ok(&[NLB, (a::PROXY_PROTOCOL, "80")]).ports.len() == 1);
        // The ports upstream matches: names and numbers exactly as written.
        let tls = ok(&[(a::SSL_CERT, "arn:x"), (a::SSL_PORTS, "https, 443")]);
        assert!(tls.is_ssl_port(&tls.ports[0]), "\"https\" names the port");
        let spaced = ok(&[(a::SSL_CERT, "arn:x"), (a::SSL_PORTS, " https")]);
        assert!(!spaced.is_ssl_port(&spaced.ports[0]), "\" https\" names no port, as upstream");
    }

    #[test]
    fn values_read_exactly_as_upstream() {
        let tags = ok(&[(a::ADDITIONAL_RESOURCE_TAGS, " a=b=c , k = v ,solo")]).additional_tags;
        assert_eq!(tags.get("a").map(String::as_str), Some("b"), "a=b=c keeps only b");
        assert_eq!(tags.get("k ").map(String::as_str), Some(" v"), "spaces around = stay");
        assert!(tags.contains_key("solo"));
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(ok(&[(a::CROSS_ZONE, yes)]).cross_zone, "{yes}");
        }
        for bad in ["yes", "tRuE", " true", "on"] {
            assert!(!errors(&[(a::CROSS_ZONE, bad)]).is_empty(), "{bad:?} is not a Go bool");
        }
        assert_eq!(ok(&[(a::SOURCE_RANGES, "10.1.2.3/8")]).source_ranges, ["10.0.0.0/8"], "host bits dropped");
        let mut no_node_port = service(&[]);
        no_node_port.ports.push(ServicePort { name: None, protocol: Protocol::Tcp, port: 81, node_port: 0 });
        let Parsed::Ok { config, warnings } = parse(&no_node_port) else {
            panic!("a port without a nodePort is skipped")
        };
        assert_eq!(config.ports.len(), 1);
        assert!(warnings.iter().any(|w| w.contains("port 81 has no nodePort")), "{warnings:?}");
        no_node_port.ports.remove(0);
        assert!(matches!(parse(&no_node_port), Parsed::Invalid(_)), "no port left at all");
    }

    #[test]
    fn all_problems_together_and_unknown_keys_only_warn() {
        let errs = errors(&[(a::CROSS_ZONE, "x"), (a::HEALTHCHECK_INTERVAL, "1"), (a::TARGET_GROUP_ATTRIBUTES, "a=b")]);
        assert_eq!(errs.len(), 3, "{errs:?}");
        match parse(&service(&[
            ("service.beta.kubernetes.io/aws-load-balancer-scheme", "internal"),
            ("example.com/other", "x"),
        ])) {
            Parsed::Ok { warnings, .. } => {
                assert_eq!(warnings.len(), 1, "only aws-load-balancer-* keys are reported: {warnings:?}");
                assert!(warnings[0].contains("aws-load-balancer-scheme"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spec_rejections() {
        let mut svc = service(&[]);
        svc.session_affinity_client_ip = true;
        svc.load_balancer_ip = Some("1.2.3.4".into());
        svc.ports.push(ServicePort { name: None, protocol: Protocol::Udp, port: 53, node_port: 30053 });
        svc.ports.push(ServicePort { name: None, protocol: Protocol::Tcp, port: 81, node_port: 0 });
        let Parsed::Invalid(errs) = parse(&svc) else { panic!("invalid") };
        for needle in
            ["sessionAffinity", "loadBalancerIP", "different protocols", "UDP is not supported by a Classic ELB"]
        {
            assert!(errs.iter().any(|e| e.contains(needle)), "{needle}: {errs:?}");
        }
        let mut spec_ranges = service(&[(a::SOURCE_RANGES, "10.0.0.0/8")]);
        spec_ranges.source_ranges = vec!["192.168.0.0/16".into()];
        let Parsed::Ok { config, .. } = parse(&spec_ranges) else { panic!() };
        assert_eq!(config.source_ranges, ["192.168.0.0/16"], "the spec wins");
    }
}
