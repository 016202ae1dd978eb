//! The manifests are real: every object of the base and both overlays passes a server-side
//! dry-run apply on the real apiserver, and the CCM runs with exactly the RBAC the base grants
//! (a missing verb fails a controller's job here).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ccm_e2e::{ControlPlane, NodeRegistration};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use support::eventually;

fn repo() -> PathBuf {
    ccm_e2e::repo_root()
}

/// `kustomize build <dir>`, with the kustomize `e2e/test.sh` installs into `e2e/bin`.
fn kustomize(dir: &str) -> Result<Vec<DynamicObject>> {
    let binary = repo().join("e2e/bin/kustomize");
    if !binary.exists() {
        bail!("{} is missing: e2e/test.sh installs it", binary.display());
    }
    let out = Command::new(&binary).arg("build").arg(repo().join(dir)).output()?;
    if !out.status.success() {
        bail!("kustomize build {dir}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    text.split("\n---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| serde_saphyr::from_str::<DynamicObject>(doc).with_context(|| format!("parsing\n{doc}")))
        .collect()
}

async fn apply(client: &kube::Client, obj: &DynamicObject, dry_run: bool) -> Result<()> {
    let types = obj.types.clone().context("object without apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(&types)?;
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match (&caps.scope, obj.metadata.namespace.as_deref()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (kube::discovery::Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
        (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply("ccm-manifest-test").force();
    if dry_run {
        params = params.dry_run();
    }
    let name = obj.metadata.name.clone().context("object without a name")?;
    api.patch(&name, &params, &Patch::Apply(obj)).await.with_context(|| format!("applying {} {name}", types.kind))?;
    Ok(())
}

#[tokio::test]
async fn base_and_overlays_pass_a_server_side_dry_run() -> Result<()> {
    let client = ControlPlane::shared().client().await?;
    for dir in ["manifests/base", "manifests/overlays/kubeadm", "manifests/overlays/kops"] {
        let objects = kustomize(dir)?;
        let kinds: Vec<String> = objects.iter().filter_map(|o| o.types.as_ref().map(|t| t.kind.clone())).collect();
        assert!(
            kinds.contains(&"ClusterRole".to_string()) && kinds.contains(&"ServiceAccount".to_string()),
            "{dir}: {kinds:?}"
        );
        let workload = if dir.ends_with("base") { "Deployment" } else { "DaemonSet" };
        assert!(kinds.contains(&workload.to_string()), "{dir} has a {workload}: {kinds:?}");
        for obj in &objects {
            apply(&client, obj, true).await.with_context(|| dir.to_string())?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_ccm_does_its_job_with_exactly_the_base_rbac() -> Result<()> {
    let plane = ControlPlane::shared();
    let admin = plane.client().await?;
    for obj in kustomize("manifests/base")? {
        let kind = obj.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
        if matches!(kind.as_str(), "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding") {
            apply(&admin, &obj, false).await?;
        }
    }
    // A token for the ServiceAccount, and a kubeconfig with nothing else.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "kube-system");
    let request = TokenRequest {
        metadata: ObjectMeta::default(),
        spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() }),
        status: None,
    };
    let token = accounts
        .create_token_request("cloud-controller-manager", &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .context("no token")?;
    let admin_config = std::fs::read_to_string(plane.kubeconfig_path())?;
    let sa_config: String = admin_config
        .lines()
        .map(|l| if l.trim_start().starts_with("token:") { format!("    token: {token}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = std::env::temp_dir().join(format!("ccm-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, sa_config)?;
    let cloud_config = dir.join("fake.conf");
    std::fs::write(&cloud_config, "[Global]\nMissingInstances = rbac-gone\n")?;

    let ccm = support::start_ccm(
        &[
            "--cloud-provider=fake".to_string(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--cloud-config={}", cloud_config.display()),
            "--cluster-cidr=10.244.0.0/16".to_string(),
            "--node-monitor-period=1s".to_string(),
            "--route-reconciliation-period=1s".to_string(),
        ],
        &[],
    )?;
    let wait = Duration::from_secs(60);

    NodeRegistration::named("rbac-n1")
        .with_internal_ip("10.0.0.1")
        .with_pod_cidr("10.244.7.0/24")
        .register(&admin)
        .await?;
    NodeRegistration::named("rbac-gone").initialized().not_ready().register(&admin).await?;
    let services: Api<Service> = Api::namespaced(admin.clone(), "default");
    let svc = Service {
        metadata: ObjectMeta { name: Some("rbac-lb".into()), ..Default::default() },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(vec![ServicePort { port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        status: None,
    };
    services.create(&PostParams::default(), &svc).await?;

    let nodes: Api<Node> = Api::all(admin.clone());
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-system");
    eventually("the leader Lease", wait, || async {
        Ok(leases.get_opt("cloud-controller-manager").await?.and_then(|l| l.spec?.holder_identity))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    eventually("node initialized and routed", wait, || async {
        let node = nodes.get("rbac-n1").await?;
        let initialized = node.spec.as_ref().and_then(|s| s.provider_id.clone()).is_some();
        let routed = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "NetworkUnavailable" && c.status == "False");
        Ok((initialized && routed).then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    eventually("the vanished node deleted", wait, || async {
        Ok(nodes.get_opt("rbac-gone").await?.is_none().then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    eventually("the Service's load balancer", wait, || async {
        let svc = services.get("rbac-lb").await?;
        Ok(svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).filter(|i| !i.is_empty()).map(|_| ()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    services.delete("rbac-lb", &DeleteParams::default()).await?;
    eventually("the finalizer released", wait, || async {
        Ok(services.get_opt("rbac-lb").await?.is_none().then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    // Serving: a path outside the always-allowed ones is reviewed by the apiserver with the
    // CCM's own credentials (system:auth-delegator): the admin is let in, nobody else.
    let admin_token = admin_config
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("token:"))
        .map(|t| t.trim().to_string())
        .context("the admin kubeconfig has no token")?;
    let served = ccm_e2e::https::get(ccm.port, "/healthz/cloud-node", Some(&admin_token))?;
    assert_eq!(ccm_e2e::https::status(&served), 200, "{served}\n{}", ccm.log_tail(20));
    let anonymous = ccm_e2e::https::get(ccm.port, "/healthz/cloud-node", None)?;
    assert_eq!(ccm_e2e::https::status(&anonymous), 403, "{anonymous}");
    let log = std::fs::read_to_string(&ccm.log)?;
    assert!(!log.contains("forbidden"), "the CCM met a permission it lacks:\n{}", ccm.log_tail(40));
    nodes.delete("rbac-n1", &DeleteParams::default()).await?;
    Ok(())
}

/// Whether `tolerations` (a pod spec's) tolerate the taint `key[=value]:effect`, by the
/// scheduler's rules: the key matches (or is empty with `Exists`), `Exists` or the value
/// equal, and no effect or the same one.
fn tolerates(tolerations: &[serde_json::Value], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|t| {
        let field = |name: &str| t.get(name).and_then(|v| v.as_str()).unwrap_or_default();
        let exists = field("operator") == "Exists";
        let key_ok = field("key") == key || (field("key").is_empty() && exists);
        let value_ok = exists || field("value") == value;
        let effect_ok = field("effect").is_empty() || field("effect") == effect;
        key_ok && value_ok && effect_ok
    })
}

/// On a fresh `--cloud-provider=external` cluster, where no CCM ran yet, every Node carries
/// the uninitialized taint, starts not-ready, and control-plane Nodes have their own taint and
/// label: each manifest's pods must be able to land on such a Node (the scheduler's rules for
/// taints and the node selector), be probed over HTTPS, and have a disruption budget.
#[test]
fn every_layout_schedules_on_a_fresh_clusters_control_plane() -> Result<()> {
    let fresh_taints = [
        ("node.cloudprovider.kubernetes.io/uninitialized", "true", "NoSchedule"),
        ("node-role.kubernetes.io/control-plane", "", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "", "NoSchedule"),
    ];
    let control_plane_labels =
        serde_json::json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/os": "linux"});
    for dir in ["manifests/base", "manifests/overlays/kubeadm", "manifests/overlays/kops"] {
        let objects = kustomize(dir)?;
        let kind = |k: &'static str| objects.iter().filter(move |o| o.types.as_ref().is_some_and(|t| t.kind == k));
        let workload =
            kind("Deployment").chain(kind("DaemonSet")).next().with_context(|| format!("{dir}: no workload"))?;
        let pod = &workload.data["spec"]["template"]["spec"];
        let tolerations = pod["tolerations"].as_array().cloned().unwrap_or_default();
        for (key, value, effect) in fresh_taints {
            assert!(tolerates(&tolerations, key, value, effect), "{dir}: {key}:{effect} is not tolerated");
        }
        if let Some(selector) = pod["nodeSelector"].as_object() {
            for (label, value) in selector {
                assert_eq!(
                    &control_plane_labels[label], value,
                    "{dir}: nodeSelector {label} fits no control-plane Node"
                );
            }
        }
        let container = &pod["containers"][0];
        for probe in ["livenessProbe", "readinessProbe"] {
            if let Some(get) = container[probe].get("httpGet") {
                assert_eq!(get["scheme"], "HTTPS", "{dir}: {probe} must use HTTPS (the port serves TLS only)");
            }
        }
        assert!(container.get("livenessProbe").is_some(), "{dir}: no liveness probe");
        let budget = kind("PodDisruptionBudget").next().with_context(|| format!("{dir}: no PodDisruptionBudget"))?;
        let labels = &workload.data["spec"]["template"]["metadata"]["labels"];
        for (label, value) in budget.data["spec"]["selector"]["matchLabels"].as_object().context("PDB selector")? {
            assert_eq!(&labels[label], value, "{dir}: the PodDisruptionBudget does not select the pods");
        }
    }
    Ok(())
}
