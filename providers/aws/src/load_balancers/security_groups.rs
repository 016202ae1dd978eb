//! Security-group rules as comparable values, and keeping a group's ingress exactly as wanted.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{IpPermission, IpRange, SecurityGroup, UserIdGroupPair};

use crate::ec2::Ec2;
use crate::errors::AwsError;

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

/// Makes `group`'s ingress exactly `wanted` (an owned group): adds what is missing, revokes the
/// rest. Returns whether anything changed.
pub async fn set_exact(ec2: &Ec2, group: &SecurityGroup, wanted: &[Rule]) -> Result<bool, AwsError> {
    let id = group.group_id().unwrap_or_default();
    let have: BTreeSet<_> = ingress(group).iter().map(Rule::identity).collect();
    let want: BTreeSet<_> = wanted.iter().map(Rule::identity).collect();
    let add: Vec<IpPermission> =
        wanted.iter().filter(|r| !have.contains(&r.identity())).map(Rule::to_permission).collect();
    let remove: Vec<IpPermission> =
        ingress(group).iter().filter(|r| !want.contains(&r.identity())).map(Rule::to_permission).collect();
    let changed = !add.is_empty() || !remove.is_empty();
    ec2.revoke_ingress(id, remove).await?;
    ec2.authorize_ingress(id, add).await?;
    Ok(changed)
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
