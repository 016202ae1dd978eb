//! The cloud-node, cloud-node-lifecycle and route controllers against the real apiserver,
//! with the fake cloud.

mod support;

use std::time::Duration;

use anyhow::Result;
use ccm_e2e::{NodeRegistration, UNINITIALIZED_TAINT};
use cloud_provider::{AddressType, CloudError, NodeAddress, Route};
use cloud_provider_fake::{FakeCloud, FakeConfig, InstanceState, Method};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use support::{Ccm, eventually, get_node, has_event};

const WAIT: Duration = Duration::from_secs(30);
const SHUTDOWN_TAINT: &str = "node.cloudprovider.kubernetes.io/shutdown";

fn taint_keys(node: &Node) -> Vec<String> {
    node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default().into_iter().map(|t| t.key).collect()
}

fn addresses(node: &Node) -> Vec<(String, String)> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect()
}

fn condition(node: &Node, kind: &str) -> Option<(String, String)> {
    let c = node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)?.clone();
    Some((c.status, c.reason.unwrap_or_default()))
}

#[tokio::test]
async fn a_node_joins_tainted_and_leaves_initialized() -> Result<()> {
    let cloud =
        FakeCloud::new(FakeConfig { zone: "zone-b".into(), region: "region-1".into(), ..FakeConfig::default() });
    let mut instance = cloud.running_instance(vec![
        NodeAddress::new(AddressType::InternalIp, "10.0.0.7"),
        NodeAddress::new(AddressType::InternalIp, "10.0.0.8"),
        NodeAddress::new(AddressType::ExternalIp, "203.0.113.9"),
        NodeAddress::new(AddressType::InternalDns, "join-n1.internal"),
    ]);
    instance.additional_labels.insert("topology.example.com/zone-id".into(), "z-1".into());
    instance.additional_labels.insert("node.kubernetes.io/forbidden".into(), "x".into());
    cloud.add_instance("join-n1", instance);
    // The first metadata read fails: the taint must stay until a retry succeeds.
    cloud.fail(Method::InstanceMetadata, CloudError::transient("fake.metadata", "throttled"), Some(1));
    let ccm = Ccm::start(cloud, &["--controllers=cloud-node"]).await?;
    let client = ccm.client.clone();

    NodeRegistration::named("join-n1")
        .with_internal_ip("10.0.0.8")
        .with_provided_node_ip("10.0.0.8")
        .register(&client)
        .await?;
    let node = eventually("taint removed", WAIT, || async {
        let node = get_node(&client, "join-n1").await?;
        Ok((!taint_keys(&node).contains(&UNINITIALIZED_TAINT.to_string())).then_some(node))
    })
    .await?;
    assert!(ccm.cloud.count_for(Method::InstanceMetadata, "join-n1") >= 2, "the failed attempt was retried");
    assert_eq!(node.spec.as_ref().and_then(|s| s.provider_id.as_deref()), Some("fake://zone-b/join-n1"));
    let labels = node.metadata.labels.clone().unwrap_or_default();
    for (key, value) in [
        ("node.kubernetes.io/instance-type", "fake.large"),
        ("beta.kubernetes.io/instance-type", "fake.large"),
        ("topology.kubernetes.io/zone", "zone-b"),
        ("failure-domain.beta.kubernetes.io/zone", "zone-b"),
        ("topology.kubernetes.io/region", "region-1"),
        ("failure-domain.beta.kubernetes.io/region", "region-1"),
        ("topology.example.com/zone-id", "z-1"),
    ] {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert!(!labels.contains_key("node.kubernetes.io/forbidden"));
    // The provided node IP first and the only InternalIP; the kubelet's Hostname kept.
    let addrs = eventually("addresses", WAIT, || async {
        let a = addresses(&get_node(&client, "join-n1").await?);
        Ok(a.iter().any(|(t, _)| t == "ExternalIP").then_some(a))
    })
    .await?;
    assert_eq!(addrs[0], ("InternalIP".to_string(), "10.0.0.8".to_string()));
    assert_eq!(addrs.iter().filter(|(t, _)| t == "InternalIP").count(), 1);
    assert!(addrs.contains(&("Hostname".to_string(), "join-n1".to_string())));
    eventually("Synced event", WAIT, || async {
        Ok(has_event(&client, "default", "join-n1", "Synced").await?.then_some(()))
    })
    .await?;
    ccm.stop().await
}

#[tokio::test]
async fn lifecycle_deletes_vanished_nodes_and_taints_stopped_ones() -> Result<()> {
    let cloud = FakeCloud::new(FakeConfig { strict_instances: true, ..FakeConfig::default() });
    cloud.add_instance("life-stopped", cloud.running_instance(vec![]));
    cloud.add_instance("life-ok", cloud.running_instance(vec![]));
    cloud.set_instance_state("life-stopped", InstanceState::Stopped);
    let ccm = Ccm::start(cloud, &["--controllers=cloud-node-lifecycle"]).await?;
    let client = ccm.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());

    NodeRegistration::named("life-gone").initialized().not_ready().register(&client).await?;
    NodeRegistration::named("life-stopped").initialized().not_ready().register(&client).await?;
    NodeRegistration::named("life-ok").initialized().register(&client).await?;

    eventually("vanished Node deleted", WAIT, || async {
        Ok(nodes.get_opt("life-gone").await?.is_none().then_some(()))
    })
    .await?;
    assert!(has_event(&client, "default", "life-gone", "DeletingNode").await?);
    eventually("shutdown taint", WAIT, || async {
        Ok(taint_keys(&get_node(&client, "life-stopped").await?).contains(&SHUTDOWN_TAINT.to_string()).then_some(()))
    })
    .await?;
    assert!(nodes.get_opt("life-stopped").await?.is_some(), "a stopped instance still exists");
    assert!(!taint_keys(&get_node(&client, "life-ok").await?).contains(&SHUTDOWN_TAINT.to_string()));

    // Ready again → the taint goes.
    let ready =
        serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    nodes.patch_status("life-stopped", &PatchParams::default(), &Patch::Strategic(&ready)).await?;
    eventually("shutdown taint removed", WAIT, || async {
        Ok((!taint_keys(&get_node(&client, "life-stopped").await?).contains(&SHUTDOWN_TAINT.to_string())).then_some(()))
    })
    .await?;
    assert!(nodes.get_opt("life-ok").await?.is_some(), "a Ready Node is never checked for deletion");
    ccm.stop().await
}

#[tokio::test]
async fn routes_follow_pod_cidrs_inside_the_cluster_cidr_only() -> Result<()> {
    let cloud = FakeCloud::default();
    // Someone else's route outside the cluster CIDR, and a stale one of ours inside it.
    cloud.insert_route(Route {
        name: "vpn".into(),
        target_node: "gateway".into(),
        destination_cidr: "192.168.0.0/16".into(),
        blackhole: false,
    });
    cloud.insert_route(Route {
        name: "stale".into(),
        target_node: "long-gone".into(),
        destination_cidr: "10.244.99.0/24".into(),
        blackhole: false,
    });
    cloud.fail(Method::CreateRoute, CloudError::transient("fake.create_route", "route table full"), Some(1));
    let ccm = Ccm::start(cloud, &["--controllers=route", "--cluster-cidr=10.244.0.0/16"]).await?;
    let client = ccm.client.clone();

    NodeRegistration::named("route-a").initialized().with_pod_cidr("10.244.1.0/24").register(&client).await?;
    NodeRegistration::named("route-b").initialized().with_pod_cidr("10.244.2.0/24").register(&client).await?;
    NodeRegistration::named("route-none").initialized().register(&client).await?;

    eventually("routes for both Nodes", WAIT, || async {
        let mut cidrs: Vec<_> = ccm.cloud.routes().into_iter().map(|r| (r.destination_cidr, r.target_node)).collect();
        cidrs.sort();
        Ok((cidrs
            == [
                ("10.244.1.0/24".to_string(), "route-a".to_string()),
                ("10.244.2.0/24".to_string(), "route-b".to_string()),
                ("192.168.0.0/16".to_string(), "gateway".to_string()),
            ])
        .then_some(()))
    })
    .await?;
    // One create failed first: a Warning on that Node, and a retry on the next pass.
    let warned = has_event(&client, "default", "route-a", "FailedToCreateRoute").await?
        || has_event(&client, "default", "route-b", "FailedToCreateRoute").await?;
    assert!(warned, "FailedToCreateRoute");
    for name in ["route-a", "route-b"] {
        eventually("NetworkUnavailable=False/RouteCreated", WAIT, || async {
            let c = condition(&get_node(&client, name).await?, "NetworkUnavailable");
            Ok((c == Some(("False".to_string(), "RouteCreated".to_string()))).then_some(()))
        })
        .await?;
    }
    // Without a pod CIDR a Node is left alone, as Kubernetes' route controller leaves it.
    let none = condition(&get_node(&client, "route-none").await?, "NetworkUnavailable");
    assert_eq!(none, None, "no condition written for a Node without a pod CIDR");
    let ready = condition(&get_node(&client, "route-a").await?, "Ready");
    assert_eq!(ready.map(|c| c.0), Some("True".to_string()), "the Ready condition survives the patch");

    // A Node that goes away takes its route with it.
    Api::<Node>::all(client.clone()).delete("route-b", &Default::default()).await?;
    eventually("route-b's route deleted", WAIT, || async {
        Ok((!ccm.cloud.routes().iter().any(|r| r.target_node == "route-b")).then_some(()))
    })
    .await?;
    assert!(
        ccm.cloud.routes().iter().any(|r| r.destination_cidr == "192.168.0.0/16"),
        "outside the cluster CIDR: untouched"
    );
    ccm.stop().await
}

#[tokio::test]
async fn addresses_of_initialized_nodes_are_refreshed_periodically() -> Result<()> {
    let cloud = FakeCloud::default();
    cloud.add_instance(
        "refresh-n1",
        cloud.running_instance(vec![NodeAddress::new(AddressType::InternalIp, "10.1.0.1")]),
    );
    let ccm = Ccm::start(cloud, &["--controllers=cloud-node", "--node-status-update-frequency=1s"]).await?;
    let client = ccm.client.clone();
    NodeRegistration::named("refresh-n1").register(&client).await?;
    eventually("first addresses", WAIT, || async {
        let a = addresses(&get_node(&client, "refresh-n1").await?);
        Ok(a.contains(&("InternalIP".to_string(), "10.1.0.1".to_string())).then_some(()))
    })
    .await?;
    // The instance gets a public address: the Node learns it without being re-created.
    ccm.cloud.add_instance(
        "refresh-n1",
        ccm.cloud.running_instance(vec![
            NodeAddress::new(AddressType::InternalIp, "10.1.0.1"),
            NodeAddress::new(AddressType::ExternalIp, "198.51.100.4"),
        ]),
    );
    eventually("refreshed addresses", WAIT, || async {
        let a = addresses(&get_node(&client, "refresh-n1").await?);
        Ok(a.contains(&("ExternalIP".to_string(), "198.51.100.4".to_string())).then_some(()))
    })
    .await?;
    ccm.stop().await
}
