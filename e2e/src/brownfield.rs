//! What a real account holds before any CCM runs, made by the seed in every test cluster's
//! VPC, so that collateral damage shows: a test ends by checking that all of it is exactly as
//! it was ([`Snapshot`]).
//!
//! - the user's own security groups, two of them tagged `kubernetes.io/cluster/<id>=owned`
//!   (kops and EKS tag their groups so), for `security-groups`, `extra-security-groups` and
//!   `ElbSecurityGroup`, one meant to be shared by several Services, and an untagged one;
//! - a third group with rules that reference those and the node group;
//! - a node group tagged only the legacy way (`KubernetesCluster=<id>`), and an untagged one,
//!   each with an instance of its own (not Nodes);
//! - an extra, untagged group on every node instance (instances with several groups);
//! - a rule someone wrote on the node group (SSH from an office range);
//! - a NAT instance and a VPC peering connection, with routes in the cluster route table both
//!   inside the cluster CIDR (`10.244.0.0/16` in the tests) and outside it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Instance, InstanceType, IpPermission, IpRange, ResourceType, Tag, TagSpecification, UserIdGroupPair,
};

use crate::seed::cluster_tag_key;

/// The fixture's IDs, by role.
#[derive(Debug, Clone, Default)]
pub struct Brownfield {
    /// `owned` (cluster-tagged), `shared` (cluster-tagged, for several Services), `plain`.
    pub user_groups: BTreeMap<&'static str, String>,
    /// Has rules referencing the user groups and the node group.
    pub third_group: String,
    pub legacy_node_group: String,
    pub untagged_node_group: String,
    /// On every node instance besides the node group.
    pub extra_node_group: String,
    pub instances: Vec<String>,
    pub nat_instance: String,
    pub peering: String,
    /// Routes the fixture put in the cluster route table: (destination, target).
    pub routes: Vec<(String, String)>,
    /// The rules the fixture put on the node group, as [`rule_lines`] writes them.
    pub node_group_rules: Vec<String>,
}

/// The routes: two inside the tests' cluster CIDR, two outside.
pub const NAT_INSIDE: &str = "10.244.250.0/24";
pub const PEER_INSIDE: &str = "10.244.251.0/24";
pub const NAT_OUTSIDE: &str = "0.0.0.0/0";
pub const PEER_OUTSIDE: &str = "172.31.0.0/16";
/// The range the user's SSH rule on the node group admits.
pub const OFFICE: &str = "172.16.0.0/12";

fn tag(key: impl Into<String>, value: impl Into<String>) -> Tag {
    Tag::builder().key(key).value(value).build()
}

async fn group(ec2: &Client, vpc: &str, cluster: &str, name: &str, tags: Vec<Tag>) -> Result<String> {
    let mut tags = tags;
    tags.push(tag("Name", format!("{cluster}-{name}")));
    let spec = TagSpecification::builder().resource_type(ResourceType::SecurityGroup).set_tags(Some(tags)).build();
    Ok(ec2
        .create_security_group()
        .group_name(format!("{cluster}-{name}"))
        .description(format!("the user's {name} group"))
        .vpc_id(vpc)
        .tag_specifications(spec)
        .send()
        .await
        .with_context(|| format!("CreateSecurityGroup {name}"))?
        .group_id()
        .context("no group ID")?
        .to_string())
}

fn from_group(port: i32, group: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(group).description("the user's").build())
        .build()
}

async fn instance(ec2: &Client, subnet: &str, groups: &[&str], tags: Vec<Tag>) -> Result<String> {
    let mut request = ec2
        .run_instances()
        .image_id(crate::seed::IMAGE_ID)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1);
    request = request.subnet_id(subnet).set_security_group_ids(Some(groups.iter().map(|g| g.to_string()).collect()));
    if !tags.is_empty() {
        request = request.tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags)).build(),
        );
    }
    let out = request.send().await.context("RunInstances")?;
    out.instances().first().and_then(Instance::instance_id).map(String::from).context("no instance")
}

impl Brownfield {
    /// Makes the fixture in `vpc` (before the node instances are launched: `extra_node_group`
    /// goes on them).
    pub async fn create(
        ec2: &Client,
        cluster: &str,
        vpc: &str,
        node_group: &str,
        public_subnet: &str,
        private_subnet: &str,
        route_table: &str,
    ) -> Result<Self> {
        let key = cluster_tag_key(cluster);
        let mut b = Self::default();
        for (role, tags) in
            [("owned", vec![tag(&key, "owned")]), ("shared", vec![tag(&key, "owned")]), ("plain", vec![])]
        {
            b.user_groups.insert(role, group(ec2, vpc, cluster, &format!("user-{role}"), tags).await?);
        }
        b.third_group = group(ec2, vpc, cluster, "third", vec![]).await?;
        let mut refs: Vec<IpPermission> =
            b.user_groups.values().enumerate().map(|(i, g)| from_group(5432 + i as i32, g)).collect();
        refs.push(from_group(9100, node_group));
        ec2.authorize_security_group_ingress()
            .group_id(&b.third_group)
            .set_ip_permissions(Some(refs))
            .send()
            .await
            .context("the third group's rules")?;
        b.legacy_node_group = group(ec2, vpc, cluster, "legacy-nodes", vec![tag("KubernetesCluster", cluster)]).await?;
        b.untagged_node_group = group(ec2, vpc, cluster, "untagged-nodes", vec![]).await?;
        b.extra_node_group = group(ec2, vpc, cluster, "node-extra", vec![]).await?;
        let ssh = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ip_ranges(IpRange::builder().cidr_ip(OFFICE).description("ssh from the office").build())
            .build();
        ec2.authorize_security_group_ingress().group_id(node_group).ip_permissions(ssh).send().await?;
        b.node_group_rules = vec![format!("tcp 22-22 from {OFFICE} \"ssh from the office\"")];

        b.instances.push(
            instance(ec2, private_subnet, &[&b.legacy_node_group], vec![tag("KubernetesCluster", cluster)]).await?,
        );
        b.instances.push(instance(ec2, private_subnet, &[&b.untagged_node_group], vec![]).await?);
        b.nat_instance = instance(ec2, public_subnet, &[&b.user_groups["plain"]], vec![tag("Name", "nat")]).await?;

        let peer_vpc = ec2.create_vpc().cidr_block("172.31.0.0/16").send().await?;
        let peer_vpc = peer_vpc.vpc().and_then(|v| v.vpc_id()).context("peer VPC")?.to_string();
        let peering = ec2.create_vpc_peering_connection().vpc_id(vpc).peer_vpc_id(&peer_vpc).send().await?;
        b.peering = peering
            .vpc_peering_connection()
            .and_then(|p| p.vpc_peering_connection_id())
            .context("peering ID")?
            .to_string();
        ec2.accept_vpc_peering_connection().vpc_peering_connection_id(&b.peering).send().await?;
        for (cidr, target) in [
            (NAT_INSIDE, &b.nat_instance),
            (NAT_OUTSIDE, &b.nat_instance),
            (PEER_INSIDE, &b.peering),
            (PEER_OUTSIDE, &b.peering),
        ] {
            let mut r = ec2.create_route().route_table_id(route_table).destination_cidr_block(cidr);
            r = if target.starts_with("pcx-") { r.vpc_peering_connection_id(target) } else { r.instance_id(target) };
            r.send().await.with_context(|| format!("CreateRoute {cidr}"))?;
            b.routes.push((cidr.to_string(), target.clone()));
        }
        Ok(b)
    }

    /// Every group the fixture made.
    pub fn groups(&self) -> Vec<String> {
        let mut all: Vec<String> = self.user_groups.values().cloned().collect();
        all.extend([
            self.third_group.clone(),
            self.legacy_node_group.clone(),
            self.untagged_node_group.clone(),
            self.extra_node_group.clone(),
        ]);
        all
    }
}

/// One line per rule and source, sorted (`tcp 22-22 from 172.16.0.0/12 "ssh …"`).
pub fn rule_lines(permissions: &[IpPermission]) -> Vec<String> {
    rule_lines_mapped(permissions, str::to_string)
}

/// As [`rule_lines`], with every source and description passed through `map` (the parity
/// tests' normalizer turns IDs into symbols).
pub fn rule_lines_mapped(permissions: &[IpPermission], map: impl Fn(&str) -> String) -> Vec<String> {
    let mut out = Vec::new();
    for p in permissions {
        let ports = match (p.from_port(), p.to_port()) {
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => "all".into(),
        };
        let head = format!("{} {ports}", p.ip_protocol().unwrap_or_default());
        let mut line = |source: Option<&str>, description: Option<&str>| {
            let desc = description.filter(|d| !d.is_empty()).map(|d| format!(" {:?}", map(d))).unwrap_or_default();
            out.push(format!("{head} from {}{desc}", map(source.unwrap_or_default())));
        };
        for r in p.ip_ranges() {
            line(r.cidr_ip(), r.description());
        }
        for r in p.ipv6_ranges() {
            line(r.cidr_ipv6(), r.description());
        }
        for g in p.user_id_group_pairs() {
            line(g.group_id(), g.description());
        }
        for l in p.prefix_list_ids() {
            line(l.prefix_list_id(), l.description());
        }
    }
    out.sort();
    out
}

/// Everything the fixture made, as text to compare byte for byte: each group's description,
/// tags and rules, the node group's rules the fixture wrote, each instance's groups and state,
/// and the fixture's routes.
pub async fn snapshot(ec2: &Client, b: &Brownfield, node_group: &str, route_table: &str) -> Result<String> {
    let mut out = String::new();
    let groups = ec2.describe_security_groups().set_group_ids(Some(b.groups())).send().await?;
    let mut described: Vec<_> = groups.security_groups().to_vec();
    described.sort_by(|x, y| x.group_id().cmp(&y.group_id()));
    for g in &described {
        let mut tags: Vec<String> = g
            .tags()
            .iter()
            .map(|t| format!("{}={}", t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        tags.sort();
        out.push_str(&format!(
            "group {} {:?} [{}]\n  ingress {:?}\n  egress {:?}\n",
            g.group_id().unwrap_or_default(),
            g.description().unwrap_or_default(),
            tags.join(","),
            rule_lines(g.ip_permissions()),
            rule_lines(g.ip_permissions_egress())
        ));
    }
    let nodes = ec2.describe_security_groups().group_ids(node_group).send().await?;
    let node_rules = rule_lines(nodes.security_groups().first().map(|g| g.ip_permissions()).unwrap_or_default());
    for rule in &b.node_group_rules {
        out.push_str(&format!(
            "node group rule {rule}: {}\n",
            if node_rules.contains(rule) { "present" } else { "GONE" }
        ));
    }
    let mut ids = b.instances.clone();
    ids.push(b.nat_instance.clone());
    let instances = ec2.describe_instances().set_instance_ids(Some(ids)).send().await?;
    for i in instances.reservations().iter().flat_map(|r| r.instances()) {
        let mut groups: Vec<&str> = i.security_groups().iter().filter_map(|g| g.group_id()).collect();
        groups.sort();
        out.push_str(&format!(
            "instance {} {:?} groups {groups:?} source/dest check {:?}\n",
            i.instance_id().unwrap_or_default(),
            i.state().and_then(|s| s.name()).map(|n| n.as_str()),
            i.source_dest_check()
        ));
    }
    let tables = ec2.describe_route_tables().route_table_ids(route_table).send().await?;
    let routes: Vec<(String, String)> = tables
        .route_tables()
        .iter()
        .flat_map(|t| t.routes())
        .filter_map(|r| {
            let target = r.instance_id().or(r.vpc_peering_connection_id())?;
            Some((r.destination_cidr_block()?.to_string(), target.to_string()))
        })
        .collect();
    for (cidr, target) in &b.routes {
        let present = routes.contains(&(cidr.clone(), target.clone()));
        out.push_str(&format!("route {cidr} → {target}: {}\n", if present { "present" } else { "GONE" }));
    }
    Ok(out)
}
