//! Smoke tests proving each part of the test ground is real: the kube-apiserver behaves like
//! one (status subresource, strategic-merge patches, watches, Leases, optimistic concurrency),
//! calls go through the proxy to the emulator and are counted, injected faults look like AWS
//! errors to the SDK, the IMDS stub speaks IMDSv2, and the seed builds the VPC it promises.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use ccm_e2e::{
    AwsEmulator, ControlPlane, FaultRule, ImdsStub, NodeRegistration, SeedOptions, Service, TestCluster,
    UNINITIALIZED_TAINT,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:06x}", fastrand::u32(..0x100_0000))
}

fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test]
async fn apiserver_reports_its_real_version() -> Result<()> {
    let client = ControlPlane::shared().client().await?;
    let version = client.apiserver_version().await?;
    assert_eq!(version.git_version, "v1.37.2");
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "37"));
    Ok(())
}

#[tokio::test]
async fn node_status_subresource_strategic_merge_and_watch() -> Result<()> {
    let client = ControlPlane::shared().client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let name = unique("smoke-node");
    let registered = NodeRegistration::named(&name)
        .with_internal_ip("10.9.9.9")
        .with_provided_node_ip("10.9.9.9")
        .register(&client)
        .await?;
    let taints = registered.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    assert!(taints.iter().any(|t| t.key == UNINITIALIZED_TAINT && t.effect == "NoSchedule"));

    // Watch the Node from here on.
    let watch = watcher(nodes.clone(), watcher::Config::default().fields(&format!("metadata.name={name}")));
    let mut seen = Box::pin(watch.applied_objects());
    let first = seen.try_next().await?.context("watch ended")?;
    assert_eq!(first.metadata.name.as_deref(), Some(name.as_str()));

    // A strategic-merge patch of status.addresses merges by `type` (a JSON merge patch would
    // replace the list): the kubelet's InternalIP and Hostname survive.
    let patch = serde_json::json!({"status": {"addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}]}});
    nodes.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    let address_types = |node: &Node| -> Vec<String> {
        node.status.iter().flat_map(|s| s.addresses.iter().flatten()).map(|a| a.type_.clone()).collect()
    };
    let updated = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(node) = seen.try_next().await? {
            if address_types(&node).contains(&"ExternalIP".to_string()) {
                return Ok::<_, anyhow::Error>(node);
            }
        }
        anyhow::bail!("watch ended")
    })
    .await
    .context("the watch never delivered the patched Node")??;
    let mut types = address_types(&updated);
    types.sort();
    assert_eq!(types, ["ExternalIP", "Hostname", "InternalIP"]);

    // The main resource ignores status; the status subresource ignores spec.
    let both = serde_json::json!({"spec": {"unschedulable": true}, "status": {"addresses": []}});
    let via_main = nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&both)).await?;
    assert_eq!(address_types(&via_main).len(), 3, "status must not change through the main resource");
    assert_eq!(via_main.spec.as_ref().and_then(|s| s.unschedulable), Some(true));
    let undo = serde_json::json!({"spec": {"unschedulable": false}, "status": {"addresses": [{"type": "ExternalIP", "$patch": "delete"}]}});
    let via_status = nodes.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&undo)).await?;
    assert_eq!(
        via_status.spec.as_ref().and_then(|s| s.unschedulable),
        Some(true),
        "spec must not change through status"
    );
    assert_eq!(address_types(&via_status).len(), 2);

    nodes.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
async fn lease_round_trip_with_optimistic_concurrency() -> Result<()> {
    let client = ControlPlane::shared().client().await?;
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let name = unique("smoke-lease");
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease = Lease {
        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some("ccm-a".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &lease).await?;
    let read = leases.get(&name).await?;
    assert_eq!(read.spec, created.spec);
    assert_eq!(read.spec.as_ref().and_then(|s| s.holder_identity.as_deref()), Some("ccm-a"));

    // A holder change with the current resourceVersion wins ...
    let mut takeover = read.clone();
    let spec = takeover.spec.as_mut().expect("spec");
    spec.holder_identity = Some("ccm-b".into());
    spec.lease_transitions = Some(1);
    let replaced = leases.replace(&name, &PostParams::default(), &takeover).await?;
    assert_eq!(replaced.spec.as_ref().and_then(|s| s.lease_transitions), Some(1));
    // ... and a second writer holding the old resourceVersion is refused with 409.
    let err = leases.replace(&name, &PostParams::default(), &read).await.expect_err("a stale write must fail");
    assert_eq!(api_status(&err), Some(409), "{err}");

    leases.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
async fn seeded_vpc_is_what_it_promises() -> Result<()> {
    let cluster = TestCluster::new("seed").await?;
    let vpc = cluster.seed_with_nodes(SeedOptions::default().with_instances(3)).await?;
    let ec2 = &cluster.direct.ec2;
    let key = cluster.cluster_tag_key();

    let subnets = ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc.vpc_id).build())
        .send()
        .await?;
    assert_eq!(subnets.subnets().len(), 4);
    let zones: std::collections::BTreeSet<_> = subnets.subnets().iter().filter_map(|s| s.availability_zone()).collect();
    assert_eq!(zones.len(), 2);
    assert!(subnets.subnets().iter().all(|s| s.tags().iter().any(|t| t.key() == Some(key.as_str()))));
    let with_role = subnets
        .subnets()
        .iter()
        .filter(|s| s.tags().iter().any(|t| t.key().is_some_and(|k| k.starts_with("kubernetes.io/role/"))))
        .count();
    assert_eq!(with_role, 2, "one public and one private subnet carry role tags");

    let tables = ec2
        .describe_route_tables()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc.vpc_id).build())
        .send()
        .await?;
    let tagged: Vec<_> =
        tables.route_tables().iter().filter(|t| t.tags().iter().any(|tag| tag.key() == Some(key.as_str()))).collect();
    assert_eq!(tagged.len(), 1, "exactly one cluster-tagged route table");
    assert_eq!(tagged[0].route_table_id(), Some(vpc.cluster_route_table_id.as_str()));
    let public = tables
        .route_tables()
        .iter()
        .find(|t| t.route_table_id() == Some(vpc.public_route_table_id.as_str()))
        .context("public route table")?;
    assert!(public.routes().iter().any(|r| r.gateway_id() == Some(vpc.internet_gateway_id.as_str())));
    assert_eq!(public.associations().len(), 2);

    let instances = ec2
        .describe_instances()
        .filters(aws_sdk_ec2::types::Filter::builder().name(format!("tag:{key}")).values("owned").build());
    let reservations = instances.send().await?;
    let running: Vec<_> = reservations.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(running.len(), 3);
    assert!(
        running
            .iter()
            .all(|i| i.security_groups().iter().any(|g| g.group_id() == Some(vpc.node_security_group_id.as_str())))
    );

    let nodes: Api<Node> = Api::all(cluster.kube().await?);
    for instance in &vpc.instances {
        let node = nodes.get(&instance.private_dns).await?;
        let spec = node.spec.clone().unwrap_or_default();
        assert!(spec.provider_id.is_none(), "a kubelet with an external provider sets no providerID");
        assert!(spec.taints.unwrap_or_default().iter().any(|t| t.key == UNINITIALIZED_TAINT));
        let ready = node.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(ready.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        nodes.delete(&instance.private_dns, &DeleteParams::default()).await?;
    }
    assert_eq!(cluster.proxy.calls().len(), 0, "seeding bypasses the proxy");
    cluster.assert_nothing_left().await
}

/// The brownfield check is not a formality: each kind of collateral damage a CCM could do is
/// made by hand here, and the check must name it; undone, the check passes again.
#[tokio::test]
async fn the_brownfield_check_sees_every_kind_of_damage() -> Result<()> {
    use ccm_e2e::brownfield::{NAT_INSIDE, OFFICE};
    let cluster = TestCluster::new("brownfield").await?;
    let vpc = cluster.seed(SeedOptions::default()).await?;
    let client = cluster.kube().await?;
    cluster.register_foreign_nodes(&client).await?;
    let b = vpc.brownfield.clone().context("brownfield")?;
    let ec2 = &cluster.direct.ec2;
    cluster.assert_nothing_left().await?;
    let expect_caught = |what: &'static str| {
        move |result: Result<()>| -> Result<()> {
            let err = result.err().with_context(|| format!("{what}: not seen"))?;
            anyhow::ensure!(
                err.to_string().contains("brownfield") || err.to_string().contains("foreign"),
                "{what}: {err:#}"
            );
            Ok(())
        }
    };

    // A rule in the third group referencing a user group, revoked.
    let third = ec2.describe_security_groups().group_ids(&b.third_group).send().await?;
    let rules = third.security_groups()[0].ip_permissions().to_vec();
    let first = rules.first().context("the third group has rules")?.clone();
    ec2.revoke_security_group_ingress().group_id(&b.third_group).ip_permissions(first.clone()).send().await?;
    expect_caught("a revoked rule")(cluster.assert_brownfield_untouched().await)?;
    ec2.authorize_security_group_ingress().group_id(&b.third_group).ip_permissions(first).send().await?;
    cluster.assert_brownfield_untouched().await?;

    // The user's SSH rule on the node group.
    let ssh = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip(OFFICE).description("ssh from the office").build())
        .build();
    ec2.revoke_security_group_ingress()
        .group_id(&vpc.node_security_group_id)
        .ip_permissions(ssh.clone())
        .send()
        .await?;
    expect_caught("the node group's user rule")(cluster.assert_brownfield_untouched().await)?;
    ec2.authorize_security_group_ingress().group_id(&vpc.node_security_group_id).ip_permissions(ssh).send().await?;

    // A tag on an owned user group.
    let owned = &b.user_groups["owned"];
    let extra = aws_sdk_ec2::types::Tag::builder().key("touched").value("yes").build();
    ec2.create_tags().resources(owned).tags(extra.clone()).send().await?;
    expect_caught("a changed tag")(cluster.assert_brownfield_untouched().await)?;
    ec2.delete_tags().resources(owned).tags(extra).send().await?;

    // The NAT instance's route inside the cluster CIDR.
    ec2.delete_route().route_table_id(&vpc.cluster_route_table_id).destination_cidr_block(NAT_INSIDE).send().await?;
    expect_caught("a deleted route")(cluster.assert_brownfield_untouched().await)?;
    ec2.create_route()
        .route_table_id(&vpc.cluster_route_table_id)
        .destination_cidr_block(NAT_INSIDE)
        .instance_id(&b.nat_instance)
        .send()
        .await?;

    // A foreign Node deleted.
    let nodes: Api<Node> = Api::all(client.clone());
    let hybrid = format!("{}-hybrid", cluster.id);
    let kept = nodes.get(&hybrid).await?;
    nodes.delete(&hybrid, &DeleteParams::default()).await?;
    expect_caught("a deleted foreign Node")(cluster.assert_brownfield_untouched().await)?;
    let mut again = kept.clone();
    again.metadata =
        ObjectMeta { name: kept.metadata.name.clone(), labels: kept.metadata.labels.clone(), ..Default::default() };
    nodes.create(&PostParams::default(), &again).await?;

    // All undone: the check passes again, and the leftover check still sees nothing.
    cluster.assert_nothing_left().await?;
    for name in [hybrid, format!("{}-kind", cluster.id)] {
        nodes.delete(&name, &DeleteParams::default()).await?;
    }
    Ok(())
}

#[tokio::test]
async fn proxy_counts_calls_and_the_leftover_check_sees_a_load_balancer() -> Result<()> {
    let cluster = TestCluster::new("proxy").await?;
    let vpc = cluster.seed(SeedOptions::default()).await?;
    let reservations = cluster.aws.ec2.describe_instances().send().await?;
    assert!(
        reservations
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .any(|i| i.instance_id() == Some(vpc.instances[0].id.as_str()))
    );
    assert_eq!(cluster.proxy.count(Service::Ec2, "DescribeInstances"), 1);
    assert!(cluster.proxy.mutating_calls().is_empty());

    if !cluster.emulator.supports_elb() {
        eprintln!("SKIPPED the ELB half: the emulator at E2E_AWS_ENDPOINT has no ELB (LocalStack Community)");
        return Ok(());
    }
    use aws_sdk_elasticloadbalancing::types::{Listener, Tag};
    let name = unique("smoke").replace('-', "");
    let public: Vec<String> = vpc.subnets.iter().filter(|s| s.public).map(|s| s.id.clone()).collect();
    cluster
        .aws
        .elb
        .create_load_balancer()
        .load_balancer_name(&name)
        .listeners(
            Listener::builder()
                .protocol("TCP")
                .load_balancer_port(80)
                .instance_protocol("TCP")
                .instance_port(30080)
                .build()?,
        )
        .set_subnets(Some(public))
        .tags(Tag::builder().key(cluster.cluster_tag_key()).value("owned").build()?)
        .send()
        .await?;
    assert_eq!(cluster.proxy.count(Service::Elb, "CreateLoadBalancer"), 1);
    assert_eq!(cluster.proxy.count(Service::Elbv2, "CreateLoadBalancer"), 0, "ELB and ELBv2 are told apart");

    // The leftover check is not a check that cannot fail: it sees this load balancer.
    let leftovers = cluster.leftovers().await?;
    assert_eq!(leftovers.classic_load_balancers, vec![name.clone()]);
    assert!(cluster.assert_nothing_left().await.is_err());

    cluster.aws.elb.delete_load_balancer().load_balancer_name(&name).send().await?;
    let mutating: Vec<String> =
        cluster.proxy.mutating_calls().iter().map(|c| format!("{}/{}", c.service, c.action)).collect();
    assert_eq!(mutating, ["elb/CreateLoadBalancer", "elb/DeleteLoadBalancer"]);
    cluster.assert_nothing_left().await
}

#[tokio::test]
async fn injected_throttles_are_retried_by_the_sdk_and_counted() -> Result<()> {
    let cluster = TestCluster::new("throttle").await?;
    cluster.proxy.inject(FaultRule::throttle().on_service(Service::Ec2).on_action("DescribeVpcs").times(2));
    cluster.aws.ec2.describe_vpcs().send().await.context("the SDK should retry through two throttles")?;
    assert_eq!(cluster.proxy.count(Service::Ec2, "DescribeVpcs"), 3);
    assert_eq!(cluster.proxy.count_faulted(Service::Ec2, "DescribeVpcs"), 2);

    // A 5xx is retried too.
    cluster.proxy.inject(FaultRule::server_error(500).on_action("DescribeSubnets").times(1));
    cluster.aws.ec2.describe_subnets().send().await?;
    assert_eq!(cluster.proxy.count(Service::Ec2, "DescribeSubnets"), 2);

    // A throttle that never ends exhausts the SDK's attempts and surfaces with AWS's code.
    cluster.proxy.inject(FaultRule::throttle().on_action("DescribeRouteTables"));
    let err = cluster.aws.ec2.describe_route_tables().send().await.expect_err("never-ending throttle");
    assert_eq!(err.code(), Some("RequestLimitExceeded"), "{err:?}");
    assert_eq!(cluster.proxy.count(Service::Ec2, "DescribeRouteTables"), 5, "max_attempts = 5");

    if cluster.emulator.supports_elb() {
        cluster.proxy.inject(FaultRule::throttle().on_service(Service::Elbv2).times(1));
        cluster.aws.elbv2.describe_load_balancers().send().await?;
        assert_eq!(cluster.proxy.count(Service::Elbv2, "DescribeLoadBalancers"), 2);
        assert_eq!(cluster.proxy.count_faulted(Service::Elbv2, "DescribeLoadBalancers"), 1);
    }

    // Injected latency delays the call without failing it.
    cluster.proxy.clear_faults();
    cluster.proxy.inject(FaultRule::latency(Duration::from_millis(300)).on_action("DescribeAvailabilityZones"));
    let start = Instant::now();
    cluster.aws.ec2.describe_availability_zones().send().await?;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(cluster.proxy.count_faulted(Service::Ec2, "DescribeAvailabilityZones"), 0, "latency is not an error");
    Ok(())
}

#[tokio::test]
async fn imds_stub_speaks_imdsv2_for_a_seeded_instance() -> Result<()> {
    let cluster = TestCluster::new("imds").await?;
    let vpc = cluster.seed(SeedOptions::default()).await?;
    let instance = &vpc.instances[0];
    let stub = ImdsStub::start(vpc.identity_of(instance)).await?;

    let imds =
        aws_config::imds::Client::builder().endpoint(stub.endpoint()).map_err(anyhow::Error::from_boxed)?.build();
    let get = |path: &'static str| {
        let imds = imds.clone();
        async move { imds.get(path).await.map(String::from).with_context(|| path.to_string()) }
    };
    assert_eq!(get("/latest/meta-data/instance-id").await?, instance.id);
    assert_eq!(get("/latest/meta-data/placement/availability-zone").await?, instance.zone);
    assert_eq!(get("/latest/meta-data/placement/region").await?, "us-east-1");
    assert_eq!(get("/latest/meta-data/local-hostname").await?, instance.private_dns);
    let macs = get("/latest/meta-data/network/interfaces/macs/").await?;
    assert_eq!(macs, format!("{}/", instance.mac));
    let document: serde_json::Value = serde_json::from_str(&get("/latest/dynamic/instance-identity/document").await?)?;
    assert_eq!(document["instanceId"], instance.id.as_str());
    assert_eq!(document["privateIp"], instance.private_ip.as_str());
    assert!(stub.tokens_issued() >= 1);
    assert_eq!(stub.reads(), 6);

    // Without a session token the stub refuses, as IMDSv2-only instances do.
    let url = format!("{}/latest/meta-data/instance-id", stub.endpoint());
    let status = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .await?;
    assert_eq!(String::from_utf8_lossy(&status.stdout), "401");
    Ok(())
}

#[test]
fn owned_helpers_stop_when_dropped() -> Result<()> {
    if std::env::var_os("E2E_AWS_ENDPOINT").is_some() {
        eprintln!("SKIPPED: E2E_AWS_ENDPOINT names an emulator these tests do not start");
        return Ok(());
    }
    let emulator = AwsEmulator::start()?;
    let endpoint = emulator.endpoint().to_string();
    let port = endpoint.rsplit(':').next().context("port")?.to_string();
    drop(emulator);
    let listening = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok();
    assert!(!listening, "moto still answers at {endpoint} after its owner was dropped");
    Ok(())
}

#[tokio::test]
async fn watch_streams_node_deletion() -> Result<()> {
    let client = ControlPlane::shared().client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let name = unique("smoke-gone");
    NodeRegistration::named(&name).register(&client).await?;
    let events = watcher(nodes.clone(), watcher::Config::default().fields(&format!("metadata.name={name}")));
    let mut events = Box::pin(events);
    // Initial list first, then the deletion.
    let mut listed = false;
    let deleted = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.next().await {
            match event? {
                watcher::Event::InitApply(_) => listed = true,
                watcher::Event::InitDone => {
                    nodes.delete(&name, &DeleteParams::default()).await?;
                }
                watcher::Event::Delete(node) => return Ok::<_, anyhow::Error>(node),
                _ => {}
            }
        }
        anyhow::bail!("watch ended")
    })
    .await
    .context("no deletion event")??;
    assert!(listed);
    assert_eq!(deleted.metadata.name.as_deref(), Some(name.as_str()));
    assert!(nodes.get_opt(&name).await?.is_none());
    Ok(())
}

/// The test ground's moto deletes Classic ELB listeners as AWS does (`moto/fidelity.py`): all
/// listeners on any of the ports given, the others kept once each.
#[tokio::test]
async fn deleting_several_classic_listeners_at_once_keeps_the_others_once() -> Result<()> {
    let cluster = TestCluster::new("listeners").await?;
    if !cluster.emulator.supports_elb() {
        eprintln!("SKIPPED: the emulator at E2E_AWS_ENDPOINT has no ELB (LocalStack Community)");
        return Ok(());
    }
    let vpc = cluster.seed(SeedOptions::default().without_brownfield()).await?;
    use aws_sdk_elasticloadbalancing::types::Listener;
    let elb = &cluster.direct.elb;
    let name = unique("lst").replace('-', "");
    let listener = |port: i32| {
        Listener::builder()
            .protocol("TCP")
            .load_balancer_port(port)
            .instance_protocol("TCP")
            .instance_port(30000 + port)
            .build()
    };
    let public: Vec<String> = vpc.subnets.iter().filter(|s| s.public).map(|s| s.id.clone()).collect();
    let mut create = elb.create_load_balancer().load_balancer_name(&name).set_subnets(Some(public));
    for port in [80, 443, 8080, 8443] {
        create = create.listeners(listener(port)?);
    }
    create.send().await?;
    elb.delete_load_balancer_listeners()
        .load_balancer_name(&name)
        .load_balancer_ports(80)
        .load_balancer_ports(8080)
        .send()
        .await?;
    let described = elb.describe_load_balancers().load_balancer_names(&name).send().await?;
    let mut ports: Vec<i32> = described.load_balancer_descriptions()[0]
        .listener_descriptions()
        .iter()
        .filter_map(|l| l.listener().map(|l| l.load_balancer_port()))
        .collect();
    ports.sort();
    elb.delete_load_balancer().load_balancer_name(&name).send().await?;
    assert_eq!(ports, [443, 8443]);
    Ok(())
}
