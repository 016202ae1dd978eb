//! Parity with upstream, measured: upstream's aws-cloud-controller-manager (the oracle, built by
//! `e2e/upstream/build.sh`) and ours reconcile the same corpus of Services in two identical
//! clusters on one moto, and then each takes over what the other made.
//!
//! Per batch of the corpus ([`parity::corpus`]):
//!
//! 1. **Differential**: upstream in cluster U, ours in cluster O, the same Services in both.
//!    Once every Service has an outcome, the normalized AWS state of each (load balancer,
//!    listeners, health check, attributes, policies, tags, security groups and every rule,
//!    target groups and targets, subnets, scheme), its status and its event reasons are
//!    compared. Every difference must be declared in `docs/differences-from-upstream.md`.
//! 2. **Ours takes over upstream's** (U): upstream stops, ours starts; it must make **no**
//!    mutating AWS call.
//! 3. **Upstream takes over ours** (O), and 4. **upstream restarts on its own state** (U), the
//!    baseline: upstream may not change more of ours than of its own.
//! 5. Ours deletes every Service in both clusters; nothing of either cluster is left in AWS.
//!
//! `PARITY_BATCHES=classic,nlb-a` runs only those batches. The report (corpus size, matches,
//! mutating calls per direction) is printed and written to `<target>/e2e-logs/parity-report.md`.

mod parity;
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ccm_e2e::lb_state::{ClusterState, Difference};
use ccm_e2e::{CcmFlavor, ControlPlane};
use parity::Side;
use parity::corpus::{self, Batch};
use parity::declared::{self, Allowance};

const SETTLE: Duration = Duration::from_secs(150);

/// The two parity tests each run two control planes and two CCMs: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Rows of the declared differences that belong to the node test.
fn is_node_row(a: &Allowance) -> bool {
    a.service.starts_with("node-") || a.service == "(routes)"
}

fn ours() -> CcmFlavor {
    CcmFlavor::Ours(env!("CARGO_BIN_EXE_cloud-controller-manager").into())
}

#[derive(Default)]
struct Report {
    services: usize,
    same_outcome: usize,
    identical: usize,
    undeclared: Vec<Difference>,
    declared_used: BTreeMap<String, usize>,
    ours_over_upstream: Vec<String>,
    upstream_over_ours: Vec<String>,
    upstream_restart: Vec<String>,
    beyond_baseline: Vec<String>,
    failures: Vec<String>,
    /// Services whose ensure was checked against its plan (made = planned, then nothing planned).
    planned_services: usize,
    planned_operations: usize,
    /// Planned rule batches AWS refused for a rule written meanwhile, retried rule by rule.
    rule_by_rule_retries: usize,
    /// Planned writes of a rule another Service shared and wrote first.
    shared_rule_writes_skipped: usize,
    plan_mismatches: Vec<String>,
    /// Changes `plan` showed for upstream's load balancers before ours took them over.
    takeover_plans: Vec<String>,
    lines: String,
}

#[tokio::test]
async fn upstream_parity_differential_and_takeover() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().await;
    ccm_e2e::init_crypto();
    let allowances = declared::load()?;
    let only: Option<Vec<String>> =
        std::env::var("PARITY_BATCHES").ok().map(|v| v.split(',').map(str::to_string).collect());
    let batches: Vec<Batch> =
        corpus::batches().into_iter().filter(|b| only.as_ref().is_none_or(|o| o.iter().any(|n| n == b.name))).collect();
    let mut planes = (ControlPlane::start()?, ControlPlane::start()?);
    let mut report = Report::default();
    for batch in &batches {
        let (u, o) = run_batch(batch, planes, &allowances, &mut report).await?;
        planes = (u, o);
    }

    let stale: Vec<&Allowance> = if only.is_none() {
        allowances
            .iter()
            .filter(|a| !is_node_row(a) && !a.sometimes && !report.declared_used.contains_key(&row_id(a)))
            .collect()
    } else {
        Vec::new()
    };
    let text = render(&report, &stale);
    eprintln!("{text}");
    let _ = std::fs::write(ccm_e2e::repo_root().join("target/parity-report.md"), &text);
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let _ = std::fs::write(std::path::Path::new(&dir).join("e2e-logs/parity-report.md"), &text);
    }
    ensure!(report.failures.is_empty(), "batches failed:\n{}", report.failures.join("\n"));
    ensure!(
        report.undeclared.is_empty(),
        "{} differences from upstream are not declared in {}:\n{}",
        report.undeclared.len(),
        declared::DOC,
        report.undeclared.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
    );
    ensure!(stale.is_empty(), "rows of {} that matched no difference (stale): {stale:?}", declared::DOC);
    ensure!(report.plan_mismatches.is_empty(), "plan and ensure disagree: {:#?}", report.plan_mismatches);
    ensure!(
        report.takeover_plans.is_empty(),
        "plan showed changes for upstream's load balancers: {:#?}",
        report.takeover_plans
    );
    ensure!(
        report.ours_over_upstream.is_empty(),
        "taking over upstream's load balancers, ours made mutating calls: {:?}",
        report.ours_over_upstream
    );
    ensure!(
        report.beyond_baseline.is_empty(),
        "upstream changed more of ours than of its own: {:?}",
        report.beyond_baseline
    );
    Ok(())
}

fn row_id(a: &Allowance) -> String {
    format!("{} {} {}", a.id, a.service, a.key)
}

async fn run_batch(
    batch: &Batch,
    (plane_u, plane_o): (ControlPlane, ControlPlane),
    allowances: &[Allowance],
    report: &mut Report,
) -> Result<(ControlPlane, ControlPlane)> {
    let specs = &batch.specs;
    let mut u = Side::new("up", plane_u, batch).await?;
    let mut o = Side::new("our", plane_o, batch).await?;
    let result = async {
        // 1. Differential. Ours plans first (read-only), then must make exactly the planned
        // writes, after which nothing is planned.
        u.start(CcmFlavor::Upstream)?;
        u.create(specs).await?;
        o.create(specs).await?;
        let planned = o.plan().await?;
        o.cluster.proxy.reset_calls();
        o.start(ours())?;
        let (a, b) = tokio::join!(u.settle_outcomes(specs, SETTLE), o.settle_outcomes(specs, SETTLE));
        a?;
        b?;
        o.quiet_writes(Duration::from_secs(3), SETTLE).await?;
        check_plan(batch, &planned, &o, report).await?;
        let upstream_state = u.state(specs).await?;
        let our_state = o.state(specs).await?;
        compare(batch, &upstream_state, &our_state, allowances, report);

        // 2. Ours takes over upstream's.
        let refs_u = u.refs(specs).await?;
        let refs_o = o.refs(specs).await?;
        u.stop();
        // The migration check: before ours takes over, its plan for upstream's load balancers
        // is empty.
        let takeover = u.plan().await?;
        report.takeover_plans.extend(takeover.pending().iter().map(|p| format!("{}: {p}", batch.name)));
        u.cluster.proxy.reset_calls();
        u.start(ours())?;
        // 3. Upstream takes over ours.
        o.stop();
        o.cluster.proxy.reset_calls();
        o.start(CcmFlavor::Upstream)?;
        let (a, b) = tokio::join!(u.quiet(Duration::from_secs(5), SETTLE), o.quiet(Duration::from_secs(5), SETTLE));
        a?;
        b?;
        let ours_over = u.mutations(&refs_u).await?;
        let upstream_over = o.mutations(&refs_o).await?;
        let after_takeover = u.state(specs).await?;
        // Events are each CCM's own (ours says more); the AWS state and the status must not move.
        let changed: Vec<String> = upstream_state
            .differences(&after_takeover)
            .iter()
            .filter(|d| !d.key.starts_with("k8s event"))
            .map(|d| format!("{}: {d}", batch.name))
            .collect();
        ensure!(changed.is_empty() || !ours_over.is_empty(), "state changed without a mutating call: {changed:?}");

        // 4. Baseline: upstream restarts on its own state.
        u.stop();
        u.cluster.proxy.reset_calls();
        u.start(CcmFlavor::Upstream)?;
        u.quiet(Duration::from_secs(5), SETTLE).await?;
        let baseline = u.mutations(&refs_u).await?;
        let mut budget: BTreeMap<&String, usize> = BTreeMap::new();
        for m in &baseline {
            *budget.entry(m).or_default() += 1;
        }
        // Services whose outcome already differed (ours refused what upstream made) are
        // declared differences; upstream making them on takeover is expected.
        let differing: Vec<&str> = batch
            .specs
            .iter()
            .map(|s| s.name)
            .filter(|name| {
                upstream_state.services.get(*name).and_then(|m| m.get("type"))
                    != our_state.services.get(*name).and_then(|m| m.get("type"))
            })
            .collect();
        for m in &upstream_over {
            if differing.iter().any(|name| m.contains(&format!("<lb:{name}>"))) {
                continue;
            }
            match budget.get_mut(m) {
                Some(n) if *n > 0 => *n -= 1,
                _ => report.beyond_baseline.push(format!("{}: {m}", batch.name)),
            }
        }
        let tag = |v: &[String]| v.iter().map(|m| format!("{}: {m}", batch.name)).collect::<Vec<_>>();
        report.ours_over_upstream.extend(tag(&ours_over));
        report.upstream_over_ours.extend(tag(&upstream_over));
        report.upstream_restart.extend(tag(&baseline));

        // 5. Ours deletes everything, in both clusters.
        u.start(ours())?;
        o.start(ours())?;
        let (a, b) = tokio::join!(u.delete_all(specs), o.delete_all(specs));
        a?;
        b?;
        u.cluster.assert_nothing_left().await?;
        o.cluster.assert_nothing_left().await?;
        // Also when the node group carries no (or only the legacy) cluster tag, which the
        // leftover check does not look at.
        for side in [&u, &o] {
            ensure!(side.node_group_rules().await? == 0, "{}: rules left on the node group", side.label);
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(err) = result {
        report.failures.push(format!(
            "batch {}: {err:#}\nupstream side: {}\nour side: {}",
            batch.name,
            u.log_tail(),
            o.log_tail()
        ));
    }
    Ok((u.finish().await?, o.finish().await?))
}

fn compare(batch: &Batch, upstream: &ClusterState, ours: &ClusterState, allowances: &[Allowance], report: &mut Report) {
    let differences = upstream.differences(ours);
    for spec in &batch.specs {
        report.services += 1;
        let mine: Vec<&Difference> = differences.iter().filter(|d| d.service == spec.name).collect();
        let outcome_differs = mine.iter().any(|d| d.key == "k8s ingress" || d.key == "type");
        report.same_outcome += usize::from(!outcome_differs);
        report.identical += usize::from(mine.iter().all(|d| d.key.starts_with("k8s event")));
    }
    let _ = writeln!(report.lines, "\n### batch {} ({} Services)\n", batch.name, batch.specs.len());
    for d in differences {
        match allowances.iter().find(|a| a.matches(&d)) {
            Some(a) => {
                *report.declared_used.entry(row_id(a)).or_default() += 1;
                let _ = writeln!(report.lines, "- declared {}: {d}", a.id);
            }
            None => {
                let _ = writeln!(report.lines, "- **undeclared**: {d}");
                report.undeclared.push(d);
            }
        }
    }
}

/// What ours wrote for the batch is what it planned (as a multiset: the Services' calls
/// interleave), and once it settled it plans nothing; Services that could not be planned still
/// cannot, for the same reason.
async fn check_plan(batch: &Batch, planned: &parity::ServicePlans, o: &Side, report: &mut Report) -> Result<()> {
    let calls = o.cluster.proxy.calls();
    let mut made: Vec<String> = calls
        .iter()
        .filter(|c| c.call.is_mutating())
        .map(|c| format!("aws/{}.{}", c.call.service, c.call.action))
        .collect();
    made.sort();
    let mut expected = planned.operations();
    // The one sanctioned difference: a planned batch of ingress rules that AWS refused because
    // one of them was already there (written meanwhile by another Service's ensure: the MTU rule
    // every NLB shares, the node rule of a group several ELBs share) is retried rule by rule.
    for c in &calls {
        let benign = match c.call.action.as_str() {
            "AuthorizeSecurityGroupIngress" => "InvalidPermission.Duplicate",
            "RevokeSecurityGroupIngress" => "InvalidPermission.NotFound",
            _ => continue,
        };
        if c.error_code() == Some(benign) && c.permissions() > 1 {
            report.rule_by_rule_retries += 1;
            expected.extend(std::iter::repeat_n(format!("aws/ec2.{}", c.call.action), c.permissions()));
        }
    }
    expected.sort();
    report.planned_services += planned.services.len();
    report.planned_operations += planned.operations().len();
    // Every other write exactly as planned; rule writes as planned but for the second Service
    // to write a shared rule, which finds it there.
    let (made_rules, made_other): (Vec<String>, Vec<String>) = made.into_iter().partition(|o| parity::is_ingress(o));
    let (expected_rules, expected_other): (Vec<String>, Vec<String>) =
        expected.into_iter().partition(|o| parity::is_ingress(o));
    let skippable = planned.skippable_ingress();
    let rules_fit = made_rules.len() <= expected_rules.len() && made_rules.len() + skippable >= expected_rules.len();
    report.shared_rule_writes_skipped += expected_rules.len().saturating_sub(made_rules.len());
    if made_other != expected_other || !rules_fit {
        report.plan_mismatches.push(format!(
            "{}: planned {expected_other:?} and {} rule writes ({skippable} of them skippable), made {made_other:?} and {} rule writes",
            batch.name,
            expected_rules.len(),
            made_rules.len()
        ));
    }
    let after = o.plan().await?;
    if !after.pending().is_empty() {
        report.plan_mismatches.push(format!("{}: still planned after the ensure: {:?}", batch.name, after.pending()));
    }
    if after.errors() != planned.errors() {
        report.plan_mismatches.push(format!(
            "{}: planning errors changed: before {:?}, after {:?}",
            batch.name,
            planned.errors(),
            after.errors()
        ));
    }
    Ok(())
}

fn render(r: &Report, stale: &[&Allowance]) -> String {
    let mut out = String::from("# Parity with upstream aws-cloud-controller-manager\n\n");
    let _ = writeln!(out, "| figure | value |\n|---|---|");
    let _ = writeln!(out, "| Services in the corpus | {} |", r.services);
    let _ = writeln!(out, "| same outcome (status, type) | {} |", r.same_outcome);
    let _ = writeln!(out, "| identical AWS state and status (event reasons aside) | {} |", r.identical);
    let _ = writeln!(out, "| undeclared differences | {} |", r.undeclared.len());
    let _ = writeln!(out, "| mutating calls, ours taking over upstream's | {} |", r.ours_over_upstream.len());
    let _ = writeln!(out, "| mutating calls, upstream taking over ours | {} |", r.upstream_over_ours.len());
    let _ =
        writeln!(out, "| mutating calls, upstream restarting on its own (baseline) | {} |", r.upstream_restart.len());
    let _ = writeln!(out, "| upstream's calls on ours beyond the baseline | {} |", r.beyond_baseline.len());
    let _ = writeln!(
        out,
        "| Services planned before ours ensured them / planned writes | {} / {} |",
        r.planned_services, r.planned_operations
    );
    let _ = writeln!(out, "| ensures whose writes differed from the plan | {} |", r.plan_mismatches.len());
    let _ = writeln!(
        out,
        "| planned rule batches retried rule by rule (a shared rule written meanwhile) | {} |",
        r.rule_by_rule_retries
    );
    let _ = writeln!(
        out,
        "| planned rule writes skipped (a shared rule another Service wrote first) | {} |",
        r.shared_rule_writes_skipped
    );
    let _ = writeln!(
        out,
        "| changes planned for upstream's load balancers before the takeover | {} |",
        r.takeover_plans.len()
    );
    // Failures first: CI shows the head and the tail of a long output.
    for (title, list) in [
        ("batch failures", &r.failures),
        ("plan and ensure disagree", &r.plan_mismatches),
        ("planned for upstream's load balancers before the takeover", &r.takeover_plans),
        ("beyond the baseline", &r.beyond_baseline),
        ("ours taking over upstream's", &r.ours_over_upstream),
        ("upstream taking over ours", &r.upstream_over_ours),
        ("upstream restarting (baseline)", &r.upstream_restart),
    ] {
        if !list.is_empty() {
            let _ = writeln!(
                out,
                "\n## {title}\n\n{}",
                list.iter().map(|m| format!("- {m}")).collect::<Vec<_>>().join("\n")
            );
        }
    }
    let _ = writeln!(out, "\n## declared differences seen\n");
    for (id, n) in &r.declared_used {
        let _ = writeln!(out, "- {id}: {n}");
    }
    if !stale.is_empty() {
        let _ = writeln!(out, "\n## stale declarations\n\n{stale:?}");
    }
    out.push_str("\n## per batch\n");
    out.push_str(&r.lines);
    out
}

/// The corpus uses every annotation for each type it applies to (so a key added to the registry
/// without a corpus entry fails here, before any emulator starts).
#[test]
fn corpus_covers_every_annotation_for_each_type() {
    use cloud_provider_aws::load_balancers::annotations::{Applies, REGISTRY, TYPE};
    let batches = corpus::batches();
    let specs: Vec<&parity::corpus::Spec> = batches.iter().flat_map(|b| &b.specs).collect();
    let is_nlb = |s: &parity::corpus::Spec| s.annotations.iter().any(|(k, v)| k == TYPE && v == "nlb");
    let mut missing = Vec::new();
    for a in REGISTRY {
        for (wanted, label) in [(Applies::Classic, "CLB"), (Applies::Nlb, "NLB")] {
            if a.applies != Applies::Both && a.applies != wanted {
                continue;
            }
            let used = specs
                .iter()
                .any(|s| (is_nlb(s) == (wanted == Applies::Nlb)) && s.annotations.iter().any(|(k, _)| k == a.key));
            if !used && a.key != TYPE {
                missing.push(format!("{} ({label})", a.key));
            }
        }
    }
    assert!(missing.is_empty(), "annotations no corpus Service uses: {missing:?}");
    assert!(specs.len() >= 60, "the corpus has {} Services; at least 60", specs.len());
}

/// Every flag upstream v1.37.1 lists in its `--help`, and its two hidden ones, is accepted by
/// ours, so an upstream manifest's command line starts (the values are checked later).
#[test]
fn every_upstream_flag_is_accepted() {
    use clap::Parser;
    use cloud_controller_manager::options::Args;
    let out = std::process::Command::new(ccm_e2e::upstream_binary()).arg("--help").output().expect("upstream --help");
    let help = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let mut flags: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("-v, ").unwrap_or(line);
        let Some(rest) = line.strip_prefix("--") else { continue };
        let mut words = rest.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        // The type word follows the name (`--kube-api-qps float32`, `-v, --v Level`); none: a bool.
        let kind = words
            .next()
            .filter(|w| *w == "Level" || !w.chars().next().is_some_and(char::is_uppercase))
            .unwrap_or("bool");
        flags.push((name, kind.to_string()));
    }
    flags.push(("node-sync-period".into(), "duration".into()));
    flags.push(("allow-untagged-cloud".into(), "bool".into()));
    assert!(flags.len() > 80, "upstream's --help lists {} flags: {help}", flags.len());
    let mut refused = Vec::new();
    for (name, kind) in &flags {
        if name == "help" || name == "version" {
            continue;
        }
        let value = match kind.as_str() {
            "bool" => "true",
            "duration" => "1m",
            "int" | "int32" | "float32" | "uint" | "Level" => "1",
            "ip" => "127.0.0.1",
            "mapStringBool" | "mapStringString" => "a=b",
            _ => "leases",
        };
        let arg = format!("--{name}={value}");
        if let Err(err) = Args::try_parse_from(["cloud-controller-manager", arg.as_str()]) {
            refused.push(format!("{arg}: {}", err.kind()));
        }
    }
    assert!(refused.is_empty(), "upstream flags ours refuses: {refused:#?}");
}

/// The Node controllers side by side: upstream's and ours initialize the same kubelet-registered
/// Nodes (plain, with `--node-ip`, with a dual-stack `--node-ip` the instance lacks, with
/// `--provider-id` and no pod CIDR), delete the Node of a terminated instance, taint the Node of
/// a stopped one, and route the pod CIDRs; then ours takes over without an AWS write.
#[tokio::test]
async fn upstream_parity_nodes() -> Result<()> {
    use parity::nodes::{CONTROLLERS, FLAGS};
    let _one = ONE_AT_A_TIME.lock().await;
    ccm_e2e::init_crypto();
    let allowances: Vec<Allowance> = declared::load()?.into_iter().filter(is_node_row).collect();
    let mut u = Side::for_nodes("up", ControlPlane::start()?).await?;
    let mut o = Side::for_nodes("our", ControlPlane::start()?).await?;
    u.start_with(CcmFlavor::Upstream, CONTROLLERS, &FLAGS)?;
    o.start_with(ours(), CONTROLLERS, &FLAGS)?;
    for side in [&u, &o] {
        support::eventually("the Nodes settled", SETTLE, || async {
            let state = side.node_state().await?;
            let get = |n: &str, k: &str| state.services.get(n).and_then(|m| m.get(k)).cloned().unwrap_or_default();
            let settled = !get("node-0", "taints").contains("uninitialized")
                && get("node-4", "exists") == "no"
                && get("node-5", "taints").contains("shutdown")
                && state.services.get("(routes)").is_some_and(|r| r.len() >= 4);
            Ok(settled.then_some(()))
        })
        .await
        .with_context(|| side.log_tail())?;
        side.quiet_writes(Duration::from_secs(8), SETTLE).await?;
    }
    let upstream_state = u.node_state().await?;
    let our_state = o.node_state().await?;
    let mut undeclared = Vec::new();
    let mut used = Vec::new();
    for d in upstream_state.differences(&our_state) {
        match allowances.iter().find(|a| a.matches(&d)) {
            Some(a) => used.push(row_id(a)),
            None => undeclared.push(d.to_string()),
        }
    }
    let stale: Vec<String> =
        allowances.iter().filter(|a| !a.sometimes && !used.contains(&row_id(a))).map(row_id).collect();
    eprintln!("node parity: {} Nodes; undeclared {undeclared:#?}; declared seen {used:?}", parity::nodes::NODES.len());

    // Ours takes over the Nodes and routes upstream made: no AWS write, nothing moves.
    u.stop();
    u.cluster.proxy.reset_calls();
    u.start_with(ours(), CONTROLLERS, &FLAGS)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    u.quiet_writes(Duration::from_secs(8), SETTLE).await?;
    // The one write allowed is D4's: the route upstream left to the terminated instance.
    let stale_route = upstream_state.services.get("(routes)").and_then(|r| r.get("10.244.4.0/24")).is_some();
    let writes: Vec<String> = u
        .mutations(&[])
        .await?
        .into_iter()
        .filter(|w| !(stale_route && w == "ec2/DeleteRoute 10.244.4.0/24"))
        .collect();
    let after = u.node_state().await?;
    let moved: Vec<String> = upstream_state
        .differences(&after)
        .iter()
        .filter(|d| {
            let declared_route = d.service == "(routes)" && d.key == "10.244.4.0/24";
            !d.key.starts_with("event") && !declared_route
        })
        .map(ToString::to_string)
        .collect();

    // Nothing of either cluster left: Nodes gone, ours removes their routes.
    o.stop();
    o.start_with(ours(), CONTROLLERS, &FLAGS)?;
    for side in [&u, &o] {
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(side.client.clone());
        nodes.delete_collection(&Default::default(), &Default::default()).await?;
        support::eventually("routes removed", SETTLE, || async {
            Ok(side.cluster.leftovers().await?.is_empty().then_some(()))
        })
        .await
        .with_context(|| side.log_tail())?;
    }
    ensure!(undeclared.is_empty(), "Node differences from upstream not declared in {}: {undeclared:#?}", declared::DOC);
    ensure!(stale.is_empty(), "stale node rows in {}: {stale:?}", declared::DOC);
    ensure!(writes.is_empty(), "taking over upstream's Nodes and routes, ours wrote to AWS: {writes:?}");
    ensure!(moved.is_empty(), "taking over, ours changed the Nodes: {moved:#?}");
    u.finish().await?;
    o.finish().await?;
    Ok(())
}
