//! The service controller: a load balancer for every `type: LoadBalancer` Service.
//!
//! # Watches
//! Services, and Nodes (through the cache every controller shares, [`super::cache`]): a change of the *eligible* node set (see
//! [`crate::objects::is_lb_eligible`]) re-examines every Service, but only the Services whose
//! last-synced node set differs get a call, and it is `update_hosts`, not a full ensure.
//!
//! # Expected flow
//! - A Service that wants a load balancer (`type: LoadBalancer`, no `loadBalancerClass`):
//!   Event `EnsuringLoadBalancer`; the finalizer `service.kubernetes.io/load-balancer-cleanup`
//!   is added **before** the cloud is asked for anything; `ensure`; Event
//!   `EnsuredLoadBalancer`; `status.loadBalancer` patched through the status subresource when
//!   it changed. No eligible Nodes → Warning `UnAvailableLoadBalancer` (the LB is still made).
//! - A Service with the finalizer that is being deleted or no longer wants a load balancer
//!   (type changed, class set): Event `DeletingLoadBalancer`, `ensure_deleted` (always, even
//!   when `get` finds nothing: the provider finds and removes leftover pieces), the finalizer
//!   removed and the status cleared **only after** the provider confirmed, Event
//!   `DeletedLoadBalancer`.
//!
//! # Guarantees
//! - A Service whose relevant fields (see [`fingerprint`]) and node set are unchanged costs no
//!   cloud call, except the periodic re-ensure (`--load-balancer-resync-period`, default 10
//!   min) that repairs drift, which upstream never does.
//! - `ImplementedElsewhere` from the provider: success, and the status is left alone.
//! - Failures: Warning `SyncLoadBalancerFailed` / `UpdateLoadBalancerFailed` /
//!   `DeleteLoadBalancerFailed`, then per-Service exponential backoff 5 s → 300 s, or the
//!   provider's fixed delay, or (for errors only a change can fix) no retry until the Service
//!   changes. Workers never wait on a cloud operation in progress; with
//!   `--concurrent-service-syncs` > 1 a slow Service does not hold up the others.

mod decision;
mod fingerprint;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_provider::{CloudError, CloudProvider, LoadBalancers, NodeInfo};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Service};
use kube::api::Api;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::backoff::Backoff;
use super::cache::{self, Watched};
use super::{ReconcileError, Shared};
use crate::events::Events;
use crate::objects::{self, LB_CLEANUP_FINALIZER};
use decision::{Ensure, NodeSet, ResyncClock, Synced};

pub use fingerprint::fingerprint;

pub const NAME: &str = "service";
/// Upstream's event source.
pub const EVENT_SOURCE: &str = "service-controller";
/// The Warning for problems that did not stop the load balancer (unknown annotations).
pub const WARNING_REASON: &str = "UnsupportedAnnotation";

#[derive(Debug, Clone)]
pub struct Settings {
    pub cluster_name: String,
    pub workers: u16,
    /// Re-ensure every load balancer this often even when nothing changed.
    pub resync: Option<Duration>,
}

struct Context<P: CloudProvider> {
    shared: Shared,
    lb: Arc<P>,
    settings: Settings,
    nodes: Store<Node>,
    events: Events,
    synced: Mutex<HashMap<String, Synced>>,
    backoff: Backoff,
    clock: ResyncClock,
}

fn requeue(after: Option<Duration>) -> Action {
    after.map_or_else(Action::await_change, Action::requeue)
}

impl<P: CloudProvider> Context<P> {
    fn load_balancers(&self) -> &P::LoadBalancers {
        self.lb.load_balancers().expect("the service controller runs only for clouds with load balancers")
    }
}

/// Runs until `shutdown` resolves. The cloud must offer load balancers.
pub async fn run<P: CloudProvider>(
    shared: Shared,
    cloud: Arc<P>,
    settings: Settings,
    node_changes: tokio::sync::watch::Receiver<u64>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = shared.client.clone();
    let nodes = shared.nodes.store.clone();
    let (trigger, triggers) = futures::channel::mpsc::channel::<()>(1);
    let node_watch = tokio::spawn(watch_node_set(node_changes, nodes.clone(), trigger));
    if !shared.nodes.ready().await {
        tracing::error!("node cache stopped before it was ready");
        return;
    }
    let services = Watched::new(cache::slim_service);
    let (service_store, service_trigger) = (services.store(), services.subscribe());
    let service_watch = tokio::spawn(services.run(Api::<Service>::all(client.clone())));

    let events = Events::new(client.clone(), EVENT_SOURCE, &shared.instance);
    let ctx = Arc::new(Context {
        shared,
        lb: cloud,
        nodes,
        events,
        synced: Mutex::default(),
        backoff: Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
        clock: ResyncClock::new(Instant::now(), settings.resync),
        settings: settings.clone(),
    });
    Controller::for_shared_stream(service_trigger, service_store)
        .with_config(ControllerConfig::default().concurrency(settings.workers))
        .reconcile_all_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "service reconcile");
            }
        })
        .await;
    node_watch.abort();
    service_watch.abort();
}

/// Sends a trigger whenever the Nodes that matter for load balancers change, as upstream
/// decides it: a Node arrives or leaves, its providerID changes, or the exclusion label flips.
/// The autoscaler's `ToBeDeletedByClusterAutoscaler` taint is not a trigger (connection
/// draining), though every sync that happens leaves such a Node out.
async fn watch_node_set(
    mut changes: tokio::sync::watch::Receiver<u64>,
    store: Store<Node>,
    mut trigger: futures::channel::mpsc::Sender<()>,
) {
    let mut last = None;
    while changes.changed().await.is_ok() {
        let current: NodeSet = store
            .state()
            .iter()
            .filter(|n| objects::is_lb_included(n))
            .map(|n| (n.name_any(), n.spec.as_ref().and_then(|s| s.provider_id.clone())))
            .collect();
        if last.as_ref() != Some(&current) {
            last = Some(current);
            // A full channel already holds a pending trigger, which covers this change too.
            let _ = trigger.try_send(());
        }
    }
}

fn eligible_nodes(store: &Store<Node>) -> Vec<NodeInfo> {
    let mut nodes: Vec<NodeInfo> =
        store.state().iter().filter(|n| objects::is_lb_eligible(n)).map(|n| objects::node_info(n)).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

fn node_key(nodes: &[NodeInfo]) -> NodeSet {
    nodes.iter().map(|n| (n.name.clone(), n.provider_id.clone())).collect()
}

/// What an ensure of `service` reads from the cluster: its relevant fields and the node set.
fn attempt_state<P: CloudProvider>(service: &Service, ctx: &Context<P>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    fingerprint(service).hash(&mut h);
    node_key(&eligible_nodes(&ctx.nodes)).hash(&mut h);
    h.finish()
}

fn key(service: &Service) -> String {
    format!("{}/{}", service.namespace().unwrap_or_default(), service.name_any())
}

async fn reconcile<P: CloudProvider>(service: Arc<Service>, ctx: Arc<Context<P>>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = match decision::sync(&service) {
        decision::Sync::Delete => delete(&service, &ctx).await,
        decision::Sync::Ensure => {
            // A trigger during the backoff that changed nothing the sync reads (our own
            // finalizer write, say) waits for the backoff instead of retrying at once.
            if let Some(wait) = ctx.backoff.holding(&key(&service), Instant::now(), || attempt_state(&service, &ctx)) {
                return Ok(Action::requeue(wait));
            }
            ensure(&service, &ctx).await
        }
        decision::Sync::Forget => {
            ctx.synced.lock().expect("lock").remove(&key(&service));
            Ok(Action::await_change())
        }
    };
    ctx.shared.metrics.reconciled(NAME, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.reset(&key(&service));
    }
    result
}

fn error_policy<P: CloudProvider>(service: Arc<Service>, err: &ReconcileError, ctx: Arc<Context<P>>) -> Action {
    ctx.shared.metrics.failed(NAME, err.kind());
    let delay = ctx.backoff.next_delay(&key(&service), err.retry(), attempt_state(&service, &ctx));
    tracing::warn!(service = %key(&service), %err, ?delay, "load balancer sync failed");
    delay.map_or_else(Action::await_change, Action::requeue)
}

async fn ensure<P: CloudProvider>(service: &Service, ctx: &Context<P>) -> Result<Action, ReconcileError> {
    let key = key(service);
    let object = service.object_ref(&());
    let mut info = objects::service_info(service);
    let fingerprint = fingerprint(service);
    let nodes = eligible_nodes(&ctx.nodes);
    let node_set = node_key(&nodes);
    let previous = ctx.synced.lock().expect("lock").get(&key).cloned();
    let has_finalizer = objects::has_finalizer(service, LB_CLEANUP_FINALIZER);
    match decision::ensure(previous.as_ref(), fingerprint, has_finalizer, &node_set, &ctx.clock, Instant::now()) {
        Ensure::Full => {}
        Ensure::Periodic => info.periodic = true,
        Ensure::Nothing(after) => return Ok(requeue(after)),
        Ensure::Hosts(after) => {
            let previous = previous.expect("a host update follows an ensure");
            update_hosts(ctx, &object, &key, &info, &nodes, node_set, previous).await?;
            return Ok(requeue(after));
        }
    }

    ctx.events.normal(&object, "EnsuringLoadBalancer", "Ensuring load balancer").await;
    let api: Api<Service> = Api::namespaced(ctx.shared.client.clone(), &service.namespace().unwrap_or_default());
    if !objects::has_finalizer(service, LB_CLEANUP_FINALIZER) {
        let uid = service.uid().unwrap_or_default();
        if status::add_finalizer(&api, &service.name_any(), &uid).await? == status::Written::Gone {
            tracing::info!(service = %key, %uid, "deleted or replaced meanwhile; nothing made for it");
            return Ok(Action::await_change());
        }
    }
    if nodes.is_empty() {
        ctx.events.warning(&object, "UnAvailableLoadBalancer", "There are no available nodes for LoadBalancer").await;
    }
    ctx.shared.metrics.lb_sync.inc();
    let result = ctx.load_balancers().ensure(&ctx.settings.cluster_name, &info, &nodes).await;
    let remember = |invalid: bool| {
        let synced = Synced { fingerprint, nodes: node_set.clone(), at: Instant::now(), invalid };
        ctx.synced.lock().expect("lock").insert(key.clone(), synced);
    };
    match result {
        Ok(lb_status) => {
            if !lb_status.warnings.is_empty() {
                let note = format!("Load balancer made, but: {}", lb_status.warnings.join("; "));
                ctx.events.warning(&object, WARNING_REASON, note).await;
            }
            ctx.events.normal(&object, "EnsuredLoadBalancer", "Ensured load balancer").await;
            if lb_status.ingress != info.current_ingress {
                status::set_ingress(&api, &service.name_any(), &service.uid().unwrap_or_default(), &lb_status.ingress)
                    .await?;
            }
            remember(false);
            Ok(requeue(ctx.clock.until_next_tick(Instant::now())))
        }
        Err(CloudError::ImplementedElsewhere) => {
            tracing::debug!(service = %key, "load balancer implemented elsewhere");
            remember(false);
            Ok(Action::await_change())
        }
        Err(err) => {
            ctx.events.warning(&object, "SyncLoadBalancerFailed", format!("Error syncing load balancer: {err}")).await;
            // Only a change of the Service fixes this; until then its existing load balancer
            // still follows the Nodes (host updates), as it would under upstream.
            if err.retry() == cloud_provider::Retry::Never {
                remember(true);
            }
            Err(err.into())
        }
    }
}

async fn update_hosts<P: CloudProvider>(
    ctx: &Context<P>,
    object: &ObjectReference,
    key: &str,
    info: &cloud_provider::ServiceInfo,
    nodes: &[NodeInfo],
    node_set: NodeSet,
    previous: Synced,
) -> Result<(), ReconcileError> {
    let started = Instant::now();
    let result = ctx.load_balancers().update_hosts(&ctx.settings.cluster_name, info, nodes).await;
    ctx.shared.metrics.update_hosts_latency.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(()) | Err(CloudError::ImplementedElsewhere) => {
            if nodes.is_empty() {
                ctx.events
                    .warning(object, "UnAvailableLoadBalancer", "There are no available nodes for LoadBalancer")
                    .await;
            } else {
                ctx.events.normal(object, "UpdatedLoadBalancer", "Updated load balancer with new hosts").await;
            }
            // The resync clock keeps running from the last full ensure.
            let synced = Synced { nodes: node_set, ..previous };
            ctx.synced.lock().expect("lock").insert(key.to_string(), synced);
            ctx.shared.metrics.nodesync_latency.observe(started.elapsed().as_secs_f64());
            Ok(())
        }
        Err(err) => {
            ctx.shared.metrics.nodesync_errors.inc();
            let names: Vec<&str> = nodes.iter().take(20).map(|n| n.name.as_str()).collect();
            let more = if nodes.len() > 20 { format!(" and {} more", nodes.len() - 20) } else { String::new() };
            ctx.events
                .warning(
                    object,
                    "UpdateLoadBalancerFailed",
                    format!("Error updating load balancer with new hosts [{}]{more}: {err}", names.join(", ")),
                )
                .await;
            // Forget what was synced: the retry does a full ensure.
            ctx.synced.lock().expect("lock").remove(key);
            Err(err.into())
        }
    }
}

async fn delete<P: CloudProvider>(service: &Service, ctx: &Context<P>) -> Result<Action, ReconcileError> {
    let object = service.object_ref(&());
    let info = objects::service_info(service);
    let lbs = ctx.load_balancers();
    let cluster = &ctx.settings.cluster_name;
    // The Event when the Service shows a load balancer (upstream asks the cloud, which costs a
    // describe per type): deletion runs either way, so pieces left by an interrupted create or
    // delete (target groups, security-group rules) are still found and removed.
    let shown = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    if shown.is_some_and(|i| !i.is_empty()) {
        ctx.events.normal(&object, "DeletingLoadBalancer", "Deleting load balancer").await;
    }
    match lbs.ensure_deleted(cluster, &info).await {
        Ok(()) | Err(CloudError::ImplementedElsewhere) => {}
        Err(err) => {
            ctx.events
                .warning(&object, "DeleteLoadBalancerFailed", format!("Error deleting load balancer: {err}"))
                .await;
            return Err(err.into());
        }
    }
    let api: Api<Service> = Api::namespaced(ctx.shared.client.clone(), &service.namespace().unwrap_or_default());
    status::remove_finalizer_and_ingress(&api, &service.name_any(), &service.uid().unwrap_or_default()).await?;
    ctx.events.normal(&object, "DeletedLoadBalancer", "Deleted load balancer").await;
    ctx.synced.lock().expect("lock").remove(&key(service));
    Ok(Action::await_change())
}
