//! Every AWS operation this provider calls, one enum per service. Each call names its operation
//! ([`crate::calls::Calls::run`] takes nothing else), so a call cannot be left out; the IAM
//! policy (`manifests/iam-policy.json`, [`crate::operations`]), the metric labels and the docs'
//! operation table are derived from these lists, and a test fails when a listed operation is
//! named by no call.

/// One operation: its name as logs, errors and metrics show it (`aws/ec2.DescribeInstances`)
/// and its IAM action (`ec2:DescribeInstances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Op {
    pub name: &'static str,
    pub iam: &'static str,
}

macro_rules! operations {
    ($($(#[$doc:meta])* $enum:ident $label:literal $iam:literal [$($op:ident),* $(,)?])*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $enum { $($op),* }

        impl $enum {
            pub const ALL: &'static [Self] = &[$(Self::$op),*];

            pub const fn op(self) -> Op {
                match self {
                    $(Self::$op => Op {
                        name: concat!("aws/", $label, ".", stringify!($op)),
                        iam: concat!($iam, ":", stringify!($op)),
                    }),*
                }
            }
        }

        impl From<$enum> for Op {
            fn from(op: $enum) -> Op {
                op.op()
            }
        }
    )*};
}

operations! {
    /// EC2: instances, routes, subnets, zones, security groups.
    Ec2Op "ec2" "ec2" [
        DescribeInstances,
        DescribeInstanceTopology,
        DescribeAvailabilityZones,
        DescribeRouteTables,
        CreateRoute,
        DeleteRoute,
        ModifyInstanceAttribute,
        DescribeSubnets,
        DescribeSecurityGroups,
        CreateSecurityGroup,
        DeleteSecurityGroup,
        AuthorizeSecurityGroupIngress,
        RevokeSecurityGroupIngress,
        CreateTags,
    ]
    /// Elastic Load Balancing (Classic ELB).
    ElbOp "elb" "elasticloadbalancing" [
        DescribeLoadBalancers,
        DescribeTags,
        CreateLoadBalancer,
        DeleteLoadBalancer,
        AttachLoadBalancerToSubnets,
        DetachLoadBalancerFromSubnets,
        ApplySecurityGroupsToLoadBalancer,
        CreateLoadBalancerListeners,
        DeleteLoadBalancerListeners,
        ConfigureHealthCheck,
        DescribeLoadBalancerAttributes,
        ModifyLoadBalancerAttributes,
        RegisterInstancesWithLoadBalancer,
        DeregisterInstancesFromLoadBalancer,
        AddTags,
        CreateLoadBalancerPolicy,
        SetLoadBalancerPoliciesForBackendServer,
        SetLoadBalancerPoliciesOfListener,
    ]
    /// Elastic Load Balancing v2 (NLB).
    Elbv2Op "elbv2" "elasticloadbalancing" [
        DescribeLoadBalancers,
        CreateLoadBalancer,
        DeleteLoadBalancer,
        DescribeListeners,
        CreateListener,
        ModifyListener,
        DeleteListener,
        DescribeTargetGroups,
        CreateTargetGroup,
        ModifyTargetGroup,
        DeleteTargetGroup,
        DescribeTargetHealth,
        RegisterTargets,
        DeregisterTargets,
        DescribeTargetGroupAttributes,
        ModifyTargetGroupAttributes,
        DescribeLoadBalancerAttributes,
        ModifyLoadBalancerAttributes,
        DescribeTags,
        SetSecurityGroups,
    ]
}

/// Every operation, as `(name, IAM action)`.
pub fn all() -> Vec<Op> {
    Ec2Op::ALL
        .iter()
        .map(|o| o.op())
        .chain(ElbOp::ALL.iter().map(|o| o.op()))
        .chain(Elbv2Op::ALL.iter().map(|o| o.op()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_iam_actions() {
        assert_eq!(
            Elbv2Op::CreateListener.op(),
            Op { name: "aws/elbv2.CreateListener", iam: "elasticloadbalancing:CreateListener" }
        );
        assert_eq!(Ec2Op::CreateRoute.op().iam, "ec2:CreateRoute");
        assert_eq!(all().len(), 14 + 18 + 20);
    }
}
