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
                let fits = matches!(
                    (annotation.applies, kind),
                    (Applies::Both, _) | (Applies::Classic, Kind::Classic) | (Applies::Nlb, Kind::Nlb)
                );
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
        assert_eq!((c.idle_timeout, c.draining_timeout, c.access_log_interval), (60, 300, 60));
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
        assert_eq!(ok(&[(a::BACKEND_PROTOCOL, "HTTP")]).backend_protocol, Some(BackendProtocol::Http));
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
            (5, Some("b"), Some("p"))
        );
        let drain = ok(&[
            (a::CONNECTION_DRAINING_ENABLED, "true"),
            (a::CONNECTION_DRAINING_TIMEOUT, "30"),
            (a::CONNECTION_IDLE_TIMEOUT, "120"),
        ]);
        assert_eq!((drain.draining_enabled, drain.draining_timeout, drain.idle_timeout), (true, 30, 120));
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
        assert_eq!(hc.protocol.as_deref(), Some("HTTP"));
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
            (&[(a::SSL_CERT, "arn:x"), (a::SSL_PORTS, "8443")], "is not a port of this Service"),
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
            (&[NLB, (a::PROXY_PROTOCOL, "*")], "applies to CLB only"),
            (&[NLB, (a::CONNECTION_IDLE_TIMEOUT, "60")], "applies to CLB only"),
            (&[NLB, (a::BACKEND_PROTOCOL, "http")], "only tcp or ssl"),
            (&[(a::EIP_ALLOCATIONS, "eipalloc-1")], "applies to NLB only"),
            (&[(a::SOURCE_RANGES, "10.0.0.0/33")], "is not an IPv4 CIDR"),
            (&[(a::SOURCE_RANGES, "2001:db8::/32")], "is not an IPv4 CIDR"),
        ];
        for (annotations, needle) in cases {
            let errs = errors(annotations);
            assert!(errs.iter().any(|e| e.contains(needle)), "{annotations:?}: {needle:?} not in {errs:?}");
        }
    }

    #[test]
    fn all_problems_together_and_unknown_keys_only_warn() {
        let errs = errors(&[(a::CROSS_ZONE, "x"), (a::HEALTHCHECK_INTERVAL, "1"), (a::EIP_ALLOCATIONS, "eipalloc-1")]);
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
        for needle in [
            "sessionAffinity",
            "loadBalancerIP",
            "different protocols",
            "UDP is not supported by a Classic ELB",
            "no nodePort",
        ] {
            assert!(errs.iter().any(|e| e.contains(needle)), "{needle}: {errs:?}");
        }
        let mut spec_ranges = service(&[(a::SOURCE_RANGES, "10.0.0.0/8")]);
        spec_ranges.source_ranges = vec!["192.168.0.0/16".into()];
        let Parsed::Ok { config, .. } = parse(&spec_ranges) else { panic!() };
        assert_eq!(config.source_ranges, ["192.168.0.0/16"], "the spec wins");
    }
}
