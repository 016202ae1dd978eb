//! Names, exactly as upstream makes them, so load balancers it created are adopted untouched.

use aws_lc_rs::digest;

/// `a` + the UID without dashes, at most 32 characters.
pub fn load_balancer_name(uid: &str) -> String {
    let mut name: String = std::iter::once('a').chain(uid.chars().filter(|c| *c != '-')).collect();
    name.truncate(32);
    name
}

/// The Classic ELB's own security group.
pub fn classic_security_group_name(lb_name: &str) -> String {
    format!("k8s-elb-{lb_name}")
}

/// Upstream's description of that group.
pub fn classic_security_group_description(lb_name: &str, service_key: &str) -> String {
    format!("Security group for Kubernetes ELB {lb_name} ({service_key})")
}

fn alnum8(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).take(8).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What goes into an NLB target group's name: change one and the target group is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupKey<'a> {
    pub cluster_id: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub port: u16,
    pub node_port: u16,
    /// `TCP`, `UDP`, `TLS`.
    pub protocol: &'a str,
    /// `instance`.
    pub target_type: &'a str,
    pub health_protocol: &'a str,
    pub health_interval: i32,
}

/// `k8s-<ns ≤8>-<name ≤8>-<first 10 hex of sha1(cluster, ns, name, port, nodePort, protocol,
/// target type, health-check protocol, health-check interval)>`.
pub fn target_group_name(key: &TargetGroupKey<'_>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    for part in [
        key.cluster_id,
        key.namespace,
        key.name,
        &key.port.to_string(),
        &key.node_port.to_string(),
        key.protocol,
        key.target_type,
        key.health_protocol,
        &key.health_interval.to_string(),
    ] {
        ctx.update(part.as_bytes());
    }
    let hash = hex(ctx.finish().as_ref());
    format!("k8s-{}-{}-{}", alnum8(key.namespace), alnum8(key.name), &hash[..10])
}

/// The managed security group of an NLB (`NLBSecurityGroupMode = Managed`):
/// `k8s-<ns ≤8>-<name ≤8>-<first 10 hex of sha256(cluster name, name, namespace, UID)>`.
pub fn nlb_security_group_name(cluster_name: &str, namespace: &str, name: &str, uid: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [cluster_name, name, namespace, uid] {
        ctx.update(part.as_bytes());
    }
    let hash = hex(ctx.finish().as_ref());
    format!("k8s-{}-{}-{}", alnum8(namespace), alnum8(name), &hash[..10])
}

pub const NLB_SECURITY_GROUP_DESCRIPTION: &str = "[k8s] Managed SecurityGroup for LoadBalancer";

/// The prefix of every target group of a Service (for finding leftovers).
pub fn target_group_prefix(namespace: &str, name: &str) -> String {
    format!("k8s-{}-{}-", alnum8(namespace), alnum8(name))
}

/// Upstream's markers for the node security-group rules an NLB owns.
pub fn nlb_client_rule(lb_name: &str) -> String {
    format!("kubernetes.io/rule/nlb/client={lb_name}")
}
pub fn nlb_health_rule(lb_name: &str) -> String {
    format!("kubernetes.io/rule/nlb/health={lb_name}")
}
pub const NLB_MTU_RULE: &str = "kubernetes.io/rule/nlb/mtu";

/// The cluster's shared NLB backend group (`NLBBackendSecurityGroup = true`, not upstream's):
/// every managed NLB carries it, and the Nodes' groups admit it once.
pub fn nlb_backend_group_name(cluster_id: &str) -> String {
    format!("k8s-nlb-backend-{cluster_id}")
}

pub fn nlb_backend_group_description(cluster_id: &str) -> String {
    format!("[k8s] Shared backend SecurityGroup for the NLBs of cluster {cluster_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancer_names() {
        assert_eq!(load_balancer_name("2f3b7a94-6c2e-4a4e-9d83-1f0b5e7c9a12"), "a2f3b7a946c2e4a4e9d831f0b5e7c9a1");
        assert_eq!(load_balancer_name("2f3b7a94-6c2e-4a4e-9d83-1f0b5e7c9a12").len(), 32);
        assert_eq!(classic_security_group_name("a123"), "k8s-elb-a123");
    }

    #[test]
    fn target_group_names_follow_upstream() {
        let key = TargetGroupKey {
            cluster_id: "kops.example.com",
            namespace: "kube-system",
            name: "my-ingress-gateway",
            port: 443,
            node_port: 31443,
            protocol: "TCP",
            target_type: "instance",
            health_protocol: "TCP",
            health_interval: 30,
        };
        let name = target_group_name(&key);
        assert!(name.starts_with("k8s-kubesyst-myingres-"), "{name}");
        assert_eq!(name.len(), "k8s-kubesyst-myingres-".len() + 10);
        // sha1("kops.example.com" "kube-system" "my-ingress-gateway" "443" "31443" "TCP" "instance" "TCP" "30")
        let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(b"kops.example.comkube-systemmy-ingress-gateway44331443TCPinstanceTCP30");
        assert_eq!(&name[22..], &hex(ctx.finish().as_ref())[..10]);
        let other = target_group_name(&TargetGroupKey { health_interval: 10, ..key });
        assert_ne!(name, other, "a new health-check interval means a new target group");
    }
}
