//! One test's slice of the test ground.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;

use anyhow::{Context, Result, ensure};

use crate::aws_emulator::AwsEmulator;
use crate::control_plane::ControlPlane;
use crate::nodes::NodeRegistration;
use crate::proxy::AwsProxy;
use crate::sdk::AwsClients;
use crate::seed::{SeedOptions, SeededVpc, cluster_tag_key};

pub const REGION: &str = "us-east-1";

/// A test's own cluster: a unique cluster ID, a proxy in front of the shared emulator, and
/// clients both through the proxy (what the code under test sees) and straight to the
/// emulator (for seeding and inspection, which must not show up in the proxy's counts).
pub struct TestCluster {
    pub id: String,
    pub region: String,
    pub emulator: &'static AwsEmulator,
    pub proxy: AwsProxy,
    /// Through the proxy: counted, and subject to injected faults.
    pub aws: AwsClients,
    /// Straight to the emulator.
    pub direct: AwsClients,
    /// Security groups the seed made; everything else cluster-tagged is the code under test's.
    seeded_groups: Mutex<BTreeSet<String>>,
    /// Route tables the seed made with the cluster tag, and their seeded routes.
    seeded_route_tables: Mutex<BTreeSet<String>>,
}

impl TestCluster {
    /// `name` goes into the cluster ID, which tests and resource names use to stay apart.
    pub async fn new(name: &str) -> Result<Self> {
        crate::init_crypto();
        crate::init_tracing();
        let emulator = AwsEmulator::shared();
        let proxy = AwsProxy::start(emulator.endpoint()).await?;
        let id = format!("e2e-{name}-{:06x}", fastrand::u32(..0x100_0000));
        Ok(Self {
            aws: AwsClients::connect(proxy.endpoint(), REGION).await,
            direct: AwsClients::connect(emulator.endpoint(), REGION).await,
            id,
            region: REGION.to_string(),
            emulator,
            proxy,
            seeded_groups: Mutex::default(),
            seeded_route_tables: Mutex::default(),
        })
    }

    /// `kubernetes.io/cluster/<id>`.
    pub fn cluster_tag_key(&self) -> String {
        cluster_tag_key(&self.id)
    }

    /// A client for the shared control plane.
    pub async fn kube(&self) -> Result<kube::Client> {
        ControlPlane::shared().client().await
    }

    /// Seeds this cluster's VPC (not counted by the proxy).
    pub async fn seed(&self, options: SeedOptions) -> Result<SeededVpc> {
        let vpc = SeededVpc::create(&self.direct.ec2, &self.id, &self.region, &options).await?;
        self.seeded_groups.lock().expect("lock").insert(vpc.node_security_group_id.clone());
        self.seeded_route_tables.lock().expect("lock").insert(vpc.cluster_route_table_id.clone());
        Ok(vpc)
    }

    /// Seeds the VPC and registers a Node for each instance, as kubelets would.
    pub async fn seed_with_nodes(&self, options: SeedOptions) -> Result<SeededVpc> {
        let vpc = self.seed(options).await?;
        let client = self.kube().await?;
        for instance in &vpc.instances {
            NodeRegistration::for_instance(instance).register(&client).await?;
        }
        Ok(vpc)
    }

    /// Everything the cluster owns in AWS that the seed did not make.
    pub async fn leftovers(&self) -> Result<Leftovers> {
        let key = self.cluster_tag_key();
        let mut out = Leftovers::default();
        let ec2 = &self.direct.ec2;

        let groups = ec2
            .describe_security_groups()
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag-key").values(&key).build())
            .send()
            .await
            .context("DescribeSecurityGroups")?;
        let seeded = self.seeded_groups.lock().expect("lock").clone();
        for group in groups.security_groups() {
            let id = group.group_id().unwrap_or_default();
            if !seeded.contains(id) {
                out.security_groups.push(format!("{id} ({})", group.group_name().unwrap_or_default()));
            } else if !group.ip_permissions().is_empty() {
                // The seed creates node groups without ingress rules: any rule is the CCM's.
                for rule in group.ip_permissions() {
                    out.security_group_rules.push(format!("{id}: {rule:?}"));
                }
            }
        }

        let tables = self.seeded_route_tables.lock().expect("lock").clone();
        if !tables.is_empty() {
            let described = ec2
                .describe_route_tables()
                .set_route_table_ids(Some(tables.into_iter().collect()))
                .send()
                .await
                .context("DescribeRouteTables")?;
            for table in described.route_tables() {
                for route in table.routes() {
                    if route.gateway_id() != Some("local") {
                        out.routes.push(format!(
                            "{}: {} → {:?}",
                            table.route_table_id().unwrap_or_default(),
                            route.destination_cidr_block().unwrap_or_default(),
                            route.instance_id().or(route.gateway_id())
                        ));
                    }
                }
            }
        }

        if self.emulator.supports_elb() {
            self.elb_leftovers(&key, &mut out).await?;
        }
        Ok(out)
    }

    async fn elb_leftovers(&self, key: &str, out: &mut Leftovers) -> Result<()> {
        let elb = &self.direct.elb;
        let names: Vec<String> = elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .context("elb DescribeLoadBalancers")?
            .into_iter()
            .filter_map(|lb| lb.load_balancer_name().map(str::to_string))
            .collect();
        for chunk in names.chunks(20) {
            let tags = elb.describe_tags().set_load_balancer_names(Some(chunk.to_vec())).send().await?;
            for description in tags.tag_descriptions() {
                if description.tags().iter().any(|t| t.key() == key) {
                    out.classic_load_balancers.push(description.load_balancer_name().unwrap_or_default().to_string());
                }
            }
        }

        let elbv2 = &self.direct.elbv2;
        let lbs: Vec<String> = elbv2
            .describe_load_balancers()
            .send()
            .await
            .context("elbv2 DescribeLoadBalancers")?
            .load_balancers()
            .iter()
            .filter_map(|lb| lb.load_balancer_arn().map(str::to_string))
            .collect();
        let tgs: Vec<String> = elbv2
            .describe_target_groups()
            .send()
            .await
            .context("elbv2 DescribeTargetGroups")?
            .target_groups()
            .iter()
            .filter_map(|tg| tg.target_group_arn().map(str::to_string))
            .collect();
        for (arns, sink) in [(lbs, &mut out.network_load_balancers), (tgs, &mut out.target_groups)] {
            for chunk in arns.chunks(20) {
                let tags = elbv2.describe_tags().set_resource_arns(Some(chunk.to_vec())).send().await?;
                for description in tags.tag_descriptions() {
                    if description.tags().iter().any(|t| t.key() == Some(key)) {
                        sink.push(description.resource_arn().unwrap_or_default().to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// Fails, listing them, if the cluster still owns anything in AWS the seed did not make.
    pub async fn assert_nothing_left(&self) -> Result<()> {
        let leftovers = self.leftovers().await?;
        ensure!(leftovers.is_empty(), "cluster {} left AWS resources behind:\n{leftovers}", self.id);
        Ok(())
    }
}

/// Cluster-owned AWS resources found after a test.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub classic_load_balancers: Vec<String>,
    pub network_load_balancers: Vec<String>,
    pub target_groups: Vec<String>,
    pub security_groups: Vec<String>,
    pub security_group_rules: Vec<String>,
    pub routes: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.kinds().iter().all(|(_, items)| items.is_empty())
    }

    fn kinds(&self) -> [(&'static str, &Vec<String>); 6] {
        [
            ("classic load balancers", &self.classic_load_balancers),
            ("network load balancers", &self.network_load_balancers),
            ("target groups", &self.target_groups),
            ("security groups", &self.security_groups),
            ("security group rules", &self.security_group_rules),
            ("routes", &self.routes),
        ]
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, items) in self.kinds() {
            if !items.is_empty() {
                writeln!(f, "  {kind}: {}", items.join(", "))?;
            }
        }
        Ok(())
    }
}
