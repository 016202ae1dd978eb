//! Finding an NLB's target groups.

use aws_sdk_elasticloadbalancingv2::types::TargetGroup;

use super::super::AwsLoadBalancers;
use crate::errors::AwsError;
use crate::operations::Elbv2Op;

impl AwsLoadBalancers {
    pub(crate) async fn target_groups_of(&self, arn: &str) -> Result<Vec<TargetGroup>, AwsError> {
        let r = self.elbv2.describe_target_groups().load_balancer_arn(arn);
        match self.calls.run(Elbv2Op::DescribeTargetGroups, r.send()).await {
            Ok(out) => Ok(out.target_groups().to_vec()),
            // AWS answers an empty list; some emulators answer "not found".
            Err(err) if err.has_code("TargetGroupNotFound") => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    pub(super) async fn target_group_named(&self, name: &str) -> Result<Option<TargetGroup>, AwsError> {
        let r = self.elbv2.describe_target_groups().names(name);
        match self.calls.run(Elbv2Op::DescribeTargetGroups, r.send()).await {
            Ok(out) => Ok(out.target_groups().first().cloned()),
            Err(err) if err.has_code("TargetGroupNotFound") => Ok(None),
            Err(err) => Err(err),
        }
    }
}
