//! The real binary with `--cloud-provider=aws` against the real apiserver and moto, through
//! the fault-injecting proxy: Nodes initialized from EC2, lifecycle, routes, discovery through
//! IMDS, a broken cloud-config, throttling, and the DescribeInstances budget.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use ccm_e2e::{FaultRule, ImdsStub, SeedOptions, Service, TestCluster};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use support::aws::{off_aws_config, register, start, wait_all_initialized};
use support::{eventually, get_node};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn nodes_initialized_from_ec2_then_lifecycle_and_routes() -> Result<()> {
    let _serial = support::serial().await;
    let cluster = TestCluster::new("aws-nodes").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(3)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    // The brownfield's NAT-instance and peering routes, inside the cluster CIDR and outside,
    // and its NotReady Nodes of other providers: all must survive what follows (checked by
    // assert_nothing_left at the end).
    let brownfield = vpc.brownfield.clone().context("the seed's brownfield")?;
    assert!(brownfield.routes.iter().any(|(cidr, _)| cidr == ccm_e2e::brownfield::NAT_INSIDE));
    let imds = ImdsStub::start(vpc.identity_of(&vpc.instances[0])).await?;
    let ccm = start(&cluster, &off_aws_config(&cluster, &vpc), Some(&imds), &[])?;
    wait_all_initialized(&client, &names, &ccm).await?;

    for instance in &vpc.instances {
        let node = get_node(&client, &instance.private_dns).await?;
        let spec = node.spec.clone().unwrap_or_default();
        assert_eq!(spec.provider_id, Some(format!("aws:///{}/{}", instance.zone, instance.id)));
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["node.kubernetes.io/instance-type"], "m5.large");
        assert_eq!(labels["topology.kubernetes.io/zone"], instance.zone);
        assert_eq!(labels["failure-domain.beta.kubernetes.io/region"], "us-east-1");
        assert_eq!(labels.get("topology.k8s.aws/zone-id").map(String::as_str), vpc.zone_id(&instance.zone));
        let addresses: Vec<(String, String)> =
            node.status.unwrap().addresses.unwrap().into_iter().map(|a| (a.type_, a.address)).collect();
        assert_eq!(addresses[0], ("InternalIP".into(), instance.private_ip.clone()));
        assert!(addresses.contains(&("InternalDNS".into(), instance.private_dns.clone())));
        assert!(addresses.contains(&("Hostname".into(), instance.private_dns.clone())));
    }
    assert_eq!(imds.reads() + imds.tokens_issued(), 0, "off-AWS mode asks IMDS nothing");

    // Routes: pod CIDRs on two Nodes → routes to their instances, source/dest check off.
    let nodes: Api<Node> = Api::all(client.clone());
    for (i, name) in names.iter().take(2).enumerate() {
        let patch = serde_json::json!({"spec": {"podCIDR": format!("10.244.{i}.0/24"), "podCIDRs": [format!("10.244.{i}.0/24")]}});
        nodes.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    let ec2 = &cluster.direct.ec2;
    let routes_to =
        |table: aws_sdk_ec2::operation::describe_route_tables::DescribeRouteTablesOutput| -> Vec<(String, String)> {
            let mut v: Vec<_> = table.route_tables()[0]
                .routes()
                .iter()
                .filter_map(|r| {
                    Some((r.destination_cidr_block()?.to_string(), r.instance_id().or(r.gateway_id())?.to_string()))
                })
                .collect();
            v.sort();
            v
        };
    eventually("routes created", WAIT, || async {
        let table = ec2.describe_route_tables().route_table_ids(&vpc.cluster_route_table_id).send().await?;
        let routes = routes_to(table);
        let ok = routes.contains(&("10.244.0.0/24".into(), vpc.instances[0].id.clone()))
            && routes.contains(&("10.244.1.0/24".into(), vpc.instances[1].id.clone()));
        Ok(ok.then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    let described = ec2.describe_instances().instance_ids(&vpc.instances[0].id).send().await?;
    let instance = &described.reservations()[0].instances()[0];
    assert_eq!(instance.source_dest_check(), Some(false), "source/dest check disabled for routing");
    eventually("NetworkUnavailable=False", WAIT, || async {
        let node = get_node(&client, &names[0]).await?;
        let c = node.status.and_then(|s| s.conditions).unwrap_or_default();
        Ok(c.iter().any(|c| c.type_ == "NetworkUnavailable" && c.status == "False").then_some(()))
    })
    .await?;

    // Lifecycle: terminated → Node deleted (and its route removed); stopped → shutdown taint.
    ec2.terminate_instances().instance_ids(&vpc.instances[0].id).send().await?;
    ec2.stop_instances().instance_ids(&vpc.instances[2].id).send().await?;
    let not_ready = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]}});
    for name in [&names[0], &names[2]] {
        nodes.patch_status(name, &PatchParams::default(), &Patch::Strategic(&not_ready)).await?;
    }
    eventually("terminated instance's Node deleted", WAIT, || async {
        Ok(nodes.get_opt(&names[0]).await?.is_none().then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    eventually("shutdown taint", WAIT, || async {
        let node = get_node(&client, &names[2]).await?;
        let keys: Vec<String> =
            node.spec.and_then(|s| s.taints).unwrap_or_default().into_iter().map(|t| t.key).collect();
        Ok(keys.contains(&"node.cloudprovider.kubernetes.io/shutdown".to_string()).then_some(()))
    })
    .await?;
    assert!(nodes.get_opt(&names[2]).await?.is_some(), "a stopped instance's Node stays");
    eventually("the dead instance's route removed", WAIT, || async {
        let table = ec2.describe_route_tables().route_table_ids(&vpc.cluster_route_table_id).send().await?;
        Ok((!routes_to(table).iter().any(|(cidr, _)| cidr == "10.244.0.0/24")).then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;

    // Tear down: Nodes go, their routes with them; the foreign routes and Nodes stay.
    support::clean_cluster_but_foreign_nodes(&client).await?;
    let foreign: Vec<&str> = brownfield.routes.iter().map(|(cidr, _)| cidr.as_str()).collect();
    eventually("all cluster routes removed", WAIT, || async {
        let table = ec2.describe_route_tables().route_table_ids(&vpc.cluster_route_table_id).send().await?;
        Ok((!routes_to(table).iter().any(|(cidr, _)| cidr.starts_with("10.244.") && !foreign.contains(&cidr.as_str())))
            .then_some(()))
    })
    .await?;
    drop(ccm);
    cluster.assert_nothing_left().await
}

#[tokio::test]
async fn discovery_through_imds_on_a_cluster_instance() -> Result<()> {
    let _serial = support::serial().await;
    let cluster = TestCluster::new("aws-imds").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(2)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    // The CCM runs on the first instance: region, VPC and cluster ID all come from there.
    let imds = ImdsStub::start(vpc.identity_of(&vpc.instances[0])).await?;
    let ccm = start(&cluster, "", Some(&imds), &["--configure-cloud-routes=false"])?;
    wait_all_initialized(&client, &names, &ccm).await?;
    assert!(imds.tokens_issued() >= 1, "IMDSv2: a session token first");
    assert!(imds.reads() >= 2, "region and instance ID from IMDS");
    assert!(ccm.log_tail(40).contains(&cluster.id) || std::fs::read_to_string(&ccm.log)?.contains(&cluster.id));
    support::clean_cluster_but_foreign_nodes(&client).await?;
    drop(ccm);
    cluster.assert_nothing_left().await
}

#[tokio::test]
async fn a_broken_cloud_config_fails_startup_listing_every_error() -> Result<()> {
    let path = std::env::temp_dir().join(format!("broken-{}.conf", std::process::id()));
    std::fs::write(
        &path,
        "[Global]\nRegion = us-east-1\nKubernetesClusterID = a\nKubernetesClusterTag = b\nNodeIPFamilies = ipv5\nWat = 1\n\
         DisableStrictZoneCheck = true\n[ServiceOverride \"1\"]\nService = ec2\nURL = http://127.0.0.1:1\n",
    )?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloud-controller-manager"))
        .args(["--cloud-provider=aws", "--configure-cloud-routes=false", "--kubeconfig=/nonexistent"])
        .arg(format!("--cloud-config={}", path.display()))
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "6 problems",
        "disagree",
        "line 5: NodeIPFamilies",
        "line 6: unknown key Wat",
        "did you mean \"EC2\"",
        "SigningRegion is required",
        "Region is required",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("DisableStrictZoneCheck"), "a retired key is no error:\n{stderr}");
    Ok(())
}

#[tokio::test]
async fn throttling_on_a_third_of_calls_still_converges() -> Result<()> {
    let _serial = support::serial().await;
    let cluster = TestCluster::new("aws-throttle").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(6)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    // The first two DescribeInstances are throttled for certain (so the test cannot pass
    // without meeting a throttle), then 30 % of all EC2 calls at random.
    cluster.proxy.inject(FaultRule::throttle().on_action("DescribeInstances").times(2));
    cluster.proxy.inject(FaultRule::throttle().on_service(Service::Ec2).at_rate(0.3));
    let ccm = start(&cluster, &off_aws_config(&cluster, &vpc), None, &["--configure-cloud-routes=false"])?;
    wait_all_initialized(&client, &names, &ccm).await?;
    let throttled = cluster.proxy.count_where(|c| c.fault.is_some());
    eprintln!("throttled {throttled} of {} calls: {:?}", cluster.proxy.calls().len(), cluster.proxy.summary());
    assert!(throttled >= 2, "the faults were really injected");
    // Every throttled attempt is seen, the SDK's own retries included (not only the calls that
    // ran out of attempts), and slowed the next calls down.
    cluster.proxy.clear_faults();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let injected = cluster.proxy.count_where(|c| c.fault.is_some());
    let metrics = ccm.metrics()?;
    assert!(
        metrics.contains("cloudprovider_aws_api_requests_total{service=\"ec2\",operation=\"DescribeInstances\"}"),
        "{metrics}"
    );
    let sum = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let counted = sum("cloudprovider_aws_api_throttled_requests_total{");
    assert_eq!(counted as usize, injected, "throttled attempts counted vs injected:\n{metrics}");
    assert!(sum("cloudprovider_aws_api_throttle_delay_seconds_total") > 0.0, "no slow-down applied:\n{metrics}");
    support::clean_cluster_but_foreign_nodes(&client).await?;
    drop(ccm);
    cluster.assert_nothing_left().await
}

#[tokio::test]
async fn a_hundred_nodes_joining_cost_at_most_five_describe_instances() -> Result<()> {
    let _serial = support::serial().await;
    let cluster = TestCluster::new("aws-budget").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(100)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    let ccm = start(&cluster, &off_aws_config(&cluster, &vpc), None, &["--configure-cloud-routes=false"])?;
    wait_all_initialized(&client, &names, &ccm).await?;
    let describes = cluster.proxy.count(Service::Ec2, "DescribeInstances");
    eprintln!("100 Nodes initialized with {describes} DescribeInstances; all calls: {:?}", cluster.proxy.summary());
    assert!(describes <= 5, "{describes} DescribeInstances for 100 Nodes");
    assert!(cluster.proxy.mutating_calls().is_empty(), "initializing Nodes changes nothing in AWS");
    support::clean_cluster_but_foreign_nodes(&client).await?;
    drop(ccm);
    cluster.assert_nothing_left().await
}

/// `RoleARN` is assumed through STS with upstream's confused-deputy headers, and every EC2 call
/// is then signed with the role's credentials, not the ones the process started with.
#[tokio::test]
async fn role_arn_is_assumed_with_upstreams_source_headers() -> Result<()> {
    let _serial = support::serial().await;
    let cluster = TestCluster::new("assume-role").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(1)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    // In the account the seeded VPC is in (the emulator keeps each account's state apart).
    let account = cluster.emulator.account_id();
    let role = format!("arn:aws:iam::{account}:role/cloud-controller-manager");
    let source = format!("arn:aws:eks:us-east-1:{account}:cluster/parity");
    let config = format!("{}RoleARN = {role}\nSourceARN = {source}\n", off_aws_config(&cluster, &vpc));
    let ccm = start(&cluster, &config, None, &["--controllers=cloud-node"])?;
    wait_all_initialized(&client, &names, &ccm).await?;

    let calls = cluster.proxy.calls();
    let assume: Vec<_> = calls.iter().filter(|c| c.call.action == "AssumeRole").collect();
    assert!(!assume.is_empty(), "no AssumeRole among {:?}", cluster.proxy.summary());
    let header =
        |c: &ccm_e2e::proxy::CallRecord, name: &str| c.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let param =
        |c: &ccm_e2e::proxy::CallRecord, name: &str| c.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header(assume[0], "x-amz-source-account").as_deref(), Some(account));
    assert_eq!(header(assume[0], "x-amz-source-arn"), Some(source));
    assert_eq!(param(assume[0], "RoleArn"), Some(role));
    let ec2: Vec<_> = calls.iter().filter(|c| c.call.service == Service::Ec2).collect();
    assert!(!ec2.is_empty());
    for call in ec2 {
        let auth = header(call, "authorization").unwrap_or_default();
        assert!(!auth.contains("Credential=test/"), "{} signed with the process's own key: {auth}", call.call.action);
    }
    Ok(())
}

/// A `[ServiceOverride]` sends the service's calls to its URL, signed with its SigningRegion and
/// SigningName, as upstream signs them (an endpoint that expects another signing name, such as
/// a VPC endpoint or a proxy, accepts them).
#[tokio::test]
async fn service_override_signing_name_and_region() -> Result<()> {
    let _serial = support::serial().await;
    let cluster = TestCluster::new("signing").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(1)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    let config = format!(
        "{}[ServiceOverride \"ec2\"]\nService = EC2\nRegion = {}\nURL = {}\nSigningRegion = eu-west-1\nSigningName = custom-ec2\n",
        off_aws_config(&cluster, &vpc),
        cluster.region,
        cluster.proxy.endpoint()
    );
    // Anything not overridden would go to a closed port: the override alone must carry EC2.
    // (moto routes requests by signing name, so it cannot answer these; the proxy's record of
    // what was sent is the point.)
    let ccm =
        support::aws::start_with_endpoint(&cluster, &config, "http://127.0.0.1:9", &["--controllers=cloud-node"])?;
    let ec2 = eventually("EC2 calls through the override", WAIT, || async {
        let calls: Vec<_> = cluster.proxy.calls().into_iter().filter(|c| c.call.service == Service::Ec2).collect();
        Ok((!calls.is_empty()).then_some(calls))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    let _ = names;
    for call in ec2 {
        let auth = call.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).unwrap_or_default();
        assert!(auth.contains("/eu-west-1/custom-ec2/aws4_request"), "{}: {auth}", call.call.action);
    }
    Ok(())
}

/// `topology.k8s.aws/network-node-layer-N` labels from DescribeInstanceTopology, as upstream
/// adds them (moto has no topology data: the proxy answers for it, as EC2 does for a P5).
#[tokio::test]
async fn network_topology_labels() -> Result<()> {
    let _serial = support::serial().await;
    let cluster = TestCluster::new("topology").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(1)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    let instance = &vpc.instances[0];
    cluster.proxy.inject(
        ccm_e2e::FaultRule::respond(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstanceTopologyResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>r-1</requestId><instanceSet><item><instanceId>{}</instanceId><instanceType>m5.large</instanceType>\
             <groupName>g</groupName><networkNodeSet><item>nn-core</item><item>nn-spine</item><item>nn-leaf</item></networkNodeSet>\
             <availabilityZone>{}</availabilityZone><zoneId>use1-az1</zoneId></item></instanceSet></DescribeInstanceTopologyResponse>",
            instance.id, instance.zone
        ))
        .on_service(Service::Ec2)
        .on_action("DescribeInstanceTopology"),
    );
    let ccm = start(&cluster, &off_aws_config(&cluster, &vpc), None, &["--controllers=cloud-node"])?;
    wait_all_initialized(&client, &names, &ccm).await?;
    let labels = get_node(&client, &names[0]).await?.metadata.labels.unwrap_or_default();
    for (layer, node) in [(1, "nn-core"), (2, "nn-spine"), (3, "nn-leaf")] {
        assert_eq!(labels.get(&format!("topology.k8s.aws/network-node-layer-{layer}")).map(String::as_str), Some(node));
    }
    assert_eq!(cluster.proxy.count(Service::Ec2, "DescribeInstanceTopology"), 1);
    Ok(())
}

/// NotReady Nodes of other providers (hybrid nodes, kind, Fargate, virtual kubelets) are never
/// deleted by the lifecycle controller, as upstream leaves them; a NotReady Node of this cloud
/// whose instance is gone still is.
#[tokio::test]
async fn another_providers_nodes_are_left_alone() -> Result<()> {
    let _serial = support::serial().await;
    let cluster = TestCluster::new("foreign").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(1)).await?;
    let foreign = [
        ("hybrid-1", "eks-hybrid:///us-east-1/my-cluster/mi-0123456789abcdef0"),
        ("kind-worker", "kind://docker/kind/kind-worker"),
        ("fargate-ip-10-0-0-1.ec2.internal", "aws:///us-east-1a/fargate-10.0.0.1"),
        ("virtual-kubelet", "virtual-kubelet://aci"),
    ];
    for (name, pid) in foreign {
        ccm_e2e::NodeRegistration::named(name)
            .with_provider_id(pid)
            .initialized()
            .not_ready()
            .register(&client)
            .await?;
    }
    // One of ours whose instance is gone: the lifecycle controller is working.
    let gone = "aws:///us-east-1a/i-0000000000000dead";
    ccm_e2e::NodeRegistration::named("gone").with_provider_id(gone).initialized().not_ready().register(&client).await?;
    let ccm = start(&cluster, &off_aws_config(&cluster, &vpc), None, &["--controllers=cloud-node-lifecycle"])?;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("the gone Node deleted", WAIT, || async { Ok(nodes.get_opt("gone").await?.is_none().then_some(())) })
        .await
        .with_context(|| ccm.log_tail(40))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, _) in foreign {
        assert!(nodes.get_opt(name).await?.is_some(), "{name} was deleted");
    }
    let log = std::fs::read_to_string(&ccm.log).unwrap_or_default();
    let told = log.lines().filter(|l| l.contains("leaves it alone") && l.contains("hybrid-1")).count();
    assert_eq!(told, 1, "said once, not on every pass");
    Ok(())
}
