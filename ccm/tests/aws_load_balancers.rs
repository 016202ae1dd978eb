//! Classic ELB and NLB from Service annotations: the real binary against the real apiserver and
//! moto, through the proxy. Every test ends with nothing of the cluster's left in AWS.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use ccm_e2e::{FaultRule, SeedOptions, Service as AwsService, TestCluster};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::aws::{WAIT, off_aws_config, register, start, wait_all_initialized};
use support::ground::{Ground, ground};
use support::services::{NLB, lb_name, lb_service as service};
use support::{event_reasons, eventually};

/// The service controller's count of full ensures (periodic ones included).
const LB_SYNCS: &str = "service_controller_loadbalancer_sync_total";

/// The AWS call budget of one operation (the numbers are in docs/load-balancers.md).
fn assert_budget(what: &str, g: &Ground, total: usize, mutating: usize) {
    let calls = g.cluster.proxy.calls().len();
    let writes = g.cluster.proxy.mutating_calls().len();
    assert!(
        calls <= total && writes <= mutating,
        "{what}: {calls} calls ({writes} mutating), budget {total} ({mutating}): {:?}",
        g.cluster.proxy.summary()
    );
}

#[tokio::test]
async fn classic_elb_create_follow_nodes_steady_state_and_delete() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("clb", 2, "").await?;
    let created = g.services().create(&PostParams::default(), &service("web", &[], &[(80, "TCP")])).await?;
    let lb_name = lb_name(&created);
    let hostname = g.hostname("web").await?;
    let creates = g.cluster.proxy.summary();
    eprintln!("CLB create: {creates:?}");
    assert_budget("CLB create", &g, 30, 8);

    let elb = &g.cluster.direct.elb;
    let described = elb.describe_load_balancers().load_balancer_names(&lb_name).send().await?;
    let lb = &described.load_balancer_descriptions()[0];
    assert_eq!(lb.dns_name(), Some(hostname.as_str()));
    let svc = g.services().get("web").await?;
    let node_port = svc.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    let listener = lb.listener_descriptions()[0].listener().unwrap();
    assert_eq!((listener.protocol(), listener.load_balancer_port(), listener.instance_port()), ("TCP", 80, node_port));
    assert_eq!(lb.instances().len(), 2);
    assert_eq!(lb.health_check().unwrap().target(), format!("TCP:{node_port}"));
    let public: Vec<&str> = g.vpc.subnets.iter().filter(|s| s.public).map(|s| s.id.as_str()).collect();
    let mut subnets: Vec<&str> = lb.subnets().iter().map(String::as_str).collect();
    subnets.sort();
    let mut expected = public.clone();
    expected.sort();
    assert_eq!(subnets, expected, "one public subnet per zone");
    // Its own security group, upstream's name, exactly the source-range rules plus ICMP 3/4.
    let groups = g.cluster.direct.ec2.describe_security_groups().group_ids(&lb.security_groups()[0]).send().await?;
    let group = &groups.security_groups()[0];
    assert_eq!(group.group_name(), Some(format!("k8s-elb-{lb_name}").as_str()));
    let mut rules: Vec<(String, i32)> = group
        .ip_permissions()
        .iter()
        .map(|p| (p.ip_protocol().unwrap_or_default().to_string(), p.from_port().unwrap_or_default()))
        .collect();
    rules.sort();
    assert_eq!(rules, [("icmp".to_string(), 3), ("tcp".to_string(), 80)]);
    // The node group admits the ELB's group.
    let nodes_group =
        g.cluster.direct.ec2.describe_security_groups().group_ids(&g.vpc.node_security_group_id).send().await?;
    let refs: Vec<&str> = nodes_group.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| p.user_id_group_pairs())
        .filter_map(|p| p.group_id())
        .collect();
    assert_eq!(refs, [group.group_id().unwrap()]);
    let tags = elb.describe_tags().load_balancer_names(&lb_name).send().await?;
    let keys: Vec<&str> = tags.tag_descriptions()[0].tags().iter().map(|t| t.key()).collect();
    assert!(keys.contains(&g.cluster.cluster_tag_key().as_str()) && keys.contains(&"kubernetes.io/service-name"));

    // Excluding a Node removes its instance.
    let nodes: Api<Node> = Api::all(g.client.clone());
    let exclude = serde_json::json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true"}}});
    nodes.patch(&g.vpc.instances[0].private_dns, &PatchParams::default(), &Patch::Merge(&exclude)).await?;
    eventually("instance deregistered", WAIT, || async {
        let d = elb.describe_load_balancers().load_balancer_names(&lb_name).send().await?;
        let ids: Vec<String> = d.load_balancer_descriptions()[0]
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(String::from))
            .collect();
        Ok((ids == [g.vpc.instances[1].id.clone()]).then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;

    // Steady state: re-ensured every 3 s, without a single mutating call.
    tokio::time::sleep(Duration::from_secs(2)).await;
    g.cluster.proxy.reset_calls();
    let before = g.ccm.metric(LB_SYNCS)?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let steady = g.cluster.proxy.summary();
    eprintln!("CLB steady state (7 s, resync every 3 s): {steady:?}");
    assert!(g.ccm.metric(LB_SYNCS)? - before >= 2.0, "re-ensured: {steady:?}");
    assert_eq!(g.cluster.proxy.mutating_calls(), [], "nothing changed, so nothing is written");

    g.cluster.proxy.reset_calls();
    g.delete_and_check("web").await?;
    eprintln!("CLB delete: {:?}", g.cluster.proxy.summary());
    assert_budget("CLB delete", &g, 20, 4);
    Ok(())
}

#[tokio::test]
async fn nlb_with_local_traffic_health_check_targets_and_node_rules() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("nlb", 2, "").await?;
    let mut svc = service("edge", &[NLB], &[(443, "TCP"), (80, "TCP")]);
    svc.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
    let created = g.services().create(&PostParams::default(), &svc).await?;
    let lb_name = lb_name(&created);
    g.hostname("edge").await?;
    eprintln!("NLB create: {:?}", g.cluster.proxy.summary());
    assert_budget("NLB create (2 ports)", &g, 32, 10);

    let elbv2 = &g.cluster.direct.elbv2;
    let lbs = elbv2.describe_load_balancers().names(&lb_name).send().await?;
    let arn = lbs.load_balancers()[0].load_balancer_arn().unwrap().to_string();
    let listeners = elbv2.describe_listeners().load_balancer_arn(&arn).send().await?;
    let mut ports: Vec<i32> = listeners.listeners().iter().filter_map(|l| l.port()).collect();
    ports.sort();
    assert_eq!(ports, [80, 443], "one listener per port, none duplicated");
    let svc = g.services().get("edge").await?;
    let spec = svc.spec.clone().unwrap();
    let hc_port = spec.health_check_node_port.unwrap();
    let tgs = elbv2.describe_target_groups().load_balancer_arn(&arn).send().await?;
    assert_eq!(tgs.target_groups().len(), 2);
    for tg in tgs.target_groups() {
        assert!(tg.target_group_name().unwrap().starts_with("k8s-default-edge-"));
        assert_eq!(tg.health_check_protocol().map(|p| p.as_str()), Some("HTTP"));
        assert_eq!(tg.health_check_path(), Some("/healthz"));
        assert_eq!(tg.health_check_port(), Some(hc_port.to_string().as_str()));
        let health = elbv2.describe_target_health().target_group_arn(tg.target_group_arn().unwrap()).send().await?;
        assert_eq!(health.target_health_descriptions().len(), 2, "both instances on the node port");
    }
    // Node rules carry upstream's markers.
    let nodes_group =
        g.cluster.direct.ec2.describe_security_groups().group_ids(&g.vpc.node_security_group_id).send().await?;
    let descriptions: Vec<String> = nodes_group.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.description().map(String::from))
        .collect();
    assert!(descriptions.contains(&format!("kubernetes.io/rule/nlb/client={lb_name}")), "{descriptions:?}");
    assert!(descriptions.contains(&format!("kubernetes.io/rule/nlb/health={lb_name}")), "{descriptions:?}");
    assert!(descriptions.contains(&"kubernetes.io/rule/nlb/mtu".to_string()), "{descriptions:?}");

    // Steady state: re-ensured every 3 s without a mutating call.
    tokio::time::sleep(Duration::from_secs(2)).await;
    g.cluster.proxy.reset_calls();
    let before = g.ccm.metric(LB_SYNCS)?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    eprintln!("NLB steady state (7 s, resync every 3 s): {:?}", g.cluster.proxy.summary());
    assert!(g.ccm.metric(LB_SYNCS)? - before >= 2.0, "re-ensured");
    assert_eq!(g.cluster.proxy.mutating_calls(), [], "nothing changed, so nothing is written");

    g.cluster.proxy.reset_calls();
    g.delete_and_check("edge").await?;
    eprintln!("NLB delete: {:?}", g.cluster.proxy.summary());
    assert_budget("NLB delete (2 ports)", &g, 20, 6);
    Ok(())
}

#[tokio::test]
async fn invalid_annotations_are_reported_together_and_change_nothing() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("invalid", 2, "").await?;
    let created = g.services().create(&PostParams::default(), &service("good", &[], &[(80, "TCP")])).await?;
    let hostname = g.hostname("good").await?;

    // Two bad values and one key upstream rejects on a Classic ELB: one Warning naming all
    // three; no writes.
    g.cluster.proxy.reset_calls();
    let bad = serde_json::json!({"metadata": {"annotations": {
        "service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout": "forever",
        "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "1",
        "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes": "proxy_protocol_v2.enabled=true",
    }}});
    g.services().patch("good", &PatchParams::default(), &Patch::Merge(&bad)).await?;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(g.client.clone(), "default");
    let message = eventually("the Warning", WAIT, || async {
        let list = events.list(&kube::api::ListParams::default().fields("involvedObject.name=good")).await?;
        Ok(list
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SyncLoadBalancerFailed"))
            .and_then(|e| e.message))
    })
    .await?;
    for needle in [
        "connection-idle-timeout",
        "healthcheck-interval",
        "target-group-attributes applies to NLB only",
        "nothing was changed",
    ] {
        assert!(message.contains(needle), "{needle:?} missing in {message}");
    }
    // From now on (a sync already running when the annotations changed has finished), every
    // re-sync stops at the annotations: not a single AWS call.
    tokio::time::sleep(Duration::from_secs(2)).await;
    g.cluster.proxy.reset_calls();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(g.cluster.proxy.summary(), Default::default(), "invalid annotations: not even a describe");
    let svc = g.services().get("good").await?;
    let still = svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).unwrap_or_default();
    assert_eq!(still[0].hostname.as_deref(), Some(hostname.as_str()), "the existing LB keeps serving");

    // The existing load balancer still follows the Nodes: one leaves, its instance goes, and
    // nothing the annotations describe is touched.
    let nodes: Api<Node> = Api::all(g.client.clone());
    let exclude = serde_json::json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true"}}});
    nodes.patch(&g.vpc.instances[0].private_dns, &PatchParams::default(), &Patch::Merge(&exclude)).await?;
    let lb_name = lb_name(&created);
    let elb = &g.cluster.direct.elb;
    eventually("the excluded Node's instance deregistered", WAIT, || async {
        let d = elb.describe_load_balancers().load_balancer_names(&lb_name).send().await?;
        let ids: Vec<String> = d.load_balancer_descriptions()[0]
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(String::from))
            .collect();
        Ok((ids == [g.vpc.instances[1].id.clone()]).then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;
    let writes: Vec<String> = g.cluster.proxy.mutating_calls().iter().map(|c| c.action.clone()).collect();
    assert_eq!(writes, ["DeregisterInstancesFromLoadBalancer"], "a host update only");
    assert!(event_reasons(&g.client, "default", "good").await?.iter().any(|(_, r)| r == "UpdatedLoadBalancer"));
    g.delete_and_check("good").await
}

#[tokio::test]
async fn unknown_keys_warn_but_the_load_balancer_works() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("unknown", 1, "").await?;
    let annotations = [("service.beta.kubernetes.io/aws-load-balancer-target-type", "ip")];
    g.services().create(&PostParams::default(), &service("migrating", &annotations, &[(80, "TCP")])).await?;
    g.hostname("migrating").await?;
    let reasons = eventually("the Warning", WAIT, || async {
        let reasons = event_reasons(&g.client, "default", "migrating").await?;
        Ok(reasons.iter().any(|(_, r)| r == "UnsupportedAnnotation").then_some(reasons))
    })
    .await?;
    assert!(reasons.contains(&("Warning".to_string(), "UnsupportedAnnotation".to_string())), "{reasons:?}");
    g.delete_and_check("migrating").await
}

#[tokio::test]
async fn changing_the_type_replaces_the_load_balancer_completely() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("typechange", 1, "").await?;
    let created = g.services().create(&PostParams::default(), &service("flip", &[], &[(80, "TCP")])).await?;
    let lb_name = lb_name(&created);
    g.hostname("flip").await?;
    let to_nlb = serde_json::json!({"metadata": {"annotations": {NLB.0: NLB.1}}});
    g.services().patch("flip", &PatchParams::default(), &Patch::Merge(&to_nlb)).await?;
    eventually("the NLB", WAIT, || async {
        let found = g.cluster.direct.elbv2.describe_load_balancers().names(&lb_name).send().await.is_ok();
        Ok(found.then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;
    let classic = g.cluster.direct.elb.describe_load_balancers().load_balancer_names(&lb_name).send().await;
    assert!(classic.is_err(), "the Classic ELB is gone");
    let groups = g.cluster.leftovers().await?.security_groups;
    assert!(groups.is_empty(), "its security group too: {groups:?}");

    // LoadBalancer → ClusterIP removes the NLB completely (upstream leaks it).
    let to_cluster_ip = serde_json::json!({"spec": {"type": "ClusterIP", "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": null}]}});
    g.services().patch("flip", &PatchParams::default(), &Patch::Merge(&to_cluster_ip)).await?;
    eventually("nothing left after ClusterIP", WAIT, || async {
        Ok(g.cluster.leftovers().await?.is_empty().then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;
    g.delete_and_check("flip").await
}

#[tokio::test]
async fn a_fault_halfway_through_deletion_still_leaves_nothing() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("delfault", 1, "").await?;
    g.services().create(&PostParams::default(), &service("fragile", &[], &[(80, "TCP")])).await?;
    g.hostname("fragile").await?;
    // The ELB deletion succeeds, then its security group is "still in use" once (AWS's
    // DependencyViolation, which moto never sends) and fails with a 500 once.
    g.cluster.proxy.inject(FaultRule::error(400, "DependencyViolation").on_action("DeleteSecurityGroup").times(1));
    g.cluster
        .proxy
        .inject(FaultRule::server_error(500).on_service(AwsService::Ec2).on_action("DeleteSecurityGroup").times(1));
    g.cluster
        .proxy
        .inject(FaultRule::throttle().on_service(AwsService::Ec2).on_action("RevokeSecurityGroupIngress").times(1));
    // Meanwhile another Service is served: the waiting delete holds no worker.
    g.delete_and_check_with(|| async {
        g.services().create(&PostParams::default(), &service("meanwhile", &[], &[(80, "TCP")])).await?;
        g.hostname("meanwhile").await?;
        Ok(())
    })
    .await?;
    assert_eq!(g.cluster.proxy.count_faulted(AwsService::Ec2, "DeleteSecurityGroup"), 2, "both faults were injected");
    g.delete_and_check("meanwhile").await
}

/// A Classic ELB made the way upstream makes it (names, tags, security group, rules, listener,
/// health check, registered instances) is adopted without a single mutating AWS call.
#[tokio::test]
async fn an_upstream_classic_elb_is_adopted_untouched() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    use aws_sdk_elasticloadbalancing::types::{HealthCheck, Instance as ElbInstance, Listener, Tag};
    let _serial = support::serial().await;
    let cluster = TestCluster::new("adopt").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(2)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services.create(&PostParams::default(), &service("legacy", &[], &[(80, "TCP")])).await?;
    let lb_name = lb_name(&svc);
    let node_port = svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap();

    // What upstream would have left in AWS for this Service.
    let ec2 = &cluster.direct.ec2;
    let owned = aws_sdk_ec2::types::Tag::builder().key(cluster.cluster_tag_key()).value("owned").build();
    let sg = ec2
        .create_security_group()
        .group_name(format!("k8s-elb-{lb_name}"))
        .description(format!("Security group for Kubernetes ELB {lb_name} (default/legacy)"))
        .vpc_id(&vpc.vpc_id)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .tags(owned)
                .build(),
        )
        .send()
        .await?
        .group_id()
        .unwrap()
        .to_string();
    let cidr = |from: i32, to: i32, proto: &str| {
        aws_sdk_ec2::types::IpPermission::builder()
            .ip_protocol(proto)
            .from_port(from)
            .to_port(to)
            .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build()
    };
    ec2.authorize_security_group_ingress()
        .group_id(&sg)
        .ip_permissions(cidr(80, 80, "tcp"))
        .ip_permissions(cidr(3, 4, "icmp"))
        .send()
        .await?;
    let from_lb = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("-1")
        .user_id_group_pairs(aws_sdk_ec2::types::UserIdGroupPair::builder().group_id(&sg).build())
        .build();
    ec2.authorize_security_group_ingress().group_id(&vpc.node_security_group_id).ip_permissions(from_lb).send().await?;
    let mut public: Vec<String> = vec![
        vpc.subnets.iter().find(|s| s.public && s.role_tag.is_some()).unwrap().id.clone(),
        vpc.subnets.iter().find(|s| s.public && s.role_tag.is_none()).unwrap().id.clone(),
    ];
    public.sort();
    let elb = &cluster.direct.elb;
    elb.create_load_balancer()
        .load_balancer_name(&lb_name)
        .listeners(
            Listener::builder()
                .protocol("TCP")
                .load_balancer_port(80)
                .instance_protocol("TCP")
                .instance_port(node_port)
                .build()?,
        )
        .set_subnets(Some(public))
        .security_groups(&sg)
        .tags(Tag::builder().key(cluster.cluster_tag_key()).value("owned").build()?)
        .tags(Tag::builder().key("kubernetes.io/service-name").value("default/legacy").build()?)
        .send()
        .await?;
    elb.configure_health_check()
        .load_balancer_name(&lb_name)
        .health_check(
            HealthCheck::builder()
                .target(format!("TCP:{node_port}"))
                .interval(10)
                .timeout(5)
                .unhealthy_threshold(6)
                .healthy_threshold(2)
                .build()?,
        )
        .send()
        .await?;
    let instances: Vec<ElbInstance> =
        vpc.instances.iter().map(|i| ElbInstance::builder().instance_id(&i.id).build()).collect();
    elb.register_instances_with_load_balancer()
        .load_balancer_name(&lb_name)
        .set_instances(Some(instances))
        .send()
        .await?;

    // Now this controller takes over.
    let ccm = start(&cluster, &off_aws_config(&cluster, &vpc), None, &["--controllers=service,cloud-node"])?;
    wait_all_initialized(&client, &names, &ccm).await?;
    eventually("the Service's hostname", WAIT, || async {
        let svc = services.get("legacy").await?;
        Ok(svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).and_then(|i| i.first()?.hostname.clone()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    let writes: Vec<String> =
        cluster.proxy.mutating_calls().iter().map(|c| format!("{}/{}", c.service, c.action)).collect();
    eprintln!("adoption: {:?}", cluster.proxy.summary());
    assert_eq!(writes, Vec::<String>::new(), "an upstream-made load balancer is adopted as it is");

    services.delete("legacy", &DeleteParams::default()).await?;
    eventually("the Service gone", WAIT, || async { Ok(services.get_opt("legacy").await?.is_none().then_some(())) })
        .await?;
    cluster.assert_nothing_left().await
}

/// Elastic IPs are given to the NLB at creation, one per subnet (moto does not show them, so
/// the request is checked); with `NLBSecurityGroupMode = Managed` the NLB gets its own group
/// with exactly the listener rules; added Nodes become targets; and nothing is left after.
#[tokio::test]
async fn nlb_eips_managed_security_group_and_nodes_following() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("nlbsg", 2, "NLBSecurityGroupMode = Managed\n").await?;
    let ec2 = &g.cluster.direct.ec2;
    let mut eips = Vec::new();
    for _ in 0..2 {
        eips.push(
            ec2.allocate_address()
                .domain(aws_sdk_ec2::types::DomainType::Vpc)
                .send()
                .await?
                .allocation_id()
                .unwrap()
                .to_string(),
        );
    }
    let eip_list = eips.join(",");
    let annotations = [NLB, ("service.beta.kubernetes.io/aws-load-balancer-eip-allocations", eip_list.as_str())];
    let created =
        g.services().create(&PostParams::default(), &service("static", &annotations, &[(443, "TCP")])).await?;
    let lb_name = lb_name(&created);
    g.hostname("static").await?;

    let requests = g.cluster.proxy.requests(AwsService::Elbv2, "CreateLoadBalancer");
    assert_eq!(requests.len(), 1);
    let mut sent: Vec<String> =
        requests[0].iter().filter(|(k, _)| k.ends_with(".AllocationId")).map(|(_, v)| v.clone()).collect();
    sent.sort();
    let mut want = eips.clone();
    want.sort();
    assert_eq!(sent, want, "one EIP per subnet in the request: {:?}", requests[0]);

    let lbs = g.cluster.direct.elbv2.describe_load_balancers().names(&lb_name).send().await?;
    let groups = lbs.load_balancers()[0].security_groups().to_vec();
    assert_eq!(groups.len(), 1, "the managed group");
    let described = ec2.describe_security_groups().group_ids(&groups[0]).send().await?;
    let group = &described.security_groups()[0];
    assert_eq!(group.description(), Some("[k8s] Managed SecurityGroup for LoadBalancer"));
    assert!(group.group_name().unwrap().starts_with("k8s-default-static-"));
    let mut rules: Vec<(String, i32)> = group
        .ip_permissions()
        .iter()
        .map(|p| (p.ip_protocol().unwrap_or_default().to_string(), p.from_port().unwrap_or_default()))
        .collect();
    rules.sort();
    assert_eq!(rules, [("icmp".to_string(), 3), ("tcp".to_string(), 443)]);

    // A third instance joins: its Node becomes a target.
    let mut vpc = g.vpc.clone();
    let added = vpc.add_instances(ec2, 1, "m5.large").await?;
    ccm_e2e::NodeRegistration::for_instance(&added[0]).register(&g.client).await?;
    let arn = lbs.load_balancers()[0].load_balancer_arn().unwrap().to_string();
    let tg = g.cluster.direct.elbv2.describe_target_groups().load_balancer_arn(&arn).send().await?.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    eventually("the new Node a target", WAIT, || async {
        let health = g.cluster.direct.elbv2.describe_target_health().target_group_arn(&tg).send().await?;
        Ok((health.target_health_descriptions().len() == 3).then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;

    g.delete_and_check("static").await?;
    for eip in eips {
        ec2.release_address().allocation_id(eip).send().await?;
    }
    Ok(())
}

/// Periodic re-ensures of many Services share their readings (the VPC's Classic ELBs with their
/// tags, its security groups; attributes read on every second tick): at most one AWS call per
/// load balancer per tick, and drift is still repaired.
#[tokio::test]
async fn periodic_re_ensures_share_their_readings() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("batch", 1, "").await?;
    for i in 0..8 {
        g.services().create(&PostParams::default(), &service(&format!("many-{i}"), &[], &[(80, "TCP")])).await?;
    }
    let mut names = Vec::new();
    for i in 0..8 {
        g.hostname(&format!("many-{i}")).await?;
        names.push(lb_name(&g.services().get(&format!("many-{i}")).await?));
    }
    // Three resync ticks (3 s each) with nothing changed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = g.ccm.metric(LB_SYNCS)?;
    g.cluster.proxy.reset_calls();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let ensures = g.ccm.metric(LB_SYNCS)? - before;
    let calls = g.cluster.proxy.calls().len() as f64;
    eprintln!(
        "8 Classic ELBs, 9 s of resyncs: {calls} calls for {ensures} re-ensures; {:?}",
        g.cluster.proxy.summary()
    );
    assert!(ensures >= 16.0, "each re-ensured on at least two ticks: {ensures}");
    assert!(calls <= ensures, "{calls} AWS calls for {ensures} periodic re-ensures: more than one each");
    assert_eq!(g.cluster.proxy.mutating_calls(), [], "nothing changed");

    // Drift is repaired: an idle timeout changed behind the CCM's back within two ticks, a
    // removed node rule on the next.
    let elb = &g.cluster.direct.elb;
    let drifted = aws_sdk_elasticloadbalancing::types::LoadBalancerAttributes::builder()
        .connection_settings(
            aws_sdk_elasticloadbalancing::types::ConnectionSettings::builder().idle_timeout(300).build()?,
        )
        .build();
    elb.modify_load_balancer_attributes()
        .load_balancer_name(&names[0])
        .load_balancer_attributes(drifted)
        .send()
        .await?;
    let ec2 = &g.cluster.direct.ec2;
    let node_group = g.vpc.node_security_group_id.clone();
    let described = elb.describe_load_balancers().load_balancer_names(&names[0]).send().await?;
    let elb_group = described.load_balancer_descriptions()[0].security_groups()[0].clone();
    let admits = |permissions: &[aws_sdk_ec2::types::IpPermission]| {
        permissions.iter().flat_map(|p| p.user_id_group_pairs()).any(|p| p.group_id() == Some(elb_group.as_str()))
    };
    let before = ec2.describe_security_groups().group_ids(&node_group).send().await?;
    assert!(admits(before.security_groups()[0].ip_permissions()), "the node group admits the ELB's group");
    let rule = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("-1")
        .user_id_group_pairs(aws_sdk_ec2::types::UserIdGroupPair::builder().group_id(&elb_group).build())
        .build();
    ec2.revoke_security_group_ingress().group_id(&node_group).ip_permissions(rule).send().await?;
    eventually("drift repaired", WAIT, || async {
        let a = elb.describe_load_balancer_attributes().load_balancer_name(&names[0]).send().await?;
        let idle = a.load_balancer_attributes().and_then(|a| a.connection_settings()).map(|c| c.idle_timeout());
        let now = ec2.describe_security_groups().group_ids(&node_group).send().await?;
        Ok((idle == Some(60) && admits(now.security_groups()[0].ip_permissions())).then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;

    for i in 0..8 {
        g.services().delete(&format!("many-{i}"), &DeleteParams::default()).await?;
    }
    eventually("all deleted", WAIT, || async { Ok(g.cluster.leftovers().await?.is_empty().then_some(())) })
        .await
        .with_context(|| g.ccm.log_tail(40))?;
    Ok(())
}

/// Only the exact `nlb` makes an NLB (as upstream); but a loosely spelled `NLB` on a Service that
/// already has an NLB (an earlier version of this CCM read it loosely) never replaces it: the
/// NLB is kept, with a Warning, and no AWS write touches it.
#[tokio::test]
async fn a_loose_type_value_never_replaces_an_existing_load_balancer() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let g = ground("loose-type", 1, "").await?;
    let created = g.services().create(&PostParams::default(), &service("kept", &[NLB], &[(80, "TCP")])).await?;
    let hostname = g.hostname("kept").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    g.cluster.proxy.reset_calls();
    let loose = serde_json::json!({"metadata": {"annotations": {NLB.0: "NLB"}}});
    g.services().patch("kept", &PatchParams::default(), &Patch::Merge(&loose)).await?;
    eventually("the Warning about the loose value", WAIT, || async {
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(g.client.clone(), "default");
        let list = events.list(&kube::api::ListParams::default().fields("involvedObject.name=kept")).await?;
        Ok(list.items.iter().any(|e| e.message.as_deref().is_some_and(|m| m.contains("which is kept"))).then_some(()))
    })
    .await
    .with_context(|| g.ccm.log_tail(40))?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let writes = g.cluster.proxy.mutating_calls();
    assert!(writes.is_empty(), "the NLB was touched: {writes:?}");
    let name = lb_name(&created);
    let nlbs = g.cluster.direct.elbv2.describe_load_balancers().names(&name).send().await?;
    assert_eq!(nlbs.load_balancers().len(), 1, "the NLB is still there");
    assert!(
        g.cluster.direct.elb.describe_load_balancers().load_balancer_names(&name).send().await.is_err(),
        "no Classic ELB made"
    );
    let svc = g.services().get("kept").await?;
    let ingress = svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).unwrap_or_default();
    assert_eq!(ingress[0].hostname.as_deref(), Some(hostname.as_str()));
    g.delete_and_check("kept").await
}

/// Fencing: a leader whose apiserver connection stalls (a TCP relay between them stops moving
/// bytes, so its requests neither answer nor fail) stops changing AWS before the standby can
/// take the Lease over, although its Lease renewal is still hanging. Its AWS calls are slowed
/// so that it is in the middle of making load balancers when the stall begins; the proxy in
/// front of it records when each call arrived, and none that changes anything may arrive
/// after the new leader's `acquireTime`. Then the old leader exits, and the new one finishes
/// the load balancers.
#[tokio::test]
async fn a_stalled_leader_stops_writing_before_the_standby_takes_over() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    use ccm_e2e::{AwsProxy, ControlPlane, TcpProxy};
    use k8s_openapi::api::coordination::v1::Lease;
    use std::time::SystemTime;

    let _serial = support::serial().await;
    let cluster = TestCluster::new("fencing").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let _ = leases.delete("cloud-controller-manager", &DeleteParams::default()).await;
    let vpc = cluster.seed(SeedOptions::default().with_instances(2)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    let plane = ControlPlane::shared();
    let relay = TcpProxy::start(&plane.server_address()?).await?;
    let through =
        plane.kubeconfig_through(&relay, &std::env::temp_dir().join(format!("{}-relay.kubeconfig", cluster.id)))?;
    let standby_aws = AwsProxy::start(cluster.emulator.endpoint()).await?;
    let config = off_aws_config(&cluster, &vpc);
    let flags = [
        "--controllers=service,cloud-node",
        "--leader-elect-lease-duration=6s",
        "--leader-elect-renew-deadline=4s",
        "--leader-elect-retry-period=1s",
    ];
    let holder =
        || async { Ok::<_, anyhow::Error>(leases.get_opt("cloud-controller-manager").await?.and_then(|l| l.spec)) };

    let old = support::aws::start_candidate(&cluster, &config, cluster.proxy.endpoint(), &through, &flags)?;
    let old_identity = eventually("a leader", WAIT, || async { Ok(holder().await?.and_then(|s| s.holder_identity)) })
        .await
        .with_context(|| old.log_tail(40))?;
    wait_all_initialized(&client, &names, &old).await?;
    let new =
        support::aws::start_candidate(&cluster, &config, standby_aws.endpoint(), plane.kubeconfig_path(), &flags)?;

    // Every AWS call of the leader now takes a second: 8 Classic ELBs keep it busy for a while.
    cluster.proxy.inject(FaultRule::latency(Duration::from_secs(1)));
    let services = Api::<Service>::namespaced(client.clone(), "default");
    let count = 8;
    for i in 0..count {
        services.create(&PostParams::default(), &service(&format!("fenced-{i}"), &[], &[(80, "TCP")])).await?;
    }
    eventually("the leader at work on every Service", WAIT, || async {
        let list = services.list(&Default::default()).await?;
        let started = list
            .items
            .iter()
            .filter(|s| {
                s.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f.contains("load-balancer-cleanup")))
            })
            .count();
        let writing = cluster.proxy.calls().iter().any(|c| c.call.is_mutating());
        Ok((started == count && writing).then_some(()))
    })
    .await
    .with_context(|| old.log_tail(40))?;

    // Stall right after a load balancer's first writes began (CreateSecurityGroup or
    // CreateLoadBalancer just arrived): more writes of the same ensure follow a second later, so
    // the old leader is caught in the middle of changing AWS, not between two Services.
    eventually("an ensure in the middle of its writes", WAIT, || async {
        let now = SystemTime::now();
        let fresh = cluster.proxy.calls().iter().any(|c| {
            ["CreateSecurityGroup", "CreateLoadBalancer"].contains(&c.call.action.as_str())
                && now.duration_since(c.at).unwrap_or_default() < Duration::from_millis(300)
        });
        Ok(fresh.then_some(()))
    })
    .await
    .with_context(|| old.log_tail(40))?;
    let stalled_at = SystemTime::now();
    relay.stall();
    let acquired = eventually("the standby holding the Lease", Duration::from_secs(60), || async {
        let spec = holder().await?;
        Ok(spec
            .filter(|s| s.holder_identity.as_deref().is_some_and(|h| h != old_identity))
            .and_then(|s| s.acquire_time))
    })
    .await
    .with_context(|| new.log_tail(40))?;
    let acquired = SystemTime::from(acquired.0);
    // Give a late write from the old leader every chance to show before judging.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes: Vec<SystemTime> = cluster.proxy.calls().iter().filter(|c| c.call.is_mutating()).map(|c| c.at).collect();
    let after_stall = writes.iter().filter(|at| **at > stalled_at).count();
    let last = writes.iter().max().copied().context("the old leader made no write at all")?;
    assert!(after_stall > 0, "the old leader had stopped writing before the stall: the test proves nothing");
    assert!(
        last < acquired,
        "the old leader wrote to AWS {:?} after the new leader took the Lease",
        last.duration_since(acquired).unwrap_or_default()
    );
    let gap = acquired.duration_since(last).unwrap_or_default();
    let stall_to_last = last.duration_since(stalled_at).unwrap_or_default();
    eprintln!(
        "fencing: stall → old leader's last write {stall_to_last:?} ({after_stall} writes after the stall); \
         last write → new leader's acquireTime {gap:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while old.is_running() {
        assert!(std::time::Instant::now() < deadline, "the old leader did not exit:\n{}", old.log_tail(40));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(std::fs::read_to_string(&old.log)?.contains("lost the leader Lease"), "{}", old.log_tail(40));

    // The new leader finishes the load balancers, then removes them.
    cluster.proxy.clear_faults();
    for i in 0..count {
        let name = format!("fenced-{i}");
        eventually("a hostname from the new leader", WAIT, || async {
            let svc = services.get(&name).await?;
            Ok(svc
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress)
                .and_then(|i| i.first()?.hostname.clone()))
        })
        .await
        .with_context(|| new.log_tail(40))?;
        services.delete(&name, &DeleteParams::default()).await?;
    }
    eventually("every Service gone", WAIT, || async {
        Ok(services
            .list(&Default::default())
            .await?
            .items
            .iter()
            .all(|s| s.metadata.name.as_deref() == Some("kubernetes"))
            .then_some(()))
    })
    .await
    .with_context(|| new.log_tail(40))?;
    drop(new);
    drop(relay);
    cluster.assert_nothing_left().await
}
