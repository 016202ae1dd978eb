//! Running the real binary with `--cloud-provider=aws` against moto through the proxy.

use std::time::Duration;

use anyhow::{Context, Result};
use ccm_e2e::{ImdsStub, NodeRegistration, SeededVpc, TestCluster, UNINITIALIZED_TAINT};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use super::{CcmProcess, eventually};

pub const WAIT: Duration = Duration::from_secs(60);

/// Whether the emulator serves the ELB APIs; when it does not (LocalStack Community, aimed at
/// with `E2E_AWS_ENDPOINT` and `E2E_AWS_FLAVOR=localstack`), says so: a load-balancer test
/// then skips with that line instead of failing.
pub fn elb_or_skip() -> bool {
    let emulator = ccm_e2e::AwsEmulator::shared();
    if emulator.supports_elb() {
        return true;
    }
    eprintln!("SKIPPED: {} has no ELB API (LocalStack Community); this test needs one", emulator.describe());
    false
}

/// Off-AWS mode: VPC + SubnetID + cluster ID, so no IMDS at all.
pub fn off_aws_config(cluster: &TestCluster, vpc: &SeededVpc) -> String {
    format!(
        "[Global]\nRegion = {}\nVPC = {}\nSubnetID = {}\nKubernetesClusterID = {}\n",
        cluster.region, vpc.vpc_id, vpc.subnets[1].id, cluster.id
    )
}

pub fn start(cluster: &TestCluster, cloud_config: &str, imds: Option<&ImdsStub>, extra: &[&str]) -> Result<CcmProcess> {
    start_at(cluster, cloud_config, cluster.proxy.endpoint(), imds, extra)
}

/// As [`start`], with `AWS_ENDPOINT_URL` set to `endpoint` instead of the proxy.
pub fn start_with_endpoint(
    cluster: &TestCluster,
    cloud_config: &str,
    endpoint: &str,
    extra: &[&str],
) -> Result<CcmProcess> {
    start_at(cluster, cloud_config, endpoint, None, extra)
}

fn start_at(
    cluster: &TestCluster,
    cloud_config: &str,
    endpoint: &str,
    imds: Option<&ImdsStub>,
    extra: &[&str],
) -> Result<CcmProcess> {
    let plane = ccm_e2e::ControlPlane::shared();
    launch(cluster, cloud_config, endpoint, imds, plane.kubeconfig_path(), false, extra)
}

/// As [`start_with_endpoint`], with leader election on (the `--leader-elect-*` timings in
/// `extra`) and the apiserver reached through `kubeconfig`.
pub fn start_candidate(
    cluster: &TestCluster,
    cloud_config: &str,
    endpoint: &str,
    kubeconfig: &std::path::Path,
    extra: &[&str],
) -> Result<CcmProcess> {
    launch(cluster, cloud_config, endpoint, None, kubeconfig, true, extra)
}

fn launch(
    cluster: &TestCluster,
    cloud_config: &str,
    endpoint: &str,
    imds: Option<&ImdsStub>,
    kubeconfig: &std::path::Path,
    leader_elect: bool,
    extra: &[&str],
) -> Result<CcmProcess> {
    let (args, envs) = command_line(cluster, cloud_config, endpoint, imds, kubeconfig, leader_elect, extra)?;
    super::start_ccm(&args, &envs)
}

/// What `cloud-controller-manager plan` printed, and its exit code.
#[derive(Debug)]
pub struct PlanRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cloud-controller-manager plan` with the flags [`start`] gives the controller, plus
/// `extra` (`--output=json`, `--service=…`), through the proxy; off the async runtime, which
/// keeps serving the proxy meanwhile.
pub async fn plan(cluster: &TestCluster, cloud_config: &str, extra: &[&str]) -> Result<PlanRun> {
    let plane = ccm_e2e::ControlPlane::shared();
    let (args, envs) =
        command_line(cluster, cloud_config, cluster.proxy.endpoint(), None, plane.kubeconfig_path(), false, extra)?;
    let run = move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cloud-controller-manager"))
            .arg("plan")
            .args(&args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
    };
    let out = tokio::task::spawn_blocking(run).await?.context("running cloud-controller-manager plan")?;
    Ok(PlanRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[allow(clippy::type_complexity)]
fn command_line(
    cluster: &TestCluster,
    cloud_config: &str,
    endpoint: &str,
    imds: Option<&ImdsStub>,
    kubeconfig: &std::path::Path,
    leader_elect: bool,
    extra: &[&str],
) -> Result<(Vec<String>, Vec<(&'static str, String)>)> {
    let path = std::env::temp_dir().join(format!("{}-cloud.conf", cluster.id));
    std::fs::write(&path, cloud_config)?;
    let mut args: Vec<String> = [
        "--cloud-provider=aws",
        "--node-monitor-period=1s",
        "--route-reconciliation-period=1s",
        "--cluster-cidr=10.244.0.0/16",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(format!("--leader-elect={leader_elect}"));
    // `--controllers` appends when repeated (as pflag's string slices do): one list only.
    if !extra.iter().any(|a| a.starts_with("--controllers")) {
        args.push("--controllers=cloud-node,cloud-node-lifecycle,route".into());
    }
    args.push(format!("--cloud-config={}", path.display()));
    args.push(format!("--kubeconfig={}", kubeconfig.display()));
    args.push(format!("--cluster-name={}", cluster.id));
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut envs = vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", cluster.region.clone()),
    ];
    // Never the real 169.254.169.254: a stub, or a closed port when the test wants none.
    let imds_endpoint = imds.map_or_else(|| "http://127.0.0.1:9".to_string(), |s| s.endpoint().to_string());
    envs.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_endpoint));
    Ok((args, envs))
}

pub fn tainted(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == UNINITIALIZED_TAINT))
}

pub async fn wait_all_initialized(client: &kube::Client, names: &[String], ccm: &CcmProcess) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("every Node initialized", WAIT, || async {
        let list = nodes.list(&ListParams::default()).await?;
        let pending =
            list.items.iter().filter(|n| names.contains(n.metadata.name.as_ref().unwrap()) && tainted(n)).count();
        Ok((pending == 0).then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))
}

/// Registers a Node for each instance, as kubelets would, and the cluster's foreign Nodes (see
/// [`TestCluster::register_foreign_nodes`]); returns the instances' Node names.
pub async fn register(cluster: &TestCluster, client: &kube::Client, vpc: &SeededVpc) -> Result<Vec<String>> {
    cluster.register_foreign_nodes(client).await?;
    let mut names = Vec::new();
    for instance in &vpc.instances {
        NodeRegistration::for_instance(instance).register(client).await?;
        names.push(instance.private_dns.clone());
    }
    Ok(names)
}
