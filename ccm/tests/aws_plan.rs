//! `cloud-controller-manager plan` against the real apiserver and moto, through the proxy: it
//! only reads (every AWS call a `Describe…`), says "no changes" for settled load balancers,
//! lists the exact operations an annotation edit needs, and the controller then makes exactly
//! those. Exit codes 0 / 2 / 1 as `terraform plan -detailed-exitcode`.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ccm_e2e::{SeedOptions, TestCluster};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::aws::{PlanRun, WAIT, off_aws_config, plan, register, start, wait_all_initialized};
use support::eventually;
use support::services::{lb_service, wait_hostname};

const IDLE: &str = "service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout";
const TAGS: &str = "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags";
const CROSS_ZONE: &str = "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled";

fn service(name: &str, annotations: &[(&str, &str)]) -> Service {
    lb_service(name, annotations, &[(80, "TCP")])
}

/// Every AWS call since the last reset was a read.
fn assert_read_only(cluster: &TestCluster, what: &str, run: &PlanRun) -> Result<()> {
    let calls = cluster.proxy.calls();
    ensure!(!calls.is_empty(), "{what}: plan made no AWS call at all: {run:?}");
    let writes = cluster.proxy.mutating_calls();
    ensure!(writes.is_empty(), "{what}: plan made mutating calls: {writes:?}");
    let not_describe: Vec<String> =
        calls.iter().map(|c| c.call.action.clone()).filter(|a| !a.starts_with("Describe")).collect();
    ensure!(not_describe.is_empty(), "{what}: plan made calls other than Describe*: {not_describe:?}");
    Ok(())
}

#[tokio::test]
async fn plan_reads_only_and_the_controller_then_does_exactly_the_plan() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let _serial = support::serial().await;
    let cluster = TestCluster::new("plan").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(2)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    let config = off_aws_config(&cluster, &vpc);
    let flags = ["--controllers=service,cloud-node"];

    // Before any controller ran: the Nodes would be initialized, nothing else exists.
    cluster.proxy.reset_calls();
    let first = plan(&cluster, &config, &flags).await?;
    assert_read_only(&cluster, "uninitialized Nodes", &first)?;
    ensure!(first.code == 2, "exit {} (2: changes): {}{}", first.code, first.stdout, first.stderr);
    ensure!(
        first.stdout.contains("remove the taint node.cloudprovider.kubernetes.io/uninitialized"),
        "{}",
        first.stdout
    );

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &service("web", &[])).await?;
    services
        .create(
            &PostParams::default(),
            &service("fast", &[("service.beta.kubernetes.io/aws-load-balancer-type", "nlb")]),
        )
        .await?;
    let ccm = start(&cluster, &config, None, &flags)?;
    wait_all_initialized(&client, &names, &ccm).await?;
    for name in ["web", "fast"] {
        wait_hostname(&services, name, WAIT).await.with_context(|| ccm.log_tail(40))?;
    }
    drop(ccm);

    // Settled: nothing to do anywhere.
    cluster.proxy.reset_calls();
    let settled = plan(&cluster, &config, &flags).await?;
    assert_read_only(&cluster, "settled", &settled)?;
    ensure!(settled.code == 0, "exit {} (0: no changes): {}{}", settled.code, settled.stdout, settled.stderr);
    ensure!(settled.stdout.contains("Service default/web (load balancer a"), "{}", settled.stdout);
    ensure!(settled.stdout.matches("): no changes").count() == 2, "{}", settled.stdout);
    ensure!(settled.stdout.contains("Nodes: 2 with no changes, 2 skipped"), "{}", settled.stdout);

    // An edit: exactly the operations it needs, with reasons; JSON for automation.
    let edit = |pairs: serde_json::Value| serde_json::json!({ "metadata": { "annotations": pairs } });
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&edit(serde_json::json!({ IDLE: "300", TAGS: "team=web" }))),
        )
        .await?;
    services
        .patch("fast", &PatchParams::default(), &Patch::Merge(&edit(serde_json::json!({ CROSS_ZONE: "true" }))))
        .await?;
    cluster.proxy.reset_calls();
    let edited = plan(&cluster, &config, &[flags[0], "--output=json"]).await?;
    assert_read_only(&cluster, "edited", &edited)?;
    ensure!(edited.code == 2, "exit {}: {}{}", edited.code, edited.stdout, edited.stderr);
    let json: serde_json::Value = serde_json::from_str(&edited.stdout)?;
    let ops = |name: &str| -> Vec<String> {
        json["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["service"] == format!("default/{name}"))
            .flat_map(|s| s["changes"].as_array().cloned().unwrap_or_default())
            .map(|c| c["operation"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(ops("web"), ["aws/elb.AddTags", "aws/elb.ModifyLoadBalancerAttributes"]);
    assert_eq!(ops("fast"), ["aws/elbv2.ModifyLoadBalancerAttributes"]);
    let text = plan(&cluster, &config, &[flags[0], "--service=default/web"]).await?;
    ensure!(text.stdout.contains("~ aws/elb.ModifyLoadBalancerAttributes"), "{}", text.stdout);
    ensure!(text.stdout.contains("idle-timeout=300s"), "{}", text.stdout);
    ensure!(!text.stdout.contains("default/fast"), "--service selects: {}", text.stdout);

    // The controller makes exactly those writes, and then nothing is planned.
    cluster.proxy.reset_calls();
    let ccm = start(&cluster, &config, None, &flags)?;
    eventually("the edits applied", WAIT, || async {
        let p = plan(&cluster, &config, &flags).await?;
        Ok((p.code == 0).then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut made: Vec<String> =
        cluster.proxy.mutating_calls().iter().map(|c| format!("aws/{}.{}", c.service, c.action)).collect();
    made.sort();
    assert_eq!(
        made,
        ["aws/elb.AddTags", "aws/elb.ModifyLoadBalancerAttributes", "aws/elbv2.ModifyLoadBalancerAttributes"]
    );

    // A Service that does not exist is an error (exit 1); so is a bad flag (exit 2, as the controller).
    let missing = plan(&cluster, &config, &[flags[0], "--service=default/nope"]).await?;
    ensure!(missing.code == 1 && missing.stdout.contains("no such LoadBalancer Service"), "{missing:?}");
    let bad = plan(&cluster, &config, &[flags[0], "--output=yaml"]).await?;
    ensure!(bad.code == 2, "{bad:?}");

    for name in ["web", "fast"] {
        services.delete(name, &DeleteParams::default()).await?;
    }
    eventually("the Services gone", WAIT, || async {
        Ok((services.get_opt("web").await?.is_none() && services.get_opt("fast").await?.is_none()).then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    cluster.assert_nothing_left().await
}
