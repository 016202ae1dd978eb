//! The Classic ELB calls this provider makes (each one of [`crate::operations::ElbOp`]); nothing
//! else holds the Elastic Load Balancing client.

use std::sync::Arc;

use aws_sdk_elasticloadbalancing::types::{
    HealthCheck, Instance, Listener, LoadBalancerAttributes, LoadBalancerDescription, PolicyAttribute, Tag,
    TagDescription,
};

use crate::calls::Calls;
use crate::errors::AwsError;
use crate::operations::ElbOp;

#[derive(Clone)]
pub struct Elb {
    client: aws_sdk_elasticloadbalancing::Client,
    calls: Arc<Calls>,
}

fn tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key")).collect()
}

fn instances(ids: &[String]) -> Vec<Instance> {
    ids.iter().map(|id| Instance::builder().instance_id(id).build()).collect()
}

impl Elb {
    pub fn new(client: aws_sdk_elasticloadbalancing::Client, calls: Arc<Calls>) -> Self {
        Self { client, calls }
    }

    /// DescribeLoadBalancers of these names (at most 20; unknown names fail the call).
    pub async fn load_balancers(&self, names: Vec<String>) -> Result<Vec<LoadBalancerDescription>, AwsError> {
        let r = self.client.describe_load_balancers().set_load_balancer_names(Some(names));
        Ok(self.calls.run(ElbOp::DescribeLoadBalancers, r.send()).await?.load_balancer_descriptions().to_vec())
    }

    /// DescribeLoadBalancers, every page: all Classic ELBs of the region.
    pub async fn all_load_balancers(&self) -> Result<Vec<LoadBalancerDescription>, AwsError> {
        let mut pages = self.client.describe_load_balancers().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = self.calls.page(ElbOp::DescribeLoadBalancers, pages.next()).await? {
            out.extend(page.load_balancer_descriptions().iter().cloned());
        }
        Ok(out)
    }

    /// DescribeTags of up to 20 load balancers.
    pub async fn tags(&self, names: Vec<String>) -> Result<Vec<TagDescription>, AwsError> {
        let r = self.client.describe_tags().set_load_balancer_names(Some(names));
        Ok(self.calls.run(ElbOp::DescribeTags, r.send()).await?.tag_descriptions().to_vec())
    }

    pub async fn attributes(&self, name: &str) -> Result<Option<LoadBalancerAttributes>, AwsError> {
        let r = self.client.describe_load_balancer_attributes().load_balancer_name(name);
        Ok(self.calls.run(ElbOp::DescribeLoadBalancerAttributes, r.send()).await?.load_balancer_attributes().cloned())
    }

    /// CreateLoadBalancer; its DNS name.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        name: &str,
        internal: bool,
        listeners: Vec<Listener>,
        subnets: Vec<String>,
        groups: Vec<String>,
        tag_pairs: &[(String, String)],
    ) -> Result<Option<String>, AwsError> {
        let r = self
            .client
            .create_load_balancer()
            .load_balancer_name(name)
            .set_listeners(Some(listeners))
            .set_subnets(Some(subnets))
            .set_security_groups(Some(groups))
            .set_tags(Some(tags(tag_pairs)))
            .set_scheme(internal.then(|| "internal".to_string()));
        Ok(self.calls.run(ElbOp::CreateLoadBalancer, r.send()).await?.dns_name().map(String::from))
    }

    pub async fn attach_subnets(&self, name: &str, subnets: Vec<String>) -> Result<(), AwsError> {
        let r = self.client.attach_load_balancer_to_subnets().load_balancer_name(name).set_subnets(Some(subnets));
        self.calls.run(ElbOp::AttachLoadBalancerToSubnets, r.send()).await.map(drop)
    }

    pub async fn detach_subnets(&self, name: &str, subnets: Vec<String>) -> Result<(), AwsError> {
        let r = self.client.detach_load_balancer_from_subnets().load_balancer_name(name).set_subnets(Some(subnets));
        self.calls.run(ElbOp::DetachLoadBalancerFromSubnets, r.send()).await.map(drop)
    }

    pub async fn apply_security_groups(&self, name: &str, groups: Vec<String>) -> Result<(), AwsError> {
        let r = self
            .client
            .apply_security_groups_to_load_balancer()
            .load_balancer_name(name)
            .set_security_groups(Some(groups));
        self.calls.run(ElbOp::ApplySecurityGroupsToLoadBalancer, r.send()).await.map(drop)
    }

    pub async fn delete_listeners(&self, name: &str, ports: Vec<i32>) -> Result<(), AwsError> {
        let r =
            self.client.delete_load_balancer_listeners().load_balancer_name(name).set_load_balancer_ports(Some(ports));
        self.calls.run(ElbOp::DeleteLoadBalancerListeners, r.send()).await.map(drop)
    }

    pub async fn create_listeners(&self, name: &str, listeners: Vec<Listener>) -> Result<(), AwsError> {
        let r = self.client.create_load_balancer_listeners().load_balancer_name(name).set_listeners(Some(listeners));
        self.calls.run(ElbOp::CreateLoadBalancerListeners, r.send()).await.map(drop)
    }

    pub async fn add_tags(&self, name: &str, tag_pairs: &[(String, String)]) -> Result<(), AwsError> {
        let r = self.client.add_tags().load_balancer_names(name).set_tags(Some(tags(tag_pairs)));
        self.calls.run(ElbOp::AddTags, r.send()).await.map(drop)
    }

    /// CreateLoadBalancerPolicy with one attribute.
    pub async fn create_policy(
        &self,
        name: &str,
        policy: &str,
        policy_type: &str,
        attribute: (&str, &str),
    ) -> Result<(), AwsError> {
        let r = self
            .client
            .create_load_balancer_policy()
            .load_balancer_name(name)
            .policy_name(policy)
            .policy_type_name(policy_type)
            .policy_attributes(
                PolicyAttribute::builder().attribute_name(attribute.0).attribute_value(attribute.1).build(),
            );
        self.calls.run(ElbOp::CreateLoadBalancerPolicy, r.send()).await.map(drop)
    }

    pub async fn set_backend_policies(&self, name: &str, port: i32, policies: Vec<String>) -> Result<(), AwsError> {
        let r = self
            .client
            .set_load_balancer_policies_for_backend_server()
            .load_balancer_name(name)
            .instance_port(port)
            .set_policy_names(Some(policies));
        self.calls.run(ElbOp::SetLoadBalancerPoliciesForBackendServer, r.send()).await.map(drop)
    }

    pub async fn set_listener_policies(&self, name: &str, port: i32, policies: Vec<String>) -> Result<(), AwsError> {
        let r = self
            .client
            .set_load_balancer_policies_of_listener()
            .load_balancer_name(name)
            .load_balancer_port(port)
            .set_policy_names(Some(policies));
        self.calls.run(ElbOp::SetLoadBalancerPoliciesOfListener, r.send()).await.map(drop)
    }

    pub async fn modify_attributes(&self, name: &str, attributes: LoadBalancerAttributes) -> Result<(), AwsError> {
        let r =
            self.client.modify_load_balancer_attributes().load_balancer_name(name).load_balancer_attributes(attributes);
        self.calls.run(ElbOp::ModifyLoadBalancerAttributes, r.send()).await.map(drop)
    }

    pub async fn configure_health_check(&self, name: &str, check: HealthCheck) -> Result<(), AwsError> {
        let r = self.client.configure_health_check().load_balancer_name(name).health_check(check);
        self.calls.run(ElbOp::ConfigureHealthCheck, r.send()).await.map(drop)
    }

    pub async fn register(&self, name: &str, ids: &[String]) -> Result<(), AwsError> {
        let r = self
            .client
            .register_instances_with_load_balancer()
            .load_balancer_name(name)
            .set_instances(Some(instances(ids)));
        self.calls.run(ElbOp::RegisterInstancesWithLoadBalancer, r.send()).await.map(drop)
    }

    pub async fn deregister(&self, name: &str, ids: &[String]) -> Result<(), AwsError> {
        let r = self
            .client
            .deregister_instances_from_load_balancer()
            .load_balancer_name(name)
            .set_instances(Some(instances(ids)));
        self.calls.run(ElbOp::DeregisterInstancesFromLoadBalancer, r.send()).await.map(drop)
    }

    pub async fn delete(&self, name: &str) -> Result<(), AwsError> {
        let r = self.client.delete_load_balancer().load_balancer_name(name);
        self.calls.run(ElbOp::DeleteLoadBalancer, r.send()).await.map(drop)
    }
}
