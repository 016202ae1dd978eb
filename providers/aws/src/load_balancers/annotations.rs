//! Every Service annotation the AWS provider reads: one constant each, with its value type,
//! default and the load balancer types it applies to. The reference in
//! `docs/annotations.md` is checked against [`REGISTRY`] by a test.

/// The common prefix.
pub const PREFIX: &str = "service.beta.kubernetes.io/";
/// Keys under this prefix that are not in the registry are reported (not rejected).
pub const AWS_PREFIX: &str = "service.beta.kubernetes.io/aws-load-balancer-";

/// Which load balancer type an annotation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Both,
    Classic,
    Nlb,
}

impl Applies {
    pub fn label(self) -> &'static str {
        match self {
            Applies::Both => "CLB, NLB",
            Applies::Classic => "CLB",
            Applies::Nlb => "NLB",
        }
    }
}

/// One annotation.
#[derive(Debug, Clone, Copy)]
pub struct Annotation {
    pub key: &'static str,
    /// The value's form, for the reference.
    pub value: &'static str,
    pub default: &'static str,
    pub applies: Applies,
    pub syntax: Syntax,
    pub doc: &'static str,
}

/// How a value is read: the parser reads every key of the registry by its syntax
/// (`service_config::Values`), and the reference's value column is checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Read by its own rule in `service_config`: upstream reads it its own way, or its
    /// reading depends on the load balancer type or on other keys.
    Own,
    /// Text as written; empty is unset.
    Text,
    /// Comma-separated, each item trimmed, empty items dropped (upstream's list reading).
    List,
    /// A list of AWS IDs, each starting with this prefix.
    Ids(&'static str),
    /// A list of IPv4 addresses.
    Ipv4s,
    /// `k1=v1,k2=,k3` (upstream's map reading).
    Map,
    /// Go's `strconv.ParseBool`, which upstream uses: exactly its spellings.
    Bool,
    /// A whole number in `min..=max` (no spaces, as Go's `strconv.ParseInt`).
    Int(i32, i32),
    /// Exactly one of these values.
    OneOf(&'static [&'static str]),
}

macro_rules! annotations {
    ($($name:ident = $key:literal, $value:literal, $default:literal, $applies:ident, $syntax:expr, $doc:literal;)*) => {
        $(pub const $name: &str = $key;)*
        /// Every annotation, in reference order.
        pub const REGISTRY: &[Annotation] = &[
            $(Annotation {
                key: $key,
                value: $value,
                default: $default,
                applies: Applies::$applies,
                syntax: { use Syntax::*; $syntax },
                doc: $doc,
            },)*
        ];
    };
}

annotations! {
    TYPE = "service.beta.kubernetes.io/aws-load-balancer-type", "`nlb`, `nlb-ip`, `external`", "Classic ELB", Both, Own,
        "`nlb`: a Network Load Balancer with instance targets. `nlb-ip` / `external`: left to the AWS Load Balancer Controller. Changing it replaces the load balancer.";
    INTERNAL = "service.beta.kubernetes.io/aws-load-balancer-internal", "boolean-ish", "internet-facing", Both, Own,
        "Any value but `false` (or empty): internal scheme. Applied at creation.";
    SUBNETS = "service.beta.kubernetes.io/aws-load-balancer-subnets", "list of subnet IDs or Name tags", "discovered", Both, List,
        "Use these subnets instead of discovering them.";
    SECURITY_GROUPS = "service.beta.kubernetes.io/aws-load-balancer-security-groups", "list of SG IDs", "a managed SG", Both, Ids("sg-"),
        "Replace the managed security group (NLB: only with `NLBSecurityGroupMode = Managed`). Never modified or deleted.";
    EXTRA_SECURITY_GROUPS = "service.beta.kubernetes.io/aws-load-balancer-extra-security-groups", "list of SG IDs", "none", Classic, Ids("sg-"),
        "Security groups added to the managed one. Never modified or deleted.";
    ADDITIONAL_RESOURCE_TAGS = "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags", "`k1=v1,k2=v2`", "none", Both, Map,
        "Extra tags on the load balancer and what it owns.";
    SSL_CERT = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert", "certificate ARN", "none", Both, Text,
        "TLS on the ports in `ssl-ports` (CLB: SSL/HTTPS listeners; NLB: TLS listeners).";
    SSL_PORTS = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports", "list of port names or numbers, or `*`", "`*`", Both, Own,
        "Which ports use the certificate.";
    SSL_NEGOTIATION_POLICY = "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy", "policy name", "AWS default", Both, Text,
        "CLB: a predefined negotiation policy on the TLS listeners; NLB: the listeners' SslPolicy.";
    BACKEND_PROTOCOL = "service.beta.kubernetes.io/aws-load-balancer-backend-protocol", "`tcp`, `ssl`, `http`, `https`", "`tcp`", Both, Own,
        "CLB: listener/instance protocols. NLB: `ssl` makes TLS target groups.";
    PROXY_PROTOCOL = "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol", "`*`", "off", Classic, Own,
        "Proxy protocol on every instance port.";
    ACCESS_LOG_ENABLED = "service.beta.kubernetes.io/aws-load-balancer-access-log-enabled", "boolean", "`false`", Both, Bool,
        "Access logs to S3.";
    ACCESS_LOG_EMIT_INTERVAL = "service.beta.kubernetes.io/aws-load-balancer-access-log-emit-interval", "`5` or `60`", "`60`", Classic, OneOf(&["5", "60"]),
        "Minutes between access-log files.";
    ACCESS_LOG_S3_BUCKET_NAME = "service.beta.kubernetes.io/aws-load-balancer-access-log-s3-bucket-name", "bucket", "none", Both, Text,
        "Needed when access logs are enabled.";
    ACCESS_LOG_S3_BUCKET_PREFIX = "service.beta.kubernetes.io/aws-load-balancer-access-log-s3-bucket-prefix", "prefix", "none", Both, Text,
        "Key prefix of the access logs.";
    CONNECTION_DRAINING_ENABLED = "service.beta.kubernetes.io/aws-load-balancer-connection-draining-enabled", "boolean", "`false`", Classic, Bool,
        "Connection draining.";
    CONNECTION_DRAINING_TIMEOUT = "service.beta.kubernetes.io/aws-load-balancer-connection-draining-timeout", "seconds, 1-3600", "`300`", Classic, Int(1, 3600),
        "Draining timeout.";
    CONNECTION_IDLE_TIMEOUT = "service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout", "seconds, 1-4000", "`60`", Classic, Int(1, 4000),
        "Idle connection timeout.";
    CROSS_ZONE = "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled", "boolean", "`false`", Both, Bool,
        "Cross-zone load balancing.";
    HEALTHCHECK_PROTOCOL = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol", "`TCP`, `HTTP`, `HTTPS` (CLB also `SSL`)", "see below", Both, Own,
        "Health-check protocol.";
    HEALTHCHECK_PORT = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port", "`traffic-port` or a port", "see below", Both, Own,
        "Health-check port.";
    HEALTHCHECK_PATH = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path", "path", "`/` (ETP Local: `/healthz`)", Both, Own,
        "Health-check path for HTTP/HTTPS.";
    HEALTHCHECK_HEALTHY_THRESHOLD = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold", "2-10", "CLB `2`, NLB `3`", Both, Int(2, 10),
        "Successes before healthy.";
    HEALTHCHECK_UNHEALTHY_THRESHOLD = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold", "2-10", "CLB `6`, NLB `3`", Both, Int(2, 10),
        "Failures before unhealthy.";
    HEALTHCHECK_INTERVAL = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval", "seconds, 5-300", "CLB `10`, NLB `30`", Both, Int(5, 300),
        "Seconds between checks.";
    HEALTHCHECK_TIMEOUT = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-timeout", "seconds, 2-120", "CLB `5`, NLB AWS default", Both, Own,
        "Seconds before a check fails.";
    TARGET_NODE_LABELS = "service.beta.kubernetes.io/aws-load-balancer-target-node-labels", "`k1=v1,k2`", "all eligible Nodes", Both, Map,
        "Only Nodes carrying these labels are targets (an empty value: the key must exist).";
    TARGET_GROUP_ATTRIBUTES = "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes", "`preserve_client_ip.enabled=true,proxy_protocol_v2.enabled=false`", "AWS defaults", Nlb, Map,
        "Target-group attributes (only these two keys).";
    EIP_ALLOCATIONS = "service.beta.kubernetes.io/aws-load-balancer-eip-allocations", "list of `eipalloc-…`, one per subnet", "none", Nlb, Ids("eipalloc-"),
        "Elastic IPs of an internet-facing NLB. Applied at creation.";
    PRIVATE_IPV4_ADDRESSES = "service.beta.kubernetes.io/aws-load-balancer-private-ipv4-addresses", "list of IPs, one per subnet", "none", Nlb, Ipv4s,
        "Private addresses of an internal NLB. Applied at creation.";
    SOURCE_RANGES = "service.beta.kubernetes.io/load-balancer-source-ranges", "list of CIDRs", "`0.0.0.0/0`", Both, List,
        "Allowed clients; `spec.loadBalancerSourceRanges` wins.";
}

impl Applies {
    /// Whether the annotation is read for this load balancer type (`true`: an NLB).
    pub fn to_nlb(self, nlb: bool) -> bool {
        matches!((self, nlb), (Applies::Both, _) | (Applies::Classic, false) | (Applies::Nlb, true))
    }
}

pub fn find(key: &str) -> Option<&'static Annotation> {
    REGISTRY.iter().find(|a| a.key == key)
}

/// The annotation reference as a Markdown table, generated from [`REGISTRY`].
pub fn reference_table() -> String {
    let mut out = String::from("| annotation | value | default | applies to | meaning |\n|---|---|---|---|---|\n");
    for a in REGISTRY {
        out.push_str(&format!("| `{}` | {} | {} | {} | {} |\n", a.key, a.value, a.default, a.applies.label(), a.doc));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's value column says what the parser accepts.
    #[test]
    fn the_value_column_matches_each_syntax() {
        for a in REGISTRY {
            let fits = match a.syntax {
                Syntax::Bool => a.value == "boolean",
                Syntax::Int(min, max) => a.value.ends_with(&format!("{min}-{max}")),
                Syntax::OneOf(values) => values.iter().all(|v| a.value.contains(&format!("`{v}`"))),
                Syntax::Ids(prefix) => a.value.contains("ID") || a.value.contains(prefix),
                Syntax::List | Syntax::Ipv4s => a.value.starts_with("list of"),
                Syntax::Map => a.value.contains('='),
                Syntax::Text | Syntax::Own => true,
            };
            assert!(fits, "{}: the reference says {:?}, the parser reads {:?}", a.key, a.value, a.syntax);
        }
    }
}
