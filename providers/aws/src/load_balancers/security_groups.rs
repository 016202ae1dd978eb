//! Security groups: rules as comparable values, and finding the groups load balancers use (their
//! own, the target Nodes', the cluster's).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_ec2::types::{Instance, IpPermission, IpRange, SecurityGroup, UserIdGroupPair};
use cloud_provider::CloudError;

use super::AwsLoadBalancers;
use super::plan::{Action, Change, GroupRef};
use crate::ec2::filter;
use crate::tags::{CLUSTER_TAG_PREFIX, ClusterTags};

/// Where a rule admits traffic from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Cidr(String),
    Group(String),
}

/// One ingress rule, flattened (AWS groups several sources per permission).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    /// `tcp`, `udp`, `icmp`, or `-1` (all).
    pub protocol: String,
    pub from: i32,
    pub to: i32,
    pub source: Source,
    /// Not part of a rule's identity for AWS, but upstream's ownership marker for NLB node rules.
    pub description: Option<String>,
}

impl Rule {
    pub fn tcp(port: u16, source: Source) -> Self {
        Self { protocol: "tcp".into(), from: port.into(), to: port.into(), source, description: None }
    }

    /// ICMP "destination unreachable, fragmentation needed" (type 3, code 4): path MTU discovery.
    pub fn icmp_mtu(source: Source) -> Self {
        Self { protocol: "icmp".into(), from: 3, to: 4, source, description: None }
    }

    pub fn all_from_group(group: &str) -> Self {
        Self { protocol: "-1".into(), from: -1, to: -1, source: Source::Group(group.into()), description: None }
    }

    pub fn described(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The rule without its description: what AWS compares.
    pub fn identity(&self) -> (String, i32, i32, Source) {
        (self.protocol.clone(), self.from, self.to, self.source.clone())
    }

    pub fn to_permission(&self) -> IpPermission {
        let mut p = IpPermission::builder().ip_protocol(&self.protocol);
        if self.protocol != "-1" {
            p = p.from_port(self.from).to_port(self.to);
        }
        match &self.source {
            Source::Cidr(cidr) => {
                p.ip_ranges(IpRange::builder().cidr_ip(cidr).set_description(self.description.clone()).build())
            }
            Source::Group(id) => p.user_id_group_pairs(
                UserIdGroupPair::builder().group_id(id).set_description(self.description.clone()).build(),
            ),
        }
        .build()
    }
}

/// Every ingress rule of `group`, flattened.
pub fn ingress(group: &SecurityGroup) -> Vec<Rule> {
    let mut out = Vec::new();
    for p in group.ip_permissions() {
        let protocol = p.ip_protocol().unwrap_or("-1").to_string();
        let (from, to) =
            if protocol == "-1" { (-1, -1) } else { (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1)) };
        for r in p.ip_ranges() {
            if let Some(cidr) = r.cidr_ip() {
                out.push(Rule {
                    protocol: protocol.clone(),
                    from,
                    to,
                    source: Source::Cidr(cidr.into()),
                    description: r.description().map(String::from),
                });
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                out.push(Rule {
                    protocol: protocol.clone(),
                    from,
                    to,
                    source: Source::Group(id.into()),
                    description: g.description().map(String::from),
                });
            }
        }
    }
    out
}

/// The inbound rules AWS counts against a group's quota: every source of every permission
/// (IPv4 and IPv6 ranges, prefix lists, groups).
pub fn rule_count(group: &SecurityGroup) -> usize {
    group
        .ip_permissions()
        .iter()
        .map(|p| {
            p.ip_ranges().len() + p.ipv6_ranges().len() + p.prefix_list_ids().len() + p.user_id_group_pairs().len()
        })
        .sum()
}

/// How long a load balancer that would overflow a group waits before looking again (rules
/// freed by other Services let it through; nothing is retried before).
pub const QUOTA_RETRY: std::time::Duration = std::time::Duration::from_secs(300);

/// Refuses a plan that would take any group past `quota` inbound rules, before any write: the
/// Service fails alone, with the counts and the ways out, instead of failing halfway (a load
/// balancer without its node rules) and retrying for ever. `groups` are the groups the plan
/// may write to as observed; a group the plan creates starts empty.
pub(crate) fn check_rule_quota<'a>(
    plan: &[Change],
    groups: impl IntoIterator<Item = &'a SecurityGroup>,
    quota: usize,
    nlb: bool,
) -> Result<(), CloudError> {
    let current: HashMap<&str, usize> =
        groups.into_iter().filter_map(|g| Some((g.group_id()?, rule_count(g)))).collect();
    // Per group: (rules added, rules revoked).
    let mut delta: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for change in plan {
        let (group, added, revoked) = match &change.action {
            Action::AuthorizeIngress { group, rules } => (group.to_string(), rules.len(), 0),
            Action::AdmitGroup { group, .. } => (group.clone(), 1, 0),
            Action::RevokeIngress { group, rules } => (group.to_string(), 0, rules.len()),
            _ => continue,
        };
        let entry = delta.entry(group).or_default();
        entry.0 += added;
        entry.1 += revoked;
    }
    for (group, (added, revoked)) in delta {
        let has = current.get(group.as_str()).copied().unwrap_or(0);
        if added > 0 && (has + added).saturating_sub(revoked) > quota {
            let mut ways = vec![
                "remove rules or load balancers that use the group",
                "raise the AWS quota \"Inbound or outbound rules per security group\" and set [Global] SecurityGroupRuleQuota to it",
            ];
            if nlb {
                ways.push("use fewer source ranges or ports (an NLB adds a rule per nodePort and source range, and health rules per subnet)");
                ways.push(
                    "set NLBBackendSecurityGroup = true with NLBSecurityGroupMode = Managed (one rule for all NLBs)",
                );
            }
            ways.push("or set DisableSecurityGroupIngress = true and open the node ports yourself");
            return Err(CloudError::over_quota(
                "aws/lb.rule_quota",
                format!(
                    "security group {group} has {has} inbound rules and this load balancer needs {added} more{}, over the group's quota of {quota}; nothing was changed. Ways out: {}",
                    if revoked > 0 { format!(" ({revoked} of its own go)") } else { String::new() },
                    ways.join("; ")
                ),
                QUOTA_RETRY,
            ));
        }
    }
    Ok(())
}

/// A load balancer's own security group, as planned.
pub(crate) struct OwnGroup<'a> {
    /// The group of that name in the VPC, if any.
    pub existing: Option<&'a SecurityGroup>,
    pub name: &'a str,
    pub description: String,
    /// The cluster tag and the Service's additional tags, for a new group.
    pub tags: Vec<(String, String)>,
    /// Exactly the rules it should have.
    pub wanted: Vec<Rule>,
}

impl OwnGroup<'_> {
    /// The changes that make the group exist with exactly its rules: created and filled when
    /// missing; otherwise its cluster tag read-repaired, as upstream does (a group of that name
    /// tagged for another cluster is refused), and its rules added and revoked. Returns the
    /// group, by ID or as the one the plan creates.
    pub(crate) fn plan(self, cluster: &ClusterTags, plan: &mut Vec<Change>) -> Result<GroupRef, CloudError> {
        let Some(group) = self.existing else {
            plan.push(Change::new(
                Action::CreateSecurityGroup { name: self.name.into(), description: self.description, tags: self.tags },
                "the load balancer's own group does not exist",
            ));
            let new = GroupRef::New(self.name.into());
            if !self.wanted.is_empty() {
                plan.push(Change::new(
                    Action::AuthorizeIngress { group: new.clone(), rules: self.wanted },
                    "the Service's ports and source ranges need these",
                ));
            }
            return Ok(new);
        };
        let id = group.group_id().unwrap_or_default().to_string();
        let keys: Vec<&str> = group.tags().iter().filter_map(|t| t.key()).collect();
        if !keys.contains(&cluster.key().as_str()) {
            if keys.iter().any(|k| k.starts_with(CLUSTER_TAG_PREFIX)) {
                return Err(CloudError::invalid(
                    "aws/lb.security_group",
                    format!("security group {} belongs to another cluster", self.name),
                ));
            }
            plan.push(Change::new(
                Action::TagSecurityGroup { group: id.clone(), tags: cluster.owned() },
                "the load balancer's own group lost its cluster tag",
            ));
        }
        let have = ingress(group);
        let have_ids: BTreeSet<_> = have.iter().map(Rule::identity).collect();
        let want_ids: BTreeSet<_> = self.wanted.iter().map(Rule::identity).collect();
        let remove: Vec<Rule> = have.into_iter().filter(|r| !want_ids.contains(&r.identity())).collect();
        let add: Vec<Rule> = self.wanted.into_iter().filter(|r| !have_ids.contains(&r.identity())).collect();
        if !remove.is_empty() {
            plan.push(Change::new(
                Action::RevokeIngress { group: GroupRef::Id(id.clone()), rules: remove },
                "the Service's ports and source ranges no longer need these",
            ));
        }
        if !add.is_empty() {
            plan.push(Change::new(
                Action::AuthorizeIngress { group: GroupRef::Id(id.clone()), rules: add },
                "the Service's ports and source ranges need these",
            ));
        }
        Ok(GroupRef::Id(id))
    }
}

impl AwsLoadBalancers {
    /// The security group of each instance that node rules go on: its cluster-tagged group,
    /// else its only group (upstream's rule).
    pub(crate) async fn node_groups(&self, instances: &[Instance]) -> Result<Vec<SecurityGroup>, CloudError> {
        let ids: Vec<String> = instances
            .iter()
            .flat_map(|i| i.security_groups().iter().filter_map(|g| g.group_id().map(String::from)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.ec2.security_groups(ids, Vec::new()).await?;
        Ok(self.pick_node_groups(instances, &groups))
    }

    /// [`Self::node_groups`] chosen from `groups` (a list holding every instance's groups, such
    /// as the whole VPC's), without a call.
    pub(crate) fn pick_node_groups(&self, instances: &[Instance], groups: &[SecurityGroup]) -> Vec<SecurityGroup> {
        let by_id: HashMap<&str, &SecurityGroup> = groups.iter().filter_map(|g| Some((g.group_id()?, g))).collect();
        let mut chosen: BTreeMap<String, SecurityGroup> = BTreeMap::new();
        for instance in instances {
            let mine: Vec<&SecurityGroup> =
                instance.security_groups().iter().filter_map(|g| by_id.get(g.group_id()?).copied()).collect();
            let tagged: Vec<&SecurityGroup> = mine.iter().copied().filter(|g| self.is_cluster_group(g)).collect();
            let pick = match (tagged.as_slice(), mine.as_slice()) {
                ([one], _) | ([], [one]) => Some(*one),
                _ => None,
            };
            match pick {
                Some(g) => {
                    chosen.insert(g.group_id().unwrap_or_default().to_string(), g.clone());
                }
                None => {
                    tracing::warn!(instance = ?instance.instance_id(), "no single (cluster-tagged) security group; no node rules for it")
                }
            }
        }
        chosen.into_values().collect()
    }

    /// The groups of `groups` with a rule whose source is `group`, without a call.
    pub(crate) fn referencing_in(groups: &[SecurityGroup], group: &str) -> Vec<SecurityGroup> {
        let source = Source::Group(group.to_string());
        groups.iter().filter(|g| ingress(g).iter().any(|r| r.source == source)).cloned().collect()
    }

    /// The groups with a rule whose source is `group`.
    pub(crate) async fn groups_referencing(&self, group: &str) -> Result<Vec<SecurityGroup>, CloudError> {
        Ok(self.ec2.security_groups(Vec::new(), vec![filter("ip-permission.group-id", [group])]).await?)
    }

    /// Every security group in the cluster's VPC (one call; callers filter).
    pub(crate) async fn vpc_groups(&self) -> Result<Vec<SecurityGroup>, CloudError> {
        Ok(self.ec2.security_groups(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()])]).await?)
    }

    /// Every group of the VPC: for a periodic re-ensure, the reading shared by its tick (see
    /// `tick.rs`); otherwise read afresh.
    pub(crate) async fn vpc_groups_for(
        &self,
        periodic: bool,
    ) -> Result<std::sync::Arc<Vec<SecurityGroup>>, CloudError> {
        if periodic {
            self.tick.groups.get(|| async { Ok(std::sync::Arc::new(self.vpc_groups().await?)) }).await
        } else {
            Ok(std::sync::Arc::new(self.vpc_groups().await?))
        }
    }

    pub(crate) fn is_cluster_group(&self, g: &SecurityGroup) -> bool {
        self.cluster.is_cluster(g.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())))
    }

    pub(crate) fn is_owned_group(&self, g: &SecurityGroup) -> bool {
        self.cluster.is_owned(g.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())))
    }

    /// The group named `name` in the cluster's VPC, if any.
    pub(crate) async fn group_named(&self, name: &str) -> Result<Option<SecurityGroup>, CloudError> {
        Ok(self.groups_named(&[name]).await?.into_iter().next())
    }

    /// The groups of these names in the cluster's VPC (one call).
    pub(crate) async fn groups_named(&self, names: &[&str]) -> Result<Vec<SecurityGroup>, CloudError> {
        let filters = vec![filter("group-name", names.iter().copied()), filter("vpc-id", [self.vpc_id.clone()])];
        Ok(self.ec2.security_groups(Vec::new(), filters).await?)
    }

    pub(crate) async fn owned_groups_named(&self, name: &str) -> Result<Vec<SecurityGroup>, CloudError> {
        Ok(self.groups_named(&[name]).await?.into_iter().filter(|g| self.is_owned_group(g)).collect())
    }

    /// Deletes owned groups; one still in use means "come back later", never a wait here.
    pub(crate) async fn delete_groups(&self, groups: &[SecurityGroup]) -> Result<(), CloudError> {
        let plan: Vec<Change> = groups
            .iter()
            .map(|g| {
                let group = g.group_id().unwrap_or_default().to_string();
                Change::new(Action::DeleteSecurityGroup { group }, "owned by the deleted load balancer")
            })
            .collect();
        self.apply(&plan).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_through_permissions() {
        let rules = vec![
            Rule::tcp(80, Source::Cidr("10.0.0.0/8".into())),
            Rule::icmp_mtu(Source::Cidr("0.0.0.0/0".into())),
            Rule::all_from_group("sg-1").described("x"),
        ];
        let group =
            SecurityGroup::builder().set_ip_permissions(Some(rules.iter().map(Rule::to_permission).collect())).build();
        assert_eq!(ingress(&group), rules);
    }
}
