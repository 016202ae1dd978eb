//! The NLB calls this provider makes (each one of [`crate::operations::Elbv2Op`]); nothing else
//! holds the Elastic Load Balancing v2 client.

use std::sync::Arc;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener, LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, ProtocolEnum, SubnetMapping, Tag, TagDescription, TargetDescription, TargetGroup,
    TargetGroupAttribute, TargetHealthDescription, TargetTypeEnum,
};

use crate::calls::Calls;
use crate::errors::AwsError;
use crate::load_balancers::plan::Health;
use crate::operations::Elbv2Op;

#[derive(Clone)]
pub struct Elbv2 {
    client: aws_sdk_elasticloadbalancingv2::Client,
    calls: Arc<Calls>,
}

/// One listener's default action and TLS settings, as CreateListener and ModifyListener take them.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec<'a> {
    pub target_group: &'a str,
    pub certificate: &'a Option<String>,
    pub ssl_policy: &'a Option<String>,
}

fn tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

fn targets(pairs: &[(String, i32)]) -> Vec<TargetDescription> {
    pairs.iter().map(|(id, port)| TargetDescription::builder().id(id).port(*port).build()).collect()
}

fn forward(tg: &str) -> Action {
    Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(tg).build()
}

fn certificates(certificate: &Option<String>) -> Option<Vec<Certificate>> {
    certificate.as_ref().map(|c| vec![Certificate::builder().certificate_arn(c).build()])
}

fn pairs<'a>(items: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Vec<(String, String)> {
    items.filter_map(|(k, v)| Some((k?.to_string(), v?.to_string()))).collect()
}

impl Elbv2 {
    pub fn new(client: aws_sdk_elasticloadbalancingv2::Client, calls: Arc<Calls>) -> Self {
        Self { client, calls }
    }

    /// DescribeLoadBalancers of these names (at most 20; unknown names fail the call).
    pub async fn load_balancers(&self, names: Vec<String>) -> Result<Vec<LoadBalancer>, AwsError> {
        let r = self.client.describe_load_balancers().set_names(Some(names));
        Ok(self.calls.run(Elbv2Op::DescribeLoadBalancers, r.send()).await?.load_balancers().to_vec())
    }

    /// DescribeLoadBalancers, every page: all load balancers of the region.
    pub async fn all_load_balancers(&self) -> Result<Vec<LoadBalancer>, AwsError> {
        let mut pages = self.client.describe_load_balancers().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = self.calls.page(Elbv2Op::DescribeLoadBalancers, pages.next()).await? {
            out.extend(page.load_balancers().iter().cloned());
        }
        Ok(out)
    }

    pub async fn listeners(&self, load_balancer: &str) -> Result<Vec<Listener>, AwsError> {
        let r = self.client.describe_listeners().load_balancer_arn(load_balancer);
        Ok(self.calls.run(Elbv2Op::DescribeListeners, r.send()).await?.listeners().to_vec())
    }

    /// The load balancer's attributes as key → value.
    pub async fn attributes(&self, load_balancer: &str) -> Result<Vec<(String, String)>, AwsError> {
        let r = self.client.describe_load_balancer_attributes().load_balancer_arn(load_balancer);
        let out = self.calls.run(Elbv2Op::DescribeLoadBalancerAttributes, r.send()).await?;
        Ok(pairs(out.attributes().iter().map(|a| (a.key(), a.value()))))
    }

    /// The target groups of a load balancer (AWS answers an empty list; some emulators answer
    /// "not found").
    pub async fn target_groups_of(&self, load_balancer: &str) -> Result<Vec<TargetGroup>, AwsError> {
        let r = self.client.describe_target_groups().load_balancer_arn(load_balancer);
        match self.calls.run(Elbv2Op::DescribeTargetGroups, r.send()).await {
            Ok(out) => Ok(out.target_groups().to_vec()),
            Err(err) if err.has_code("TargetGroupNotFound") => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    pub async fn target_group_named(&self, name: &str) -> Result<Option<TargetGroup>, AwsError> {
        let r = self.client.describe_target_groups().names(name);
        match self.calls.run(Elbv2Op::DescribeTargetGroups, r.send()).await {
            Ok(out) => Ok(out.target_groups().first().cloned()),
            Err(err) if err.has_code("TargetGroupNotFound") => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// DescribeTargetGroups, every page: all target groups of the region.
    pub async fn all_target_groups(&self) -> Result<Vec<TargetGroup>, AwsError> {
        let mut pages = self.client.describe_target_groups().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = self.calls.page(Elbv2Op::DescribeTargetGroups, pages.next()).await? {
            out.extend(page.target_groups().iter().cloned());
        }
        Ok(out)
    }

    pub async fn target_health(&self, target_group: &str) -> Result<Vec<TargetHealthDescription>, AwsError> {
        let r = self.client.describe_target_health().target_group_arn(target_group);
        Ok(self.calls.run(Elbv2Op::DescribeTargetHealth, r.send()).await?.target_health_descriptions().to_vec())
    }

    /// A target group's attributes as key → value.
    pub async fn target_group_attributes(&self, target_group: &str) -> Result<Vec<(String, String)>, AwsError> {
        let r = self.client.describe_target_group_attributes().target_group_arn(target_group);
        let out = self.calls.run(Elbv2Op::DescribeTargetGroupAttributes, r.send()).await?;
        Ok(pairs(out.attributes().iter().map(|a| (a.key(), a.value()))))
    }

    /// DescribeTags of up to 20 resources.
    pub async fn tags(&self, arns: Vec<String>) -> Result<Vec<TagDescription>, AwsError> {
        let r = self.client.describe_tags().set_resource_arns(Some(arns));
        Ok(self.calls.run(Elbv2Op::DescribeTags, r.send()).await?.tag_descriptions().to_vec())
    }

    /// CreateLoadBalancer of a network load balancer; what AWS answered.
    pub async fn create(
        &self,
        name: &str,
        internal: bool,
        subnets: Vec<SubnetMapping>,
        groups: Option<Vec<String>>,
        tag_pairs: &[(String, String)],
    ) -> Result<Option<LoadBalancer>, AwsError> {
        let scheme = if internal { LoadBalancerSchemeEnum::Internal } else { LoadBalancerSchemeEnum::InternetFacing };
        let r = self
            .client
            .create_load_balancer()
            .name(name)
            .r#type(LoadBalancerTypeEnum::Network)
            .scheme(scheme)
            .set_subnet_mappings(Some(subnets))
            .set_security_groups(groups)
            .set_tags(Some(tags(tag_pairs)));
        Ok(self.calls.run(Elbv2Op::CreateLoadBalancer, r.send()).await?.load_balancers().first().cloned())
    }

    pub async fn set_security_groups(&self, load_balancer: &str, groups: Vec<String>) -> Result<(), AwsError> {
        let r = self.client.set_security_groups().load_balancer_arn(load_balancer).set_security_groups(Some(groups));
        self.calls.run(Elbv2Op::SetSecurityGroups, r.send()).await.map(drop)
    }

    pub async fn modify_attributes(
        &self,
        load_balancer: &str,
        attributes: &[(String, String)],
    ) -> Result<(), AwsError> {
        let attributes =
            attributes.iter().map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build()).collect();
        let r = self
            .client
            .modify_load_balancer_attributes()
            .load_balancer_arn(load_balancer)
            .set_attributes(Some(attributes));
        self.calls.run(Elbv2Op::ModifyLoadBalancerAttributes, r.send()).await.map(drop)
    }

    pub async fn delete(&self, load_balancer: &str) -> Result<(), AwsError> {
        let r = self.client.delete_load_balancer().load_balancer_arn(load_balancer);
        self.calls.run(Elbv2Op::DeleteLoadBalancer, r.send()).await.map(drop)
    }

    /// CreateTargetGroup of instance targets in `vpc`; its ARN.
    pub async fn create_target_group(
        &self,
        name: &str,
        protocol: ProtocolEnum,
        port: i32,
        vpc: &str,
        health: &Health,
        tag_pairs: &[(String, String)],
    ) -> Result<Option<String>, AwsError> {
        let r = self
            .client
            .create_target_group()
            .name(name)
            .protocol(protocol)
            .port(port)
            .vpc_id(vpc)
            .target_type(TargetTypeEnum::Instance)
            .health_check_protocol(ProtocolEnum::from(health.protocol.as_str()))
            .health_check_port(health.port.to_string())
            .set_health_check_path(health.path.clone())
            .health_check_interval_seconds(health.interval)
            .healthy_threshold_count(health.healthy)
            .unhealthy_threshold_count(health.unhealthy)
            .set_tags(Some(tags(tag_pairs)));
        let out = self.calls.run(Elbv2Op::CreateTargetGroup, r.send()).await?;
        Ok(out.target_groups().first().and_then(|g| g.target_group_arn()).map(String::from))
    }

    /// ModifyTargetGroup: the health check's port, path and thresholds (AWS does not change an
    /// existing group's protocol or interval).
    pub async fn modify_health_check(&self, target_group: &str, health: &Health) -> Result<(), AwsError> {
        let r = self
            .client
            .modify_target_group()
            .target_group_arn(target_group)
            .health_check_port(health.port.to_string())
            .set_health_check_path(health.path.clone())
            .healthy_threshold_count(health.healthy)
            .unhealthy_threshold_count(health.unhealthy);
        self.calls.run(Elbv2Op::ModifyTargetGroup, r.send()).await.map(drop)
    }

    pub async fn register_targets(&self, target_group: &str, pairs: &[(String, i32)]) -> Result<(), AwsError> {
        let r = self.client.register_targets().target_group_arn(target_group).set_targets(Some(targets(pairs)));
        self.calls.run(Elbv2Op::RegisterTargets, r.send()).await.map(drop)
    }

    pub async fn deregister_targets(&self, target_group: &str, pairs: &[(String, i32)]) -> Result<(), AwsError> {
        let r = self.client.deregister_targets().target_group_arn(target_group).set_targets(Some(targets(pairs)));
        self.calls.run(Elbv2Op::DeregisterTargets, r.send()).await.map(drop)
    }

    pub async fn modify_target_group_attributes(
        &self,
        target_group: &str,
        attributes: &[(String, String)],
    ) -> Result<(), AwsError> {
        let attributes =
            attributes.iter().map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v).build()).collect();
        let r = self
            .client
            .modify_target_group_attributes()
            .target_group_arn(target_group)
            .set_attributes(Some(attributes));
        self.calls.run(Elbv2Op::ModifyTargetGroupAttributes, r.send()).await.map(drop)
    }

    pub async fn delete_target_group(&self, target_group: &str) -> Result<(), AwsError> {
        let r = self.client.delete_target_group().target_group_arn(target_group);
        self.calls.run(Elbv2Op::DeleteTargetGroup, r.send()).await.map(drop)
    }

    pub async fn create_listener(
        &self,
        load_balancer: &str,
        port: i32,
        protocol: ProtocolEnum,
        spec: ListenerSpec<'_>,
        tag_pairs: &[(String, String)],
    ) -> Result<(), AwsError> {
        let r = self
            .client
            .create_listener()
            .load_balancer_arn(load_balancer)
            .port(port)
            .protocol(protocol)
            .default_actions(forward(spec.target_group))
            .set_certificates(certificates(spec.certificate))
            .set_ssl_policy(spec.ssl_policy.clone())
            .set_tags(Some(tags(tag_pairs)));
        self.calls.run(Elbv2Op::CreateListener, r.send()).await.map(drop)
    }

    pub async fn modify_listener(&self, listener: &str, spec: ListenerSpec<'_>) -> Result<(), AwsError> {
        let r = self
            .client
            .modify_listener()
            .listener_arn(listener)
            .default_actions(forward(spec.target_group))
            .set_certificates(certificates(spec.certificate))
            .set_ssl_policy(spec.ssl_policy.clone());
        self.calls.run(Elbv2Op::ModifyListener, r.send()).await.map(drop)
    }

    pub async fn delete_listener(&self, listener: &str) -> Result<(), AwsError> {
        let r = self.client.delete_listener().listener_arn(listener);
        self.calls.run(Elbv2Op::DeleteListener, r.send()).await.map(drop)
    }
}
