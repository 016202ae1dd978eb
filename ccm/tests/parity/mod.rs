//! Running upstream's CCM and ours side by side: two clusters (each its own apiserver, VPC,
//! cluster ID and AWS proxy) on one moto, the same Services in both, then each CCM taking over
//! what the other made.

#![allow(dead_code)]

pub mod corpus;
pub mod declared;
pub mod nodes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_ec2::types::{DomainType, Filter, ResourceType, Tag, TagSpecification};
use ccm_e2e::lb_state::{self, ClusterState, Normalizer, ServiceRef};
use ccm_e2e::{CcmFlavor, CcmLaunch, CcmProcess, ControlPlane, NodeRegistration, SeedOptions, SeededVpc, TestCluster};
use k8s_openapi::api::core::v1::{Event, Node, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

use corpus::{Batch, Spec};

/// One side of the comparison.
/// Per Service (by name): the planned operations (`aws/elb.CreateLoadBalancer`, ...), or why it
/// could not be planned.
#[derive(Debug, Default)]
pub struct ServicePlans {
    pub services: std::collections::BTreeMap<String, std::result::Result<Vec<String>, String>>,
    /// Per Service, its planned ingress-rule changes: (group, the rules).
    pub ingress: BTreeMap<String, Vec<(String, Vec<String>)>>,
    pub exit_code: i32,
}

/// An operation that adds or removes security-group rules.
pub fn is_ingress(operation: &str) -> bool {
    operation.ends_with("SecurityGroupIngress")
}

impl ServicePlans {
    /// Every planned operation, sorted (the calls of several Services interleave).
    pub fn operations(&self) -> Vec<String> {
        let mut ops: Vec<String> = self.services.values().flat_map(|p| p.iter().flatten().cloned()).collect();
        ops.sort();
        ops
    }

    /// Planned rule changes whose every rule another Service plans too (the MTU rule all NLBs
    /// share, the node rule of a group several ELBs share): whichever Service's ensure comes
    /// second finds the rule there and rightly skips the call.
    pub fn skippable_ingress(&self) -> usize {
        let mut planners: BTreeMap<(String, String), std::collections::BTreeSet<&String>> = BTreeMap::new();
        for (service, changes) in &self.ingress {
            for (group, rules) in changes {
                for rule in rules {
                    planners.entry((group.clone(), rule.clone())).or_default().insert(service);
                }
            }
        }
        self.ingress
            .values()
            .flatten()
            .filter(|(group, rules)| rules.iter().all(|r| planners[&(group.clone(), r.clone())].len() > 1))
            .count()
    }

    /// Services with changes planned, with them.
    pub fn pending(&self) -> Vec<String> {
        self.services
            .iter()
            .filter_map(|(name, p)| match p {
                Ok(ops) if !ops.is_empty() => Some(format!("{name}: {}", ops.join(", "))),
                _ => None,
            })
            .collect()
    }

    /// Services that could not be planned, with why.
    pub fn errors(&self) -> std::collections::BTreeMap<String, String> {
        self.services.iter().filter_map(|(n, p)| p.as_ref().err().map(|e| (n.clone(), e.clone()))).collect()
    }
}

pub struct Side {
    pub label: &'static str,
    pub plane: ControlPlane,
    pub client: kube::Client,
    pub cluster: TestCluster,
    pub vpc: SeededVpc,
    /// Placeholder (`{sg:user-a}`) → this cluster's value.
    pub fill: BTreeMap<String, String>,
    pub norm: Normalizer,
    pub ccm: Option<CcmProcess>,
    pub global: String,
}

/// The user's own security groups (made before the test): names and descriptions.
const USER_GROUPS: [(&str, &str); 3] =
    [("user-a", "a team's group"), ("user-b", "another team's group"), ("shared", "one group for every ELB")];

impl Side {
    /// A fresh cluster on `plane`: a seeded VPC with two instances, their Nodes already
    /// initialized (providerIDs set, one labelled `role=edge`), user groups and two EIPs.
    pub async fn new(label: &'static str, plane: ControlPlane, batch: &Batch) -> Result<Self> {
        let client = plane.client().await?;
        clean(&client).await?;
        let cluster = TestCluster::new(&format!("parity-{label}")).await?;
        // Both sides must start from the same state, down to the instances' groups, so the
        // seed's brownfield (whose extra group on every instance would turn the untagged-node-
        // group batch into an error on both sides) stays out; the user's groups below are this
        // comparison's pre-existing state, and the end checks that neither CCM deleted them.
        let vpc = cluster.seed(SeedOptions::default().with_instances(2).without_brownfield()).await?;
        let nodes: Api<Node> = Api::all(client.clone());
        for (i, instance) in vpc.instances.iter().enumerate() {
            NodeRegistration::for_instance(instance)
                .with_provider_id(format!("aws:///{}/{}", instance.zone, instance.id))
                .initialized()
                .register(&client)
                .await?;
            if i == 0 {
                let label = serde_json::json!({"metadata": {"labels": {"role": "edge"}}});
                nodes.patch(&instance.private_dns, &PatchParams::default(), &Patch::Merge(&label)).await?;
            }
        }
        let mut norm = Normalizer::for_vpc(&vpc);
        let mut fill = BTreeMap::new();
        let ec2 = &cluster.direct.ec2;
        // The seed tags roles in the first zone only, so in the second a public and a private
        // subnet tie and both CCMs pick the lexicographically smaller ID: a coin toss between
        // two clusters. Role tags there too make the choice the same on both sides.
        for s in vpc.subnets.iter().skip(2) {
            let role = if s.public { "kubernetes.io/role/elb" } else { "kubernetes.io/role/internal-elb" };
            ec2.create_tags().resources(&s.id).tags(Tag::builder().key(role).value("1").build()).send().await?;
        }
        if batch.node_group != corpus::NodeGroup::Tagged {
            let group = &vpc.node_security_group_id;
            let key = cluster.cluster_tag_key();
            ec2.delete_tags().resources(group).tags(Tag::builder().key(&key).build()).send().await?;
            if batch.node_group == corpus::NodeGroup::Legacy {
                let legacy = Tag::builder().key("KubernetesCluster").value(&cluster.id).build();
                ec2.create_tags().resources(group).tags(legacy).send().await?;
            }
        }
        for (name, description) in USER_GROUPS {
            let id = ec2
                .create_security_group()
                .group_name(name)
                .description(description)
                .vpc_id(&vpc.vpc_id)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::SecurityGroup)
                        .tags(Tag::builder().key("Name").value(name).build())
                        .build(),
                )
                .send()
                .await?
                .group_id()
                .context("group id")?
                .to_string();
            norm.add(&id, &format!("<sg:{name}>"));
            fill.insert(format!("{{sg:{name}}}"), id);
        }
        for (kind, public) in [("public", true), ("private", false)] {
            for (i, s) in vpc.subnets.iter().filter(|s| s.public == public).enumerate() {
                fill.insert(format!("{{subnet:{kind}-{i}}}"), s.id.clone());
                fill.insert(format!("{{subnet-name:{kind}-{i}}}"), format!("{}-{kind}-{}", vpc.cluster_id, s.zone));
                // A private address inside the subnet, for private-ipv4-addresses.
                let base = s.cidr.split('/').next().unwrap_or_default();
                let ip = format!("{}.100", base.rsplit_once('.').map_or(base, |(head, _)| head));
                if !public {
                    fill.insert(format!("{{private-ip:{i}}}"), ip.clone());
                    norm.add(&ip, &format!("<ip:private-{i}>"));
                }
            }
        }
        for i in 0..2 {
            let id = ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .send()
                .await?
                .allocation_id()
                .context("allocation id")?
                .to_string();
            norm.add(&id, &format!("<eip-{i}>"));
            fill.insert(format!("{{eip:{i}}}"), id);
        }
        let mut side = Self { label, plane, client, cluster, vpc, fill, norm, ccm: None, global: String::new() };
        side.global = side.fill(batch.global);
        Ok(side)
    }

    pub fn fill(&self, text: &str) -> String {
        self.fill.iter().fold(text.to_string(), |acc, (k, v)| acc.replace(k, v))
    }

    /// The same cloud-config for both CCMs: off-AWS mode, every endpoint through this side's
    /// proxy by `[ServiceOverride]`, IMDS aimed at a closed port.
    pub fn cloud_config(&self) -> String {
        let endpoint = self.cluster.proxy.endpoint();
        let region = &self.cluster.region;
        let mut text = format!(
            "[Global]\nRegion = {region}\nVPC = {}\nSubnetID = {}\nKubernetesClusterID = {}\n{}",
            self.vpc.vpc_id, self.vpc.subnets[1].id, self.cluster.id, self.global
        );
        for (id, service, url) in [
            ("ec2", "EC2", endpoint),
            ("elb", "Elastic Load Balancing", endpoint),
            ("elbv2", "Elastic Load Balancing v2", endpoint),
            ("imds", "ec2imds", "http://127.0.0.1:9"),
        ] {
            text.push_str(&format!(
                "\n[ServiceOverride \"{id}\"]\nService = {service}\nRegion = {region}\nURL = {url}\nSigningRegion = {region}\n"
            ));
        }
        text
    }

    /// Starts a CCM with the service controller only.
    pub fn start(&mut self, flavor: CcmFlavor) -> Result<()> {
        self.start_with(flavor, "service", &["--configure-cloud-routes=false"])
    }

    /// Starts a CCM with these controllers and flags.
    pub fn start_with(&mut self, flavor: CcmFlavor, controllers: &str, extra: &[&str]) -> Result<()> {
        if let Some(old) = self.ccm.take() {
            old.stop();
        }
        self.ccm = Some(self.launch(flavor, controllers, extra).start()?);
        Ok(())
    }

    fn launch(&self, flavor: CcmFlavor, controllers: &str, extra: &[&str]) -> CcmLaunch {
        CcmLaunch {
            flavor,
            kubeconfig: self.plane.kubeconfig_path().to_path_buf(),
            cloud_config: self.cloud_config(),
            cluster_name: self.cluster.id.clone(),
            controllers: controllers.into(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            envs: Vec::new(),
        }
    }

    /// `cloud-controller-manager plan --output=json` (ours) with the flags [`Side::start`]
    /// gives a CCM: the Services' planned operations, without making any.
    pub async fn plan(&self) -> Result<ServicePlans> {
        let ours = CcmFlavor::Ours(env!("CARGO_BIN_EXE_cloud-controller-manager").into());
        let out = self.launch(ours, "service", &["--configure-cloud-routes=false", "--output=json"]).plan(&[]).await?;
        let json = out.json()?;
        let mut plans = ServicePlans::default();
        for s in json["services"].as_array().into_iter().flatten() {
            let name = s["service"].as_str().unwrap_or_default().trim_start_matches("default/").to_string();
            let ingress: Vec<(String, Vec<String>)> = s["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| is_ingress(c["operation"].as_str().unwrap_or_default()))
                .map(|c| {
                    let rules = c["detail"].as_str().unwrap_or_default().split("; ").map(String::from).collect();
                    (c["target"].as_str().unwrap_or_default().to_string(), rules)
                })
                .collect();
            plans.ingress.insert(name.clone(), ingress);
            let entry = match s["status"].as_str() {
                Some("no_changes" | "changes") => Ok(s["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| c["operation"].as_str().unwrap_or_default().to_string())
                    .collect()),
                Some("skipped") => Ok(Vec::new()),
                _ => Err(s["error"].as_str().unwrap_or_default().to_string()),
            };
            plans.services.insert(name, entry);
        }
        plans.exit_code = out.code;
        Ok(plans)
    }

    pub fn stop(&mut self) {
        if let Some(ccm) = self.ccm.take() {
            ccm.stop();
        }
    }

    pub fn log_tail(&self) -> String {
        self.ccm.as_ref().map(|c| c.log_tail(40)).unwrap_or_default()
    }

    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn create(&self, specs: &[Spec]) -> Result<()> {
        let fill = |v: &str| self.fill(v);
        for (i, spec) in specs.iter().enumerate() {
            let base = 30000 + 10 * i32::try_from(i)?;
            self.services()
                .create(&PostParams::default(), &spec.to_service(base, &fill))
                .await
                .with_context(|| format!("creating {}", spec.name))?;
        }
        Ok(())
    }

    /// The Services as `lb_state` references.
    pub async fn refs(&self, specs: &[Spec]) -> Result<Vec<ServiceRef>> {
        let mut out = Vec::new();
        for spec in specs {
            let svc = self.services().get(spec.name).await?;
            out.push(ServiceRef {
                namespace: "default".into(),
                name: spec.name.into(),
                uid: svc.metadata.uid.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Waits until every Service has an outcome (an ingress, or a Warning event) and the
    /// proxy saw no AWS call for `quiet`.
    pub async fn settle_outcomes(&self, specs: &[Spec], limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut pending = Vec::new();
            for spec in specs.iter().filter(|s| !s.elsewhere) {
                let svc = self.services().get(spec.name).await?;
                let has_ingress =
                    svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).is_some_and(|i| !i.is_empty());
                if !has_ingress && !self.events(spec.name).await?.iter().any(|(t, _)| t == "Warning") {
                    pending.push(spec.name);
                }
            }
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!("{}: no outcome within {limit:?} for {pending:?}\n{}", self.label, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.quiet(Duration::from_secs(4), limit).await
    }

    /// Waits until this side's proxy has seen no call for `quiet` (at most `limit`).
    pub async fn quiet(&self, quiet: Duration, limit: Duration) -> Result<()> {
        self.quiet_where(quiet, limit, |_| true).await
    }

    /// Waits until this side's proxy has seen no *mutating* call for `quiet`: for controllers
    /// that read AWS periodically (routes every pass, NotReady Nodes every few seconds).
    pub async fn quiet_writes(&self, quiet: Duration, limit: Duration) -> Result<()> {
        self.quiet_where(quiet, limit, |r| r.call.is_mutating()).await
    }

    async fn quiet_where(
        &self,
        quiet: Duration,
        limit: Duration,
        counts: impl Fn(&ccm_e2e::proxy::CallRecord) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        let count = || self.cluster.proxy.calls().iter().filter(|r| counts(r)).count();
        let mut last = count();
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = count();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet && !self.cluster.proxy.calls().is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                // Ours never stops calling AWS only when it loops: a bug. Upstream does when it
                // retries an error forever (its route controller fails every pass once a route
                // points at a Node without a providerID); its state is then read as it is.
                if self.ccm.as_ref().is_some_and(|c| c.flavor == CcmFlavor::Upstream) {
                    eprintln!("{}: upstream kept calling AWS for {limit:?}; reading its state as it is", self.label);
                    return Ok(());
                }
                bail!("{}: AWS calls never stopped for {quiet:?} within {limit:?}\n{}", self.label, self.log_tail());
            }
        }
    }

    /// Distinct (type, reason) of the events on a Service.
    pub async fn events(&self, name: &str) -> Result<Vec<(String, String)>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await?;
        // The service controller's events only (the apiserver reports on Services too).
        let mut out: Vec<(String, String)> = list
            .items
            .into_iter()
            .filter(|e| {
                e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("service-controller")
                    || e.reporting_component.as_deref() == Some("service-controller")
            })
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The AWS state of the batch, plus each Service's status, finalizers and event reasons.
    pub async fn state(&self, specs: &[Spec]) -> Result<ClusterState> {
        let refs = self.refs(specs).await?;
        let mut norm = self.norm.clone();
        norm.add_services(&refs);
        let mut state = lb_state::read(&self.cluster.direct, &self.vpc, &refs, norm.clone()).await?;
        for spec in specs {
            let svc = self.services().get(spec.name).await?;
            let ingress: Vec<String> = svc
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress)
                .unwrap_or_default()
                .iter()
                .map(|i| norm.apply(&format!("hostname={:?} ip={:?}", i.hostname, i.ip)))
                .collect();
            state.set(spec.name, "k8s ingress", ingress.join(","));
            state.set(spec.name, "k8s finalizers", svc.metadata.finalizers.unwrap_or_default().join(","));
            for (kind, reason) in self.events(spec.name).await? {
                state.set(spec.name, format!("k8s event {kind} {reason}"), "emitted");
            }
        }
        Ok(state)
    }

    /// The mutating calls the proxy recorded, each with the object it was about (and, for a
    /// rule, its source), normalized.
    pub async fn mutations(&self, refs: &[ServiceRef]) -> Result<Vec<String>> {
        let mut norm = self.norm.clone();
        norm.add_services(refs);
        // Groups made since the state was read get their names too.
        let groups = self
            .cluster
            .direct
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(&self.vpc.vpc_id).build())
            .send()
            .await?;
        for g in groups.security_groups() {
            let (id, name) = (g.group_id().unwrap_or_default(), g.group_name().unwrap_or_default());
            if id != self.vpc.node_security_group_id && !USER_GROUPS.iter().any(|(n, _)| *n == name) {
                let symbol = format!("<sg:{}>", norm.apply(name));
                norm.add(id, &symbol);
            }
        }
        const SUBJECTS: [&str; 10] = [
            "DestinationCidrBlock",
            "LoadBalancerName",
            "LoadBalancerNames.member.1",
            "LoadBalancerArn",
            "TargetGroupArn",
            "ListenerArn",
            "GroupId",
            "GroupName",
            "ResourceArns.member.1",
            "Name",
        ];
        const DETAILS: [&str; 3] = [
            "IpPermissions.1.Groups.1.GroupId",
            "IpPermissions.1.IpRanges.1.Description",
            "IpPermissions.1.IpRanges.1.CidrIp",
        ];
        let pick = |params: &[(String, String)], keys: &[&str]| {
            keys.iter()
                .find_map(|k| params.iter().find(|(p, _)| p == k).map(|(_, v)| norm.apply(v)))
                .unwrap_or_default()
        };
        Ok(self
            .cluster
            .proxy
            .calls()
            .iter()
            .filter(|r| r.call.is_mutating() && r.fault.is_none())
            .map(|r| {
                let detail = pick(&r.params, &DETAILS);
                let detail = if detail.is_empty() { detail } else { format!(" ({detail})") };
                format!("{}/{} {}{detail}", r.call.service, r.call.action, pick(&r.params, &SUBJECTS))
            })
            .collect())
    }

    /// Deletes every Service (ours must be running) and waits until they are gone.
    pub async fn delete_all(&self, specs: &[Spec]) -> Result<()> {
        self.delete_all_within(specs, Duration::from_secs(120)).await
    }

    /// [`Side::delete_all`] with its own time limit.
    pub async fn delete_all_within(&self, specs: &[Spec], limit: Duration) -> Result<()> {
        for spec in specs {
            self.services().delete(spec.name, &DeleteParams::default()).await?;
        }
        let deadline = Instant::now() + limit;
        loop {
            let mut left = Vec::new();
            for spec in specs {
                if self.services().get_opt(spec.name).await?.is_some() {
                    left.push(spec.name);
                }
            }
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{}: Services not deleted within {limit:?}: {left:?}\n{}", self.label, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The rules on the Nodes' security group (the seed makes it without any).
    pub async fn node_group_rules(&self) -> Result<usize> {
        let groups = self
            .cluster
            .direct
            .ec2
            .describe_security_groups()
            .group_ids(&self.vpc.node_security_group_id)
            .send()
            .await?;
        Ok(groups.security_groups().iter().map(|g| g.ip_permissions().len()).sum())
    }

    /// Gives the control plane back for the next batch, after releasing the EIPs and the
    /// user groups (nothing of the CCMs' may be left: checked before).
    pub async fn finish(mut self) -> Result<ControlPlane> {
        self.stop();
        let ec2 = &self.cluster.direct.ec2;
        for (k, v) in &self.fill {
            if k.starts_with("{eip:") {
                ec2.release_address().allocation_id(v).send().await?;
            }
        }
        let groups = ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(&self.vpc.vpc_id).build())
            .send()
            .await?;
        let mut found = 0;
        for g in groups.security_groups() {
            if USER_GROUPS.iter().any(|(name, _)| g.group_name() == Some(name)) {
                ec2.delete_security_group().group_id(g.group_id().unwrap_or_default()).send().await?;
                found += 1;
            }
        }
        // The Node comparison makes none.
        let made = self.fill.keys().filter(|k| k.starts_with("{sg:")).count();
        if found != made {
            bail!("{}: the user's groups were deleted ({found} of {made} left)", self.label);
        }
        Ok(self.plane)
    }
}

/// Every Node and Service but `default/kubernetes`, finalizers dropped.
pub(crate) async fn clean(client: &kube::Client) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for node in nodes.list(&ListParams::default()).await? {
        nodes.delete(&node.metadata.name.unwrap_or_default(), &DeleteParams::default()).await?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    for svc in services.list(&ListParams::default()).await? {
        let name = svc.metadata.name.unwrap_or_default();
        if name == "kubernetes" {
            continue;
        }
        let clear = serde_json::json!({"metadata": {"finalizers": null}});
        services.patch(&name, &PatchParams::default(), &Patch::Merge(&clear)).await?;
        services.delete(&name, &DeleteParams::default()).await?;
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
    Ok(())
}
