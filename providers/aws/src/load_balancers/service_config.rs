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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthPort {
    TrafficPort,
    Port(u16),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOverrides {
    pub protocol: Option<String>,
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
    pub proxy_protocol: bool,
    pub access_log_enabled: bool,
    pub access_log_interval: i32,
    pub access_log_bucket: Option<String>,
    pub access_log_prefix: Option<String>,
    pub draining_enabled: bool,
    pub draining_timeout: i32,
    pub idle_timeout: i32,
    pub cross_zone: bool,
    pub health: HealthOverrides,
    pub target_node_labels: BTreeMap<String, String>,
    pub target_group_attributes: BTreeMap<String, bool>,
    pub eip_allocations: Vec<String>,
    pub private_ipv4_addresses: Vec<String>,
    pub source_ranges: Vec<String>,
    pub ports: Vec<Port>,
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

/// The load balancer type a Service asks for, from its annotation alone.
pub fn requested_kind(annotations: &BTreeMap<String, String>) -> Option<Kind> {
    match annotations.get(a::TYPE).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("nlb") => Some(Kind::Nlb),
        Some("nlb-ip" | "external") => None,
        _ => Some(Kind::Classic),
    }
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn map(value: &str) -> BTreeMap<String, String> {
    list(value)
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (kv, String::new()),
        })
        .collect()
}

fn boolean(key: &str, value: &str, errors: &mut Vec<String>) -> bool {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => true,
        "false" | "0" | "f" => false,
        _ => {
            errors.push(format!("{key}: {value:?} is not true or false"));
            false
        }
    }
}

fn number(key: &str, value: &str, min: i32, max: i32, errors: &mut Vec<String>) -> Option<i32> {
    match value.trim().parse::<i32>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            errors.push(format!("{key}: {value:?} is not a whole number from {min} to {max}"));
            None
        }
    }
}

pub fn parse(service: &ServiceInfo) -> Parsed {
    let ann = &service.annotations;
    let Some(kind) = requested_kind(ann) else { return Parsed::Elsewhere };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if let Some(t) = ann.get(a::TYPE)
        && !matches!(t.trim().to_ascii_lowercase().as_str(), "nlb" | "clb" | "elb" | "")
    {
        warnings.push(format!("{}: {t:?} is not a type this controller knows; a Classic ELB is made", a::TYPE));
    }
    let get = |key: &str| ann.get(key).map(String::as_str);

    // Keys: unknown ones warn, ones for the other type are errors.
    for key in ann.keys() {
        match a::find(key) {
            Some(annotation) => {
                let fits = match (annotation.applies, kind) {
                    (Applies::Both, _) | (Applies::Classic, Kind::Classic) | (Applies::Nlb, Kind::Nlb) => true,
                    _ => false,
                };
                if !fits {
                    errors.push(format!(
                        "{key} applies to {} only, not to this {}",
                        annotation.applies.label(),
                        kind.label()
                    ));
                }
            }
            None if key.starts_with(a::AWS_PREFIX) => warnings.push(format!(
                "{key} is not an annotation this controller knows (the AWS Load Balancer Controller's?); ignored"
            )),
            None => {}
        }
    }

    let mut config = LbConfig {
        kind,
        namespace: service.namespace.clone(),
        name: service.name.clone(),
        uid: service.uid.clone(),
        internal: get(a::INTERNAL).is_some_and(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("false")),
        subnets: get(a::SUBNETS).map(list),
        security_groups: get(a::SECURITY_GROUPS).map(list).unwrap_or_default(),
        extra_security_groups: get(a::EXTRA_SECURITY_GROUPS).map(list).unwrap_or_default(),
        additional_tags: get(a::ADDITIONAL_RESOURCE_TAGS).map(map).unwrap_or_default(),
        ssl_cert: get(a::SSL_CERT).map(str::trim).filter(|v| !v.is_empty()).map(String::from),
        ssl_ports: get(a::SSL_PORTS).map(list).filter(|l| !l.iter().any(|p| p == "*")).map(|l| l.into_iter().collect()),
        ssl_negotiation_policy: get(a::SSL_NEGOTIATION_POLICY)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from),
        backend_protocol: None,
        proxy_protocol: false,
        access_log_enabled: get(a::ACCESS_LOG_ENABLED).is_some_and(|v| boolean(a::ACCESS_LOG_ENABLED, v, &mut errors)),
        access_log_interval: 60,
        access_log_bucket: get(a::ACCESS_LOG_S3_BUCKET_NAME).map(String::from),
        access_log_prefix: get(a::ACCESS_LOG_S3_BUCKET_PREFIX).map(String::from),
        draining_enabled: get(a::CONNECTION_DRAINING_ENABLED)
            .is_some_and(|v| boolean(a::CONNECTION_DRAINING_ENABLED, v, &mut errors)),
        draining_timeout: 300,
        idle_timeout: 60,
        cross_zone: get(a::CROSS_ZONE).is_some_and(|v| boolean(a::CROSS_ZONE, v, &mut errors)),
        health: HealthOverrides::default(),
        target_node_labels: get(a::TARGET_NODE_LABELS).map(map).unwrap_or_default(),
        target_group_attributes: BTreeMap::new(),
        eip_allocations: get(a::EIP_ALLOCATIONS).map(list).unwrap_or_default(),
        private_ipv4_addresses: get(a::PRIVATE_IPV4_ADDRESSES).map(list).unwrap_or_default(),
        source_ranges: Vec::new(),
        ports: Vec::new(),
        local_traffic: service.external_traffic_policy == TrafficPolicy::Local,
        health_check_node_port: service.health_check_node_port,
    };

    if let Some(v) = get(a::BACKEND_PROTOCOL) {
        config.backend_protocol = match v.trim().to_ascii_lowercase().as_str() {
            "tcp" => Some(BackendProtocol::Tcp),
            "ssl" => Some(BackendProtocol::Ssl),
            "http" => Some(BackendProtocol::Http),
            "https" => Some(BackendProtocol::Https),
            _ => {
                errors.push(format!("{}: {v:?} is not tcp, ssl, http or https", a::BACKEND_PROTOCOL));
                None
            }
        };
        if kind == Kind::Nlb && matches!(config.backend_protocol, Some(BackendProtocol::Http | BackendProtocol::Https))
        {
            errors.push(format!("{}: an NLB supports only tcp or ssl", a::BACKEND_PROTOCOL));
        }
    }
    if let Some(v) = get(a::PROXY_PROTOCOL) {
        if v.trim() == "*" {
            config.proxy_protocol = true;
        } else {
            errors.push(format!("{}: {v:?}: only `*` (all ports) is supported", a::PROXY_PROTOCOL));
        }
    }
    if let Some(v) = get(a::ACCESS_LOG_EMIT_INTERVAL) {
        match v.trim() {
            "5" => config.access_log_interval = 5,
            "60" => config.access_log_interval = 60,
            _ => errors.push(format!("{}: {v:?} is not 5 or 60", a::ACCESS_LOG_EMIT_INTERVAL)),
        }
    }
    if config.access_log_enabled && config.access_log_bucket.as_deref().is_none_or(str::is_empty) {
        errors.push(format!("{} is true but {} is missing", a::ACCESS_LOG_ENABLED, a::ACCESS_LOG_S3_BUCKET_NAME));
    }
    if let Some(v) = get(a::CONNECTION_DRAINING_TIMEOUT) {
        config.draining_timeout = number(a::CONNECTION_DRAINING_TIMEOUT, v, 1, 3600, &mut errors).unwrap_or(300);
    }
    if let Some(v) = get(a::CONNECTION_IDLE_TIMEOUT) {
        config.idle_timeout = number(a::CONNECTION_IDLE_TIMEOUT, v, 1, 4000, &mut errors).unwrap_or(60);
    }

    // Health check.
    if let Some(v) = get(a::HEALTHCHECK_PROTOCOL) {
        let p = v.trim().to_ascii_uppercase();
        let allowed: &[&str] =
            if kind == Kind::Classic { &["TCP", "HTTP", "HTTPS", "SSL"] } else { &["TCP", "HTTP", "HTTPS"] };
        if allowed.contains(&p.as_str()) {
            config.health.protocol = Some(p);
        } else {
            errors.push(format!("{}: {v:?} is not one of {allowed:?}", a::HEALTHCHECK_PROTOCOL));
        }
    }
    if let Some(v) = get(a::HEALTHCHECK_PORT) {
        config.health.port = match v.trim() {
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
    if let Some(v) = get(a::HEALTHCHECK_PATH) {
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
        (a::HEALTHCHECK_TIMEOUT, 2, 120, &mut config.health.timeout),
    ] {
        if let Some(v) = get(key) {
            *slot = number(key, v, min, max, &mut errors);
        }
    }
    if let (Some(t), Some(i)) = (config.health.timeout, config.health.interval)
        && t >= i
    {
        errors.push(format!("{} ({t}) must be less than {} ({i})", a::HEALTHCHECK_TIMEOUT, a::HEALTHCHECK_INTERVAL));
    }

    // Target-group attributes: only the two keys upstream allows.
    if let Some(v) = get(a::TARGET_GROUP_ATTRIBUTES) {
        for (k, val) in map(v) {
            if !matches!(k.as_str(), "preserve_client_ip.enabled" | "proxy_protocol_v2.enabled") {
                errors.push(format!(
                    "{}: {k:?} is not supported (preserve_client_ip.enabled, proxy_protocol_v2.enabled)",
                    a::TARGET_GROUP_ATTRIBUTES
                ));
                continue;
            }
            let b = boolean(&format!("{} {k}", a::TARGET_GROUP_ATTRIBUTES), &val, &mut errors);
            if config.target_group_attributes.insert(k.clone(), b).is_some() {
                errors.push(format!("{}: {k} given twice", a::TARGET_GROUP_ATTRIBUTES));
            }
        }
    }
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

    // Source ranges: the spec wins over the annotation; IPv4 CIDRs only (rules use CidrIp).
    let ranges = if !service.source_ranges.is_empty() {
        service.source_ranges.clone()
    } else {
        get(a::SOURCE_RANGES).map(list).unwrap_or_default()
    };
    for range in &ranges {
        match range.trim().parse::<ipnet::Ipv4Net>() {
            Ok(net) => config.source_ranges.push(net.to_string()),
            Err(_) => errors.push(format!("source range {range:?} is not an IPv4 CIDR")),
        }
    }
    if config.source_ranges.is_empty() {
        config.source_ranges.push("0.0.0.0/0".into());
    }

    // The spec.
    if service.session_affinity_client_ip {
        errors.push("sessionAffinity ClientIP is not supported by AWS load balancers".into());
    }
    if service.load_balancer_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
        errors.push("spec.loadBalancerIP is not supported on AWS (use eip-allocations for an NLB)".into());
    }
    if service.ports.is_empty() {
        errors.push("the Service has no ports".into());
    }
    let protocols: BTreeSet<Protocol> = service.ports.iter().map(|p| p.protocol).collect();
    if protocols.len() > 1 {
        errors.push("ports of different protocols are not supported".into());
    }
    for p in &service.ports {
        match (kind, p.protocol) {
            (Kind::Classic, Protocol::Tcp) | (Kind::Nlb, Protocol::Tcp | Protocol::Udp) => {}
            (_, other) => {
                errors.push(format!("port {}: {} is not supported by a {}", p.port, other.as_str(), kind.label()))
            }
        }
        if p.node_port == 0 {
            errors.push(format!(
                "port {} has no nodePort (allocateLoadBalancerNodePorts: false is not supported)",
                p.port
            ));
        }
        config.ports.push(Port { name: p.name.clone(), protocol: p.protocol, port: p.port, node_port: p.node_port });
    }
    if config.target_group_attributes.get("preserve_client_ip.enabled") == Some(&false)
        && protocols.contains(&Protocol::Udp)
    {
        errors.push("preserve_client_ip.enabled=false is not allowed with UDP ports".into());
    }
    if let Some(cert) = &config.ssl_cert
        && !cert.starts_with("arn:")
    {
        errors.push(format!("{}: {cert:?} is not an ARN", a::SSL_CERT));
    }
    if kind == Kind::Nlb && config.ssl_cert.is_some() && protocols.contains(&Protocol::Udp) {
        errors.push(format!("{} cannot apply to UDP ports", a::SSL_CERT));
    }
    if let Some(ports) = &config.ssl_ports {
        for wanted in ports {
            let known = config
                .ports
                .iter()
                .any(|p| p.name.as_deref() == Some(wanted.as_str()) || p.port.to_string() == *wanted);
            if !known {
                errors.push(format!("{}: {wanted:?} is not a port of this Service", a::SSL_PORTS));
            }
        }
    }

    if errors.is_empty() { Parsed::Ok { config: Box::new(config), warnings } } else { Parsed::Invalid(errors) }
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
