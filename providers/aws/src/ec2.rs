//! The EC2 calls this provider makes, and no others (the IAM policy is checked against
//! [`OPERATIONS`]).

use std::sync::Arc;

use aws_sdk_ec2::types::{AttributeBooleanValue, AvailabilityZone, Filter, Instance, RouteTable};

use crate::calls::Calls;
use crate::errors::AwsError;

/// Every EC2 operation [`Ec2`] calls.
pub const OPERATIONS: [&str; 6] = [
    "DescribeInstances",
    "DescribeAvailabilityZones",
    "DescribeRouteTables",
    "CreateRoute",
    "DeleteRoute",
    "ModifyInstanceAttribute",
];

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
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let mut request = self.client.describe_instances().set_filters(Some(filters.clone())).set_next_token(token);
            if ids.is_empty() {
                request = request.max_results(1000);
            } else {
                request = request.set_instance_ids(Some(ids.clone()));
            }
            let page = self.calls.run("aws/ec2.DescribeInstances", request.send()).await?;
            out.extend(page.reservations().iter().flat_map(|r| r.instances().iter().cloned()));
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    pub async fn availability_zones(&self) -> Result<Vec<AvailabilityZone>, AwsError> {
        let out = self
            .calls
            .run("aws/ec2.DescribeAvailabilityZones", self.client.describe_availability_zones().send())
            .await?;
        Ok(out.availability_zones().to_vec())
    }

    pub async fn route_tables(&self, ids: Vec<String>, filters: Vec<Filter>) -> Result<Vec<RouteTable>, AwsError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let request = self
                .client
                .describe_route_tables()
                .set_route_table_ids((!ids.is_empty()).then(|| ids.clone()))
                .set_filters(Some(filters.clone()))
                .set_next_token(token);
            let page = self.calls.run("aws/ec2.DescribeRouteTables", request.send()).await?;
            out.extend(page.route_tables().iter().cloned());
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    pub async fn create_route(&self, table: &str, cidr: &str, instance_id: &str) -> Result<(), AwsError> {
        let request =
            self.client.create_route().route_table_id(table).destination_cidr_block(cidr).instance_id(instance_id);
        self.calls.run("aws/ec2.CreateRoute", request.send()).await.map(|_| ())
    }

    pub async fn delete_route(&self, table: &str, cidr: &str) -> Result<(), AwsError> {
        let request = self.client.delete_route().route_table_id(table).destination_cidr_block(cidr);
        self.calls.run("aws/ec2.DeleteRoute", request.send()).await.map(|_| ())
    }

    /// Turns the source/destination check off, so the instance may receive pod traffic.
    pub async fn disable_source_dest_check(&self, instance_id: &str) -> Result<(), AwsError> {
        let request = self
            .client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .source_dest_check(AttributeBooleanValue::builder().value(false).build());
        self.calls.run("aws/ec2.ModifyInstanceAttribute", request.send()).await.map(|_| ())
    }
}
