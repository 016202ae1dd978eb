use super::*;
use cloud_provider::ServicePort;

fn service(annotations: &[(&str, &str)]) -> ServiceInfo {
    ServiceInfo {
        namespace: "default".into(),
        name: "web".into(),
        uid: "u-1".into(),
        annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ports: vec![ServicePort { name: Some("https".into()), protocol: Protocol::Tcp, port: 443, node_port: 30443 }],
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
    assert_eq!(ok(&[(a::SOURCE_RANGES, "10.0.0.0/8, 192.168.1.0/24")]).source_ranges, ["10.0.0.0/8", "192.168.1.0/24"]);
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
    let Parsed::Ok { config, warnings } = parse(&no_node_port) else { panic!("a port without a nodePort is skipped") };
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
    for needle in ["sessionAffinity", "loadBalancerIP", "different protocols", "UDP is not supported by a Classic ELB"]
    {
        assert!(errs.iter().any(|e| e.contains(needle)), "{needle}: {errs:?}");
    }
    let mut spec_ranges = service(&[(a::SOURCE_RANGES, "10.0.0.0/8")]);
    spec_ranges.source_ranges = vec!["192.168.0.0/16".into()];
    let Parsed::Ok { config, .. } = parse(&spec_ranges) else { panic!() };
    assert_eq!(config.source_ranges, ["192.168.0.0/16"], "the spec wins");
}
