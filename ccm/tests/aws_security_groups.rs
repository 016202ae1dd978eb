//! Security groups around the load balancers: rules added one by one when a batch holds one
//! that exists, the users' groups and rules never touched by a deletion, and a group given to
//! several Classic ELBs keeping its node rule while any of them uses it. The real binary against
//! the real apiserver and moto, through the proxy; nothing of the cluster's left at the end.

mod support;

use anyhow::{Context, Result};
use ccm_e2e::{FaultRule, Service as AwsService, TestCluster};
use kube::api::{DeleteParams, PostParams};
use support::aws::WAIT;
use support::eventually;
use support::ground::{ground, ground_prepared};
use support::services::{NLB, lb_service as service};

/// AWS refuses a whole AuthorizeSecurityGroupIngress batch when one rule in it exists already
/// (a concurrent sync or another tool added it): the rest of the batch is then added rule by
/// rule, not silently dropped.
#[tokio::test]
async fn a_duplicate_rule_does_not_drop_the_rest_of_its_batch() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("duplicate", 2, "").await?;
    g.cluster.proxy.reset_calls();
    g.cluster.proxy.inject(
        FaultRule::error(400, "InvalidPermission.Duplicate")
            .on_service(AwsService::Ec2)
            .on_action("AuthorizeSecurityGroupIngress")
            .times(1),
    );
    let ranges = ("service.beta.kubernetes.io/load-balancer-source-ranges", "10.0.0.0/8,192.168.0.0/16");
    g.services().create(&PostParams::default(), &service("ranges", &[NLB, ranges], &[(80, "TCP")])).await?;
    g.hostname("ranges").await?;
    assert_eq!(g.cluster.proxy.count_faulted(AwsService::Ec2, "AuthorizeSecurityGroupIngress"), 1);
    let groups =
        g.cluster.direct.ec2.describe_security_groups().group_ids(&g.vpc.node_security_group_id).send().await?;
    let mut rules: Vec<(String, String)> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| {
            p.ip_ranges().iter().map(move |r| {
                (p.ip_protocol().unwrap_or_default().to_string(), r.cidr_ip().unwrap_or_default().to_string())
            })
        })
        .collect();
    rules.sort();
    rules.dedup();
    for wanted in [("icmp", "10.0.0.0/8"), ("icmp", "192.168.0.0/16"), ("tcp", "10.0.0.0/8"), ("tcp", "192.168.0.0/16")]
    {
        assert!(
            rules.contains(&(wanted.0.to_string(), wanted.1.to_string())),
            "{wanted:?} missing from the node group: {rules:?}"
        );
    }
    g.delete_and_check("ranges").await
}

/// Ingress rules of a group: (protocol, from port, source group or CIDR).
async fn ingress_of(cluster: &TestCluster, group: &str) -> Result<Vec<(String, i32, String)>> {
    let out = cluster.direct.ec2.describe_security_groups().group_ids(group).send().await?;
    let mut rules = Vec::new();
    for p in out.security_groups().iter().flat_map(|g| g.ip_permissions()) {
        let head = (p.ip_protocol().unwrap_or_default().to_string(), p.from_port().unwrap_or(-1));
        for pair in p.user_id_group_pairs() {
            rules.push((head.0.clone(), head.1, pair.group_id().unwrap_or_default().to_string()));
        }
        for r in p.ip_ranges() {
            rules.push((head.0.clone(), head.1, r.cidr_ip().unwrap_or_default().to_string()));
        }
    }
    rules.sort();
    Ok(rules)
}

/// The brownfield's user groups given through `extra-security-groups` (tagged `owned` for the
/// cluster, as kops and EKS tag their groups) and `security-groups` (untagged), with a third
/// group whose rules reference them: deleting the Services deletes neither group and revokes
/// none of those rules (the upstream behaviour, and the rule: only what this controller made
/// goes). `assert_nothing_left` compares the whole brownfield with its snapshot.
#[tokio::test]
async fn deletion_never_touches_the_users_groups_or_rules() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("users-groups", 1, "").await?;
    let b = g.vpc.brownfield.clone().context("the seed's brownfield")?;
    let (owned, plain) = (b.user_groups["owned"].clone(), b.user_groups["plain"].clone());
    let extra = ("service.beta.kubernetes.io/aws-load-balancer-extra-security-groups", owned.as_str());
    let replace = ("service.beta.kubernetes.io/aws-load-balancer-security-groups", plain.as_str());
    g.services().create(&PostParams::default(), &service("extra", &[extra], &[(80, "TCP")])).await?;
    g.services().create(&PostParams::default(), &service("replace", &[replace], &[(81, "TCP")])).await?;
    g.hostname("extra").await?;
    g.hostname("replace").await?;
    let third_before = ingress_of(&g.cluster, &b.third_group).await?;
    assert!(third_before.iter().any(|(_, _, source)| source == &owned), "the fixture's rule: {third_before:?}");
    let services = g.services();
    for name in ["extra", "replace"] {
        services.delete(name, &DeleteParams::default()).await?;
    }
    eventually("the Services gone", WAIT, || async {
        Ok((services.get_opt("extra").await?.is_none() && services.get_opt("replace").await?.is_none()).then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;
    let still = g.cluster.direct.ec2.describe_security_groups().group_ids(&owned).group_ids(&plain).send().await?;
    assert_eq!(still.security_groups().len(), 2, "a user's group was deleted");
    assert_eq!(ingress_of(&g.cluster, &b.third_group).await?, third_before, "the third group's rules");
    g.cluster.assert_nothing_left().await
}

/// One `ElbSecurityGroup` for every Classic ELB: deleting one Service keeps the node rule the
/// others need; the last one's deletion removes it. (Upstream removes it with the first.)
#[tokio::test]
async fn a_shared_elb_security_group_keeps_its_node_rule_while_any_service_uses_it() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let shared = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let keep = shared.clone();
    let g = ground_prepared("shared-sg", 1, move |_, vpc| {
        Box::pin(async move {
            // The brownfield's group meant for several Services (tagged `owned`).
            let id = vpc.brownfield.as_ref().context("the seed's brownfield")?.user_groups["shared"].clone();
            *keep.lock().unwrap() = id.clone();
            Ok(format!("ElbSecurityGroup = {id}\n"))
        })
    })
    .await?;
    let shared = shared.lock().unwrap().clone();
    for name in ["first", "second", "third"] {
        g.services().create(&PostParams::default(), &service(name, &[], &[(80, "TCP")])).await?;
        g.hostname(name).await?;
    }
    let from_shared = ("-1".to_string(), -1, shared.clone());
    assert!(ingress_of(&g.cluster, &g.vpc.node_security_group_id).await?.contains(&from_shared));
    let services = g.services();
    services.delete("first", &DeleteParams::default()).await?;
    eventually("first gone", WAIT, || async { Ok(services.get_opt("first").await?.is_none().then_some(())) }).await?;
    assert!(
        ingress_of(&g.cluster, &g.vpc.node_security_group_id).await?.contains(&from_shared),
        "the second Service's traffic was cut"
    );
    // A Service made after that deletion looked (which remembered the second and third as the
    // group's users) keeps the rule when those two go.
    g.services().create(&PostParams::default(), &service("fourth", &[], &[(80, "TCP")])).await?;
    g.hostname("fourth").await?;
    // Two at once: deleted concurrently, each sees the other still there when it starts.
    services.delete("second", &DeleteParams::default()).await?;
    services.delete("third", &DeleteParams::default()).await?;
    eventually("second and third gone", WAIT, || async {
        Ok((services.get_opt("second").await?.is_none() && services.get_opt("third").await?.is_none()).then_some(()))
    })
    .await?;
    assert!(
        ingress_of(&g.cluster, &g.vpc.node_security_group_id).await?.contains(&from_shared),
        "the fourth Service's traffic was cut"
    );
    // The rule goes with the last of them.
    g.delete_service("fourth").await?;
    assert!(!ingress_of(&g.cluster, &g.vpc.node_security_group_id).await?.contains(&from_shared), "left behind");
    g.cluster.assert_nothing_left().await
}
