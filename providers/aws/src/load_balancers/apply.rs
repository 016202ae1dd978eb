//! Executing a [`Change`] list: in order, stopping at the first failure (the next sync observes
//! again and plans what is still missing).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_elasticloadbalancing::types::{Instance as ElbInstance, PolicyAttribute, Tag};
use aws_sdk_elasticloadbalancingv2::types::{
    Action as V2Action, ActionTypeEnum, Certificate, LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, ProtocolEnum, SubnetMapping, Tag as V2Tag, TargetDescription, TargetGroupAttribute,
    TargetTypeEnum,
};
use cloud_provider::CloudError;

use super::AwsLoadBalancers;
use super::plan::{Action, ArnRef, Change, ClassicListener, GroupRef};
use super::security_groups::Rule;

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

fn v2_tags(tags: &[(String, String)]) -> Vec<V2Tag> {
    tags.iter().map(|(k, v)| V2Tag::builder().key(k).value(v).build()).collect()
}

fn v2_targets(targets: &[(String, i32)]) -> Vec<TargetDescription> {
    targets.iter().map(|(id, port)| TargetDescription::builder().id(id).port(*port).build()).collect()
}

fn forward(tg: String) -> V2Action {
    V2Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(tg).build()
}

fn certificates(certificate: &Option<String>) -> Option<Vec<Certificate>> {
    certificate.as_ref().map(|c| vec![Certificate::builder().certificate_arn(c).build()])
}

fn elb_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key")).collect()
}

fn instances(ids: &[String]) -> Vec<ElbInstance> {
    ids.iter().map(|id| ElbInstance::builder().instance_id(id).build()).collect()
}

fn permissions(rules: &[Rule]) -> Vec<aws_sdk_ec2::types::IpPermission> {
    rules.iter().map(Rule::to_permission).collect()
}

impl AwsLoadBalancers {
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
        match action.operation().name.split_once('.').map(|(service, _)| service) {
            Some("aws/ec2") => self.apply_ec2(action, applied).await,
            Some("aws/elb") => self.apply_elb(action, applied).await,
            _ => self.apply_elbv2(action, applied).await,
        }
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
                self.ec2.authorize_ingress(&applied.group(group)?, permissions(rules)).await?
            }
            Action::RevokeIngress { group, rules } => {
                self.ec2.revoke_ingress(&applied.group(group)?, permissions(rules)).await?
            }
            Action::AdmitGroup { group, from } => {
                let rule = Rule::all_from_group(&applied.group(from)?);
                self.ec2.authorize_ingress(group, vec![rule.to_permission()]).await?
            }
            Action::DeleteSecurityGroup { group } => self.delete_group(group).await?,
            other => unreachable!("{other:?} is not an EC2 action"),
        }
        Ok(())
    }

    /// Classic ELB.
    async fn apply_elb(&self, action: &Action, applied: &mut Applied) -> Result<(), CloudError> {
        let op = action.operation();
        match action {
            Action::ElbCreate { name, internal, listeners, subnets, groups, tags } => {
                let mut r = self
                    .elb
                    .create_load_balancer()
                    .load_balancer_name(name)
                    .set_listeners(Some(listeners.iter().map(ClassicListener::to_sdk).collect()))
                    .set_subnets(Some(subnets.clone()))
                    .set_security_groups(Some(applied.groups(groups)?))
                    .set_tags(Some(elb_tags(tags)));
                if *internal {
                    r = r.scheme("internal");
                }
                let out = self.calls.run(op, r.send()).await?;
                applied.dns_name = out.dns_name().map(String::from);
            }
            Action::ElbAttachSubnets { name, subnets } => {
                let r = self.elb.attach_load_balancer_to_subnets().load_balancer_name(name);
                self.calls.run(op, r.set_subnets(Some(subnets.clone())).send()).await?;
            }
            Action::ElbDetachSubnets { name, subnets } => {
                let r = self.elb.detach_load_balancer_from_subnets().load_balancer_name(name);
                self.calls.run(op, r.set_subnets(Some(subnets.clone())).send()).await?;
            }
            Action::ElbApplySecurityGroups { name, groups } => {
                let r = self.elb.apply_security_groups_to_load_balancer().load_balancer_name(name);
                self.calls.run(op, r.set_security_groups(Some(applied.groups(groups)?)).send()).await?;
            }
            Action::ElbDeleteListeners { name, ports } => {
                let r = self.elb.delete_load_balancer_listeners().load_balancer_name(name);
                self.calls.run(op, r.set_load_balancer_ports(Some(ports.clone())).send()).await?;
            }
            Action::ElbCreateListeners { name, listeners } => {
                let r = self.elb.create_load_balancer_listeners().load_balancer_name(name);
                self.calls
                    .run(op, r.set_listeners(Some(listeners.iter().map(ClassicListener::to_sdk).collect())).send())
                    .await?;
            }
            Action::ElbAddTags { name, tags } => {
                let r = self.elb.add_tags().load_balancer_names(name).set_tags(Some(elb_tags(tags)));
                self.calls.run(op, r.send()).await?;
            }
            Action::ElbCreatePolicy { name, policy, policy_type, attribute } => {
                let r = self
                    .elb
                    .create_load_balancer_policy()
                    .load_balancer_name(name)
                    .policy_name(policy)
                    .policy_type_name(policy_type)
                    .policy_attributes(
                        PolicyAttribute::builder().attribute_name(&attribute.0).attribute_value(&attribute.1).build(),
                    );
                self.calls.run(op, r.send()).await?;
            }
            Action::ElbSetBackendPolicies { name, instance_port, policies } => {
                let r = self
                    .elb
                    .set_load_balancer_policies_for_backend_server()
                    .load_balancer_name(name)
                    .instance_port(*instance_port)
                    .set_policy_names(Some(policies.clone()));
                self.calls.run(op, r.send()).await?;
            }
            Action::ElbSetListenerPolicies { name, port, policies } => {
                let r = self
                    .elb
                    .set_load_balancer_policies_of_listener()
                    .load_balancer_name(name)
                    .load_balancer_port(*port)
                    .set_policy_names(Some(policies.clone()));
                self.calls.run(op, r.send()).await?;
            }
            Action::ElbModifyAttributes { name, attributes } => {
                let r = self
                    .elb
                    .modify_load_balancer_attributes()
                    .load_balancer_name(name)
                    .load_balancer_attributes(attributes.clone());
                self.calls.run(op, r.send()).await?;
            }
            Action::ElbConfigureHealthCheck { name, check } => {
                let r = self.elb.configure_health_check().load_balancer_name(name).health_check(check.clone());
                self.calls.run(op, r.send()).await?;
            }
            Action::ElbDeregister { name, instances: ids } => {
                let r = self.elb.deregister_instances_from_load_balancer().load_balancer_name(name);
                self.calls.run(op, r.set_instances(Some(instances(ids))).send()).await?;
            }
            Action::ElbRegister { name, instances: ids } => {
                let r = self.elb.register_instances_with_load_balancer().load_balancer_name(name);
                self.calls.run(op, r.set_instances(Some(instances(ids))).send()).await?;
            }
            Action::ElbDelete { name } => {
                self.calls.run(op, self.elb.delete_load_balancer().load_balancer_name(name).send()).await?;
            }
            other => unreachable!("{other:?} is not a Classic ELB action"),
        }
        Ok(())
    }

    /// NLB.
    async fn apply_elbv2(&self, action: &Action, applied: &mut Applied) -> Result<(), CloudError> {
        let op = action.operation();
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
                let scheme =
                    if *internal { LoadBalancerSchemeEnum::Internal } else { LoadBalancerSchemeEnum::InternetFacing };
                let groups = groups.as_ref().map(|g| applied.groups(g)).transpose()?;
                let r = self
                    .elbv2
                    .create_load_balancer()
                    .name(name)
                    .r#type(LoadBalancerTypeEnum::Network)
                    .scheme(scheme)
                    .set_subnet_mappings(Some(mappings))
                    .set_security_groups(groups)
                    .set_tags(Some(v2_tags(tags)));
                let out = self.calls.run(op, r.send()).await?;
                applied.nlb =
                    Some(out.load_balancers().first().cloned().ok_or_else(|| {
                        CloudError::transient("aws/nlb.create", "CreateLoadBalancer returned nothing")
                    })?);
            }
            Action::NlbSetSecurityGroups { load_balancer, groups } => {
                let r = self.elbv2.set_security_groups().load_balancer_arn(load_balancer);
                self.calls.run(op, r.set_security_groups(Some(applied.groups(groups)?)).send()).await?;
            }
            Action::NlbCreateTargetGroup { name, protocol, port, health: h, tags } => {
                let r = self
                    .elbv2
                    .create_target_group()
                    .name(name)
                    .protocol(protocol.clone())
                    .port(*port)
                    .vpc_id(&self.vpc_id)
                    .target_type(TargetTypeEnum::Instance)
                    .health_check_protocol(ProtocolEnum::from(h.protocol.as_str()))
                    .health_check_port(h.port.to_string())
                    .set_health_check_path(h.path.clone())
                    .health_check_interval_seconds(h.interval)
                    .healthy_threshold_count(h.healthy)
                    .unhealthy_threshold_count(h.unhealthy)
                    .set_tags(Some(v2_tags(tags)));
                let out = self.calls.run(op, r.send()).await?;
                let arn = out.target_groups().first().and_then(|g| g.target_group_arn()).ok_or_else(|| {
                    CloudError::transient("aws/nlb.target_group", "CreateTargetGroup returned nothing")
                })?;
                applied.target_groups.insert(name.clone(), arn.to_string());
            }
            Action::NlbModifyHealthCheck { target_group, health: h } => {
                let r = self
                    .elbv2
                    .modify_target_group()
                    .target_group_arn(target_group)
                    .health_check_port(h.port.to_string())
                    .set_health_check_path(h.path.clone())
                    .healthy_threshold_count(h.healthy)
                    .unhealthy_threshold_count(h.unhealthy);
                self.calls.run(op, r.send()).await?;
            }
            Action::NlbRegisterTargets { target_group, targets } => {
                let r = self.elbv2.register_targets().target_group_arn(applied.target_group(target_group)?);
                self.calls.run(op, r.set_targets(Some(v2_targets(targets))).send()).await?;
            }
            Action::NlbDeregisterTargets { target_group, targets } => {
                let r = self.elbv2.deregister_targets().target_group_arn(target_group);
                self.calls.run(op, r.set_targets(Some(v2_targets(targets))).send()).await?;
            }
            Action::NlbModifyTargetGroupAttributes { target_group, attributes } => {
                let attributes =
                    attributes.iter().map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v).build()).collect();
                let r =
                    self.elbv2.modify_target_group_attributes().target_group_arn(applied.target_group(target_group)?);
                self.calls.run(op, r.set_attributes(Some(attributes)).send()).await?;
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
                let r = self
                    .elbv2
                    .create_listener()
                    .load_balancer_arn(applied.load_balancer(load_balancer)?)
                    .port(*port)
                    .protocol(protocol.clone())
                    .default_actions(forward(applied.target_group(target_group)?))
                    .set_certificates(certificates(certificate))
                    .set_ssl_policy(ssl_policy.clone())
                    .set_tags(Some(v2_tags(tags)));
                self.calls.run(op, r.send()).await?;
            }
            Action::NlbModifyListener { listener, target_group, certificate, ssl_policy } => {
                let r = self
                    .elbv2
                    .modify_listener()
                    .listener_arn(listener)
                    .default_actions(forward(applied.target_group(target_group)?))
                    .set_certificates(certificates(certificate))
                    .set_ssl_policy(ssl_policy.clone());
                self.calls.run(op, r.send()).await?;
            }
            Action::NlbDeleteListener { listener } => {
                self.calls.run(op, self.elbv2.delete_listener().listener_arn(listener).send()).await?;
            }
            Action::NlbDeleteTargetGroup { target_group } => {
                match self.calls.run(op, self.elbv2.delete_target_group().target_group_arn(target_group).send()).await {
                    Ok(_) => {}
                    Err(err) if err.is_not_found() => {}
                    Err(err) if err.has_code("ResourceInUse") => {
                        return Err(CloudError::retry_after(
                            "aws/nlb.delete_target_group",
                            format!("target group {target_group} is still in use; deleting it again shortly"),
                            Duration::from_secs(10),
                        ));
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Action::NlbModifyAttributes { load_balancer, attributes } => {
                let attributes =
                    attributes.iter().map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build()).collect();
                let r = self
                    .elbv2
                    .modify_load_balancer_attributes()
                    .load_balancer_arn(applied.load_balancer(load_balancer)?);
                self.calls.run(op, r.set_attributes(Some(attributes)).send()).await?;
            }
            Action::NlbDelete { load_balancer } => {
                self.calls.run(op, self.elbv2.delete_load_balancer().load_balancer_arn(load_balancer).send()).await?;
            }
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
