//! What a cluster's load balancers look like in AWS, read straight from the emulator and
//! written as a flat, normalized map (`key → value`), so that the states two
//! cloud-controller-managers made in two clusters compare equal exactly when they are the same.
//!
//! Normalization replaces what differs by construction between two clusters and nothing else:
//! IDs the emulator made (VPC, subnets, security groups, instances, ARNs' random parts), the
//! cluster ID, the load balancer names (`a` + the Service UID) and the hashes in names that
//! include the cluster ID. What remains, protocols, ports, health checks, attributes, tags,
//! rules and their descriptions, policies, targets, is compared as AWS returns it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use aws_sdk_ec2::types::{Filter, IpPermission, SecurityGroup};
use regex::Regex;

use crate::sdk::AwsClients;
use crate::seed::SeededVpc;

/// A Service whose load balancer is read.
#[derive(Debug, Clone)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ServiceRef {
    /// `a` + the UID without dashes, at most 32 characters (both CCMs' load-balancer name).
    pub fn load_balancer_name(&self) -> String {
        let mut name: String = std::iter::once('a').chain(self.uid.chars().filter(|c| *c != '-')).collect();
        name.truncate(32);
        name
    }
}

/// Concrete names and IDs → stable symbols.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    pairs: Vec<(String, String)>,
}

impl Normalizer {
    /// Symbols for what the seed made: `<cluster>`, `<vpc>`, subnets by their role and zone,
    /// their CIDRs, the node group, instances by index.
    pub fn for_vpc(vpc: &SeededVpc) -> Self {
        let mut n = Self::default();
        n.add(&vpc.cluster_id, "<cluster>");
        n.add(&vpc.vpc_id, "<vpc>");
        n.add(&vpc.vpc_cidr, "<vpc-cidr>");
        for s in &vpc.subnets {
            let role = if s.public { "public" } else { "private" };
            n.add(&s.id, &format!("<subnet:{role}-{}>", s.zone));
            n.add(&s.cidr, &format!("<cidr:{role}-{}>", s.zone));
        }
        n.add(&vpc.node_security_group_id, "<sg:nodes>");
        for (i, instance) in vpc.instances.iter().enumerate() {
            n.add(&instance.id, &format!("<node-{i}>"));
            n.add(&instance.private_dns, &format!("<node-{i}-dns>"));
            n.add(&instance.private_ip, &format!("<node-{i}-ip>"));
            if let Some(ip) = &instance.public_ip {
                n.add(ip, &format!("<node-{i}-public-ip>"));
            }
            if let Some(dns) = &instance.public_dns {
                n.add(dns, &format!("<node-{i}-public-dns>"));
            }
        }
        n
    }

    pub fn add(&mut self, concrete: &str, symbol: &str) {
        if !concrete.is_empty() {
            self.pairs.push((concrete.to_string(), symbol.to_string()));
            // Longest first, so an ID is never replaced inside a longer one.
            self.pairs.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
        }
    }

    /// Symbols for each Service's load-balancer name.
    pub fn add_services(&mut self, services: &[ServiceRef]) {
        for s in services {
            self.add(&s.load_balancer_name(), &format!("<lb:{}>", s.name));
        }
    }

    pub fn apply(&self, value: &str) -> String {
        let mut out = value.to_string();
        for (concrete, symbol) in &self.pairs {
            if out.contains(concrete.as_str()) {
                out = out.replace(concrete.as_str(), symbol);
            }
        }
        patterns().iter().fold(out, |acc, (re, with)| re.replace_all(&acc, *with).into_owned())
    }
}

/// What is left after the names: hashes over the cluster ID in target-group and NLB group
/// names, and the emulator's random suffixes in ARNs and DNS names.
fn patterns() -> &'static [(Regex, &'static str)] {
    static PATTERNS: std::sync::OnceLock<Vec<(Regex, &'static str)>> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            (r"\b(k8s-[a-z0-9]{0,8}-[a-z0-9]{0,8})-[0-9a-f]{10}\b", "$1-<hash>"),
            (r"arn:aws:elasticloadbalancing:[a-z0-9-]+:[0-9]+:(targetgroup|loadbalancer/net|loadbalancer/app|listener/net|listener/app)/([^/\s]+)/[0-9a-f]+(/[0-9a-f]+)?", "$1/$2"),
            (r"(<lb:[^>]+>)-[0-9a-f]+\.elb\.", "$1-<dns>.elb."),
            (r"\beipalloc-[0-9a-f]+\b", "<eipalloc>"),
            (r"\bsg-[0-9a-f]+\b", "<sg:unnamed>"),
        ]
        .into_iter()
        .map(|(re, with)| (Regex::new(re).expect("static pattern"), with))
        .collect()
    })
}

/// One cluster's load-balancer state: `<service>` → (`key` → value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub services: BTreeMap<String, BTreeMap<String, String>>,
}

/// `(service, key)` where two states differ, with each side's value (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub service: String,
    pub key: String,
    pub left: Option<String>,
    pub right: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        write!(f, "{} {}: upstream {} | ours {}", self.service, self.key, show(&self.left), show(&self.right))
    }
}

impl ClusterState {
    pub fn set(&mut self, service: &str, key: impl Into<String>, value: impl Into<String>) {
        self.services.entry(service.to_string()).or_default().insert(key.into(), value.into());
    }

    /// Every key where `self` (upstream's) and `other` (ours) differ.
    pub fn differences(&self, other: &ClusterState) -> Vec<Difference> {
        let mut out = Vec::new();
        let names: BTreeSet<&String> = self.services.keys().chain(other.services.keys()).collect();
        let empty = BTreeMap::new();
        for name in names {
            let (a, b) = (self.services.get(name).unwrap_or(&empty), other.services.get(name).unwrap_or(&empty));
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                if a.get(key) != b.get(key) {
                    out.push(Difference {
                        service: name.clone(),
                        key: key.clone(),
                        left: a.get(key).cloned(),
                        right: b.get(key).cloned(),
                    });
                }
            }
        }
        out
    }
}

/// Reads the load balancers of `services` (and the node and load-balancer security groups of
/// the VPC) in `vpc`'s cluster. `cluster` is the entry name for what belongs to no one Service.
pub async fn read(
    aws: &AwsClients,
    vpc: &SeededVpc,
    services: &[ServiceRef],
    mut norm: Normalizer,
) -> Result<ClusterState> {
    norm.add_services(services);
    let groups = vpc_groups(aws, &vpc.vpc_id).await?;
    for g in &groups {
        let (id, name) = (g.group_id().unwrap_or_default(), g.group_name().unwrap_or_default());
        if id != vpc.node_security_group_id {
            let symbol = format!("<sg:{}>", norm.apply(name));
            norm.add(id, &symbol);
        }
    }
    let mut state = ClusterState::default();
    for svc in services {
        let mut out = BTreeMap::new();
        let name = svc.load_balancer_name();
        let classic = classic(aws, &name, &norm, &mut out).await?;
        let network = network(aws, &name, svc, &norm, &mut out).await?;
        out.insert(
            "type".into(),
            match (classic, network) {
                (true, true) => "classic+nlb",
                (true, false) => "classic",
                (false, true) => "nlb",
                (false, false) => "none",
            }
            .into(),
        );
        state.services.insert(svc.name.clone(), out);
    }
    // Every group in the VPC but the default one, with its rules: the node group's rules are
    // where the two CCMs' bookkeeping shows, and groups nobody attached are leaks.
    for g in &groups {
        if g.group_name() == Some("default") {
            continue;
        }
        let symbol = norm.apply(g.group_id().unwrap_or_default());
        let entry = format!("(vpc) {symbol}");
        state.set(&entry, "description", norm.apply(g.description().unwrap_or_default()));
        // A key per rule, so a difference names the rule.
        for rule in rules(g.ip_permissions(), &norm) {
            state.set(&entry, format!("ingress {rule}"), "present");
        }
        for rule in rules(g.ip_permissions_egress(), &norm) {
            state.set(&entry, format!("egress {rule}"), "present");
        }
        for t in g.tags() {
            state.set(
                &entry,
                format!("tag {}", norm.apply(t.key().unwrap_or_default())),
                norm.apply(t.value().unwrap_or_default()),
            );
        }
    }
    Ok(state)
}

async fn vpc_groups(aws: &AwsClients, vpc_id: &str) -> Result<Vec<SecurityGroup>> {
    let out = aws
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .context("DescribeSecurityGroups")?;
    Ok(out.security_groups().to_vec())
}

/// One line per rule and source, sorted: `tcp 30080-30080 from <cidr> "description"`.
fn rules(permissions: &[IpPermission], norm: &Normalizer) -> Vec<String> {
    crate::brownfield::rule_lines_mapped(permissions, |s| norm.apply(s))
}

/// The Classic ELB named `name`, if any.
async fn classic(aws: &AwsClients, name: &str, norm: &Normalizer, out: &mut BTreeMap<String, String>) -> Result<bool> {
    let elb = &aws.elb;
    let described = match elb.describe_load_balancers().load_balancer_names(name).send().await {
        Ok(d) => d,
        Err(err) if format!("{err:?}").contains("LoadBalancerNotFound") => return Ok(false),
        Err(err) => return Err(err).context("elb DescribeLoadBalancers"),
    };
    let Some(lb) = described.load_balancer_descriptions().first() else { return Ok(false) };
    let mut put = |k: &str, v: String| {
        out.insert(format!("clb {k}"), v);
    };
    put("scheme", lb.scheme().unwrap_or_default().to_string());
    put("dns", norm.apply(lb.dns_name().unwrap_or_default()));
    let mut subnets: Vec<String> = lb.subnets().iter().map(|s| norm.apply(s)).collect();
    subnets.sort();
    put("subnets", subnets.join(","));
    put("security groups", lb.security_groups().iter().map(|s| norm.apply(s)).collect::<Vec<_>>().join(","));
    for d in lb.listener_descriptions() {
        let Some(l) = d.listener() else { continue };
        put(
            &format!("listener {}", l.load_balancer_port()),
            format!(
                "{}→{}:{} cert={} policies=[{}]",
                l.protocol(),
                l.instance_protocol().unwrap_or_default(),
                l.instance_port(),
                l.ssl_certificate_id().unwrap_or("-"),
                d.policy_names().join(",")
            ),
        );
    }
    if let Some(h) = lb.health_check() {
        put(
            "health check",
            format!(
                "{} interval={} timeout={} healthy={} unhealthy={}",
                norm.apply(h.target()),
                h.interval(),
                h.timeout(),
                h.healthy_threshold(),
                h.unhealthy_threshold()
            ),
        );
    }
    for b in lb.backend_server_descriptions() {
        if !b.policy_names().is_empty() {
            put(&format!("backend {}", b.instance_port().unwrap_or_default()), b.policy_names().join(","));
        }
    }
    let mut instances: Vec<String> =
        lb.instances().iter().filter_map(|i| i.instance_id()).map(|i| norm.apply(i)).collect();
    instances.sort();
    put("instances", instances.join(","));
    if let Some(p) = lb.policies() {
        let mut other: Vec<String> = p.other_policies().to_vec();
        other.sort();
        put("policies", other.join(","));
    }
    let policies = elb.describe_load_balancer_policies().load_balancer_name(name).send().await?;
    for p in policies.policy_descriptions() {
        let mut attrs: Vec<String> = p
            .policy_attribute_descriptions()
            .iter()
            .map(|a| format!("{}={}", a.attribute_name().unwrap_or_default(), a.attribute_value().unwrap_or_default()))
            .collect();
        attrs.sort();
        put(
            &format!("policy {}", p.policy_name().unwrap_or_default()),
            format!("{} {}", p.policy_type_name().unwrap_or_default(), attrs.join(",")),
        );
    }
    let attributes = elb.describe_load_balancer_attributes().load_balancer_name(name).send().await?;
    if let Some(a) = attributes.load_balancer_attributes() {
        if let Some(c) = a.cross_zone_load_balancing() {
            put("attribute cross-zone", c.enabled().to_string());
        }
        if let Some(d) = a.connection_draining() {
            put("attribute draining", format!("{} timeout={:?}", d.enabled(), d.timeout()));
        }
        if let Some(c) = a.connection_settings() {
            put("attribute idle-timeout", c.idle_timeout().to_string());
        }
        if let Some(l) = a.access_log() {
            put(
                "attribute access-log",
                format!(
                    "{} bucket={:?} prefix={:?} interval={:?}",
                    l.enabled(),
                    l.s3_bucket_name(),
                    l.s3_bucket_prefix(),
                    l.emit_interval()
                ),
            );
        }
    }
    let tags = elb.describe_tags().load_balancer_names(name).send().await?;
    for t in tags.tag_descriptions().iter().flat_map(|d| d.tags()) {
        put(&format!("tag {}", norm.apply(t.key())), norm.apply(t.value().unwrap_or_default()));
    }
    Ok(true)
}

/// The NLB named `name`, if any, with its listeners and target groups (and target groups of
/// the Service that no listener uses).
async fn network(
    aws: &AwsClients,
    name: &str,
    svc: &ServiceRef,
    norm: &Normalizer,
    out: &mut BTreeMap<String, String>,
) -> Result<bool> {
    let elbv2 = &aws.elbv2;
    let lb = match elbv2.describe_load_balancers().names(name).send().await {
        Ok(d) => d.load_balancers().first().cloned(),
        Err(err) if format!("{err:?}").contains("LoadBalancerNotFound") => None,
        Err(err) => return Err(err).context("elbv2 DescribeLoadBalancers"),
    };
    let mut used_groups = BTreeSet::new();
    let exists = lb.is_some();
    if let Some(lb) = lb {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let mut put = |k: &str, v: String| {
            out.insert(format!("nlb {k}"), v);
        };
        put("type", lb.r#type().map(|t| t.as_str().to_string()).unwrap_or_default());
        put("scheme", lb.scheme().map(|t| t.as_str().to_string()).unwrap_or_default());
        put("dns", norm.apply(lb.dns_name().unwrap_or_default()));
        let mut zones: Vec<String> = lb
            .availability_zones()
            .iter()
            .map(|z| {
                let addresses: Vec<String> = z
                    .load_balancer_addresses()
                    .iter()
                    .map(|a| {
                        format!(
                            "eip={} private={}",
                            norm.apply(a.allocation_id().unwrap_or("-")),
                            a.private_ipv4_address().unwrap_or("-")
                        )
                    })
                    .collect();
                format!("{} {}", norm.apply(z.subnet_id().unwrap_or_default()), addresses.join(" "))
            })
            .collect();
        zones.sort();
        put("subnets", zones.join(","));
        put("security groups", lb.security_groups().iter().map(|s| norm.apply(s)).collect::<Vec<_>>().join(","));
        let attributes = elbv2.describe_load_balancer_attributes().load_balancer_arn(arn).send().await?;
        for a in attributes.attributes() {
            put(&format!("attribute {}", a.key().unwrap_or_default()), a.value().unwrap_or_default().to_string());
        }
        tags_v2(aws, arn, "nlb", norm, out).await?;
        let listeners = elbv2.describe_listeners().load_balancer_arn(arn).send().await?;
        let groups = match elbv2.describe_target_groups().load_balancer_arn(arn).send().await {
            Ok(g) => g.target_groups().to_vec(),
            Err(err) if format!("{err:?}").contains("TargetGroupNotFound") => Vec::new(),
            Err(err) => return Err(err).context("DescribeTargetGroups"),
        };
        for l in listeners.listeners() {
            let port = l.port().unwrap_or_default();
            let forward: Vec<&str> = l.default_actions().iter().filter_map(|a| a.target_group_arn()).collect();
            let certs: Vec<&str> = l.certificates().iter().filter_map(|c| c.certificate_arn()).collect();
            let label = format!("listener {port}");
            out.insert(
                label.clone(),
                format!(
                    "{} certs=[{}] ssl-policy={} → {}",
                    l.protocol().map(|p| p.as_str()).unwrap_or_default(),
                    certs.join(","),
                    l.ssl_policy().unwrap_or("-"),
                    forward.iter().map(|a| norm.apply(a)).collect::<Vec<_>>().join(",")
                ),
            );
            tags_v2(aws, l.listener_arn().unwrap_or_default(), &label, norm, out).await?;
            // The target group behind each listener is described under the listener: two
            // groups of one Service have names that normalize alike.
            for tg in groups.iter().filter(|g| g.target_group_arn().is_some_and(|a| forward.contains(&a))) {
                used_groups.insert(tg.target_group_arn().unwrap_or_default().to_string());
                target_group(aws, tg, &format!("{label} tg"), norm, out).await?;
            }
        }
        for tg in &groups {
            if !used_groups.contains(tg.target_group_arn().unwrap_or_default()) {
                used_groups.insert(tg.target_group_arn().unwrap_or_default().to_string());
                let label = format!("tg without listener {}", norm.apply(tg.target_group_name().unwrap_or_default()));
                target_group(aws, tg, &label, norm, out).await?;
            }
        }
    }
    // Target groups of this Service no load balancer uses (leaked by an interrupted create).
    let prefix = format!(
        "k8s-{}-{}-",
        svc.namespace.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>(),
        svc.name.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>()
    );
    let all = elbv2.describe_target_groups().send().await.context("DescribeTargetGroups")?;
    for tg in all.target_groups() {
        let arn = tg.target_group_arn().unwrap_or_default();
        if tg.target_group_name().is_some_and(|n| n.starts_with(&prefix))
            && !used_groups.contains(arn)
            && tg.vpc_id().is_some_and(|v| norm.apply(v) == "<vpc>")
        {
            out.insert(
                format!("unattached {}", norm.apply(tg.target_group_name().unwrap_or_default())),
                "present".into(),
            );
        }
    }
    Ok(exists)
}

async fn target_group(
    aws: &AwsClients,
    tg: &aws_sdk_elasticloadbalancingv2::types::TargetGroup,
    label: &str,
    norm: &Normalizer,
    out: &mut BTreeMap<String, String>,
) -> Result<()> {
    let arn = tg.target_group_arn().unwrap_or_default();
    out.insert(format!("{label} name"), norm.apply(tg.target_group_name().unwrap_or_default()));
    out.insert(
        format!("{label} target"),
        format!(
            "{} {} port={}",
            tg.target_type().map(|t| t.as_str()).unwrap_or_default(),
            tg.protocol().map(|p| p.as_str()).unwrap_or_default(),
            tg.port().unwrap_or_default()
        ),
    );
    out.insert(
        format!("{label} health check"),
        format!(
            "{} port={} path={} interval={:?} timeout={:?} healthy={:?} unhealthy={:?}",
            tg.health_check_protocol().map(|p| p.as_str()).unwrap_or_default(),
            tg.health_check_port().unwrap_or_default(),
            tg.health_check_path().unwrap_or("-"),
            tg.health_check_interval_seconds(),
            tg.health_check_timeout_seconds(),
            tg.healthy_threshold_count(),
            tg.unhealthy_threshold_count()
        ),
    );
    let attributes = aws.elbv2.describe_target_group_attributes().target_group_arn(arn).send().await?;
    for a in attributes.attributes() {
        out.insert(format!("{label} attribute {}", a.key().unwrap_or_default()), a.value().unwrap_or_default().into());
    }
    let health = aws.elbv2.describe_target_health().target_group_arn(arn).send().await?;
    let mut targets: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target())
        .map(|t| format!("{}:{}", norm.apply(t.id().unwrap_or_default()), t.port().unwrap_or_default()))
        .collect();
    targets.sort();
    out.insert(format!("{label} targets"), targets.join(","));
    tags_v2(aws, arn, label, norm, out).await
}

async fn tags_v2(
    aws: &AwsClients,
    arn: &str,
    label: &str,
    norm: &Normalizer,
    out: &mut BTreeMap<String, String>,
) -> Result<()> {
    let tags = aws.elbv2.describe_tags().resource_arns(arn).send().await?;
    for t in tags.tag_descriptions().iter().flat_map(|d| d.tags()) {
        out.insert(
            format!("{label} tag {}", norm.apply(t.key().unwrap_or_default())),
            norm.apply(t.value().unwrap_or_default()),
        );
    }
    Ok(())
}
