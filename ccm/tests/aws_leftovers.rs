//! What a sync cut short leaves behind is cleaned up by the next one: a Classic ELB's own group
//! made just before the CCM was killed, the Service then turned into an NLB (the chaos soak met
//! this: the NLB's deletion later looked for NLB pieces only, and the group leaked).

mod support;

use anyhow::Result;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use kube::api::{Patch, PatchParams, PostParams};
use support::ground::ground;
use support::services::{lb_name, lb_service};

#[tokio::test]
async fn a_classic_elb_group_left_by_a_cut_short_sync_goes_when_the_service_becomes_an_nlb() -> Result<()> {
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
