//! Chaos soak: random operations on Services and Nodes while the AWS API throttles, fails and
//! lags, the CCM is killed with SIGKILL and restarted, and the apiserver restarts; then, with
//! the faults lifted, every Service's load balancer must match its spec, and once the Services
//! are deleted nothing of the cluster's may be left and the brownfield must be as it was.
//!
//! `CHAOS_OPS` sets the number of operations (default 100, the CI run); `CHAOS_SEED` replays a
//! run (the seed is printed). The figures are printed at the end and, for the long run, go into
//! docs/safety.md.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ccm_e2e::{ControlPlane, FaultRule, NodeRegistration, SeedOptions, SeededVpc, TestCluster};
use k8s_openapi::api::core::v1::{Node, Service, ServicePort};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use support::CcmProcess;
use support::aws::off_aws_config;
use support::services::{lb_name, lb_service};

const TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
const TAGS: &str = "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags";
/// Invalid on purpose: a Warning, and the load balancer left as it was.
const INTERVAL: &str = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval";
const NAMES: [&str; 10] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
const INSTANCES: usize = 4;
const FLAGS: [&str; 5] = [
    "--controllers=service,cloud-node,cloud-node-lifecycle",
    "--load-balancer-resync-period=5s",
    "--leader-elect-lease-duration=4s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=1s",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    Annotate,
    BreakAnnotation,
    ChangeType,
    ChangePorts,
    Delete,
    AddNode,
    RemoveNode,
    StopNode,
    KillCcm,
}

/// Operation weights (out of their sum).
const WEIGHTS: [(Op, u32); 10] = [
    (Op::Create, 24),
    (Op::Annotate, 12),
    (Op::BreakAnnotation, 5),
    (Op::ChangeType, 10),
    (Op::ChangePorts, 12),
    (Op::Delete, 6),
    (Op::AddNode, 8),
    (Op::RemoveNode, 6),
    (Op::StopNode, 5),
    (Op::KillCcm, 4),
];

struct Soak {
    cluster: TestCluster,
    vpc: SeededVpc,
    plane: Option<ControlPlane>,
    client: kube::Client,
    ccm: CcmProcess,
    config: String,
    rng: fastrand::Rng,
    done: BTreeMap<Op, usize>,
    refused: usize,
    /// Operations picked with nothing to act on.
    idle: usize,
    kills: usize,
    /// Times the CCM exited on its own (it lost the Lease while the apiserver was away) and
    /// was started again, as kubelet restarts a container.
    exits: usize,
    stopped: BTreeSet<String>,
}

fn service(name: &str, nlb: bool, ports: &[i32]) -> Service {
    let annotations: &[(&str, &str)] = if nlb { &[(TYPE, "nlb")] } else { &[] };
    let ports: Vec<(i32, &str)> = ports.iter().map(|p| (*p, "TCP")).collect();
    lb_service(name, annotations, &ports)
}

fn port(p: i32) -> ServicePort {
    ServicePort { name: Some(format!("p{p}")), port: p, protocol: Some("TCP".into()), ..Default::default() }
}

/// An SDK error's AWS code, for "not yet" messages.
fn error_code(e: &impl aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata) -> String {
    e.code().unwrap_or("no code").to_string()
}

fn is_nlb(svc: &Service) -> bool {
    svc.metadata.annotations.as_ref().and_then(|a| a.get(TYPE)).is_some_and(|t| t == "nlb")
}

impl Soak {
    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn start_ccm(cluster: &TestCluster, config: &str, plane: &ControlPlane) -> Result<CcmProcess> {
        support::aws::start_candidate(cluster, config, cluster.proxy.endpoint(), plane.kubeconfig_path(), &FLAGS)
    }

    fn pick(&mut self) -> Op {
        let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.u32(..total);
        for (op, w) in WEIGHTS {
            if roll < w {
                return op;
            }
            roll -= w;
        }
        unreachable!("the weights add up")
    }

    fn random_ports(&mut self) -> Vec<i32> {
        let mut ports: Vec<i32> = [80, 443, 8080, 8443].into_iter().filter(|_| self.rng.bool()).collect();
        if ports.is_empty() {
            ports.push(80);
        }
        ports
    }

    /// The soak's Services (not `default/kubernetes`).
    async fn soak_services(&self) -> Result<Vec<Service>> {
        let list = self.services().list(&ListParams::default()).await?;
        Ok(list.items.into_iter().filter(|s| NAMES.contains(&s.metadata.name.as_deref().unwrap_or_default())).collect())
    }

    async fn existing(&mut self) -> Result<Option<Service>> {
        let live: Vec<Service> =
            self.soak_services().await?.into_iter().filter(|s| s.metadata.deletion_timestamp.is_none()).collect();
        Ok((!live.is_empty()).then(|| live[self.rng.usize(..live.len())].clone()))
    }

    async fn annotate(&self, name: &str, key: &str, value: Option<String>) -> Result<()> {
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        self.services().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// One operation; an error is an operation the apiserver refused or could not take (it may
    /// be restarting), which the soak counts and goes on.
    /// `Ok(false)`: nothing to act on (no Service to change, every name taken).
    async fn step(&mut self, op: Op) -> Result<bool> {
        match op {
            Op::Create => {
                let taken: Vec<String> =
                    self.soak_services().await?.into_iter().filter_map(|s| s.metadata.name).collect();
                let free: Vec<&str> = NAMES.into_iter().filter(|n| !taken.iter().any(|t| t == n)).collect();
                if free.is_empty() {
                    return Ok(false);
                }
                let name = free[self.rng.usize(..free.len())];
                let (nlb, ports) = (self.rng.bool(), self.random_ports());
                self.services().create(&PostParams::default(), &service(name, nlb, &ports)).await?;
            }
            Op::Annotate => {
                let Some(svc) = self.existing().await? else { return Ok(false) };
                let value = format!("chaos=v{},team=soak", self.rng.u32(..1000));
                self.annotate(&svc.metadata.name.unwrap(), TAGS, Some(value)).await?;
            }
            Op::BreakAnnotation => {
                let Some(svc) = self.existing().await? else { return Ok(false) };
                self.annotate(&svc.metadata.name.unwrap(), INTERVAL, Some("soon".into())).await?;
            }
            Op::ChangeType => {
                let Some(svc) = self.existing().await? else { return Ok(false) };
                let to = if is_nlb(&svc) { None } else { Some("nlb".to_string()) };
                self.annotate(&svc.metadata.name.unwrap(), TYPE, to).await?;
            }
            Op::ChangePorts => {
                let Some(svc) = self.existing().await? else { return Ok(false) };
                let ports: Vec<ServicePort> = self.random_ports().into_iter().map(port).collect();
                let patch = serde_json::json!({"spec": {"ports": ports}});
                self.services()
                    .patch(&svc.metadata.name.unwrap(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Op::Delete => {
                let Some(svc) = self.existing().await? else { return Ok(false) };
                self.services().delete(&svc.metadata.name.unwrap(), &DeleteParams::default()).await?;
            }
            Op::AddNode => {
                let nodes: Api<Node> = Api::all(self.client.clone());
                let i = self.rng.usize(..INSTANCES);
                let instance = self.vpc.instances[i].clone();
                if self.stopped.remove(&instance.id) {
                    self.cluster.direct.ec2.start_instances().instance_ids(&instance.id).send().await?;
                    let _ = nodes.delete(&instance.private_dns, &DeleteParams::default()).await;
                }
                if nodes.get_opt(&instance.private_dns).await?.is_none() {
                    NodeRegistration::for_instance(&instance).register(&self.client).await?;
                }
            }
            Op::RemoveNode => {
                let nodes: Api<Node> = Api::all(self.client.clone());
                let i = self.rng.usize(..INSTANCES);
                let _ = nodes.delete(&self.vpc.instances[i].private_dns, &DeleteParams::default()).await?;
            }
            Op::StopNode => {
                // The instance stops and its kubelet stops reporting: the lifecycle controller
                // taints the Node as shut down.
                let i = self.rng.usize(..INSTANCES);
                let instance = self.vpc.instances[i].clone();
                self.cluster.direct.ec2.stop_instances().instance_ids(&instance.id).send().await?;
                self.stopped.insert(instance.id.clone());
                let nodes: Api<Node> = Api::all(self.client.clone());
                let status = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletStopped"}]}});
                let _ = nodes
                    .patch_status(&instance.private_dns, &PatchParams::default(), &Patch::Strategic(&status))
                    .await;
            }
            Op::KillCcm => {
                self.ccm.kill();
                self.kills += 1;
                tokio::time::sleep(Duration::from_millis(self.rng.u64(0..1500))).await;
                self.restart_ccm()?;
            }
        }
        Ok(true)
    }

    fn restart_ccm(&mut self) -> Result<()> {
        let plane = self.plane.as_ref().expect("control plane");
        self.ccm = Self::start_ccm(&self.cluster, &self.config, plane)?;
        Ok(())
    }

    /// Starts the CCM again if it exited on its own.
    fn supervise(&mut self) -> Result<()> {
        if !self.ccm.is_running() {
            self.exits += 1;
            self.restart_ccm()?;
        }
        Ok(())
    }

    async fn restart_apiserver(&mut self) -> Result<()> {
        let mut plane = self.plane.take().expect("control plane");
        let plane = tokio::task::spawn_blocking(move || plane.restart().map(|()| plane)).await??;
        self.plane = Some(plane);
        Ok(())
    }

    /// Takes out the broken annotations (a Service the CCM refuses is left as it was, on
    /// purpose) and nudges every Service, so the final check sees each one ensured afresh.
    async fn repair(&self) -> Result<()> {
        for svc in self.soak_services().await? {
            if svc.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(INTERVAL)) {
                self.annotate(&svc.metadata.name.unwrap(), INTERVAL, None).await?;
            }
        }
        Ok(())
    }

    /// The AWS side of one Service, if it matches: its type's load balancer with one listener
    /// per port to the right nodePort, the additional tags, no load balancer of the other type,
    /// and only instances of current Nodes.
    async fn matches(&self, svc: &Service, instances: &BTreeSet<String>) -> Result<std::result::Result<(), String>> {
        let name = lb_name(svc);
        let spec = svc.spec.as_ref().context("spec")?;
        let mut want: Vec<(i32, i32)> =
            spec.ports.iter().flatten().map(|p| (p.port, p.node_port.unwrap_or_default())).collect();
        want.sort();
        let tags = svc.metadata.annotations.as_ref().and_then(|a| a.get(TAGS)).cloned();
        let want_tag = tags.as_deref().and_then(|t| t.split(',').next()).and_then(|kv| kv.split_once('='));
        let aws = &self.cluster.direct;
        let classic = aws.elb.describe_load_balancers().load_balancer_names(&name).send().await.ok();
        let classic = classic.as_ref().and_then(|d| d.load_balancer_descriptions().first());
        let v2 = aws.elbv2.describe_load_balancers().names(&name).send().await.ok();
        let v2 = v2.as_ref().and_then(|d| d.load_balancers().first());
        if is_nlb(svc) {
            if classic.is_some() {
                return Ok(Err(format!("{name}: a Classic ELB is left beside the NLB")));
            }
            let Some(lb) = v2 else { return Ok(Err(format!("{name}: no NLB"))) };
            let arn = lb.load_balancer_arn().unwrap_or_default();
            // Mid-change (no target group yet, say) the emulator answers NotFound: not yet.
            let listeners = match aws.elbv2.describe_listeners().load_balancer_arn(arn).send().await {
                Ok(l) => l,
                Err(e) => return Ok(Err(format!("{name}: listeners: {}", error_code(&e)))),
            };
            // The listeners' target groups by ARN: moto does not link a target group to its load
            // balancer when ModifyListener points a listener at it (AWS does).
            let arns: Vec<String> = listeners
                .listeners()
                .iter()
                .filter_map(|l| l.default_actions().first()?.target_group_arn().map(String::from))
                .collect();
            let groups = if arns.is_empty() {
                Vec::new()
            } else {
                match aws.elbv2.describe_target_groups().set_target_group_arns(Some(arns)).send().await {
                    Ok(g) => g.target_groups().to_vec(),
                    Err(e) => return Ok(Err(format!("{name}: target groups: {}", error_code(&e)))),
                }
            };
            let mut got = Vec::new();
            for l in listeners.listeners() {
                let tg = l.default_actions().first().and_then(|a| a.target_group_arn()).unwrap_or_default();
                let node_port =
                    groups.iter().find(|g| g.target_group_arn() == Some(tg)).and_then(|g| g.port()).unwrap_or_default();
                got.push((l.port().unwrap_or_default(), node_port));
            }
            got.sort();
            if got != want {
                return Ok(Err(format!("{name}: NLB listeners {got:?}, want {want:?}")));
            }
            for g in &groups {
                let health = match aws
                    .elbv2
                    .describe_target_health()
                    .target_group_arn(g.target_group_arn().unwrap_or_default())
                    .send()
                    .await
                {
                    Ok(h) => h,
                    Err(e) => return Ok(Err(format!("{name}: targets: {}", error_code(&e)))),
                };
                for t in health.target_health_descriptions() {
                    let id = t.target().and_then(|t| t.id()).unwrap_or_default();
                    if !instances.contains(id) {
                        return Ok(Err(format!("{name}: target {id} is no current Node's")));
                    }
                }
            }
            // No tag check: upstream puts additional-resource-tags on an NLB at creation only,
            // and so does this CCM (a migrated NLB must not change).
        } else {
            if v2.is_some() {
                return Ok(Err(format!("{name}: an NLB is left beside the Classic ELB")));
            }
            let Some(lb) = classic else { return Ok(Err(format!("{name}: no Classic ELB"))) };
            let mut got: Vec<(i32, i32)> = lb
                .listener_descriptions()
                .iter()
                .filter_map(|l| l.listener())
                .map(|l| (l.load_balancer_port(), l.instance_port()))
                .collect();
            got.sort();
            if got != want {
                return Ok(Err(format!("{name}: listeners {got:?}, want {want:?}")));
            }
            for i in lb.instances() {
                let id = i.instance_id().unwrap_or_default();
                if !instances.contains(id) {
                    return Ok(Err(format!("{name}: instance {id} is no current Node's")));
                }
            }
            if let Some((k, v)) = want_tag {
                let Ok(t) = aws.elb.describe_tags().load_balancer_names(&name).send().await else {
                    return Ok(Err(format!("{name}: tags not readable")));
                };
                let found =
                    t.tag_descriptions().iter().flat_map(|d| d.tags()).any(|t| t.key() == k && t.value() == Some(v));
                if !found {
                    return Ok(Err(format!("{name}: tag {k}={v} missing")));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Waits until every live Service's load balancer matches it (see [`Self::matches`]).
    async fn converged(&mut self, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        let nodes: Api<Node> = Api::all(self.client.clone());
        loop {
            self.supervise()?;
            let instances: BTreeSet<String> = nodes
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter_map(|n| n.spec.as_ref()?.provider_id.as_deref()?.rsplit('/').next().map(String::from))
                .collect();
            let mut wrong = Vec::new();
            for svc in self.soak_services().await? {
                if let Err(why) = self.matches(&svc, &instances).await? {
                    wrong.push(why);
                }
            }
            if wrong.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!("not converged after {limit:?}:\n  {}\nCCM log:\n{}", wrong.join("\n  "), self.ccm.log_tail(40));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_leaks_nothing_and_leaves_the_brownfield_alone() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let ops: usize = std::env::var("CHAOS_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seed: u64 = std::env::var("CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("chaos soak: {ops} operations, CHAOS_SEED={seed}");
    let began = Instant::now();

    let plane = tokio::task::spawn_blocking(ControlPlane::start_restartable).await??;
    let cluster = TestCluster::new("chaos").await?;
    cluster.use_control_plane(&plane);
    let client = cluster.kube().await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(INSTANCES)).await?;
    support::aws::register(&cluster, &client, &vpc).await?;
    let config = off_aws_config(&cluster, &vpc);
    let ccm = Soak::start_ccm(&cluster, &config, &plane)?;

    // The faults, on every call the CCM makes (the checks go straight to the emulator).
    let proxy = &cluster.proxy;
    proxy.inject(FaultRule::throttle().at_rate(0.20));
    proxy.inject(FaultRule::server_error(500).at_rate(0.05));
    proxy.inject(FaultRule::error(400, "DependencyViolation").on_action("DeleteSecurityGroup").at_rate(0.5));
    proxy.inject(FaultRule::latency(Duration::from_millis(200)).at_rate(0.10));

    let mut soak = Soak {
        cluster,
        vpc,
        plane: Some(plane),
        client,
        ccm,
        config,
        rng: fastrand::Rng::with_seed(seed),
        done: BTreeMap::new(),
        refused: 0,
        idle: 0,
        kills: 0,
        exits: 0,
        stopped: BTreeSet::new(),
    };
    let restart_at = ops / 2;
    for i in 0..ops {
        if i == restart_at {
            soak.restart_apiserver().await.context("restarting the apiserver")?;
        }
        soak.supervise()?;
        let op = soak.pick();
        match soak.step(op).await {
            Ok(true) => *soak.done.entry(op).or_default() += 1,
            Ok(false) => soak.idle += 1,
            Err(_) => soak.refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(soak.rng.u64(0..1200))).await;
    }

    let calls = soak.cluster.proxy.calls();
    let faulted =
        |pred: &dyn Fn(&ccm_e2e::Fault) -> bool| calls.iter().filter(|c| c.fault.as_ref().is_some_and(pred)).count();
    let throttled = faulted(&|f| matches!(f, ccm_e2e::Fault::Throttle));
    let errors = faulted(&|f| matches!(f, ccm_e2e::Fault::ServerError(_)));
    let dependency = faulted(&|f| matches!(f, ccm_e2e::Fault::Error(_, _)));
    soak.cluster.proxy.clear_faults();

    // Every Node back, every Service repaired: the CCM must bring AWS in line on its own.
    for instance in soak.vpc.instances.clone() {
        if soak.stopped.remove(&instance.id) {
            soak.cluster.direct.ec2.start_instances().instance_ids(&instance.id).send().await?;
        }
    }
    soak.repair().await?;
    let settle = soak.converged(Duration::from_secs(360)).await?;
    let live = soak.soak_services().await?.len();

    // Everything deleted; nothing of the cluster's left, the brownfield as it was.
    for svc in soak.soak_services().await? {
        soak.services().delete(&svc.metadata.name.unwrap(), &DeleteParams::default()).await?;
    }
    support::eventually("every Service gone", Duration::from_secs(300), || async {
        Ok(soak.soak_services().await?.is_empty().then_some(()))
    })
    .await
    .with_context(|| soak.ccm.log_tail(40))?;
    soak.cluster.assert_nothing_left().await?;
    eprintln!(
        "chaos soak figures: operations {ops} (done {:?}, nothing to act on {}, refused by the apiserver (a Service gone meanwhile, or the apiserver restarting) {}), \
         CCM kills (SIGKILL) {}, CCM exits (Lease lost) {}, apiserver restarts 1, AWS calls {} (throttled {throttled}, 5xx {errors}, \
         DependencyViolation {dependency}), Services live at the end {live}, converged {:.0} s after the faults stopped, \
         leaks 0, brownfield differences 0, {:.0} s in all, CHAOS_SEED={seed}",
        soak.done,
        soak.idle,
        soak.refused,
        soak.kills,
        soak.exits,
        calls.len(),
        settle.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
