//! The security-group rule quota (60 inbound rules per group by default, which moto enforces as
//! AWS does): a load balancer that would overflow the Nodes' group fails alone, before any
//! write, with one Warning naming the counts and the ways out; other Services go on; once room
//! is made, it goes through.

mod support;

use anyhow::{Context, Result};
use aws_sdk_ec2::types::{IpPermission, IpRange};
use ccm_e2e::Service as AwsService;
use kube::api::{Patch, PatchParams, PostParams};
use support::aws::WAIT;
use support::ground::{Ground, ground};
use support::services::{NLB, lb_service as service};
use support::{events, eventually};

/// Filler rules another tool wrote: TCP 1000 + i from 192.0.2.i/32.
fn filler(range: std::ops::Range<usize>) -> Vec<IpPermission> {
    range
        .map(|i| {
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(1000 + i as i32)
                .to_port(1000 + i as i32)
                .ip_ranges(IpRange::builder().cidr_ip(format!("192.0.2.{i}/32")).build())
                .build()
        })
        .collect()
}

async fn rule_count(g: &Ground) -> Result<usize> {
    let out = g.cluster.direct.ec2.describe_security_groups().group_ids(&g.vpc.node_security_group_id).send().await?;
    let group = out.security_groups().first().context("the node group")?;
    Ok(group.ip_permissions().iter().map(|p| p.ip_ranges().len() + p.user_id_group_pairs().len()).sum())
}

/// Fills the Nodes' group to 59 of its 60 rules with filler rules: (rules before, fillers).
async fn fill_to_59(g: &Ground) -> Result<(usize, usize)> {
    let before = rule_count(g).await?;
    let fill = 59 - before;
    let ec2 = &g.cluster.direct.ec2;
    let group = &g.vpc.node_security_group_id;
    ec2.authorize_security_group_ingress().group_id(group).set_ip_permissions(Some(filler(0..fill))).send().await?;
    assert_eq!(rule_count(g).await?, 59);
    Ok((before, fill))
}

#[tokio::test]
async fn a_load_balancer_that_would_overflow_the_node_group_fails_alone_until_there_is_room() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("quota", 2, "").await?;
    let ec2 = &g.cluster.direct.ec2;
    let node_group = g.vpc.node_security_group_id.clone();
    let (before, fill) = fill_to_59(&g).await?;
    g.cluster.proxy.reset_calls();

    // An NLB with two ports needs three rules there (two client ports and the MTU rule).
    let services = g.services();
    services.create(&PostParams::default(), &service("big", &[NLB], &[(80, "TCP"), (443, "TCP")])).await?;
    let expected = format!("{node_group} has 59 inbound rules and this load balancer needs 3 more");
    let warning = eventually("the quota Warning", WAIT, || async {
        let found = events(&g.client, "default", "big").await?;
        Ok(found.into_iter().find(|(kind, reason, message, _)| {
            kind == "Warning" && reason == "SyncLoadBalancerFailed" && message.contains(&expected)
        }))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;
    for way in ["SecurityGroupRuleQuota", "DisableSecurityGroupIngress", "nothing was changed"] {
        assert!(warning.2.contains(way), "the Warning should say {way:?}: {}", warning.2);
    }
    let writes = g.cluster.proxy.mutating_calls();
    assert!(writes.is_empty(), "nothing may be written for a load balancer that cannot fit: {writes:?}");

    // Another Service goes on: a Classic ELB needs one rule, and there is room for one.
    services.create(&PostParams::default(), &service("small", &[], &[(80, "TCP")])).await?;
    g.hostname("small").await?;
    assert_eq!(rule_count(&g).await?, 60);
    let elbv2_writes = g.cluster.proxy.mutating_calls().into_iter().filter(|c| c.service == AwsService::Elbv2).count();
    assert_eq!(elbv2_writes, 0, "the NLB was not started meanwhile");
    let warnings: Vec<_> =
        events(&g.client, "default", "big").await?.into_iter().filter(|e| e.0 == "Warning").collect();
    assert_eq!(warnings.len(), 1, "one Warning, not one per retry: {warnings:?}");

    // Room made (the Classic ELB and ten filler rules go), then the Service edited: it goes through.
    g.delete_service("small").await?;
    ec2.revoke_security_group_ingress().group_id(&node_group).set_ip_permissions(Some(filler(0..10))).send().await?;
    let touch = serde_json::json!({"metadata": {"annotations": {"example.com/touched": "1"}}});
    services.patch("big", &PatchParams::default(), &Patch::Merge(&touch)).await?;
    g.hostname("big").await?;
    assert_eq!(rule_count(&g).await?, 49 + 3);

    g.delete_service("big").await?;
    ec2.revoke_security_group_ingress().group_id(&node_group).set_ip_permissions(Some(filler(10..fill))).send().await?;
    assert_eq!(rule_count(&g).await?, before);
    g.cluster.assert_nothing_left().await
}

/// `NLBBackendSecurityGroup`: every managed NLB also carries the cluster's backend group, and
/// the Nodes' group admits that group once, so a group with one rule free takes any number of
/// NLBs; the last NLB's deletion removes the rule and the group.
#[tokio::test]
async fn with_the_shared_backend_group_a_nearly_full_node_group_takes_many_nlbs() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("backend", 2, "NLBSecurityGroupMode = Managed\nNLBBackendSecurityGroup = true\n").await?;
    let ec2 = &g.cluster.direct.ec2;
    let node_group = g.vpc.node_security_group_id.clone();
    let (_, fill) = fill_to_59(&g).await?;

    let services = g.services();
    let names = ["nlb-1", "nlb-2", "nlb-3", "nlb-4"];
    for name in names {
        services.create(&PostParams::default(), &service(name, &[NLB], &[(80, "TCP"), (443, "TCP")])).await?;
    }
    for name in names {
        g.hostname(name).await?;
    }
    assert_eq!(rule_count(&g).await?, 60, "one rule for all four NLBs");
    let backend = ec2
        .describe_security_groups()
        .filters(group_filter("group-name", &format!("k8s-nlb-backend-{}", g.vpc.cluster_id)))
        .send()
        .await?;
    let backend_id = backend.security_groups().first().and_then(|s| s.group_id()).context("the backend group")?;
    let nlbs = g.cluster.direct.elbv2.describe_load_balancers().send().await?;
    for lb in nlbs.load_balancers() {
        assert!(lb.security_groups().iter().any(|s| s == backend_id), "every NLB carries the backend group: {lb:?}");
        assert_eq!(lb.security_groups().len(), 2, "its own group and the backend group");
    }

    for name in names {
        g.delete_service(name).await?;
    }
    assert_eq!(rule_count(&g).await?, 59, "the backend rule goes with the last NLB");
    ec2.revoke_security_group_ingress().group_id(&node_group).set_ip_permissions(Some(filler(0..fill))).send().await?;
    g.cluster.assert_nothing_left().await
}

fn group_filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder().name(name).values(value).build()
}
