//! The Node scenarios of the full run: how long from start to the first Node initialized, 500
//! Nodes joining at once, and peak memory with thousands of kubelet-sized Nodes and Services
//! watched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ccm_e2e::{CcmFlavor, ControlPlane, NodeRegistration, Service as AwsService, UNINITIALIZED_TAINT};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

use crate::parity::Side;
use crate::scenarios::{Figures, side};

/// Nodes registered at once while the CCM runs.
pub const JOINING: usize = 500;
/// The memory step's objects, for both CCMs; ours is also measured at [`MORE`].
pub const MANY: (usize, usize) = (5_000, 2_000);
pub const MORE: (usize, usize) = (10_000, 5_000);
/// How long each CCM runs over the memory step's objects before its peak is read.
const SETTLE: Duration = Duration::from_secs(90);
/// Requests to the apiserver in flight while filling it.
const PARALLEL: usize = 32;
const NAMESPACE: &str = "bench-memory";
/// The controllers that read Nodes (routes off: the Nodes have no pod CIDRs anyway).
const NODE_CONTROLLERS: &str = "cloud-node,cloud-node-lifecycle";
pub const EVERY_CONTROLLER: &str = "cloud-node,cloud-node-lifecycle,service,route";

pub async fn run(flavor: &CcmFlavor, plane: ControlPlane) -> Result<(Figures, ControlPlane)> {
    let mut out = Figures::new();
    let mut side = side(flavor, plane, "").await?;
    let ec2 = side.cluster.direct.ec2.clone();

    // Start to first reconcile: one Node waits for initialization when the CCM starts.
    let first = side.vpc.add_instances(&ec2, 1, "t3.medium").await?;
    NodeRegistration::for_instance(&first[0]).register(&side.client).await?;
    let started = Instant::now();
    side.start_with(flavor.clone(), NODE_CONTROLLERS, &["--configure-cloud-routes=false"])?;
    initialized(&side, 1, Duration::from_secs(120)).await?;
    out.push(("start to the first Node initialized: seconds", started.elapsed().as_secs_f64()));

    // Nodes joining at once: every kubelet registers within a few seconds.
    let joining = side.vpc.add_instances(&ec2, JOINING, "t3.medium").await?;
    side.cluster.proxy.reset_calls();
    let started = Instant::now();
    register_all(&side.client, joining.iter().map(NodeRegistration::for_instance)).await?;
    initialized(&side, 1 + JOINING, Duration::from_secs(1800)).await?;
    out.push(("500 Nodes joining at once: seconds until all initialized", started.elapsed().as_secs_f64()));
    out.push((
        "500 Nodes joining at once: DescribeInstances calls",
        side.cluster.proxy.count(AwsService::Ec2, "DescribeInstances") as f64,
    ));
    side.stop();
    delete_nodes(&side).await?;

    out.push(("peak RSS, 5,000 Nodes and 2,000 Services watched: MiB", peak_rss(&mut side, flavor, MANY).await?));
    if matches!(flavor, CcmFlavor::Ours(_)) {
        out.push(("peak RSS, 10,000 Nodes and 5,000 Services watched: MiB", peak_rss(&mut side, flavor, MORE).await?));
    }
    side.cluster.assert_nothing_left().await?;
    Ok((out, side.finish().await?))
}

/// Waits until `count` Nodes made by this step no longer carry the uninitialized taint (the
/// two the side started with are initialized already).
async fn initialized(side: &Side, count: usize, limit: Duration) -> Result<()> {
    let nodes: Api<Node> = Api::all(side.client.clone());
    let deadline = Instant::now() + limit;
    loop {
        let all = nodes.list(&ListParams::default()).await?.items;
        let tainted = all.iter().filter(|n| has_uninitialized_taint(n)).count();
        if all.len() >= count + 2 && tainted == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{}: {tainted} of {} Nodes still uninitialized after {limit:?}\n{}",
                side.label,
                all.len(),
                side.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Registers the Nodes, [`PARALLEL`] at a time, as kubelets starting together do.
pub async fn register_all(client: &kube::Client, nodes: impl Iterator<Item = NodeRegistration>) -> Result<()> {
    futures::stream::iter(nodes.map(|node| {
        let client = client.clone();
        async move { node.register(&client).await }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(())
}

fn has_uninitialized_taint(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == UNINITIALIZED_TAINT))
}

async fn delete_nodes(side: &Side) -> Result<()> {
    let nodes: Api<Node> = Api::all(side.client.clone());
    nodes.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
    Ok(())
}

/// Fills the apiserver with `nodes` kubelet-sized Nodes (initialized and Ready, of another
/// provider, so that neither CCM asks EC2 about them: the figure is what watching costs) and
/// `services` ClusterIP Services made by `kubectl apply`, runs every controller over them for
/// [`SETTLE`], and returns the CCM's peak resident memory.
async fn peak_rss(side: &mut Side, flavor: &CcmFlavor, (nodes, services): (usize, usize)) -> Result<f64> {
    let client = side.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta { name: Some(NAMESPACE.into()), ..Default::default() },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context("creating the namespace"),
    }
    let filled = Instant::now();
    futures::stream::iter((0..nodes).map(|i| register_kubelet_node(&client, i)))
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<_>>()
        .await?;
    let svc_api: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter((0..services).map(|i| {
        let svc_api = svc_api.clone();
        async move {
            svc_api
                .create(
                    &PostParams { field_manager: Some("kubectl-client-side-apply".into()), ..Default::default() },
                    &applied_service(i),
                )
                .await
        }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<Vec<_>>()
    .await?;
    eprintln!("{}: {nodes} Nodes and {services} Services made in {:?}", side.label, filled.elapsed());

    side.start_with(flavor.clone(), EVERY_CONTROLLER, &["--configure-cloud-routes=false"])?;
    tokio::time::sleep(SETTLE).await;
    let ccm = side.ccm.as_ref().context("the CCM")?;
    if !ccm.is_running() {
        bail!("{}: the CCM exited\n{}", side.label, side.log_tail());
    }
    let peak = ccm.peak_rss_mib()?;
    eprintln!(
        "{}: peak RSS {peak:.0} MiB with {nodes} Nodes and {services} Services (now {:.0} MiB)",
        side.label,
        ccm.rss_mib()?
    );
    side.stop();
    delete_nodes(side).await?;
    svc_api.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
    Ok(peak)
}

/// A Node as a kubelet on a busy instance keeps it: labels and annotations kubeadm and the
/// kubelet set, five conditions, twelve images, node info, capacity, written by the kubelet's
/// field manager (so the apiserver keeps managed fields for it).
async fn register_kubelet_node(client: &kube::Client, i: usize) -> Result<()> {
    let name = format!("ip-10-{}-{}-{}.ec2.internal", 100 + i / 65536, (i / 256) % 256, i % 256);
    let ip = format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256);
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", "m5.xlarge"),
        ("topology.kubernetes.io/zone", "us-east-1a"),
        ("topology.kubernetes.io/region", "us-east-1"),
        ("node-role.kubernetes.io/worker", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "projectcalico.org/IPv4Address": format!("{ip}/19"),
                "projectcalico.org/IPv4IPIPTunnelAddr": format!("100.{}.{}.0", 96 + i / 65536, i % 256),
            },
        },
        "spec": { "providerID": format!("kind://docker/bench/{name}") },
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let kubelet = PostParams { field_manager: Some("kubelet".into()), ..Default::default() };
    nodes.create(&kubelet, &serde_json::from_value(node)?).await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        serde_json::json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let images: Vec<_> = (0..12)
        .map(|n| {
            serde_json::json!({
                "names": [format!("registry.example.com/team-{n}/app@sha256:{:064x}", n * 7919 + i), format!("registry.example.com/team-{n}/app:v1.{n}.{}", i % 10)],
                "sizeBytes": 50_000_000 + n * 1_000_000,
            })
        })
        .collect();
    let status = serde_json::json!({ "status": {
        "addresses": [
            {"type": "InternalIP", "address": ip},
            {"type": "InternalDNS", "address": name},
            {"type": "Hostname", "address": name},
        ],
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            condition("NetworkUnavailable", "False", "CalicoIsUp", "Calico is running on this node"),
        ],
        "images": images,
        "capacity": {"cpu": "4", "memory": "16064552Ki", "pods": "110", "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"},
        "allocatable": {"cpu": "3920m", "memory": "15359016Ki", "pods": "110", "ephemeral-storage": "96625420948", "hugepages-1Gi": "0", "hugepages-2Mi": "0"},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": format!("{:032x}", i), "systemUUID": format!("ec2{:029x}", i), "bootID": format!("{:032x}", i * 31),
            "kernelVersion": "6.1.115-126.197.amzn2023.x86_64", "osImage": "Amazon Linux 2023.6.20241121",
            "containerRuntimeVersion": "containerd://1.7.23", "kubeletVersion": "v1.37.0", "kubeProxyVersion": "v1.37.0",
            "operatingSystem": "linux", "architecture": "amd64",
        },
    }});
    let kubelet = PatchParams { field_manager: Some("kubelet".into()), ..Default::default() };
    nodes.patch_status(&name, &kubelet, &Patch::Merge(&status)).await?;
    Ok(())
}

/// A ClusterIP (headless) Service as `kubectl apply` leaves it: its last applied configuration
/// in an annotation.
fn applied_service(i: usize) -> Service {
    let name = format!("app-{i}");
    // Headless: the harness's service range has room for only 254 cluster IPs.
    let spec = serde_json::json!({
        "clusterIP": "None",
        "selector": {"app": name},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "metrics", "port": 9090}],
    });
    let applied = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}}, "spec": spec});
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name, "namespace": NAMESPACE, "labels": {"app": name, "team": format!("team-{}", i % 12)},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()},
        },
        "spec": spec,
    }))
    .expect("a Service")
}
