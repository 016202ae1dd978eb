//! One test's slice of the test ground.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

use anyhow::{Context, Result, bail, ensure};

use crate::aws_emulator::AwsEmulator;
use crate::brownfield::{self, Brownfield};
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
    /// Security groups the seed made, with their ingress rules then ([`brownfield::rule_lines`]);
    /// every other cluster-tagged group, and every other rule on these, is the code under test's.
    seeded_groups: Mutex<BTreeMap<String, Vec<String>>>,
    /// Route tables the seed made with the cluster tag, with the destinations routed then.
    seeded_route_tables: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// What the brownfield fixture looked like right after the seed.
    brownfield: Mutex<Option<BrownfieldRecord>>,
    /// Foreign Nodes registered by [`TestCluster::register_foreign_nodes`]: name → providerID.
    foreign_nodes: Mutex<BTreeMap<String, String>>,
    /// The kubeconfig of a control plane of the test's own ([`Self::use_control_plane`]);
    /// otherwise the shared one.
    kubeconfig: std::sync::OnceLock<std::path::PathBuf>,
}

struct BrownfieldRecord {
    fixture: Brownfield,
    node_group: String,
    route_table: String,
    snapshot: String,
}

/// The label on the foreign Nodes a test registers (see [`TestCluster::register_foreign_nodes`]).
pub const FOREIGN_NODE_LABEL: &str = "e2e.ccm/foreign";

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
            brownfield: Mutex::default(),
            foreign_nodes: Mutex::default(),
            kubeconfig: std::sync::OnceLock::new(),
        })
    }

    /// `kubernetes.io/cluster/<id>`.
    pub fn cluster_tag_key(&self) -> String {
        cluster_tag_key(&self.id)
    }

    /// A client for the cluster's control plane: the shared one, or the test's own.
    pub async fn kube(&self) -> Result<kube::Client> {
        match self.kubeconfig.get() {
            Some(path) => crate::control_plane::client_for(path).await,
            None => ControlPlane::shared().client().await,
        }
    }

    /// Makes `plane` (a control plane of the test's own, see
    /// [`ControlPlane::start_restartable`]) this cluster's, for [`Self::kube`] and the checks.
    pub fn use_control_plane(&self, plane: &ControlPlane) {
        let _ = self.kubeconfig.set(plane.kubeconfig_path().to_path_buf());
    }

    /// Seeds this cluster's VPC (not counted by the proxy), with the brownfield fixture unless
    /// `options` say otherwise, and records what is there, so that [`Self::leftovers`] sees
    /// only what came after and [`Self::assert_brownfield_untouched`] can compare.
    pub async fn seed(&self, options: SeedOptions) -> Result<SeededVpc> {
        let ec2 = &self.direct.ec2;
        let vpc = SeededVpc::create(ec2, &self.id, &self.region, &options).await?;
        let mut groups = vec![vpc.node_security_group_id.clone()];
        if let Some(b) = &vpc.brownfield {
            groups.extend(b.groups());
        }
        let described = ec2.describe_security_groups().set_group_ids(Some(groups)).send().await?;
        *self.seeded_groups.lock().expect("lock") = described
            .security_groups()
            .iter()
            .map(|g| (g.group_id().unwrap_or_default().to_string(), brownfield::rule_lines(g.ip_permissions())))
            .collect();
        let table = vpc.cluster_route_table_id.clone();
        let routes = route_destinations(ec2, &table).await?;
        self.seeded_route_tables.lock().expect("lock").insert(table.clone(), routes);
        if let Some(fixture) = vpc.brownfield.clone() {
            let snapshot = brownfield::snapshot(ec2, &fixture, &vpc.node_security_group_id, &table).await?;
            *self.brownfield.lock().expect("lock") = Some(BrownfieldRecord {
                fixture,
                node_group: vpc.node_security_group_id.clone(),
                route_table: table,
                snapshot,
            });
        }
        Ok(vpc)
    }

    /// Registers Nodes of other providers, NotReady (a hybrid node, a kind node): the
    /// cloud-node-lifecycle controller must leave them alone, and
    /// [`Self::assert_brownfield_untouched`] checks that they are still there, unchanged.
    pub async fn register_foreign_nodes(&self, client: &kube::Client) -> Result<()> {
        let foreign = [
            (format!("{}-hybrid", self.id), format!("eks-hybrid:///{}/{}/{}-hybrid", self.region, self.id, self.id)),
            (format!("{}-kind", self.id), format!("kind://docker/{}/{}-kind", self.id, self.id)),
        ];
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
        for (name, provider_id) in foreign {
            let mut node = NodeRegistration::named(&name).with_provider_id(&provider_id).not_ready().initialized();
            node.internal_ip = Some("192.0.2.10".into());
            node.register(client).await?;
            let label = serde_json::json!({"metadata": {"labels": {FOREIGN_NODE_LABEL: "true"}}});
            nodes.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&label)).await?;
            self.foreign_nodes.lock().expect("lock").insert(name, provider_id);
        }
        Ok(())
    }

    /// Fails, naming each difference, if anything the brownfield fixture made (or a foreign
    /// Node) is not exactly as it was after the seed.
    pub async fn assert_brownfield_untouched(&self) -> Result<()> {
        let record = self
            .brownfield
            .lock()
            .expect("lock")
            .as_ref()
            .map(|r| (r.fixture.clone(), r.node_group.clone(), r.route_table.clone(), r.snapshot.clone()));
        if let Some((fixture, node_group, table, before)) = record {
            let now = brownfield::snapshot(&self.direct.ec2, &fixture, &node_group, &table).await?;
            if now != before {
                let diff: Vec<String> = before
                    .lines()
                    .zip(now.lines())
                    .filter(|(a, b)| a != b)
                    .map(|(a, b)| format!("  was: {a}\n  now: {b}"))
                    .collect();
                if diff.is_empty() {
                    bail!("cluster {} changed the brownfield fixture:\nwas:\n{before}\nnow:\n{now}", self.id);
                }
                bail!("cluster {} changed the brownfield fixture:\n{}", self.id, diff.join("\n"));
            }
        }
        let foreign = self.foreign_nodes.lock().expect("lock").clone();
        if !foreign.is_empty() {
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.kube().await?);
            for (name, provider_id) in foreign {
                let node = nodes.get_opt(&name).await?;
                let now = node.as_ref().and_then(|n| n.spec.as_ref()?.provider_id.clone());
                ensure!(
                    now.as_deref() == Some(provider_id.as_str()),
                    "the foreign Node {name} is gone or changed: {now:?}"
                );
            }
        }
        Ok(())
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
            match seeded.get(id) {
                None => out.security_groups.push(format!("{id} ({})", group.group_name().unwrap_or_default())),
                Some(before) => {
                    for rule in brownfield::rule_lines(group.ip_permissions()) {
                        if !before.contains(&rule) {
                            out.security_group_rules.push(format!("{id}: {rule}"));
                        }
                    }
                }
            }
        }

        let tables = self.seeded_route_tables.lock().expect("lock").clone();
        if !tables.is_empty() {
            let described = ec2
                .describe_route_tables()
                .set_route_table_ids(Some(tables.keys().cloned().collect()))
                .send()
                .await
                .context("DescribeRouteTables")?;
            for table in described.route_tables() {
                let id = table.route_table_id().unwrap_or_default();
                let before = tables.get(id).cloned().unwrap_or_default();
                for route in table.routes() {
                    let destination = route.destination_cidr_block().unwrap_or_default();
                    if route.gateway_id() != Some("local") && !before.contains(destination) {
                        out.routes
                            .push(format!("{id}: {destination} → {:?}", route.instance_id().or(route.gateway_id())));
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

    /// Fails, listing them, if the cluster still owns anything in AWS the seed did not make,
    /// or if anything the seed made as brownfield changed ([`Self::assert_brownfield_untouched`]).
    pub async fn assert_nothing_left(&self) -> Result<()> {
        let leftovers = self.leftovers().await?;
        ensure!(leftovers.is_empty(), "cluster {} left AWS resources behind:\n{leftovers}", self.id);
        self.assert_brownfield_untouched().await
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

/// The destinations routed in `table` now.
async fn route_destinations(ec2: &aws_sdk_ec2::Client, table: &str) -> Result<BTreeSet<String>> {
    let described = ec2.describe_route_tables().route_table_ids(table).send().await.context("DescribeRouteTables")?;
    Ok(described
        .route_tables()
        .iter()
        .flat_map(|t| t.routes())
        .filter_map(|r| r.destination_cidr_block().map(str::to_string))
        .collect())
}
