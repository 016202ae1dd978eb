//! A Kubernetes cloud-controller-manager.
//!
//! One process runs up to four controllers against a [`cloud_provider::CloudProvider`]:
//!
//! | controller | needs | writes |
//! |---|---|---|
//! | [`controllers::node`] (cloud-node) | instances | Node providerID, labels, taint, addresses; Event `Synced` |
//! | [`controllers::node_lifecycle`] (cloud-node-lifecycle) | instances | Node deletion, shutdown taint |
//! | [`controllers::service`] (service) | load balancers | Service finalizer and `status.loadBalancer`; LB Events |
//! | [`controllers::route`] (route) | routes + `--cluster-cidr` | cloud routes, Node `NetworkUnavailable` |
//!
//! A controller whose capability the cloud lacks, or that `--controllers` disables, does not
//! start. With leader election on (the default), the controllers start only once this process
//! holds the Lease, and the process exits if it loses it. SIGTERM/SIGINT stop the controllers,
//! release the Lease and exit within [`SHUTDOWN_GRACE`].

pub mod compat_flags;
pub mod controllers;
pub mod duration;
pub mod events;
pub mod leader_election;
pub mod metrics;
pub mod objects;
pub mod options;
pub mod plan;
pub mod server;
pub mod serving;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cloud_provider::CloudProvider;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

use crate::controllers::Shared;
use crate::leader_election::LeaderElector;
use crate::metrics::Metrics;
use crate::options::Config;
use crate::server::Health;

/// How long running controllers get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Installs the process-wide TLS crypto provider (aws-lc-rs, shared with the AWS SDK).
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The Kubernetes client: `--kubeconfig`, else the usual inference (KUBECONFIG, ~/.kube,
/// in-cluster).
pub async fn kube_client(config: &Config) -> Result<kube::Client> {
    init_crypto();
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await.context("finding a Kubernetes API server")?,
    };
    Ok(kube::Client::try_from(kube_config)?)
}

/// Why [`run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Shut down on request.
    Stopped,
}

/// Runs the enabled controllers against `cloud` until `stop` is cancelled (or, with leader
/// election, the Lease is lost, which is an error). `health` and `metrics` are shared with
/// the HTTP server.
pub async fn run<P: CloudProvider>(
    config: Config,
    client: kube::Client,
    cloud: Arc<P>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Result<Exit> {
    let mut elector = config.leader_election.clone().map(|settings| {
        LeaderElector::new(client.clone(), settings, leader_election::identity()).with_fence(cloud.fence().cloned())
    });
    let instance = elector.as_ref().map_or_else(leader_election::identity, |e| e.identity().to_string());
    health.set_ready();

    if let Some(elector) = elector.as_mut() {
        tracing::info!(identity = %elector.identity(), "waiting to become leader");
        tokio::select! {
            () = elector.acquire() => {}
            () = stop.cancelled() => return Ok(Exit::Stopped),
        }
        metrics.leader.set(1);
    }

    let nodes = controllers::cache::Watched::new(controllers::cache::slim_node);
    let shared = Shared { client, metrics: metrics.clone(), instance, nodes: nodes.reader() };
    let controllers = CancellationToken::new();
    let failed = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    start_controllers(&config, &shared, nodes, &cloud, &controllers, &failed, &health, &mut tasks);

    let outcome = match elector.as_mut() {
        Some(elector) => tokio::select! {
            lost = elector.hold() => Err(anyhow::Error::new(lost)),
            () = failed.cancelled() => Err(anyhow::anyhow!("a controller failed (see above); exiting so that another replica takes over")),
            () = stop.cancelled() => Ok(Exit::Stopped),
        },
        None => tokio::select! {
            () = failed.cancelled() => Err(anyhow::anyhow!("a controller failed (see above); exiting to be restarted")),
            () = stop.cancelled() => Ok(Exit::Stopped),
        },
    };
    if outcome.is_err() {
        // A former leader (or a broken one) must stop writing at once; the caller exits.
        if let Some(elector) = elector.as_ref() {
            elector.fence_off();
        }
        metrics.leader.set(0);
        tasks.abort_all();
        // Broken but still the leader: hand the Lease over now rather than after it expires.
        if failed.is_cancelled()
            && let Some(elector) = elector.as_mut()
        {
            elector.release().await;
        }
        return outcome;
    }
    tracing::info!("shutting down");
    controllers.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!("controllers did not stop within {SHUTDOWN_GRACE:?}; stopping them");
        tasks.abort_all();
    }
    if let Some(elector) = elector.as_mut() {
        elector.release().await;
        metrics.leader.set(0);
    }
    outcome
}

/// Starts each enabled controller as a task, and the watch that fills the Node cache they share.
/// A controller that panics (a bug in a reconcile) or stops while the process runs marks itself
/// unhealthy on `/healthz` and cancels `failed`: the process then exits, handing the Lease over,
/// instead of running on without it.
#[allow(clippy::too_many_arguments)]
fn start_controllers<P: CloudProvider>(
    config: &Config,
    shared: &Shared,
    nodes: controllers::cache::Watched<k8s_openapi::api::core::v1::Node>,
    cloud: &Arc<P>,
    stop: &CancellationToken,
    failed: &CancellationToken,
    health: &Arc<Health>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    use futures::FutureExt;
    let mut spawn = |name: &'static str, task: futures::future::BoxFuture<'static, ()>| {
        tracing::info!(controller = name, "starting");
        health.set_controller(name, true);
        let (health, stop, failed) = (health.clone(), stop.clone(), failed.clone());
        tasks.spawn(async move {
            let result = std::panic::AssertUnwindSafe(task).catch_unwind().await;
            if let Err(panic) = &result {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(controller = name, panic = %what, "panicked");
            } else if !stop.is_cancelled() {
                tracing::error!(controller = name, "stopped unexpectedly");
            } else {
                return;
            }
            health.set_controller(name, false);
            failed.cancel();
        });
    };
    let sets = config.controllers;
    if sets.cloud_node && cloud.instances().is_some() {
        let settings = controllers::node::Settings {
            workers: config.node_workers,
            status_update_frequency: config.node_status_update_frequency,
        };
        let trigger = nodes.subscribe();
        let task =
            controllers::node::run(shared.clone(), cloud.clone(), settings, trigger, stop.clone().cancelled_owned());
        spawn(controllers::node::NAME, Box::pin(task));
    }
    if sets.cloud_node_lifecycle && cloud.instances().is_some() {
        let task = controllers::node_lifecycle::run(
            shared.clone(),
            cloud.clone(),
            config.node_monitor_period,
            stop.clone().cancelled_owned(),
        );
        spawn(controllers::node_lifecycle::NAME, Box::pin(task));
    }
    if sets.service && cloud.load_balancers().is_some() {
        let settings = controllers::service::Settings {
            cluster_name: config.cluster_name.clone(),
            workers: config.service_workers,
            resync: config.load_balancer_resync_period,
        };
        let node_changes = nodes.changes();
        let task = controllers::service::run(
            shared.clone(),
            cloud.clone(),
            settings,
            node_changes,
            stop.clone().cancelled_owned(),
        );
        spawn(controllers::service::NAME, Box::pin(task));
    }
    if sets.route && config.configure_cloud_routes && cloud.routes().is_some() {
        let settings = controllers::route::Settings {
            cluster_name: config.cluster_name.clone(),
            cluster_cidrs: config.cluster_cidrs.clone(),
            period: config.route_reconciliation_period,
        };
        let task = controllers::route::run(shared.clone(), cloud.clone(), settings, stop.clone().cancelled_owned());
        spawn(controllers::route::NAME, Box::pin(task));
    }
    // Every controller reads Nodes; it is reported on /healthz as the controllers are.
    let api = kube::Api::all(shared.client.clone());
    let stopped = stop.clone().cancelled_owned();
    spawn(
        "node-cache",
        Box::pin(async move {
            tokio::select! { () = nodes.run(api) => {}, () = stopped => {} }
        }),
    );
}
