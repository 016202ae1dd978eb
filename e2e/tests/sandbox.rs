//! The README's first command really works: the sandbox brings Nodes up and gives the example
//! Service a load balancer, then stops everything it started.

use std::process::Command;

#[test]
fn sandbox_initializes_nodes_and_provisions_the_example_service() {
    let out = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["--cloud-provider", "fake", "--until-ready", "90"])
        .output()
        .expect("running the sandbox");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sandbox failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("every Node initialized and the Service has a load balancer"), "{stdout}");
    assert!(stdout.contains("providerID=fake://"), "{stdout}");
    assert!(stdout.contains("EnsuredLoadBalancer"), "{stdout}");
    assert!(stdout.contains("InternalIP=10.0.0.10"), "the kubelet's address survives initialization:\n{stdout}");
}
