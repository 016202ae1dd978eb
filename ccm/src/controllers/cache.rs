//! The watches behind the controllers: one cache of all Nodes that every controller reading
//! Nodes shares (the cloud-node controller's trigger, the lifecycle and route passes, the
//! service controller's node set), and the service controller's cache of Services. Each object
//! is slimmed as it arrives to the fields the controllers read, so a large cluster costs one
//! small copy of each Node instead of four full ones (see docs/performance.md).
//!
//! Writes never start from a cached object: every controller reads the object fresh from the
//! API before an update (optimistic concurrency) or sends a patch of the fields it owns, so a
//! field dropped here is never dropped on the server.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Service, ServiceSpec};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::objects::{self, PROVIDED_NODE_IP_ANNOTATION};

/// Objects a subscriber may lag behind before the watch waits for it.
const BUFFER: usize = 1024;
/// Node conditions a controller reads (eligibility for load balancers; the route controller's
/// own); the rest are dropped from the cache.
const NODE_CONDITIONS_READ: [&str; 2] = ["Ready", "NetworkUnavailable"];
/// Objects per page of a list (kube's default is 500).
const LIST_PAGE: u32 = 100;
/// Node annotations a controller reads; the rest are dropped from the cache.
const NODE_ANNOTATIONS_READ: [&str; 1] = [PROVIDED_NODE_IP_ANNOTATION];
/// Written by `kubectl apply`: a second copy of the whole object, read by nobody here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A cache of every object of one kind, filled by one watch, that controllers share: its store,
/// a trigger stream per controller, and a counter of changes for whoever only needs to know
/// that something changed (deletions included).
pub struct Watched<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    changed: watch::Sender<u64>,
    ready: watch::Sender<bool>,
    slim: fn(&mut K),
}

/// A controller's view of a [`Watched`] cache.
#[derive(Clone)]
pub struct Reader<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub store: Store<K>,
    ready: watch::Receiver<bool>,
}

impl<K> Reader<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Waits until the first full list is in; false if the cache stopped first. (Any number of
    /// tasks may wait: the store's own `wait_until_ready` wakes only one of several waiters.)
    pub async fn ready(&self) -> bool {
        self.ready.clone().wait_for(|ready| *ready).await.is_ok()
    }
}

impl<K> Watched<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    /// An empty cache whose objects pass through `slim` before they are stored.
    pub fn new(slim: fn(&mut K)) -> Self {
        let (store, writer) = reflector::store_shared(BUFFER);
        Self { store, writer, changed: watch::channel(0).0, ready: watch::channel(false).0, slim }
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    pub fn reader(&self) -> Reader<K> {
        Reader { store: self.store(), ready: self.ready.subscribe() }
    }

    /// Every object as it is added or changed (and all of them once the first list is in): a
    /// controller's trigger. Subscribe before [`Watched::run`], and keep reading: a subscriber
    /// that stops reading holds up the watch once [`BUFFER`] objects wait for it.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        self.writer.subscribe().expect("a shared store accepts subscribers")
    }

    /// Changes whenever an object is added, changed or deleted; bursts are coalesced.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Keeps the cache filled from `api`'s watch (relisting with backoff after errors). Returns
    /// only if the watch stream ends, which it does not short of a bug.
    pub async fn run(self, api: Api<K>) {
        let Self { writer, changed, ready, slim, .. } = self;
        // Lists come in pages of LIST_PAGE: each page's objects are held whole (managed fields,
        // images) until slimmed, so a smaller page lowers the first list's peak.
        watcher(api, watcher::Config::default().page_size(LIST_PAGE))
            .modify(slim)
            .default_backoff()
            .reflect_shared(writer)
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::Init) => {}
                    Ok(watcher::Event::InitDone) => {
                        ready.send_replace(true);
                    }
                    Ok(_) => changed.send_modify(|n| *n = n.wrapping_add(1)),
                    Err(err) => tracing::warn!(kind = %K::kind(&()), %err, "watch"),
                }
                std::future::ready(())
            })
            .await;
    }
}

/// What the controllers read of a Node: its metadata without managed fields and with only the
/// annotations read here, its spec, and of its status the addresses and the type, status and
/// reason of the conditions read here (no images, node info, volumes, capacity, other
/// conditions or condition messages).
pub fn slim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(annotations) = node.metadata.annotations.as_mut() {
        annotations.retain(|key, _| NODE_ANNOTATIONS_READ.contains(&key.as_str()));
    }
    if let Some(status) = node.status.take() {
        let conditions = status.conditions.map(|all| {
            all.into_iter()
                .filter(|c| NODE_CONDITIONS_READ.contains(&c.type_.as_str()))
                .map(|c| NodeCondition { type_: c.type_, status: c.status, reason: c.reason, ..Default::default() })
                .collect()
        });
        node.status = Some(NodeStatus { addresses: status.addresses, conditions, ..Default::default() });
    }
}

/// What the service controller reads of a Service: all but its managed fields and `kubectl
/// apply`'s copy of the object.
pub fn slim_service(service: &mut Service) {
    service.metadata.managed_fields = None;
    if let Some(annotations) = service.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    // One that neither wants a load balancer from this controller nor holds its finalizer (most
    // Services of a cluster): only what says so is kept. Turned into a LoadBalancer, it arrives
    // whole again.
    if !objects::wants_load_balancer(service) && !objects::has_finalizer(service, objects::LB_CLEANUP_FINALIZER) {
        service.spec = service.spec.take().map(|spec| ServiceSpec {
            type_: spec.type_,
            load_balancer_class: spec.load_balancer_class,
            ..Default::default()
        });
        service.status = None;
        service.metadata.annotations = None;
        service.metadata.labels = None;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerImage, NodeSpec, NodeSystemInfo};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    use super::*;
    use crate::objects;

    fn kubelet_node() -> Node {
        let annotations = [
            (PROVIDED_NODE_IP_ANNOTATION, "10.0.0.5"),
            ("node.alpha.kubernetes.io/ttl", "0"),
            ("volumes.kubernetes.io/controller-managed-attach-detach", "true"),
        ];
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                uid: Some("u1".into()),
                labels: Some([("kubernetes.io/hostname".to_string(), "n1".to_string())].into()),
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubelet".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                provider_id: Some("aws:///us-east-1a/i-1".into()),
                pod_cidr: Some("100.96.1.0/24".into()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![k8s_openapi::api::core::v1::NodeAddress {
                    type_: "InternalIP".into(),
                    address: "10.0.0.5".into(),
                }]),
                conditions: Some(vec![
                    NodeCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        reason: Some("KubeletReady".into()),
                        message: Some("kubelet is posting ready status".into()),
                        ..Default::default()
                    },
                    NodeCondition {
                        type_: "MemoryPressure".into(),
                        status: "False".into(),
                        reason: Some("KubeletHasSufficientMemory".into()),
                        ..Default::default()
                    },
                ]),
                images: Some(vec![ContainerImage {
                    names: Some(vec!["registry.k8s.io/pause:3.10".into()]),
                    size_bytes: Some(1),
                }]),
                node_info: Some(NodeSystemInfo { kernel_version: "6.1".into(), ..Default::default() }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_slim_node_keeps_what_the_controllers_read() {
        let full = kubelet_node();
        let mut slim = full.clone();
        slim_node(&mut slim);
        assert_eq!(objects::node_info(&slim), objects::node_info(&full));
        assert!(objects::is_ready(&slim));
        assert_eq!(slim.spec, full.spec);
        assert_eq!(slim.metadata.uid, full.metadata.uid);
        assert_eq!(
            slim.metadata.annotations.unwrap().into_keys().collect::<Vec<_>>(),
            vec![PROVIDED_NODE_IP_ANNOTATION.to_string()]
        );
        assert!(slim.metadata.managed_fields.is_none());
        let status = slim.status.unwrap();
        assert!(status.images.is_none() && status.node_info.is_none());
        let conditions = status.conditions.unwrap();
        assert_eq!(conditions.len(), 1, "conditions no controller reads are dropped: {conditions:?}");
        assert_eq!(conditions[0].reason.as_deref(), Some("KubeletReady"));
    }

    #[test]
    fn a_slim_service_keeps_what_the_service_controller_reads() {
        let load_balancer = |type_: &str, finalizer: bool| Service {
            metadata: ObjectMeta {
                annotations: Some(
                    [(LAST_APPLIED.to_string(), "{}".to_string()), ("a".to_string(), "b".to_string())].into(),
                ),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                finalizers: finalizer.then(|| vec![objects::LB_CLEANUP_FINALIZER.to_string()]),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                ports: Some(vec![Default::default()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        for (mut service, kept) in [
            (load_balancer("LoadBalancer", false), true),
            (load_balancer("ClusterIP", true), true),
            (load_balancer("ClusterIP", false), false),
        ] {
            let before = service.clone();
            slim_service(&mut service);
            assert!(service.metadata.managed_fields.is_none());
            assert_eq!(objects::wants_load_balancer(&service), objects::wants_load_balancer(&before));
            assert_eq!(service.metadata.finalizers, before.metadata.finalizers);
            if kept {
                assert_eq!(service.metadata.annotations, Some([("a".to_string(), "b".to_string())].into()));
                assert_eq!(service.spec, before.spec);
            } else {
                // Neither a load balancer nor ours to clean up: its type alone is kept.
                assert_eq!(service.metadata.annotations, None);
                assert_eq!(service.spec.as_ref().and_then(|s| s.ports.as_ref()), None);
                assert_eq!(service.spec.and_then(|s| s.type_).as_deref(), Some("ClusterIP"));
            }
        }
    }
}
