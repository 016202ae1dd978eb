//! What a sync cut short leaves behind is cleaned up by the next one: a Classic ELB's own group
//! made just before the CCM was killed, the Service then turned into an NLB (the chaos soak met
//! this: the NLB's deletion later looked for NLB pieces only, and the group leaked), and an
//! NLB's target groups and rules left the same way, the Service then turned Classic.

mod support;

use anyhow::{Context, Result};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use kube::api::{Patch, PatchParams, PostParams};
use support::aws::{WAIT, off_aws_config, start};
use support::eventually;
use support::ground::ground;
use support::services::{lb_name, lb_service};

#[tokio::test]
async fn a_classic_elb_group_left_by_a_cut_short_sync_goes_when_the_service_becomes_an_nlb() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("leftover", 2, "").await?;
    let ec2 = &g.cluster.direct.ec2;
    let services = g.services();

    // The Service, not yet a LoadBalancer: its UID names the load balancer and its group.
    let mut svc = lb_service("cut-short", &[], &[(80, "TCP")]);
    svc.spec.as_mut().expect("spec").type_ = Some("ClusterIP".into());
    let svc = services.create(&PostParams::default(), &svc).await?;
    let group_name = format!("k8s-elb-{}", lb_name(&svc));
    // What a Classic ELB sync had made when it was cut short: its own group, tagged as the
    // CCM tags it, and no load balancer.
    let owned = Tag::builder().key(g.cluster.cluster_tag_key()).value("owned").build();
    ec2.create_security_group()
        .group_name(&group_name)
        .description("Security group for Kubernetes ELB (default/cut-short)")
        .vpc_id(&g.vpc.vpc_id)
        .tag_specifications(TagSpecification::builder().resource_type(ResourceType::SecurityGroup).tags(owned).build())
        .send()
        .await?;

    // Now an NLB.
    let patch = serde_json::json!({
        "metadata": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
        "spec": {"type": "LoadBalancer"},
    });
    services.patch("cut-short", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    g.hostname("cut-short").await?;
    let left = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(&group_name).build())
        .filters(Filter::builder().name("vpc-id").values(&g.vpc.vpc_id).build())
        .send()
        .await?;
    assert!(left.security_groups().is_empty(), "the Classic ELB's group is still there:\n{}", g.ccm.log_tail(30));

    g.delete_and_check("cut-short").await
}

/// The reverse, as the chaos soak met it: a restart cut short the deletion of a Service's NLB
/// (the Service had just been turned Classic) after the NLB went and before its target groups
/// and node rules did. The next sync, now for a Classic ELB, finds no NLB by name; what it left
/// is found by the NLB's node rules (`rules`), or, when the CCM writes no rules, by the
/// Service's status still showing the NLB, and goes before anything else.
async fn nlb_pieces_left_by_a_cut_short_type_change_go(rules: bool) -> Result<()> {
    let config = if rules { "" } else { "DisableSecurityGroupIngress = true\n" };
    let mut g = ground(if rules { "nlb-left" } else { "nlb-left-norules" }, 2, config).await?;
    let services = g.services();
    let svc = lb_service("half-gone", &[("service.beta.kubernetes.io/aws-load-balancer-type", "nlb")], &[(80, "TCP")]);
    services.create(&PostParams::default(), &svc).await?;
    let nlb_host = g.hostname("half-gone").await?;
    let elbv2 = &g.cluster.direct.elbv2;
    let groups_before = elbv2.describe_target_groups().send().await?.target_groups().len();
    assert!(groups_before > 0, "the NLB has no target group");

    // The crash: the NLB deleted, then the CCM killed before anything else went.
    g.ccm.kill();
    let nlbs = elbv2.describe_load_balancers().send().await?;
    let arn = nlbs.load_balancers().first().and_then(|lb| lb.load_balancer_arn()).expect("the NLB").to_string();
    elbv2.delete_load_balancer().load_balancer_arn(&arn).send().await?;
    let patch = serde_json::json!({
        "metadata": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": null}},
    });
    services.patch("half-gone", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    g.ccm = start(
        &g.cluster,
        &format!("{}{config}", off_aws_config(&g.cluster, &g.vpc)),
        None,
        &["--controllers=service,cloud-node", "--load-balancer-resync-period=3s"],
    )?;

    eventually("the Classic ELB in the status", WAIT, || async {
        let host = g.hostname("half-gone").await?;
        Ok((host != nlb_host).then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;
    let left = elbv2.describe_target_groups().send().await?;
    assert!(
        left.target_groups().is_empty(),
        "target groups left: {:?}\n{}",
        left.target_groups().iter().map(|t| t.target_group_name()).collect::<Vec<_>>(),
        g.ccm.log_tail(40)
    );
    // Which way it was found: the node rules when there are some, else the status.
    let found_by_rules = std::fs::read_to_string(&g.ccm.log)?.contains("deleting what an NLB of this Service left");
    assert_eq!(found_by_rules, rules, "{}", g.ccm.log_tail(40));
    g.delete_and_check("half-gone").await
}

#[tokio::test]
async fn an_nlb_deletion_cut_short_by_a_restart_is_finished_when_the_service_is_classic() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    nlb_pieces_left_by_a_cut_short_type_change_go(true).await
}

#[tokio::test]
async fn without_node_rules_the_status_tells_that_an_nlb_was_there() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    nlb_pieces_left_by_a_cut_short_type_change_go(false).await
}
