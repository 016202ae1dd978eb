//! The README's first command really works: the sandbox brings Nodes up and gives the example
//! Service a load balancer, then stops everything it started.

use std::ffi::OsStr;
use std::process::Command;

/// Runs the sandbox with `args`; returns its stdout, failing the test if it did not succeed.
fn sandbox<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sandbox")).args(args).output().expect("running the sandbox");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sandbox failed:\n{stdout}\n{stderr}");
    stdout
}

/// The AWS runs start their own moto; with `E2E_AWS_ENDPOINT` set they say they are skipped.
fn own_moto() -> bool {
    if std::env::var_os("E2E_AWS_ENDPOINT").is_some() {
        eprintln!("SKIPPED: the sandbox test starts its own moto");
        return false;
    }
    true
}

#[test]
fn sandbox_initializes_nodes_and_provisions_the_example_service() {
    let stdout = sandbox(["--cloud-provider", "fake", "--until-ready", "90"]);
    assert!(stdout.contains("ready (every Node initialized, the Service has a load balancer)"), "{stdout}");
    assert!(stdout.contains("providerID=fake://"), "{stdout}");
    assert!(stdout.contains("EnsuredLoadBalancer"), "{stdout}");
    assert!(stdout.contains("InternalIP=10.0.0.10"), "the kubelet's address survives initialization:\n{stdout}");
}

#[test]
fn sandbox_default_gives_the_example_service_a_classic_elb_on_moto() {
    if !own_moto() {
        return;
    }
    let stdout = sandbox(["--until-ready", "120"]);
    assert!(
        stdout.contains("ready (every Node initialized, every Node routed, the Service has a load balancer)"),
        "{stdout}"
    );
    assert!(stdout.contains("aws/elb/a"), "the Classic ELB as AWS has it:\n{stdout}");
    assert!(stdout.contains("listeners=[TCP:80→"), "{stdout}");
    assert!(stdout.contains("EnsuredLoadBalancer"), "{stdout}");
    assert!(stdout.contains("elb/CreateLoadBalancer"), "{stdout}");
    assert!(stdout.contains("cloud-controller-manager plan now says:"), "{stdout}");
    assert!(stdout.contains("Service default/hello (load balancer a"), "{stdout}");
    assert!(stdout.contains("Plan: 0 changes, 0 errors."), "settled means nothing to change:\n{stdout}");
    assert!(stdout.contains("load balancers left in AWS: 0"), "deleting the Service leaves nothing:\n{stdout}");
}

#[test]
fn sandbox_gives_the_nlb_example_a_network_load_balancer_and_removes_it() {
    if !own_moto() {
        return;
    }
    let manifest = ccm_e2e::repo_root().join("manifests/examples/service-nlb.yaml");
    let manifest = manifest.to_string_lossy().into_owned();
    let stdout = sandbox(["--until-ready", "120", "--service", manifest.as_str()]);
    assert!(stdout.contains("aws/elbv2/a"), "the NLB as AWS has it:\n{stdout}");
    assert!(stdout.contains("elbv2/CreateTargetGroup"), "{stdout}");
    assert!(stdout.contains("load balancers left in AWS: 0"), "{stdout}");
}

#[test]
fn sandbox_with_aws_initializes_nodes_from_ec2_and_routes_them() {
    if !own_moto() {
        return;
    }
    let stdout = sandbox(["--cloud-provider", "aws", "--service", "none", "--until-ready", "120"]);
    assert!(stdout.contains("providerID=aws:///us-east-1"), "{stdout}");
    assert!(stdout.contains("type=m5.large"), "{stdout}");
    assert!(stdout.contains("3 routes: 10.244.0.0/24→i-"), "{stdout}");
    assert!(stdout.contains("ready (every Node initialized, every Node routed)"), "{stdout}");
    assert!(stdout.contains("AWS calls made by cloud-controller-manager"), "{stdout}");
}
