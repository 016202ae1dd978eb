//! The service controller against the real apiserver, with the fake cloud.

mod support;

use std::time::Duration;

use anyhow::Result;
use ccm_e2e::NodeRegistration;
use cloud_provider::CloudError;
use cloud_provider_fake::{ELSEWHERE_ANNOTATION, FakeCloud, Method};
use k8s_openapi::api::core::v1::{Node, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::{Ccm, eventually, has_event};

const FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";
const WAIT: Duration = Duration::from_secs(30);

fn lb_service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some([("app".to_string(), name.to_string())].into_iter().collect()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

async fn register_nodes(client: &kube::Client, names: &[&str]) -> Result<()> {
    for name in names {
        NodeRegistration::named(*name).initialized().register(client).await?;
    }
    Ok(())
}

fn ingress_hostname(svc: &Service) -> Option<String> {
    svc.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.first()?.hostname.clone()
}

fn finalized(svc: &Service) -> bool {
    svc.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

async fn lb_nodes(cloud: &FakeCloud, key: &str) -> Option<Vec<String>> {
    cloud.load_balancer(key).map(|lb| lb.nodes)
}

#[tokio::test]
async fn create_node_changes_update_and_delete() -> Result<()> {
    let ccm = Ccm::start(FakeCloud::default(), &["--controllers=service"]).await?;
    let client = ccm.client.clone();
    register_nodes(&client, &["svc-n1", "svc-n2"]).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &lb_service("web")).await?;

    // Create: finalizer, then the status from the cloud, and the upstream Events.
    let svc = eventually("status.loadBalancer", WAIT, || async {
        let svc = services.get("web").await?;
        Ok(ingress_hostname(&svc).map(|_| svc))
    })
    .await?;
    assert!(finalized(&svc));
    let lb = ccm.cloud.load_balancer("default/web").expect("the fake LB");
    assert_eq!(ingress_hostname(&svc).as_deref(), Some(lb.hostname.as_str()));
    assert_eq!(lb.nodes, ["svc-n1", "svc-n2"]);
    eventually("EnsuredLoadBalancer event", WAIT, || async {
        Ok(has_event(&client, "default", "web", "EnsuredLoadBalancer").await?.then_some(()))
    })
    .await?;
    assert!(has_event(&client, "default", "web", "EnsuringLoadBalancer").await?);
    let ensures = ccm.cloud.count(Method::EnsureLoadBalancer);

    // A new Node reaches the LB through update_hosts, not a full ensure.
    register_nodes(&client, &["svc-n3"]).await?;
    eventually("node n3 targeted", WAIT, || async {
        Ok((lb_nodes(&ccm.cloud, "default/web").await.unwrap_or_default().len() == 3).then_some(()))
    })
    .await?;
    assert!(ccm.cloud.count(Method::UpdateHosts) >= 1);
    eventually("UpdatedLoadBalancer event", WAIT, || async {
        Ok(has_event(&client, "default", "web", "UpdatedLoadBalancer").await?.then_some(()))
    })
    .await?;

    // Excluded by label → dropped from the targets.
    let nodes: Api<Node> = Api::all(client.clone());
    let exclude = serde_json::json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true"}}});
    nodes.patch("svc-n1", &PatchParams::default(), &Patch::Merge(&exclude)).await?;
    eventually("n1 excluded", WAIT, || async {
        Ok((lb_nodes(&ccm.cloud, "default/web").await.unwrap_or_default() == ["svc-n2", "svc-n3"]).then_some(()))
    })
    .await?;
    // A heartbeat-style status change of a Node costs nothing.
    let before_heartbeat = ccm.cloud.calls().len();
    let heartbeat = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "beat"}]}});
    nodes.patch_status("svc-n2", &PatchParams::default(), &Patch::Strategic(&heartbeat)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ccm.cloud.calls().len(),
        before_heartbeat,
        "a Node change that leaves the eligible set alone costs no cloud call"
    );
    assert_eq!(ccm.cloud.count(Method::EnsureLoadBalancer), ensures, "node changes never did a full ensure");

    // A label change on the Service is not a trigger; an annotation change is.
    let label = serde_json::json!({"metadata": {"labels": {"team": "a"}}});
    services.patch("web", &PatchParams::default(), &Patch::Merge(&label)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ccm.cloud.count(Method::EnsureLoadBalancer), ensures);
    let annotate = serde_json::json!({"metadata": {"annotations": {"example.com/x": "1"}}});
    services.patch("web", &PatchParams::default(), &Patch::Merge(&annotate)).await?;
    eventually("re-ensure after an annotation change", WAIT, || async {
        Ok((ccm.cloud.count(Method::EnsureLoadBalancer) > ensures).then_some(()))
    })
    .await?;

    // Delete: the finalizer holds the Service until the cloud confirms.
    services.delete("web", &DeleteParams::default()).await?;
    eventually("Service gone", WAIT, || async { Ok(services.get_opt("web").await?.is_none().then_some(())) }).await?;
    assert!(ccm.cloud.load_balancer("default/web").is_none());
    assert!(has_event(&client, "default", "web", "DeletingLoadBalancer").await?);
    assert!(has_event(&client, "default", "web", "DeletedLoadBalancer").await?);
    ccm.stop().await
}

#[tokio::test]
async fn failures_are_reported_and_retried_and_type_change_cleans_up() -> Result<()> {
    let cloud = FakeCloud::default();
    cloud.fail(Method::EnsureLoadBalancer, CloudError::transient("fake.ensure", "quota exceeded"), Some(1));
    let ccm = Ccm::start(cloud, &["--controllers=service"]).await?;
    let client = ccm.client.clone();
    register_nodes(&client, &["fail-n1"]).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &lb_service("flaky")).await?;

    eventually("SyncLoadBalancerFailed", WAIT, || async {
        Ok(has_event(&client, "default", "flaky", "SyncLoadBalancerFailed").await?.then_some(()))
    })
    .await?;
    let failed_at = std::time::Instant::now();
    // The finalizer went on before the cloud was asked, so nothing can leak.
    assert!(finalized(&services.get("flaky").await?));
    // Retried after the 5 s backoff: the finalizer's own write, a change of the Service that
    // changes nothing the sync reads, does not cut it short.
    eventually("status after retry", WAIT, || async { Ok(ingress_hostname(&services.get("flaky").await?)) }).await?;
    let waited = failed_at.elapsed();
    assert!(waited >= std::time::Duration::from_secs(4), "retried after {waited:?}, before the backoff");
    assert_eq!(ccm.cloud.count(Method::EnsureLoadBalancer), 2, "one failure, one success");

    // LoadBalancer → ClusterIP: the LB goes, the finalizer and status with it.
    let to_cluster_ip = serde_json::json!({"spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": null}]}});
    services.patch("flaky", &PatchParams::default(), &Patch::Merge(&to_cluster_ip)).await?;
    let svc = eventually("cleanup after type change", WAIT, || async {
        let svc = services.get("flaky").await?;
        Ok((!finalized(&svc) && ingress_hostname(&svc).is_none()).then_some(svc))
    })
    .await?;
    assert!(ccm.cloud.load_balancer("default/flaky").is_none());
    assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    services.delete("flaky", &DeleteParams::default()).await?;
    ccm.stop().await
}

#[tokio::test]
async fn services_that_are_not_ours_are_left_alone() -> Result<()> {
    let ccm = Ccm::start(FakeCloud::default(), &["--controllers=service"]).await?;
    let client = ccm.client.clone();
    register_nodes(&client, &["other-n1"]).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut classed = lb_service("classed");
    classed.spec.as_mut().unwrap().load_balancer_class = Some("service.k8s.aws/nlb".into());
    services.create(&PostParams::default(), &classed).await?;
    let mut elsewhere = lb_service("elsewhere");
    elsewhere.metadata.annotations =
        Some([(ELSEWHERE_ANNOTATION.to_string(), "yes".to_string())].into_iter().collect());
    services.create(&PostParams::default(), &elsewhere).await?;

    eventually("ensure asked for the elsewhere Service", WAIT, || async {
        Ok((ccm.cloud.count_for(Method::EnsureLoadBalancer, "default/elsewhere") > 0).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ccm.cloud.count_for(Method::EnsureLoadBalancer, "default/classed"),
        0,
        "a loadBalancerClass is another controller's"
    );
    assert!(!finalized(&services.get("classed").await?));
    let elsewhere = services.get("elsewhere").await?;
    assert!(ingress_hostname(&elsewhere).is_none(), "ImplementedElsewhere leaves the status alone");
    for name in ["classed", "elsewhere"] {
        services.delete(name, &DeleteParams::default()).await?;
    }
    eventually("both gone", WAIT, || async {
        Ok((services.get_opt("classed").await?.is_none() && services.get_opt("elsewhere").await?.is_none())
            .then_some(()))
    })
    .await?;
    ccm.stop().await
}

#[tokio::test]
async fn a_slow_delete_does_not_block_other_services() -> Result<()> {
    let cloud = FakeCloud::default();
    cloud.delay(Method::EnsureLoadBalancerDeleted, Duration::from_secs(20));
    let ccm = Ccm::start(cloud, &["--controllers=service", "--concurrent-service-syncs=3"]).await?;
    let client = ccm.client.clone();
    register_nodes(&client, &["slow-n1"]).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &lb_service("slow")).await?;
    eventually("slow has an LB", WAIT, || async { Ok(ingress_hostname(&services.get("slow").await?)) }).await?;

    services.delete("slow", &DeleteParams::default()).await?;
    eventually("the delete started", WAIT, || async {
        Ok((ccm.cloud.count_for(Method::EnsureLoadBalancerDeleted, "default/slow") > 0).then_some(()))
    })
    .await?;
    let started = std::time::Instant::now();
    services.create(&PostParams::default(), &lb_service("fast")).await?;
    eventually("fast gets its LB while slow is being deleted", Duration::from_secs(10), || async {
        Ok(ingress_hostname(&services.get("fast").await?))
    })
    .await?;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(services.get_opt("slow").await?.is_some(), "slow is still held by its finalizer");

    services.delete("fast", &DeleteParams::default()).await?;
    eventually("both deleted", Duration::from_secs(60), || async {
        Ok((services.get_opt("slow").await?.is_none() && services.get_opt("fast").await?.is_none()).then_some(()))
    })
    .await?;
    assert!(ccm.cloud.load_balancers().is_empty());
    ccm.stop().await
}

#[tokio::test]
async fn drift_is_repaired_by_the_periodic_re_ensure_and_node_trouble_is_reported() -> Result<()> {
    let ccm = Ccm::start(FakeCloud::default(), &["--controllers=service", "--load-balancer-resync-period=2s"]).await?;
    let client = ccm.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");

    // No Nodes at all: the LB is still made, with a Warning.
    services.create(&PostParams::default(), &lb_service("lonely")).await?;
    eventually("UnAvailableLoadBalancer", WAIT, || async {
        Ok(has_event(&client, "default", "lonely", "UnAvailableLoadBalancer").await?.then_some(()))
    })
    .await?;
    eventually("status", WAIT, || async { Ok(ingress_hostname(&services.get("lonely").await?)) }).await?;

    // Nothing changes, yet the LB is re-ensured every resync period.
    let before = ccm.cloud.count_for(Method::EnsureLoadBalancer, "default/lonely");
    eventually("periodic re-ensure", Duration::from_secs(10), || async {
        Ok((ccm.cloud.count_for(Method::EnsureLoadBalancer, "default/lonely") >= before + 2).then_some(()))
    })
    .await?;

    // A failed host update is reported and the next attempt is a full ensure.
    ccm.cloud.fail(Method::UpdateHosts, CloudError::transient("fake.update_hosts", "throttled"), Some(1));
    register_nodes(&client, &["drift-n1"]).await?;
    eventually("UpdateLoadBalancerFailed", WAIT, || async {
        Ok(has_event(&client, "default", "lonely", "UpdateLoadBalancerFailed").await?.then_some(()))
    })
    .await?;
    eventually("n1 targeted after the retry", WAIT, || async {
        Ok((lb_nodes(&ccm.cloud, "default/lonely").await.unwrap_or_default() == ["drift-n1"]).then_some(()))
    })
    .await?;
    services.delete("lonely", &DeleteParams::default()).await?;
    eventually("deleted", WAIT, || async { Ok(services.get_opt("lonely").await?.is_none().then_some(())) }).await?;
    ccm.stop().await
}

/// As upstream: the cluster autoscaler's `ToBeDeletedByClusterAutoscaler` taint alone does not
/// touch the load balancers (the Node keeps its connections while it is drained); the next
/// change that does (here a Node joining) leaves the tainted Node out.
#[tokio::test]
async fn the_autoscaler_taint_waits_for_the_next_node_change() -> Result<()> {
    let ccm = Ccm::start(FakeCloud::default(), &["--controllers=service"]).await?;
    let client = ccm.client.clone();
    register_nodes(&client, &["cas-n1", "cas-n2"]).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &lb_service("drained")).await?;
    eventually("both Nodes targeted", WAIT, || async {
        Ok((lb_nodes(&ccm.cloud, "default/drained").await.unwrap_or_default() == ["cas-n1", "cas-n2"]).then_some(()))
    })
    .await?;

    let nodes: Api<Node> = Api::all(client.clone());
    let taint = serde_json::json!({"spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1", "effect": "NoSchedule"}]}});
    nodes.patch("cas-n1", &PatchParams::default(), &Patch::Merge(&taint)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        lb_nodes(&ccm.cloud, "default/drained").await.unwrap_or_default(),
        ["cas-n1", "cas-n2"],
        "the taint alone changes nothing"
    );

    register_nodes(&client, &["cas-n3"]).await?;
    eventually("the tainted Node left out at the next change", WAIT, || async {
        Ok((lb_nodes(&ccm.cloud, "default/drained").await.unwrap_or_default() == ["cas-n2", "cas-n3"]).then_some(()))
    })
    .await?;
    services.delete("drained", &DeleteParams::default()).await?;
    eventually("deleted", WAIT, || async { Ok(services.get_opt("drained").await?.is_none().then_some(())) }).await?;
    ccm.stop().await
}

/// Every write to a Service names its UID: a Service deleted and re-created under the same name
/// while a sync of the old one runs is never given the old one's finalizer or status.
#[tokio::test]
async fn writes_to_a_service_are_checked_against_its_uid() -> Result<()> {
    use cloud_controller_manager::controllers::service::status::{self, Written};
    let _serial = support::serial().await;
    let client = ccm_e2e::ControlPlane::shared().client().await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let old = services.create(&PostParams::default(), &lb_service("recreated")).await?;
    let old_uid = old.metadata.uid.clone().unwrap_or_default();
    services.delete("recreated", &DeleteParams::default()).await?;
    eventually("the old one gone", WAIT, || async { Ok(services.get_opt("recreated").await?.is_none().then_some(())) })
        .await?;
    assert_eq!(status::add_finalizer(&services, "recreated", &old_uid).await?, Written::Gone, "404");

    let new = services.create(&PostParams::default(), &lb_service("recreated")).await?;
    let new_uid = new.metadata.uid.clone().unwrap_or_default();
    assert_eq!(status::add_finalizer(&services, "recreated", &old_uid).await?, Written::Gone, "another UID");
    let ingress = [cloud_provider::IngressPoint::hostname("old.example.com")];
    assert_eq!(status::set_ingress(&services, "recreated", &old_uid, &ingress).await?, Written::Gone);
    let untouched = services.get("recreated").await?;
    assert!(!finalized(&untouched) && ingress_hostname(&untouched).is_none(), "the new Service was written to");

    assert_eq!(status::add_finalizer(&services, "recreated", &new_uid).await?, Written::Done);
    assert!(finalized(&services.get("recreated").await?));
    assert_eq!(status::remove_finalizer_and_ingress(&services, "recreated", &new_uid).await?, Written::Done);
    services.delete("recreated", &DeleteParams::default()).await?;
    Ok(())
}
