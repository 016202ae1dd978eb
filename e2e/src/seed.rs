//! A realistic cluster VPC in the emulator.
//!
//! Per availability zone (two by default): a public subnet (10.N.<16·i>.0/20) whose route
//! table sends 0.0.0.0/0 to an internet gateway, and a private subnet (10.N.<128+16·i>.0/20).
//! All subnets carry the cluster tag; only the first AZ's carry role tags
//! (`kubernetes.io/role/elb`, `kubernetes.io/role/internal-elb`), so discovery is exercised
//! both with and without them. The private route table carries the cluster tag (it is the one
//! the route controller programs); the public one does not. A cluster-tagged node security
//! group, and cluster-tagged instances spread over the private subnets.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Instance, InstanceType, ResourceType, Tag, TagSpecification};

use crate::brownfield::Brownfield;
use crate::imds::InstanceIdentity;

/// moto accepts any image ID; real AWS would need a real AMI.
pub(crate) const IMAGE_ID: &str = "ami-0e2e0000000000001";
/// moto's fixed account.
const ACCOUNT_ID: &str = "123456789012";

static NEXT_VPC: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub zones: usize,
    pub instances: usize,
    pub instance_type: String,
    /// Also make what a real account holds before any CCM runs ([`Brownfield`]). On by
    /// default: every test runs among objects it must not touch.
    pub brownfield: bool,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self { zones: 2, instances: 2, instance_type: "m5.large".into(), brownfield: true }
    }
}

impl SeedOptions {
    /// An empty VPC but for the cluster's own objects (the sandbox; side-by-side comparisons
    /// that bring their own pre-existing objects).
    pub fn without_brownfield(mut self) -> Self {
        self.brownfield = false;
        self
    }

    pub fn with_instances(mut self, n: usize) -> Self {
        self.instances = n;
        self
    }
}

#[derive(Debug, Clone)]
pub struct SeededSubnet {
    pub id: String,
    pub cidr: String,
    pub zone: String,
    pub public: bool,
    /// The role tag it carries, if any.
    pub role_tag: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct SeededInstance {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    pub subnet_id: String,
    pub private_ip: String,
    pub private_dns: String,
    pub public_ip: Option<String>,
    pub public_dns: Option<String>,
    pub mac: String,
}

#[derive(Debug, Clone)]
pub struct SeededVpc {
    pub cluster_id: String,
    pub region: String,
    pub vpc_id: String,
    pub vpc_cidr: String,
    pub subnets: Vec<SeededSubnet>,
    pub internet_gateway_id: String,
    pub public_route_table_id: String,
    /// Carries the cluster tag: the table the route controller programs.
    pub cluster_route_table_id: String,
    pub node_security_group_id: String,
    pub instances: Vec<SeededInstance>,
    /// Zone name → zone ID (e.g. us-east-1a → use1-az6).
    pub zone_ids: Vec<(String, String)>,
    /// The pre-existing objects, when asked for.
    pub brownfield: Option<Brownfield>,
}

pub fn cluster_tag_key(cluster_id: &str) -> String {
    format!("kubernetes.io/cluster/{cluster_id}")
}

fn tag(key: impl Into<String>, value: impl Into<String>) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tags_for(resource: ResourceType, tags: Vec<Tag>) -> TagSpecification {
    TagSpecification::builder().resource_type(resource).set_tags(Some(tags)).build()
}

impl SeededVpc {
    pub async fn create(ec2: &Client, cluster_id: &str, region: &str, options: &SeedOptions) -> Result<Self> {
        let owned = || tag(cluster_tag_key(cluster_id), "owned");
        let named = |name: &str| tag("Name", format!("{cluster_id}-{name}"));
        let n = NEXT_VPC.fetch_add(1, Ordering::Relaxed) % 250 + 1;
        let vpc_cidr = format!("10.{n}.0.0/16");

        let zones = ec2.describe_availability_zones().send().await.context("DescribeAvailabilityZones")?;
        let mut zone_ids: Vec<(String, String)> = zones
            .availability_zones()
            .iter()
            .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
            .filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string())))
            .collect();
        zone_ids.sort();
        zone_ids.truncate(options.zones);
        anyhow::ensure!(zone_ids.len() == options.zones, "the emulator offers only {} zones", zone_ids.len());

        let vpc_id = ec2
            .create_vpc()
            .cidr_block(&vpc_cidr)
            .tag_specifications(tags_for(ResourceType::Vpc, vec![owned(), named("vpc")]))
            .send()
            .await
            .context("CreateVpc")?
            .vpc()
            .and_then(|v| v.vpc_id())
            .context("CreateVpc returned no ID")?
            .to_string();

        let internet_gateway_id = ec2
            .create_internet_gateway()
            .tag_specifications(tags_for(ResourceType::InternetGateway, vec![owned(), named("igw")]))
            .send()
            .await
            .context("CreateInternetGateway")?
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .context("CreateInternetGateway returned no ID")?
            .to_string();
        ec2.attach_internet_gateway()
            .internet_gateway_id(&internet_gateway_id)
            .vpc_id(&vpc_id)
            .send()
            .await
            .context("AttachInternetGateway")?;

        let public_route_table_id = create_route_table(ec2, &vpc_id, vec![named("public")]).await?;
        ec2.create_route()
            .route_table_id(&public_route_table_id)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&internet_gateway_id)
            .send()
            .await
            .context("CreateRoute to the internet gateway")?;
        let cluster_route_table_id = create_route_table(ec2, &vpc_id, vec![owned(), named("private")]).await?;

        let mut subnets = Vec::new();
        for (i, (zone, _)) in zone_ids.iter().enumerate() {
            for public in [true, false] {
                let third = if public { 16 * i } else { 128 + 16 * i };
                let cidr = format!("10.{n}.{third}.0/20");
                let role_tag = match (i, public) {
                    (0, true) => Some("kubernetes.io/role/elb"),
                    (0, false) => Some("kubernetes.io/role/internal-elb"),
                    _ => None,
                };
                let kind = if public { "public" } else { "private" };
                let mut tags = vec![owned(), named(&format!("{kind}-{zone}"))];
                tags.extend(role_tag.map(|key| tag(key, "1")));
                let id = ec2
                    .create_subnet()
                    .vpc_id(&vpc_id)
                    .cidr_block(&cidr)
                    .availability_zone(zone)
                    .tag_specifications(tags_for(ResourceType::Subnet, tags))
                    .send()
                    .await
                    .context("CreateSubnet")?
                    .subnet()
                    .and_then(|s| s.subnet_id())
                    .context("CreateSubnet returned no ID")?
                    .to_string();
                let table = if public { &public_route_table_id } else { &cluster_route_table_id };
                ec2.associate_route_table()
                    .route_table_id(table)
                    .subnet_id(&id)
                    .send()
                    .await
                    .context("AssociateRouteTable")?;
                subnets.push(SeededSubnet { id, cidr, zone: zone.clone(), public, role_tag });
            }
        }

        let node_security_group_id = ec2
            .create_security_group()
            .group_name(format!("nodes.{cluster_id}"))
            .description(format!("Security group for nodes of {cluster_id}"))
            .vpc_id(&vpc_id)
            .tag_specifications(tags_for(ResourceType::SecurityGroup, vec![owned(), named("nodes")]))
            .send()
            .await
            .context("CreateSecurityGroup")?
            .group_id()
            .context("CreateSecurityGroup returned no ID")?
            .to_string();

        let mut vpc = Self {
            cluster_id: cluster_id.to_string(),
            region: region.to_string(),
            vpc_id,
            vpc_cidr,
            subnets,
            internet_gateway_id,
            public_route_table_id,
            cluster_route_table_id,
            node_security_group_id,
            instances: Vec::new(),
            zone_ids,
            brownfield: None,
        };
        if options.brownfield {
            let public = vpc.subnets.iter().find(|s| s.public).context("no public subnet")?.id.clone();
            let private = vpc.subnets.iter().find(|s| !s.public).context("no private subnet")?.id.clone();
            vpc.brownfield = Some(
                Brownfield::create(
                    ec2,
                    cluster_id,
                    &vpc.vpc_id,
                    &vpc.node_security_group_id,
                    &public,
                    &private,
                    &vpc.cluster_route_table_id,
                )
                .await
                .context("the brownfield fixture")?,
            );
        }
        vpc.add_instances(ec2, options.instances, &options.instance_type).await?;
        Ok(vpc)
    }

    /// Launches `count` more cluster-tagged instances, spread round-robin over the private
    /// subnets, one RunInstances per subnet; in the node group, and with the brownfield, in
    /// its extra group too.
    pub async fn add_instances(
        &mut self,
        ec2: &Client,
        count: usize,
        instance_type: &str,
    ) -> Result<Vec<SeededInstance>> {
        let private: Vec<SeededSubnet> = self.subnets.iter().filter(|s| !s.public).cloned().collect();
        let mut groups = vec![self.node_security_group_id.clone()];
        groups.extend(self.brownfield.as_ref().map(|b| b.extra_node_group.clone()));
        let mut added = Vec::new();
        for (i, subnet) in private.iter().enumerate() {
            let here = count / private.len() + usize::from(i < count % private.len());
            if here == 0 {
                continue;
            }
            let here = i32::try_from(here).context("instance count")?;
            let out = ec2
                .run_instances()
                .image_id(IMAGE_ID)
                .instance_type(InstanceType::from(instance_type))
                .min_count(here)
                .max_count(here)
                .subnet_id(&subnet.id)
                .set_security_group_ids(Some(groups.clone()))
                .tag_specifications(tags_for(
                    ResourceType::Instance,
                    vec![
                        tag(cluster_tag_key(&self.cluster_id), "owned"),
                        tag("Name", format!("{}-node", self.cluster_id)),
                    ],
                ))
                .send()
                .await
                .context("RunInstances")?;
            for instance in out.instances() {
                added.push(seeded_instance(instance, subnet)?);
            }
        }
        self.instances.extend(added.iter().cloned());
        Ok(added)
    }

    /// Deletes what [`SeededVpc::create`] made (for an emulator that outlives the caller),
    /// in dependency order; the first failure is returned after trying the rest.
    pub async fn delete(&self, ec2: &Client) -> Result<()> {
        let mut first: Option<anyhow::Error> = None;
        let mut keep = |result: Result<(), anyhow::Error>| {
            if let Err(err) = result {
                first.get_or_insert(err);
            }
        };
        let ids: Vec<String> = self.instances.iter().map(|i| i.id.clone()).collect();
        if !ids.is_empty() {
            keep(
                ec2.terminate_instances()
                    .set_instance_ids(Some(ids))
                    .send()
                    .await
                    .map(|_| ())
                    .context("TerminateInstances"),
            );
        }
        let tables = ec2
            .describe_route_tables()
            .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&self.vpc_id).build())
            .send()
            .await
            .context("DescribeRouteTables");
        let tables = match tables {
            Ok(found) => found.route_tables().to_vec(),
            Err(err) => {
                keep(Err(err));
                Vec::new()
            }
        };
        for table in &tables {
            let main = table.associations().iter().any(|a| a.main() == Some(true));
            for association in table.associations().iter().filter(|a| a.main() != Some(true)) {
                if let Some(id) = association.route_table_association_id() {
                    keep(
                        ec2.disassociate_route_table()
                            .association_id(id)
                            .send()
                            .await
                            .map(|_| ())
                            .context("DisassociateRouteTable"),
                    );
                }
            }
            if !main && let Some(id) = table.route_table_id() {
                keep(ec2.delete_route_table().route_table_id(id).send().await.map(|_| ()).context("DeleteRouteTable"));
            }
        }
        keep(
            ec2.delete_security_group()
                .group_id(&self.node_security_group_id)
                .send()
                .await
                .map(|_| ())
                .context("DeleteSecurityGroup"),
        );
        keep(
            ec2.detach_internet_gateway()
                .internet_gateway_id(&self.internet_gateway_id)
                .vpc_id(&self.vpc_id)
                .send()
                .await
                .map(|_| ())
                .context("DetachInternetGateway"),
        );
        keep(
            ec2.delete_internet_gateway()
                .internet_gateway_id(&self.internet_gateway_id)
                .send()
                .await
                .map(|_| ())
                .context("DeleteInternetGateway"),
        );
        for subnet in &self.subnets {
            keep(ec2.delete_subnet().subnet_id(&subnet.id).send().await.map(|_| ()).context("DeleteSubnet"));
        }
        keep(ec2.delete_vpc().vpc_id(&self.vpc_id).send().await.map(|_| ()).context("DeleteVpc"));
        first.map_or(Ok(()), Err)
    }

    pub fn zone_id(&self, zone: &str) -> Option<&str> {
        self.zone_ids.iter().find(|(name, _)| name == zone).map(|(_, id)| id.as_str())
    }

    pub fn subnet(&self, id: &str) -> Option<&SeededSubnet> {
        self.subnets.iter().find(|s| s.id == id)
    }

    /// What IMDS on `instance` would say.
    pub fn identity_of(&self, instance: &SeededInstance) -> InstanceIdentity {
        InstanceIdentity {
            account_id: ACCOUNT_ID.into(),
            instance_id: instance.id.clone(),
            instance_type: instance.instance_type.clone(),
            image_id: IMAGE_ID.into(),
            region: self.region.clone(),
            availability_zone: instance.zone.clone(),
            availability_zone_id: self.zone_id(&instance.zone).map(str::to_string),
            private_ip: instance.private_ip.clone(),
            private_dns: instance.private_dns.clone(),
            public_ip: instance.public_ip.clone(),
            public_dns: instance.public_dns.clone(),
            mac: instance.mac.clone(),
            vpc_id: self.vpc_id.clone(),
            vpc_cidr: self.vpc_cidr.clone(),
            subnet_id: instance.subnet_id.clone(),
            subnet_cidr: self.subnet(&instance.subnet_id).map(|s| s.cidr.clone()).unwrap_or_default(),
        }
    }
}

async fn create_route_table(ec2: &Client, vpc_id: &str, tags: Vec<Tag>) -> Result<String> {
    Ok(ec2
        .create_route_table()
        .vpc_id(vpc_id)
        .tag_specifications(tags_for(ResourceType::RouteTable, tags))
        .send()
        .await
        .context("CreateRouteTable")?
        .route_table()
        .and_then(|t| t.route_table_id())
        .context("CreateRouteTable returned no ID")?
        .to_string())
}

fn seeded_instance(instance: &Instance, subnet: &SeededSubnet) -> Result<SeededInstance> {
    let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    Ok(SeededInstance {
        id: instance.instance_id().context("instance without ID")?.to_string(),
        instance_type: instance.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        zone: subnet.zone.clone(),
        subnet_id: subnet.id.clone(),
        private_ip: instance.private_ip_address().context("instance without private IP")?.to_string(),
        private_dns: instance.private_dns_name().context("instance without private DNS name")?.to_string(),
        public_ip: non_empty(instance.public_ip_address()),
        public_dns: non_empty(instance.public_dns_name()),
        mac: instance
            .network_interfaces()
            .first()
            .and_then(|ni| ni.mac_address())
            .context("instance without a network interface")?
            .to_string(),
    })
}
