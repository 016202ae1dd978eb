//! What each AWS action the provider calls may touch, in IAM terms: the source of
//! `manifests/iam-policy.json` (rendered and checked by `tests/iam_policy.rs`) and of the
//! "IAM" section of `docs/security.md`.
//!
//! Everything this CCM creates carries `kubernetes.io/cluster/<id>=owned` from its first call
//! (tags on create), so writes to security groups, load balancers and target groups can be held
//! to resources with that tag; node groups, route tables and instances are the cluster's own
//! (tagged `owned` or `shared` by kops, EKS or the operator) and are held to the cluster tag
//! with any value. What cannot be scoped says why.

/// How far an action can be narrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Describe calls: IAM has no resource-level permissions for them.
    Read,
    /// Creates a resource that must carry the cluster tag `owned` in the same request
    /// (`aws:RequestTag`). `also` are resource types the action needs besides the new one, which
    /// carry no tag of ours (the VPC a security group is created in).
    Create { resource: Resource, also: &'static [Resource] },
    /// Tags a resource: while it is being created by one of `create_actions`
    /// (`ec2:CreateAction` / `elasticloadbalancing:CreateAction`), and afterwards only on
    /// resources the cluster owns.
    Tag { resources: &'static [Resource], create_actions: &'static [&'static str] },
    /// Changes or deletes a resource tagged `kubernetes.io/cluster/<id>=owned`.
    Owned { resources: &'static [Resource] },
    /// Changes a resource tagged for the cluster at all (`owned` or `shared`).
    Cluster { resources: &'static [Resource] },
    /// Cannot be narrowed by tag.
    Unscoped { reason: &'static str },
}

/// The resource types, as ARN patterns with the usual wildcards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    SecurityGroup,
    Vpc,
    RouteTable,
    Instance,
    /// A Classic ELB (`loadbalancer/<name>`) or an NLB (`loadbalancer/net/<name>/<id>`).
    LoadBalancer,
    TargetGroup,
    /// An NLB listener (tagged on create by this CCM).
    Listener,
}

impl Resource {
    pub fn arn(self) -> &'static str {
        match self {
            Resource::SecurityGroup => "arn:aws:ec2:*:*:security-group/*",
            Resource::Vpc => "arn:aws:ec2:*:*:vpc/*",
            Resource::RouteTable => "arn:aws:ec2:*:*:route-table/*",
            Resource::Instance => "arn:aws:ec2:*:*:instance/*",
            Resource::LoadBalancer => "arn:aws:elasticloadbalancing:*:*:loadbalancer/*",
            Resource::TargetGroup => "arn:aws:elasticloadbalancing:*:*:targetgroup/*",
            Resource::Listener => "arn:aws:elasticloadbalancing:*:*:listener/net/*",
        }
    }
}

/// Listeners: this CCM tags the ones it creates, but those upstream made (adopted untouched) may
/// carry no tag, so a tag condition would lock the CCM out of listeners it has to change.
const LISTENERS: &str = "an NLB listener made by upstream may carry no tags, so a tag condition would \
                         refuse changes to adopted load balancers; the listener's load balancer is owned";

/// The scope of `action` (`service:Action`), or `None` for an action this table does not know
/// (the policy test fails on it).
pub fn scope(action: &str) -> Option<Scope> {
    use Resource::*;
    let (service, name) = action.split_once(':')?;
    if name.starts_with("Describe") || name.starts_with("Get") || name.starts_with("List") {
        return Some(Scope::Read);
    }
    Some(match (service, name) {
        ("ec2", "CreateSecurityGroup") => Scope::Create { resource: SecurityGroup, also: &[Vpc] },
        ("ec2", "CreateTags") => Scope::Tag { resources: &[SecurityGroup], create_actions: &["CreateSecurityGroup"] },
        ("ec2", "DeleteSecurityGroup") => Scope::Owned { resources: &[SecurityGroup] },
        // The CCM's own k8s-elb groups (owned) and the node groups (owned or shared).
        ("ec2", "AuthorizeSecurityGroupIngress" | "RevokeSecurityGroupIngress") => {
            Scope::Cluster { resources: &[SecurityGroup] }
        }
        ("ec2", "CreateRoute" | "DeleteRoute") => Scope::Cluster { resources: &[RouteTable] },
        // Source/destination check, for the routes to a node.
        ("ec2", "ModifyInstanceAttribute") => Scope::Cluster { resources: &[Instance] },
        ("elasticloadbalancing", "CreateLoadBalancer") => Scope::Create { resource: LoadBalancer, also: &[] },
        ("elasticloadbalancing", "CreateTargetGroup") => Scope::Create { resource: TargetGroup, also: &[] },
        ("elasticloadbalancing", "AddTags") => Scope::Tag {
            resources: &[LoadBalancer, TargetGroup, Listener],
            create_actions: &["CreateLoadBalancer", "CreateTargetGroup", "CreateListener"],
        },
        ("elasticloadbalancing", "CreateListener" | "ModifyListener" | "DeleteListener") => {
            Scope::Unscoped { reason: LISTENERS }
        }
        ("elasticloadbalancing", "RegisterTargets" | "DeregisterTargets" | "ModifyTargetGroup")
        | ("elasticloadbalancing", "ModifyTargetGroupAttributes" | "DeleteTargetGroup") => {
            Scope::Owned { resources: &[TargetGroup] }
        }
        (
            "elasticloadbalancing",
            "DeleteLoadBalancer"
            | "ModifyLoadBalancerAttributes"
            | "SetSecurityGroups"
            | "AttachLoadBalancerToSubnets"
            | "DetachLoadBalancerFromSubnets"
            | "ApplySecurityGroupsToLoadBalancer"
            | "CreateLoadBalancerListeners"
            | "DeleteLoadBalancerListeners"
            | "ConfigureHealthCheck"
            | "RegisterInstancesWithLoadBalancer"
            | "DeregisterInstancesFromLoadBalancer"
            | "CreateLoadBalancerPolicy"
            | "SetLoadBalancerPoliciesForBackendServer"
            | "SetLoadBalancerPoliciesOfListener",
        ) => Scope::Owned { resources: &[LoadBalancer] },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_scope_and_every_write_is_narrowed_or_explained() {
        for op in crate::operations() {
            let scope = scope(&op).unwrap_or_else(|| panic!("{op} has no IAM scope"));
            let mutating = crate::calls::is_mutating(op.split_once(':').unwrap().1);
            assert_eq!(mutating, scope != Scope::Read, "{op}: read/write disagrees with the fencing's view");
        }
        assert_eq!(scope("ec2:RunInstances"), None);
    }
}
