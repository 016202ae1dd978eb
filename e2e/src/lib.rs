//! The test ground for the cloud-controller-manager's end-to-end tests.
//!
//! Everything here is real except the two things no emulator provides:
//!
//! - [`ControlPlane`]: a real kube-apiserver with embedded etcd (the Go harness in
//!   `e2e/apiserver`), one per test binary, shared by its tests.
//! - [`AwsEmulator`]: the moto server (`e2e/moto`), one per test binary; or, with
//!   `E2E_AWS_ENDPOINT` set, an emulator that is already running (LocalStack, a moto you started).
//! - [`AwsProxy`]: sits between the code under test and the emulator; counts every call by
//!   service and action and injects throttling, 5xx errors and latency on request.
//! - [`TcpProxy`]: a TCP relay that can stall, between a CCM and the apiserver.
//! - [`ImdsStub`]: an instance-metadata service for one seeded instance (moto's own IMDS is
//!   unusable from the Rust SDK, see `e2e/README.md`).
//! - [`CcmLaunch`]: ours or upstream's cloud-controller-manager as a process (upstream's is the
//!   test oracle, `e2e/upstream`); [`lb_state`] reads and normalizes what they made in AWS.
//! - [`SeededVpc`]: a realistic cluster VPC (subnets in two AZs, public and private route
//!   tables, a node security group, cluster-tagged instances) and, on request, matching Nodes
//!   registered the way a kubelet with `--cloud-provider=external` registers them.
//! - [`Brownfield`]: what a real account holds before any CCM runs (the user's groups, some
//!   tagged `owned`, rules that reference them, NAT-instance and peering routes, node groups
//!   tagged the legacy way or not at all), made by every seed unless a test opts out, and
//!   checked unchanged at the end of every test, with the foreign Nodes a test registers.
//!
//! # Isolation
//!
//! Tests in one binary run in parallel against one apiserver and one emulator, so each test
//! works in its own [`TestCluster`]: its own cluster ID, VPC, proxy and node names. A test that
//! creates AWS resources ends with [`TestCluster::assert_nothing_left`], which also checks that
//! the brownfield is exactly as the seed left it.
//!
//! # Processes
//!
//! Helper processes are started with a pipe on their stdin and stop when it closes, so they
//! never outlive the test process, even when a test panics or the process is killed; a test
//! that owns a process (not a shared one) also stops it by PID when it is dropped.

mod aws_emulator;
pub mod brownfield;
mod ccm_process;
mod child;
mod cluster;
mod control_plane;
pub mod https;
mod imds;
pub mod lb_state;
mod nodes;
mod paths;
pub mod proxy;
mod sdk;
mod seed;
mod tcp_proxy;

pub use aws_emulator::AwsEmulator;
pub use brownfield::Brownfield;
pub use ccm_process::{CcmFlavor, CcmLaunch, CcmProcess, OPEN_METRICS, PlanOutput, upstream_binary};
pub use child::ChildProcess;
pub use cluster::{FOREIGN_NODE_LABEL, Leftovers, TestCluster};
pub use control_plane::ControlPlane;
pub use imds::{ImdsStub, InstanceIdentity};
pub use nodes::{NodeRegistration, UNINITIALIZED_TAINT};
pub use paths::repo_root;
pub use proxy::{AwsProxy, Fault, FaultRule, Service};
pub use sdk::{AwsClients, sdk_config};
pub use seed::{SeedOptions, SeededInstance, SeededSubnet, SeededVpc};
pub use tcp_proxy::TcpProxy;

/// Installs the process-wide rustls crypto provider (aws-lc-rs, the one the AWS SDK uses).
/// Idempotent; every entry point that builds a TLS client calls it.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Sends the test ground's own logs to the test output when `RUST_LOG` asks for them.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
