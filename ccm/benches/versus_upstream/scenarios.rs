//! What the benchmark measures, for one CCM at a time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ccm_e2e::{CcmFlavor, ControlPlane};
use kube::api::{Patch, PatchParams, PostParams};

use crate::parity::Side;
use crate::parity::corpus::{self, Batch, NodeGroup, Spec};

const LIMIT: Duration = Duration::from_secs(180);
const QUIET: Duration = Duration::from_secs(4);

pub type Figures = Vec<(&'static str, f64)>;

fn label(flavor: &CcmFlavor) -> &'static str {
    match flavor {
        CcmFlavor::Upstream => "up",
        CcmFlavor::Ours(_) => "our",
    }
}

pub async fn side(flavor: &CcmFlavor, plane: ControlPlane, global: &'static str) -> Result<Side> {
    let batch = Batch { name: "bench", global, node_group: NodeGroup::Tagged, specs: Vec::new() };
    Side::new(label(flavor), plane, &batch).await
}

/// All calls and mutating calls the proxy saw since the last reset, as two figures.
fn record(side: &Side, out: &mut Figures, all: &'static str, mutating: &'static str) {
    eprintln!("{} {all}: {:?}", side.label, side.cluster.proxy.summary());
    out.push((all, side.cluster.proxy.calls().len() as f64));
    out.push((mutating, side.cluster.proxy.mutating_calls().len() as f64));
}

async fn create(side: &Side, spec: &Spec, base: i32) -> Result<()> {
    let service = spec.to_service(base, &|v| side.fill(v));
    side.services()
        .create(&PostParams::default(), &service)
        .await
        .with_context(|| format!("creating {}", spec.name))?;
    side.settle_outcomes(std::slice::from_ref(spec), LIMIT).await?;
    let svc = side.services().get(spec.name).await?;
    if svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).is_none_or(|i| i.is_empty()) {
        bail!("{}: {} got no load balancer\n{}", side.label, spec.name, side.log_tail());
    }
    Ok(())
}

/// Deletes the Services, waits until they are gone and the proxy is quiet.
async fn delete_all(side: &Side, specs: &[Spec]) -> Result<()> {
    side.delete_all_within(specs, Duration::from_secs(900)).await?;
    side.quiet(QUIET, LIMIT).await
}

/// One Service at a time, the service controller alone: the AWS calls of a Classic ELB and of an
/// NLB (two ports) being created, re-ensured with nothing to change (an unrelated annotation
/// edited: both CCMs then run a full ensure) and deleted.
pub async fn one_at_a_time(flavor: CcmFlavor, plane: ControlPlane) -> Result<(Figures, ControlPlane)> {
    let mut side = side(&flavor, plane, "").await?;
    side.start(flavor)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut out = Figures::new();
    let clb = corpus::clb("bench-clb").port(80);
    let nlb = corpus::nlb("bench-nlb").port(80).port(443);
    let proxy = &side.cluster.proxy;

    proxy.reset_calls();
    create(&side, &clb, 30000).await?;
    record(&side, &mut out, "CLB create: AWS calls", "CLB create: mutating calls");
    proxy.reset_calls();
    create(&side, &nlb, 30010).await?;
    record(&side, &mut out, "NLB create: AWS calls", "NLB create: mutating calls");

    let touch = serde_json::json!({"metadata": {"annotations": {"example.com/touched": "1"}}});
    for (name, all, mutating) in [
        ("bench-clb", "CLB re-ensure, nothing changed: AWS calls", "CLB re-ensure, nothing changed: mutating calls"),
        ("bench-nlb", "NLB re-ensure, nothing changed: AWS calls", "NLB re-ensure, nothing changed: mutating calls"),
    ] {
        proxy.reset_calls();
        side.services().patch(name, &PatchParams::default(), &Patch::Merge(&touch)).await?;
        side.quiet(QUIET, Duration::from_secs(30)).await?;
        record(&side, &mut out, all, mutating);
    }

    proxy.reset_calls();
    delete_all(&side, std::slice::from_ref(&clb)).await?;
    record(&side, &mut out, "CLB delete: AWS calls", "CLB delete: mutating calls");
    proxy.reset_calls();
    delete_all(&side, std::slice::from_ref(&nlb)).await?;
    record(&side, &mut out, "NLB delete: AWS calls", "NLB delete: mutating calls");
    side.cluster.assert_nothing_left().await.with_context(|| format!("{} left something", side.label))?;
    Ok((out, side.finish().await?))
}

fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// Creates `specs` at once (nodePorts from 30000 on), waits for an outcome for each (an ingress
/// or a Warning), and returns how many got a load balancer.
async fn create_all(side: &Side, specs: &[Spec], first: usize) -> Result<usize> {
    for (i, spec) in specs.iter().enumerate() {
        let service = spec.to_service(30000 + 10 * i32::try_from(first + i)?, &|v| side.fill(v));
        side.services().create(&PostParams::default(), &service).await?;
    }
    side.settle_outcomes(specs, Duration::from_secs(900)).await?;
    let mut served = 0;
    for spec in specs {
        let svc = side.services().get(spec.name).await?;
        served += usize::from(
            svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).is_some_and(|i| !i.is_empty()),
        );
    }
    Ok(served)
}

/// Services of the burst: Classic ELBs sharing the configured `ElbSecurityGroup`, so the Nodes'
/// group needs one rule for all of them (a hundred own groups would each need one, past the
/// quota of 60, for both CCMs).
pub const BURST: usize = 100;

/// Nodes of the burst and idle steps.
const IDLE_NODES: usize = 100;
/// How long the idle step watches, with every period ten times shorter than its default: the
/// calls seen are those of an hour at the defaults.
const IDLE: Duration = Duration::from_secs(360);
/// Our count of full ensures (periodic re-ensures included), on `/metrics`.
const LB_SYNCS: &str = "service_controller_loadbalancer_sync_total";
/// How long a restarted CCM is left to finish its first sync of every load balancer.
const RESTART_SYNC: Duration = Duration::from_secs(120);

/// Adds `count` instances and their initialized Nodes.
async fn add_nodes(side: &mut Side, count: usize) -> Result<()> {
    let ec2 = side.cluster.direct.ec2.clone();
    let added = side.vpc.add_instances(&ec2, count, "t3.medium").await?;
    let nodes = added.iter().map(|i| {
        ccm_e2e::NodeRegistration::for_instance(i).with_provider_id(format!("aws:///{}/{}", i.zone, i.id)).initialized()
    });
    crate::nodes::register_all(&side.client, nodes).await
}

/// Every controller restarted over the burst's load balancers and the Nodes, with the periods
/// that make a CCM call AWS while nothing changes ten times shorter than their defaults
/// (addresses refreshed every 30 s instead of 5 min; ours re-ensures every load balancer every
/// minute instead of 10, upstream never does): the calls in [`IDLE`] (6 minutes), once the
/// restart's own sync is over, are those of an hour at the defaults.
async fn idle(side: &mut Side, flavor: &CcmFlavor) -> Result<(f64, f64, Option<f64>)> {
    let mut flags = vec!["--configure-cloud-routes=false", "--node-status-update-frequency=30s"];
    if matches!(flavor, CcmFlavor::Ours(_)) {
        flags.push("--load-balancer-resync-period=1m");
    }
    side.start_with(flavor.clone(), crate::nodes::EVERY_CONTROLLER, &flags)?;
    // Both CCMs re-ensure every load balancer once when they start (upstream's single worker
    // takes about a minute for 100, and writes each ELB's attributes again): not idle yet.
    tokio::time::sleep(RESTART_SYNC).await;
    side.quiet(Duration::from_secs(8), Duration::from_secs(600)).await?;
    let syncs = |side: &Side| side.ccm.as_ref().and_then(|c| c.metric(LB_SYNCS).ok());
    let syncs_before = syncs(side);
    side.cluster.proxy.reset_calls();
    tokio::time::sleep(IDLE).await;
    // Full ensures in the window: ours re-ensures periodically (upstream does not, and its
    // /metrics needs a token: no figure for it).
    let re_ensures = syncs(side).zip(syncs_before).map(|(after, before)| after - before);
    let proxy = &side.cluster.proxy;
    eprintln!("{} idle: {:?}", side.label, proxy.summary());
    let writes = proxy.mutating_calls().len();
    if writes > 0 && matches!(flavor, CcmFlavor::Ours(_)) {
        bail!("{}: wrote to AWS while nothing changed: {:?}", side.label, proxy.summary());
    }
    let calls = proxy.calls().len() as f64;
    let per_re_ensure = re_ensures.filter(|n| *n > 0.0).map(|n| calls / n);
    // Back to the service controller alone, its own first sync over before the next step.
    side.start(flavor.clone())?;
    tokio::time::sleep(RESTART_SYNC).await;
    side.quiet(QUIET, Duration::from_secs(600)).await?;
    Ok((calls, writes as f64, per_re_ensure))
}

/// The scenarios of the full run (`cargo bench`).
pub async fn full(flavor: CcmFlavor, plane: ControlPlane) -> Result<(Figures, ControlPlane)> {
    let mut out = Figures::new();

    // A burst of Services created at once: wall time until all have an ingress, and their calls.
    let mut side = side(&flavor, plane, "ElbSecurityGroup = {sg:shared}\n").await?;
    let more = IDLE_NODES - side.vpc.instances.len();
    add_nodes(&mut side, more).await?;
    side.start(flavor.clone())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let specs: Vec<Spec> = (0..BURST).map(|i| corpus::clb(leak(format!("burst-{i}"))).port(80)).collect();
    side.cluster.proxy.reset_calls();
    let started = Instant::now();
    let served = create_all(&side, &specs, 0).await?;
    if served != BURST {
        bail!("{}: {served} of {BURST} Services got a load balancer\n{}", side.label, side.log_tail());
    }
    out.push(("100 CLB Services at once: seconds until all have an ingress", started.elapsed().as_secs_f64()));
    record(&side, &mut out, "100 CLB Services at once: AWS calls", "100 CLB Services at once: mutating calls");
    let (calls, writes, per_re_ensure) = idle(&mut side, &flavor).await?;
    out.push(("idle hour, 100 CLB Services and 100 Nodes: AWS calls", calls));
    out.push(("idle hour, 100 CLB Services and 100 Nodes: mutating calls", writes));
    if let Some(per) = per_re_ensure {
        out.push(("idle hour: AWS calls (all) per periodic re-ensure of a load balancer", per));
    }
    side.cluster.proxy.reset_calls();
    let started = Instant::now();
    delete_all(&side, &specs).await?;
    out.push(("100 CLB Services deleted at once: seconds", started.elapsed().as_secs_f64()));
    record(
        &side,
        &mut out,
        "100 CLB Services deleted at once: AWS calls",
        "100 CLB Services deleted at once: mutating calls",
    );
    side.cluster.assert_nothing_left().await?;
    let plane = side.finish().await?;

    // How many one-port NLBs fit on one node group (60 rules), in tens, until one does not.
    let (fit, plane) = nlbs_on_one_node_group(&flavor, plane, "").await?;
    out.push(("NLBs of one port on one node group of 60 rules (upstream's rules)", fit as f64));
    let plane = if matches!(flavor, CcmFlavor::Ours(_)) {
        let backend = "NLBSecurityGroupMode = Managed\nNLBBackendSecurityGroup = true\n";
        let (fit, plane) = nlbs_on_one_node_group(&flavor, plane, backend).await?;
        out.push((
            "NLBs of one port on one node group of 60 rules (NLBBackendSecurityGroup; stops at 100)",
            fit as f64,
        ));
        plane
    } else {
        plane
    };
    Ok((out, plane))
}

/// The most NLBs made in tens that one node group takes (stopping at 100).
async fn nlbs_on_one_node_group(
    flavor: &CcmFlavor,
    plane: ControlPlane,
    global: &'static str,
) -> Result<(usize, ControlPlane)> {
    let mut side = side(flavor, plane, global).await?;
    side.start(flavor.clone())?;
    let mut all = Vec::new();
    let mut fit = 0;
    while fit < 100 {
        let specs: Vec<Spec> =
            (all.len()..all.len() + 10).map(|i| corpus::nlb(leak(format!("nlb-{i}"))).port(80)).collect();
        let served = create_all(&side, &specs, all.len()).await?;
        all.extend(specs);
        fit += served;
        if served < 10 {
            break;
        }
    }
    eprintln!("{}: {fit} NLBs on one node group ({:?})", side.label, global.trim());
    delete_all(&side, &all).await?;
    side.cluster.assert_nothing_left().await?;
    Ok((fit, side.finish().await?))
}
