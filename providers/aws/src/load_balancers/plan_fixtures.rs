//! What the planner tests of both load-balancer types share: the cluster, its node group, a
//! Service parsed, and a plan's operations in short.

use aws_sdk_ec2::types::{SecurityGroup, Tag as Ec2Tag};
use cloud_provider::ServiceInfo;

use super::plan::Change;
use super::service_config::{LbConfig, Parsed, parse};
use crate::tags::ClusterTags;

pub(crate) const A: &str = "service.beta.kubernetes.io/aws-load-balancer-";
pub(crate) const NODE_GROUP: &str = "sg-node";
pub(crate) const CERT: &str = "arn:aws:acm:us-east-1:123456789012:certificate/abc";

pub(crate) fn config(service: &ServiceInfo) -> LbConfig {
    match parse(service) {
        Parsed::Ok { config, .. } => *config,
        other => panic!("{other:?}"),
    }
}

pub(crate) fn cluster() -> ClusterTags {
    ClusterTags { cluster_id: "c1".into(), legacy: false }
}

/// The Nodes' group, tagged for the cluster.
pub(crate) fn node_group() -> SecurityGroup {
    SecurityGroup::builder()
        .group_id(NODE_GROUP)
        .tags(Ec2Tag::builder().key("kubernetes.io/cluster/c1").value("owned").build())
        .build()
}

/// `ec2.CreateSecurityGroup`, ...: each change's operation.
pub(crate) fn operations(plan: &[Change]) -> Vec<&'static str> {
    plan.iter().map(|c| c.action.operation().name.trim_start_matches("aws/")).collect()
}

/// The group a plan creates (`CreateSecurityGroup`), or `own` with the cluster tag added
/// (`TagSecurityGroup`), as AWS would hold it afterwards: the ID of a new group is `sg-own`.
pub(crate) fn own_group_after(own: &mut Option<SecurityGroup>, change: &Change) {
    use super::plan::Action;
    let tag = |(k, v): &(String, String)| Ec2Tag::builder().key(k).value(v).build();
    match &change.action {
        Action::CreateSecurityGroup { name, tags, .. } => {
            let tags = tags.iter().map(tag).collect();
            *own = Some(SecurityGroup::builder().group_id("sg-own").group_name(name).set_tags(Some(tags)).build());
        }
        Action::TagSecurityGroup { tags, .. } => {
            let group = own.as_mut().expect("a group to tag");
            group.tags.get_or_insert_default().extend(tags.iter().map(tag));
        }
        other => panic!("not a change of the group itself: {other:?}"),
    }
}
