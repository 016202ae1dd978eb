//! Executing a [`Change`] list: in order, stopping at the first failure (the next sync observes
//! again and plans what is still missing).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, SubnetMapping};
use cloud_provider::CloudError;

use super::AwsLoadBalancers;
use super::plan::{Action, ArnRef, Change, ClassicListener, GroupRef};
use super::security_groups::Rule;
use crate::elbv2::ListenerSpec;

/// What applying a plan learned that the plan could not know.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Security groups the plan created: name → ID.
    pub groups: HashMap<String, String>,
    /// The DNS name of a Classic ELB the plan created.
    pub dns_name: Option<String>,
    /// Target groups the plan created: name → ARN.
    pub target_groups: HashMap<String, String>,
    /// The NLB the plan created.
    pub nlb: Option<LoadBalancer>,
}

impl Applied {
    fn group(&self, group: &GroupRef) -> Result<String, CloudError> {
        match group {
            GroupRef::Id(id) => Ok(id.clone()),
            GroupRef::New(name) => self.groups.get(name).cloned().ok_or_else(|| {
                CloudError::transient("aws/lb.apply", format!("security group {name} was not created before its use"))
            }),
        }
    }

    fn groups(&self, groups: &[GroupRef]) -> Result<Vec<String>, CloudError> {
        groups.iter().map(|g| self.group(g)).collect()
    }

    fn target_group(&self, tg: &ArnRef) -> Result<String, CloudError> {
        match tg {
            ArnRef::Arn(arn) => Ok(arn.clone()),
            ArnRef::New(name) => self.target_groups.get(name).cloned().ok_or_else(|| {
                CloudError::transient("aws/lb.apply", format!("target group {name} was not created before its use"))
            }),
        }
    }

    fn load_balancer(&self, lb: &ArnRef) -> Result<String, CloudError> {
        match lb {
            ArnRef::Arn(arn) => Ok(arn.clone()),
            ArnRef::New(name) => {
                self.nlb.as_ref().and_then(|lb| lb.load_balancer_arn().map(String::from)).ok_or_else(|| {
                    CloudError::transient("aws/lb.apply", format!("{name} was not created before its use"))
                })
            }
        }
    }
}

fn permissions(rules: &[Rule]) -> Vec<aws_sdk_ec2::types::IpPermission> {
    rules.iter().map(Rule::to_permission).collect()
}

/// AWS's answer for a group at its rule quota, said the way the planner's own check says it (a
/// concurrent sync filled the group after this one counted).
fn over_quota(err: crate::errors::AwsError, group: &str) -> CloudError {
    if !err.has_code("RulesPerSecurityGroupLimitExceeded") {
        return err.into();
    }
    CloudError::over_quota(
        "aws/lb.rule_quota",
        format!(
            "security group {group} is at its inbound-rule quota (AWS answered RulesPerSecurityGroupLimitExceeded). \
             Ways out: remove rules or load balancers that use the group; raise the AWS quota and set \
             [Global] SecurityGroupRuleQuota to it; or set DisableSecurityGroupIngress = true and open the node ports yourself"
        ),
        super::security_groups::QUOTA_RETRY,
    )
}

impl AwsLoadBalancers {
    /// An authorization's result, where a group "at its quota" that already holds every one of
    /// `rules` is success: a concurrent sync (NLBs sharing the backend group, say) added them
    /// first, and an emulator may answer the quota before the duplicate. One describe, only then.
    async fn unless_already_there(
        &self,
        result: Result<(), crate::errors::AwsError>,
        group: &str,
        rules: &[Rule],
    ) -> Result<(), CloudError> {
        match result {
            Err(err) if err.has_code("RulesPerSecurityGroupLimitExceeded") => {
                let found = self.ec2.security_groups(vec![group.to_string()], Vec::new()).await?;
                let present: Vec<_> =
                    found.iter().flat_map(super::security_groups::ingress).map(|r| r.identity()).collect();
                if rules.iter().all(|r| present.contains(&r.identity())) {
                    return Ok(());
                }
                Err(over_quota(err, group))
            }
            other => other.map_err(|e| over_quota(e, group)),
        }
    }

    /// Executes `plan` in order; the first failure stops it.
    pub(crate) async fn apply(&self, plan: &[Change]) -> Result<Applied, CloudError> {
        let mut applied = Applied::default();
        for change in plan {
            tracing::debug!(op = change.action.operation().name, reason = %change.reason, "applying");
            self.apply_one(&change.action, &mut applied).await?;
        }
        Ok(applied)
    }

    async fn apply_one(&self, action: &Action, applied: &mut Applied) -> Result<(), CloudError> {
        // Noted before and after: a shared reading taken while the write ran is not reused.
        self.tick.written(action);
        let result = match action.operation().name.split_once('.').map(|(service, _)| service) {
            Some("aws/ec2") => self.apply_ec2(action, applied).await,
            Some("aws/elb") => self.apply_elb(action, applied).await,
            _ => self.apply_elbv2(action, applied).await,
        };
        self.tick.written(action);
        result
    }

    /// Security groups and their rules.
    async fn apply_ec2(&self, action: &Action, applied: &mut Applied) -> Result<(), CloudError> {
        let op = action.operation();
        match action {
            Action::CreateSecurityGroup { name, description, tags } => {
                let id = match self.ec2.create_security_group(name, description, &self.vpc_id, tags).await {
                    Ok(id) => id,
                    // Made meanwhile (a concurrent sync): use it.
                    Err(err) if err.has_code("InvalidGroup.Duplicate") => {
                        self.group_named(name).await?.and_then(|g| g.group_id().map(String::from)).ok_or_else(|| {
                            CloudError::transient(op.name, format!("{name} exists but cannot be found"))
                        })?
                    }
                    Err(err) => return Err(err.into()),
                };
                applied.groups.insert(name.clone(), id);
            }
            Action::TagSecurityGroup { group, tags } => self.ec2.create_tags(group, tags).await?,
            Action::AuthorizeIngress { group, rules } => {
                let group = applied.group(group)?;
                let result = self.ec2.authorize_ingress(&group, permissions(rules)).await;
                self.unless_already_there(result, &group, rules).await?
            }
            Action::RevokeIngress { group, rules } => {
                self.ec2.revoke_ingress(&applied.group(group)?, permissions(rules)).await?
            }
            Action::AdmitGroup { group, from } => {
                let rule = Rule::all_from_group(&applied.group(from)?);
                let result = self.ec2.authorize_ingress(group, vec![rule.to_permission()]).await;
                self.unless_already_there(result, group, std::slice::from_ref(&rule)).await?
            }
            Action::DeleteSecurityGroup { group } => self.delete_group(group).await?,
            other => unreachable!("{other:?} is not an EC2 action"),
        }
        Ok(())
    }

    /// Classic ELB.
    async fn apply_elb(&self, action: &Action, applied: &mut Applied) -> Result<(), CloudError> {
        let elb = &self.elb;
        let listeners = |l: &[ClassicListener]| l.iter().map(ClassicListener::to_sdk).collect();
        match action {
            Action::ElbCreate { name, internal, listeners: l, subnets, groups, tags } => {
                let groups = applied.groups(groups)?;
                applied.dns_name = elb.create(name, *internal, listeners(l), subnets.clone(), groups, tags).await?;
            }
            Action::ElbAttachSubnets { name, subnets } => elb.attach_subnets(name, subnets.clone()).await?,
            Action::ElbDetachSubnets { name, subnets } => elb.detach_subnets(name, subnets.clone()).await?,
            Action::ElbApplySecurityGroups { name, groups } => {
                elb.apply_security_groups(name, applied.groups(groups)?).await?
            }
            Action::ElbDeleteListeners { name, ports } => elb.delete_listeners(name, ports.clone()).await?,
            Action::ElbCreateListeners { name, listeners: l } => elb.create_listeners(name, listeners(l)).await?,
            Action::ElbAddTags { name, tags } => elb.add_tags(name, tags).await?,
            Action::ElbCreatePolicy { name, policy, policy_type, attribute } => {
                elb.create_policy(name, policy, policy_type, (&attribute.0, &attribute.1)).await?
            }
            Action::ElbSetBackendPolicies { name, instance_port, policies } => {
                elb.set_backend_policies(name, *instance_port, policies.clone()).await?
            }
            Action::ElbSetListenerPolicies { name, port, policies } => {
                elb.set_listener_policies(name, *port, policies.clone()).await?
            }
            Action::ElbModifyAttributes { name, attributes } => elb.modify_attributes(name, attributes.clone()).await?,
            Action::ElbConfigureHealthCheck { name, check } => elb.configure_health_check(name, check.clone()).await?,
            Action::ElbDeregister { name, instances } => elb.deregister(name, instances).await?,
            Action::ElbRegister { name, instances } => elb.register(name, instances).await?,
            Action::ElbDelete { name } => elb.delete(name).await?,
            other => unreachable!("{other:?} is not a Classic ELB action"),
        }
        Ok(())
    }

    /// NLB.
    async fn apply_elbv2(&self, action: &Action, applied: &mut Applied) -> Result<(), CloudError> {
        let elbv2 = &self.elbv2;
        match action {
            Action::NlbCreate { name, internal, subnets, groups, tags } => {
                let mappings = subnets
                    .iter()
                    .map(|s| {
                        SubnetMapping::builder()
                            .subnet_id(&s.subnet)
                            .set_allocation_id(s.allocation.clone())
                            .set_private_ipv4_address(s.private_ip.clone())
                            .build()
                    })
                    .collect();
                let groups = groups.as_ref().map(|g| applied.groups(g)).transpose()?;
                let created = elbv2.create(name, *internal, mappings, groups, tags).await?;
                applied.nlb =
                    Some(created.ok_or_else(|| {
                        CloudError::transient("aws/nlb.create", "CreateLoadBalancer returned nothing")
                    })?);
            }
            Action::NlbSetSecurityGroups { load_balancer, groups } => {
                elbv2.set_security_groups(load_balancer, applied.groups(groups)?).await?
            }
            Action::NlbCreateTargetGroup { name, protocol, port, health, tags } => {
                let arn = elbv2.create_target_group(name, protocol.clone(), *port, &self.vpc_id, health, tags).await?;
                let arn = arn.ok_or_else(|| {
                    CloudError::transient("aws/nlb.target_group", "CreateTargetGroup returned nothing")
                })?;
                applied.target_groups.insert(name.clone(), arn);
            }
            Action::NlbModifyHealthCheck { target_group, health } => {
                elbv2.modify_health_check(target_group, health).await?
            }
            Action::NlbRegisterTargets { target_group, targets } => {
                elbv2.register_targets(&applied.target_group(target_group)?, targets).await?
            }
            Action::NlbDeregisterTargets { target_group, targets } => {
                elbv2.deregister_targets(target_group, targets).await?
            }
            Action::NlbModifyTargetGroupAttributes { target_group, attributes } => {
                elbv2.modify_target_group_attributes(&applied.target_group(target_group)?, attributes).await?
            }
            Action::NlbCreateListener {
                load_balancer,
                port,
                protocol,
                target_group,
                certificate,
                ssl_policy,
                tags,
            } => {
                let target_group = applied.target_group(target_group)?;
                let spec = ListenerSpec { target_group: &target_group, certificate, ssl_policy };
                let load_balancer = applied.load_balancer(load_balancer)?;
                elbv2.create_listener(&load_balancer, *port, protocol.clone(), spec, tags).await?
            }
            Action::NlbModifyListener { listener, target_group, certificate, ssl_policy } => {
                let target_group = applied.target_group(target_group)?;
                elbv2
                    .modify_listener(listener, ListenerSpec { target_group: &target_group, certificate, ssl_policy })
                    .await?
            }
            Action::NlbDeleteListener { listener } => elbv2.delete_listener(listener).await?,
            Action::NlbDeleteTargetGroup { target_group } => match elbv2.delete_target_group(target_group).await {
                Ok(()) => {}
                Err(err) if err.is_not_found() => {}
                Err(err) if err.has_code("ResourceInUse") => {
                    return Err(CloudError::retry_after(
                        "aws/nlb.delete_target_group",
                        format!("target group {target_group} is still in use; deleting it again shortly"),
                        Duration::from_secs(10),
                    ));
                }
                Err(err) => return Err(err.into()),
            },
            Action::NlbModifyAttributes { load_balancer, attributes } => {
                elbv2.modify_attributes(&applied.load_balancer(load_balancer)?, attributes).await?
            }
            Action::NlbDelete { load_balancer } => elbv2.delete(load_balancer).await?,
            other => unreachable!("{other:?} is not an NLB action"),
        }
        Ok(())
    }

    /// Deletes an owned group; one still in use means "come back later", never a wait here.
    async fn delete_group(&self, id: &str) -> Result<(), CloudError> {
        match self.ec2.delete_security_group(id).await {
            Ok(()) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) if err.has_code("DependencyViolation") => {
                // Still attached (a load balancer's interfaces go a little after it), or
                // referenced by rules this controller did not write, which it leaves alone.
                let referencing: Vec<String> = self
                    .ec2
                    .security_groups(Vec::new(), vec![crate::ec2::filter("ip-permission.group-id", [id])])
                    .await
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|g| g.group_id().map(String::from))
                    .collect();
                let why = if referencing.is_empty() {
                    "is still in use".to_string()
                } else {
                    format!(
                        "is still referenced by rules in {} that this controller did not write (remove them to let it go)",
                        referencing.join(", ")
                    )
                };
                Err(CloudError::retry_after(
                    "aws/lb.delete_security_group",
                    format!("security group {id} {why}; deleting it again shortly"),
                    Duration::from_secs(10),
                ))
            }
            Err(err) => Err(err.into()),
        }
    }
}
