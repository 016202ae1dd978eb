//! Two real `cloud-controller-manager` processes against the real apiserver: one leads, the
//! other waits and writes nothing; killing the leader hands over within the lease duration;
//! a graceful stop releases the Lease.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ccm_e2e::{ControlPlane, NodeRegistration, UNINITIALIZED_TAINT};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use support::{eventually, get_node};

const LEASE: Duration = Duration::from_secs(6);
const RETRY: Duration = Duration::from_secs(1);

struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn start(kubeconfig: &std::path::Path) -> Result<Self> {
        Self::start_with(kubeconfig, &[])
    }

    fn start_with(kubeconfig: &std::path::Path, extra: &[String]) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(env!("CARGO_BIN_EXE_cloud-controller-manager"))
            .args([
                "--cloud-provider=fake",
                "--controllers=cloud-node",
                "--configure-cloud-routes=false",
                "--leader-elect-lease-duration=6s",
                "--leader-elect-renew-deadline=4s",
                "--leader-elect-retry-period=1s",
                "--bind-address=127.0.0.1",
                "--authorization-always-allow-paths=/healthz,/healthz/*,/readyz,/metrics",
            ])
            .arg(format!("--secure-port={port}"))
            .args(extra)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(std::env::temp_dir().join(format!("ccm-le-{port}.log")))?)
            .spawn()
            .context("starting cloud-controller-manager")?;
        Ok(Self { child, port })
    }

    fn get(&self, path: &str) -> Result<String> {
        ccm_e2e::https::get(self.port, path, None)
    }

    fn is_leader(&self) -> bool {
        self.get("/metrics").is_ok_and(|m| m.lines().any(|l| l == "cloud_controller_manager_leader 1"))
    }

    fn reconciles(&self) -> bool {
        self.get("/metrics").is_ok_and(|m| m.contains("cloud_controller_manager_reconcile_total{"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn holder(leases: &Api<Lease>) -> Result<Option<String>> {
    Ok(leases
        .get_opt("cloud-controller-manager")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

async fn synced_by(client: &kube::Client, node: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={node}"))).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Synced"))
        .map(|e| e.reporting_instance.unwrap_or_default())
        .collect())
}

async fn wait_initialized(client: &kube::Client, name: &str) -> Result<()> {
    eventually("node initialized", Duration::from_secs(30), || async {
        let node = get_node(client, name).await?;
        let tainted = node.spec.and_then(|s| s.taints).unwrap_or_default().iter().any(|t| t.key == UNINITIALIZED_TAINT);
        Ok((!tainted).then_some(()))
    })
    .await
}

#[tokio::test]
async fn one_leader_at_a_time_and_handover_within_the_lease_duration() -> Result<()> {
    let _serial = support::serial().await;
    let plane = ControlPlane::shared();
    let client = plane.client().await?;
    support::clean_cluster(&client).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");

    let mut a = Process::start(plane.kubeconfig_path())?;
    // (A Lease left by an earlier test expires first.)
    eventually("a reports leadership", Duration::from_secs(30), || async { Ok(a.is_leader().then_some(())) }).await?;
    let first = eventually("a leader", Duration::from_secs(30), || async { holder(&leases).await }).await?;
    let b = Process::start(plane.kubeconfig_path())?;
    eventually("b serves", Duration::from_secs(10), || async { Ok(b.get("/healthz").is_ok().then_some(())) }).await?;

    // Health: per controller, and the standby is ready (a healthy standby) though not leading.
    assert!(a.get("/healthz")?.starts_with("HTTP/1.1 200"));
    assert!(a.get("/healthz/cloud-node")?.starts_with("HTTP/1.1 200"));
    assert!(a.get("/healthz/cloud-node-controller")?.starts_with("HTTP/1.1 200"));
    assert!(a.get("/healthz/route")?.starts_with("HTTP/1.1 404"), "not enabled, not running");
    assert!(b.get("/readyz")?.starts_with("HTTP/1.1 200"));

    NodeRegistration::named("le-n1").register(&client).await?;
    wait_initialized(&client, "le-n1").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!b.is_leader(), "only one leader");
    assert!(!b.reconciles(), "the standby writes nothing");
    assert_eq!(holder(&leases).await?.as_deref(), Some(first.as_str()));
    let lease = leases.get("cloud-controller-manager").await?.spec.unwrap_or_default();
    assert_eq!(lease.lease_duration_seconds, Some(6));
    // The Lease is shared by this binary's tests: count transitions from here.
    let transitions = lease.lease_transitions.unwrap_or(0);

    // Kill the leader without warning: the standby takes over once the Lease expires.
    a.child.kill()?;
    let killed = Instant::now();
    let second = eventually("a new leader", Duration::from_secs(30), || async {
        Ok(holder(&leases).await?.filter(|h| *h != first))
    })
    .await?;
    let handover = killed.elapsed();
    eprintln!("handover took {handover:?} (lease duration {LEASE:?}, retry period {RETRY:?})");
    assert!(handover <= LEASE + RETRY * 2, "handover took {handover:?}");
    eventually("b reports leadership", Duration::from_secs(10), || async { Ok(b.is_leader().then_some(())) }).await?;
    let lease = leases.get("cloud-controller-manager").await?.spec.unwrap_or_default();
    assert_eq!(lease.lease_transitions, Some(transitions + 1));

    NodeRegistration::named("le-n2").register(&client).await?;
    wait_initialized(&client, "le-n2").await?;
    assert_eq!(synced_by(&client, "le-n1").await?, [first], "n1 was written once, by the first leader");
    // The Event follows the Node update: wait for it.
    let n2 = eventually("n2's Synced event", Duration::from_secs(10), || async {
        let by = synced_by(&client, "le-n2").await?;
        Ok((!by.is_empty()).then_some(by))
    })
    .await?;
    assert_eq!(n2, [second], "n2 by the second");

    // A graceful stop releases the Lease and exits 0.
    let mut b = b;
    Command::new("kill").args(["-TERM", &b.child.id().to_string()]).status()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = b.child.try_wait()? {
            break status;
        }
        assert!(Instant::now() < deadline, "b did not exit within 20 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(holder(&leases).await?, None, "released on shutdown");
    drop(a);
    support::clean_cluster(&client).await
}

#[test]
fn invalid_flags_fail_startup_listing_every_problem() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloud-controller-manager"))
        .args([
            "--cloud-provider=fake",
            "--controllers=*,nonsense",
            "--leader-elect-lease-duration=1s",
            "--logging-format=xml",
        ])
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["nonsense", "--cluster-cidr is empty", "--leader-elect-lease-duration", "--logging-format=xml"] {
        assert!(stderr.contains(needle), "{needle:?} missing from:\n{stderr}");
    }
}

/// A bug in a reconcile (the fake cloud panics once, on one Node) does not leave a leader that
/// holds the Lease with a dead controller: it exits, hands the Lease over at once, and the
/// standby finishes the work.
#[tokio::test]
async fn a_panicking_leader_exits_and_the_standby_takes_over() -> Result<()> {
    let _serial = support::serial().await;
    let plane = ControlPlane::shared();
    let client = plane.client().await?;
    support::clean_cluster(&client).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("fake.conf");
    let marker = dir.path().join("panicked");
    std::fs::write(&config, format!("[Global]\nPanicOnNode = le-panic\nPanicOnceFile = {}\n", marker.display()))?;
    let args = [format!("--cloud-config={}", config.display())];

    let mut a = Process::start_with(plane.kubeconfig_path(), &args)?;
    eventually("a leads", Duration::from_secs(30), || async { Ok(a.is_leader().then_some(())) }).await?;
    let b = Process::start_with(plane.kubeconfig_path(), &args)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!b.is_leader(), "b waits");

    NodeRegistration::named("le-panic").register(&client).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = a.child.try_wait()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "the panicking leader did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(marker.exists(), "the injected panic happened");
    assert!(!status.success(), "a broken leader exits with an error: {status:?}");
    let handed_over = Instant::now();
    eventually("b leads", Duration::from_secs(30), || async { Ok(b.is_leader().then_some(())) }).await?;
    assert!(handed_over.elapsed() < LEASE, "the Lease was released, not left to expire: {:?}", handed_over.elapsed());
    wait_initialized(&client, "le-panic").await?;
    assert!(b.is_leader(), "b keeps running and leading");
    let _ = holder(&leases).await?;
    support::clean_cluster(&client).await
}
