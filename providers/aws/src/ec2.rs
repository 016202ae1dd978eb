//! The EC2 calls this provider makes (each one of [`crate::operations::Ec2Op`]).

use std::sync::Arc;

use aws_sdk_ec2::types::{
    AttributeBooleanValue, AvailabilityZone, Filter, Instance, IpPermission, ResourceType, RouteTable, SecurityGroup,
    Subnet, Tag, TagSpecification,
};

use crate::calls::Calls;
use crate::errors::AwsError;
use crate::operations::Ec2Op;

pub fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder().name(name).set_values(Some(values.into_iter().map(Into::into).collect())).build()
}

#[derive(Clone)]
pub struct Ec2 {
    client: aws_sdk_ec2::Client,
    calls: Arc<Calls>,
}

impl Ec2 {
    pub fn new(client: aws_sdk_ec2::Client, calls: Arc<Calls>) -> Self {
        Self { client, calls }
    }

    /// DescribeInstances, every page.
    pub async fn instances(&self, ids: Vec<String>, filters: Vec<Filter>) -> Result<Vec<Instance>, AwsError> {
        let mut request = self.client.describe_instances().set_filters(Some(filters));
        request = if ids.is_empty() { request.max_results(1000) } else { request.set_instance_ids(Some(ids)) };
        let mut pages = request.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = self.calls.page(Ec2Op::DescribeInstances, pages.next()).await? {
            out.extend(page.reservations().iter().flat_map(|r| r.instances().iter().cloned()));
        }
        Ok(out)
    }

    /// DescribeInstanceTopology for one instance: its network nodes, or `None` when EC2 lists
    /// no topology for it.
    pub async fn instance_topology(&self, id: &str) -> Result<Option<Vec<String>>, AwsError> {
        let request = self.client.describe_instance_topology().instance_ids(id);
        let out = self.calls.run(Ec2Op::DescribeInstanceTopology, request.send()).await?;
        Ok(out.instances().first().map(|t| t.network_nodes().to_vec()))
    }

    pub async fn availability_zones(&self) -> Result<Vec<AvailabilityZone>, AwsError> {
        let out =
            self.calls.run(Ec2Op::DescribeAvailabilityZones, self.client.describe_availability_zones().send()).await?;
        Ok(out.availability_zones().to_vec())
    }

    pub async fn route_tables(&self, ids: Vec<String>, filters: Vec<Filter>) -> Result<Vec<RouteTable>, AwsError> {
        let request = self
            .client
            .describe_route_tables()
            .set_route_table_ids((!ids.is_empty()).then_some(ids))
            .set_filters(Some(filters));
        let mut pages = request.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = self.calls.page(Ec2Op::DescribeRouteTables, pages.next()).await? {
            out.extend(page.route_tables().iter().cloned());
        }
        Ok(out)
    }

    pub async fn create_route(&self, table: &str, cidr: &str, instance_id: &str) -> Result<(), AwsError> {
        let request =
            self.client.create_route().route_table_id(table).destination_cidr_block(cidr).instance_id(instance_id);
        self.calls.run(Ec2Op::CreateRoute, request.send()).await.map(|_| ())
    }

    pub async fn delete_route(&self, table: &str, cidr: &str) -> Result<(), AwsError> {
        let request = self.client.delete_route().route_table_id(table).destination_cidr_block(cidr);
        self.calls.run(Ec2Op::DeleteRoute, request.send()).await.map(|_| ())
    }

    /// Turns the source/destination check off, so the instance may receive pod traffic.
    pub async fn disable_source_dest_check(&self, instance_id: &str) -> Result<(), AwsError> {
        let request = self
            .client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .source_dest_check(AttributeBooleanValue::builder().value(false).build());
        self.calls.run(Ec2Op::ModifyInstanceAttribute, request.send()).await.map(|_| ())
    }

    pub async fn subnets(&self, ids: Vec<String>, filters: Vec<Filter>) -> Result<Vec<Subnet>, AwsError> {
        let request =
            self.client.describe_subnets().set_subnet_ids((!ids.is_empty()).then_some(ids)).set_filters(Some(filters));
        Ok(self.calls.run(Ec2Op::DescribeSubnets, request.send()).await?.subnets().to_vec())
    }

    pub async fn security_groups(
        &self,
        ids: Vec<String>,
        filters: Vec<Filter>,
    ) -> Result<Vec<SecurityGroup>, AwsError> {
        let request = self
            .client
            .describe_security_groups()
            .set_group_ids((!ids.is_empty()).then_some(ids))
            .set_filters(Some(filters));
        let mut pages = request.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = self.calls.page(Ec2Op::DescribeSecurityGroups, pages.next()).await? {
            out.extend(page.security_groups().iter().cloned());
        }
        Ok(out)
    }

    pub async fn create_security_group(
        &self,
        name: &str,
        description: &str,
        vpc_id: &str,
        tags: &[(String, String)],
    ) -> Result<String, AwsError> {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::SecurityGroup)
            .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
            .build();
        let request = self
            .client
            .create_security_group()
            .group_name(name)
            .description(description)
            .vpc_id(vpc_id)
            .tag_specifications(tags);
        let out = self.calls.run(Ec2Op::CreateSecurityGroup, request.send()).await?;
        Ok(out.group_id().unwrap_or_default().to_string())
    }

    pub async fn delete_security_group(&self, id: &str) -> Result<(), AwsError> {
        let request = self.client.delete_security_group().group_id(id);
        self.calls.run(Ec2Op::DeleteSecurityGroup, request.send()).await.map(|_| ())
    }

    /// Adds ingress rules. AWS refuses a whole batch when one rule in it already exists
    /// (`InvalidPermission.Duplicate`; another controller, or a concurrent sync, added it), so
    /// such a batch is retried rule by rule: the others are not silently dropped.
    pub async fn authorize_ingress(&self, group: &str, permissions: Vec<IpPermission>) -> Result<(), AwsError> {
        self.rules_one_batch_then_each(group, permissions, true).await
    }

    /// Removes ingress rules; like [`Ec2::authorize_ingress`], a batch refused because one rule
    /// is already gone (`InvalidPermission.NotFound`) is retried rule by rule.
    pub async fn revoke_ingress(&self, group: &str, permissions: Vec<IpPermission>) -> Result<(), AwsError> {
        self.rules_one_batch_then_each(group, permissions, false).await
    }

    async fn rules_one_batch_then_each(
        &self,
        group: &str,
        permissions: Vec<IpPermission>,
        authorize: bool,
    ) -> Result<(), AwsError> {
        let benign = if authorize { "InvalidPermission.Duplicate" } else { "InvalidPermission.NotFound" };
        match self.rules(group, permissions.clone(), authorize).await {
            Err(err) if err.has_code(benign) && permissions.len() > 1 => {
                for permission in permissions {
                    match self.rules(group, vec![permission], authorize).await {
                        Err(err) if err.has_code(benign) => {}
                        other => other?,
                    }
                }
                Ok(())
            }
            Err(err) if err.has_code(benign) => Ok(()),
            other => other,
        }
    }

    async fn rules(&self, group: &str, permissions: Vec<IpPermission>, authorize: bool) -> Result<(), AwsError> {
        if permissions.is_empty() {
            return Ok(());
        }
        if authorize {
            let request =
                self.client.authorize_security_group_ingress().group_id(group).set_ip_permissions(Some(permissions));
            self.calls.run(Ec2Op::AuthorizeSecurityGroupIngress, request.send()).await.map(|_| ())
        } else {
            let request =
                self.client.revoke_security_group_ingress().group_id(group).set_ip_permissions(Some(permissions));
            self.calls.run(Ec2Op::RevokeSecurityGroupIngress, request.send()).await.map(|_| ())
        }
    }

    pub async fn create_tags(&self, resource: &str, tags: &[(String, String)]) -> Result<(), AwsError> {
        let request = self
            .client
            .create_tags()
            .resources(resource)
            .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()));
        self.calls.run(Ec2Op::CreateTags, request.send()).await.map(|_| ())
    }
}
