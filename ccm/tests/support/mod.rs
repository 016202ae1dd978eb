//! Running the controllers in-process against the real apiserver, with the fake cloud.
//!
//! The controllers act on every object in the cluster, so tests that run a CCM take a global
//! lock: within a test binary they run one at a time, each on a clean set of Nodes/Services.

#![allow(dead_code)]

pub mod aws;
pub mod ground;
pub mod services;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ccm_e2e::ControlPlane;
use clap::Parser;
use cloud_controller_manager::metrics::Metrics;
use cloud_controller_manager::options::{Args, Config};
use cloud_controller_manager::server::Health;
use cloud_provider_fake::FakeCloud;
use k8s_openapi::api::core::v1::{Event, Node, Service};
use kube::api::{Api, DeleteParams, ListParams};
use tokio_util::sync::CancellationToken;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tests that run a CCM (in-process or as a process) hold this while it runs.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub use ccm_e2e::CcmProcess;

/// The real binary, started with `args` and `envs` under the e2e crate's supervisor (it never
/// outlives the test), its log in the e2e log directory; stopped on drop.
pub fn start_ccm(args: &[String], envs: &[(&str, String)]) -> Result<CcmProcess> {
    let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    CcmProcess::start_ours(std::path::Path::new(env!("CARGO_BIN_EXE_cloud-controller-manager")), args, &envs)
}

pub struct Ccm {
    pub cloud: FakeCloud,
    pub client: kube::Client,
    pub metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<cloud_controller_manager::Exit>>>,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Ccm {
    /// Starts the controllers (no leader election, fast periods) with `extra` flags.
    pub async fn start(cloud: FakeCloud, extra: &[&str]) -> Result<Self> {
        let serial = serial().await;
        ccm_e2e::init_tracing();
        let client = ControlPlane::shared().client().await?;
        clean_cluster(&client).await?;
        let mut argv = vec![
            "cloud-controller-manager",
            "--cloud-provider=fake",
            "--leader-elect=false",
            "--node-monitor-period=1s",
            "--route-reconciliation-period=1s",
            "--cluster-cidr=10.244.0.0/16",
        ];
        argv.extend_from_slice(extra);
        let config = Config::try_from(Args::try_parse_from(argv)?)?;
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(cloud_controller_manager::run(
            config,
            client.clone(),
            Arc::new(cloud.clone()),
            metrics.clone(),
            Arc::new(Health::default()),
            stop.clone(),
        ));
        Ok(Self { cloud, client, metrics, stop, task: Some(task), _serial: serial })
    }

    /// Stops the controllers and waits for them.
    pub async fn stop(mut self) -> Result<()> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for Ccm {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Deletes every Node and every Service but `default/kubernetes` (removing our finalizer so a
/// Service left by an earlier failed test cannot hang).
pub async fn clean_cluster(client: &kube::Client) -> Result<()> {
    clean(client, &ListParams::default()).await
}

/// As [`clean_cluster`], but the foreign Nodes the test registered stay (for the end of a test,
/// before it checks that they are untouched).
pub async fn clean_cluster_but_foreign_nodes(client: &kube::Client) -> Result<()> {
    clean(client, &ListParams::default().labels(&format!("!{}", ccm_e2e::FOREIGN_NODE_LABEL))).await
}

async fn clean(client: &kube::Client, which_nodes: &ListParams) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for node in nodes.list(which_nodes).await? {
        let _ = nodes.delete(&node.metadata.name.unwrap_or_default(), &DeleteParams::default()).await;
    }
    let services: Api<Service> = Api::all(client.clone());
    for svc in services.list(&ListParams::default()).await? {
        let (ns, name) =
            (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
        if name == "kubernetes" && ns == "default" {
            continue;
        }
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        let clear = serde_json::json!({"metadata": {"finalizers": null}});
        let _ = api.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&clear)).await;
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
    Ok(())
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `limit` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_err = Some(err),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Event reasons recorded for the object `name` in `namespace`, oldest first, with their type.
pub async fn event_reasons(client: &kube::Client, namespace: &str, name: &str) -> Result<Vec<(String, String)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await?;
    let mut items: Vec<_> = list.items;
    items.sort_by_key(|e| e.event_time.clone().map(|t| t.0).or(e.metadata.creation_timestamp.clone().map(|t| t.0)));
    Ok(items.into_iter().map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default())).collect())
}

/// Events recorded for the object `name`: (type, reason, message, count), oldest first.
pub async fn events(client: &kube::Client, namespace: &str, name: &str) -> Result<Vec<(String, String, String, i32)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await?;
    let mut items: Vec<_> = list.items;
    items.sort_by_key(|e| e.event_time.clone().map(|t| t.0).or(e.metadata.creation_timestamp.clone().map(|t| t.0)));
    Ok(items
        .into_iter()
        .map(|e| {
            let count = e.count.unwrap_or(1).max(e.series.as_ref().and_then(|s| s.count).unwrap_or(0));
            (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.message.unwrap_or_default(), count)
        })
        .collect())
}

pub async fn has_event(client: &kube::Client, namespace: &str, name: &str, reason: &str) -> Result<bool> {
    Ok(event_reasons(client, namespace, name).await?.iter().any(|(_, r)| r == reason))
}

pub fn context(what: &str) -> impl FnOnce(anyhow::Error) -> anyhow::Error + '_ {
    move |e| e.context(what.to_string())
}

pub async fn get_node(client: &kube::Client, name: &str) -> Result<Node> {
    Api::<Node>::all(client.clone()).get(name).await.with_context(|| format!("Node {name}"))
}
