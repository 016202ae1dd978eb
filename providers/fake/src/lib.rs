//! An in-memory cloud: the controllers' test double, and `--cloud-provider=fake`.
//!
//! It keeps instances, load balancers and routes in memory, records every call, and can be
//! told to fail or slow down any method. Nodes it has not been told about are treated as
//! running instances named after the Node (so the binary with `--cloud-provider=fake` can
//! initialize any cluster's Nodes), unless `strict_instances` is set or the configuration
//! lists them as missing or stopped.

mod config;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cloud_provider::{
    AddressType, CloudError, CloudProvider, IngressPoint, InstanceMetadata, Instances, LoadBalancerStatus,
    LoadBalancers, NodeAddress, NodeInfo, Route, Routes, ServiceInfo,
};

pub use config::{ConfigError, FakeConfig};

pub const PROVIDER_NAME: &str = "fake";
/// A Service carrying this annotation is left to "another controller".
pub const ELSEWHERE_ANNOTATION: &str = "fake.cloud/implemented-elsewhere";

/// The methods of the three capabilities, for recording calls and injecting faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    InstanceExists,
    InstanceShutdown,
    InstanceMetadata,
    GetLoadBalancer,
    EnsureLoadBalancer,
    UpdateHosts,
    EnsureLoadBalancerDeleted,
    ListRoutes,
    CreateRoute,
    DeleteRoute,
}

/// One recorded call: the method and what it was about (node, `namespace/name`, CIDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub subject: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Running,
    Stopped,
    Terminated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeInstance {
    pub state: InstanceState,
    pub instance_type: String,
    pub zone: String,
    pub addresses: Vec<NodeAddress>,
    pub additional_labels: BTreeMap<String, String>,
}

/// A load balancer the fake "provisioned".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLoadBalancer {
    pub service: String,
    pub hostname: String,
    /// Names of the Nodes it targets.
    pub nodes: Vec<String>,
    pub ports: Vec<(u16, u16)>,
    /// How many times `ensure` ran for it.
    pub ensures: u32,
}

struct Fault {
    method: Method,
    error: CloudError,
    remaining: Option<u32>,
}

#[derive(Default)]
struct State {
    instances: BTreeMap<String, FakeInstance>,
    load_balancers: BTreeMap<String, FakeLoadBalancer>,
    routes: BTreeMap<String, Route>,
    calls: Vec<Call>,
    faults: Vec<Fault>,
    delays: BTreeMap<Method, Duration>,
}

/// The fake cloud. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeCloud {
    config: Arc<FakeConfig>,
    state: Arc<Mutex<State>>,
}

impl Default for FakeCloud {
    fn default() -> Self {
        Self::new(FakeConfig::default())
    }
}

impl FakeCloud {
    pub fn new(config: FakeConfig) -> Self {
        let cloud = Self { config: Arc::new(config), state: Arc::default() };
        {
            let mut state = cloud.state();
            for name in &cloud.config.stopped_instances {
                let instance = cloud.default_instance(name, InstanceState::Stopped);
                state.instances.insert(name.clone(), instance);
            }
        }
        cloud
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake cloud lock")
    }

    fn default_instance(&self, node: &str, state: InstanceState) -> FakeInstance {
        FakeInstance {
            state,
            instance_type: self.config.instance_type.clone(),
            zone: self.config.zone.clone(),
            addresses: vec![NodeAddress::new(AddressType::Hostname, node)],
            additional_labels: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the instance behind Node `node`.
    pub fn add_instance(&self, node: &str, instance: FakeInstance) {
        self.state().instances.insert(node.to_string(), instance);
    }

    /// A running instance with the configured type and zone and the given addresses.
    pub fn running_instance(&self, addresses: Vec<NodeAddress>) -> FakeInstance {
        FakeInstance { addresses, ..self.default_instance("", InstanceState::Running) }
    }

    pub fn set_instance_state(&self, node: &str, state: InstanceState) {
        let mut guard = self.state();
        let instance = guard.instances.entry(node.to_string()).or_insert_with(|| self.default_instance(node, state));
        instance.state = state;
    }

    /// Makes the instance behind `node` vanish entirely.
    pub fn remove_instance(&self, node: &str) {
        self.state().instances.insert(node.to_string(), self.default_instance(node, InstanceState::Terminated));
    }

    /// Makes `method` fail with `error`, `times` times (or forever with `None`).
    pub fn fail(&self, method: Method, error: CloudError, times: Option<u32>) {
        self.state().faults.push(Fault { method, error, remaining: times });
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Makes every call of `method` take at least `delay`.
    pub fn delay(&self, method: Method, delay: Duration) {
        self.state().delays.insert(method, delay);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn count(&self, method: Method) -> usize {
        self.state().calls.iter().filter(|c| c.method == method).count()
    }

    pub fn count_for(&self, method: Method, subject: &str) -> usize {
        self.state().calls.iter().filter(|c| c.method == method && c.subject == subject).count()
    }

    pub fn reset_calls(&self) {
        self.state().calls.clear();
    }

    pub fn load_balancer(&self, service_key: &str) -> Option<FakeLoadBalancer> {
        self.state().load_balancers.values().find(|lb| lb.service == service_key).cloned()
    }

    pub fn load_balancers(&self) -> Vec<FakeLoadBalancer> {
        self.state().load_balancers.values().cloned().collect()
    }

    pub fn routes(&self) -> Vec<Route> {
        self.state().routes.values().cloned().collect()
    }

    /// Puts a route in the table as if someone else had made it.
    pub fn insert_route(&self, route: Route) {
        self.state().routes.insert(route.destination_cidr.clone(), route);
    }

    /// Records the call, applies its delay, and returns the injected error, if any.
    async fn enter(&self, method: Method, subject: &str) -> Result<(), CloudError> {
        let (delay, fault) = {
            let mut state = self.state();
            state.calls.push(Call { method, subject: subject.to_string() });
            let delay = state.delays.get(&method).copied();
            let mut fault = None;
            if let Some(i) = state.faults.iter().position(|f| f.method == method && f.remaining != Some(0)) {
                let f = &mut state.faults[i];
                if let Some(n) = f.remaining.as_mut() {
                    *n -= 1;
                }
                fault = Some(f.error.clone());
            }
            (delay, fault)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        fault.map_or(Ok(()), Err)
    }

    fn instance_for(&self, node: &NodeInfo) -> Option<FakeInstance> {
        let state = self.state();
        match state.instances.get(&node.name) {
            Some(instance) => Some(instance.clone()),
            None if self.config.strict_instances || self.config.missing_instances.contains(&node.name) => None,
            // An unknown Node's instance reports the addresses the kubelet registered.
            None => Some(FakeInstance {
                addresses: node.addresses.clone(),
                ..self.default_instance(&node.name, InstanceState::Running)
            }),
        }
    }

    fn lb_name(service: &ServiceInfo) -> String {
        let uid: String = service.uid.chars().filter(|c| *c != '-').collect();
        format!("a{uid}").chars().take(32).collect()
    }
}

impl CloudProvider for FakeCloud {
    type Instances = Self;
    type LoadBalancers = Self;
    type Routes = Self;

    fn name(&self) -> &'static str {
        PROVIDER_NAME
    }
    fn instances(&self) -> Option<&Self> {
        Some(self)
    }
    fn load_balancers(&self) -> Option<&Self> {
        Some(self)
    }
    fn routes(&self) -> Option<&Self> {
        self.config.routes.then_some(self)
    }
}

impl Instances for FakeCloud {
    async fn instance_exists(&self, node: &NodeInfo) -> Result<bool, CloudError> {
        self.enter(Method::InstanceExists, &node.name).await?;
        Ok(self.instance_for(node).is_some_and(|i| i.state != InstanceState::Terminated))
    }

    async fn instance_shutdown(&self, node: &NodeInfo) -> Result<bool, CloudError> {
        self.enter(Method::InstanceShutdown, &node.name).await?;
        Ok(self.instance_for(node).is_some_and(|i| i.state == InstanceState::Stopped))
    }

    async fn instance_metadata(&self, node: &NodeInfo) -> Result<InstanceMetadata, CloudError> {
        self.enter(Method::InstanceMetadata, &node.name).await?;
        if self.config.panic_on_node.as_deref() == Some(node.name.as_str()) {
            let first = self.config.panic_once_file.as_ref().is_none_or(|f| std::fs::File::create_new(f).is_ok());
            if first {
                panic!("fake cloud: the injected panic for Node {}", node.name);
            }
        }
        let instance = self
            .instance_for(node)
            .filter(|i| i.state != InstanceState::Terminated)
            .ok_or(CloudError::InstanceNotFound)?;
        Ok(InstanceMetadata {
            provider_id: format!("{PROVIDER_NAME}://{}/{}", instance.zone, node.name),
            instance_type: instance.instance_type,
            addresses: instance.addresses,
            zone: instance.zone,
            region: self.config.region.clone(),
            additional_labels: instance.additional_labels,
        })
    }
}

impl LoadBalancers for FakeCloud {
    async fn get(&self, _cluster: &str, service: &ServiceInfo) -> Result<Option<LoadBalancerStatus>, CloudError> {
        self.enter(Method::GetLoadBalancer, &service.key()).await?;
        let state = self.state();
        Ok(state
            .load_balancers
            .get(&Self::lb_name(service))
            .map(|lb| LoadBalancerStatus { ingress: vec![IngressPoint::hostname(&lb.hostname)], warnings: Vec::new() }))
    }

    fn name(&self, _cluster: &str, service: &ServiceInfo) -> String {
        Self::lb_name(service)
    }

    async fn ensure(
        &self,
        _cluster: &str,
        service: &ServiceInfo,
        nodes: &[NodeInfo],
    ) -> Result<LoadBalancerStatus, CloudError> {
        self.enter(Method::EnsureLoadBalancer, &service.key()).await?;
        if service.annotations.contains_key(ELSEWHERE_ANNOTATION) {
            return Err(CloudError::ImplementedElsewhere);
        }
        let name = Self::lb_name(service);
        let mut state = self.state();
        let lb = state.load_balancers.entry(name.clone()).or_insert_with(|| FakeLoadBalancer {
            service: service.key(),
            hostname: format!("{name}.lb.fake.invalid"),
            nodes: Vec::new(),
            ports: Vec::new(),
            ensures: 0,
        });
        lb.nodes = nodes.iter().map(|n| n.name.clone()).collect();
        lb.ports = service.ports.iter().map(|p| (p.port, p.node_port)).collect();
        lb.ensures += 1;
        Ok(LoadBalancerStatus { ingress: vec![IngressPoint::hostname(&lb.hostname)], warnings: Vec::new() })
    }

    async fn update_hosts(&self, _cluster: &str, service: &ServiceInfo, nodes: &[NodeInfo]) -> Result<(), CloudError> {
        self.enter(Method::UpdateHosts, &service.key()).await?;
        if service.annotations.contains_key(ELSEWHERE_ANNOTATION) {
            return Err(CloudError::ImplementedElsewhere);
        }
        let mut state = self.state();
        match state.load_balancers.get_mut(&Self::lb_name(service)) {
            Some(lb) => {
                lb.nodes = nodes.iter().map(|n| n.name.clone()).collect();
                Ok(())
            }
            None => Err(CloudError::transient("fake.update_hosts", "no such load balancer")),
        }
    }

    async fn ensure_deleted(&self, _cluster: &str, service: &ServiceInfo) -> Result<(), CloudError> {
        self.enter(Method::EnsureLoadBalancerDeleted, &service.key()).await?;
        self.state().load_balancers.remove(&Self::lb_name(service));
        Ok(())
    }
}

impl Routes for FakeCloud {
    async fn list(&self, _cluster: &str, _nodes: &[NodeInfo]) -> Result<Vec<Route>, CloudError> {
        self.enter(Method::ListRoutes, "").await?;
        let state = self.state();
        Ok(state
            .routes
            .values()
            .map(|r| {
                let gone = state.instances.get(&r.target_node).is_some_and(|i| i.state == InstanceState::Terminated);
                Route { blackhole: r.blackhole || gone, ..r.clone() }
            })
            .collect())
    }

    async fn create(&self, cluster: &str, _name_hint: &str, route: &Route, _node: &NodeInfo) -> Result<(), CloudError> {
        self.enter(Method::CreateRoute, &route.destination_cidr).await?;
        let name = format!("{cluster}-{}", route.destination_cidr);
        self.state().routes.insert(route.destination_cidr.clone(), Route { name, blackhole: false, ..route.clone() });
        Ok(())
    }

    async fn delete(&self, _cluster: &str, route: &Route) -> Result<(), CloudError> {
        self.enter(Method::DeleteRoute, &route.destination_cidr).await?;
        self.state().routes.remove(&route.destination_cidr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(uid: &str) -> ServiceInfo {
        ServiceInfo { namespace: "default".into(), name: "web".into(), uid: uid.into(), ..Default::default() }
    }

    #[tokio::test]
    async fn unknown_nodes_are_running_instances_unless_strict() {
        let cloud = FakeCloud::default();
        let node = NodeInfo::named("n1");
        assert!(cloud.instance_exists(&node).await.unwrap());
        let meta = cloud.instance_metadata(&node).await.unwrap();
        assert_eq!(meta.provider_id, "fake://fake-zone-a/n1");
        let strict = FakeCloud::new(FakeConfig { strict_instances: true, ..FakeConfig::default() });
        assert!(!strict.instance_exists(&node).await.unwrap());
        assert_eq!(strict.instance_metadata(&node).await, Err(CloudError::InstanceNotFound));
    }

    #[tokio::test]
    async fn faults_fire_the_given_number_of_times_and_calls_are_recorded() {
        let cloud = FakeCloud::default();
        cloud.fail(Method::EnsureLoadBalancer, CloudError::transient("fake", "boom"), Some(1));
        let svc = service("1234-5678");
        assert!(cloud.ensure("k", &svc, &[]).await.is_err());
        let status = cloud.ensure("k", &svc, &[NodeInfo::named("n1")]).await.unwrap();
        assert_eq!(status.ingress, vec![IngressPoint::hostname("a12345678.lb.fake.invalid")]);
        assert_eq!(cloud.count(Method::EnsureLoadBalancer), 2);
        assert_eq!(cloud.load_balancer("default/web").unwrap().nodes, vec!["n1".to_string()]);
        cloud.ensure_deleted("k", &svc).await.unwrap();
        assert!(cloud.get("k", &svc).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn routes_to_terminated_instances_are_blackholed() {
        let cloud = FakeCloud::default();
        let route = Route {
            name: String::new(),
            target_node: "n1".into(),
            destination_cidr: "10.244.1.0/24".into(),
            blackhole: false,
        };
        cloud.create("k", "uid", &route, &NodeInfo::named("n1")).await.unwrap();
        assert!(!cloud.list("k", &[]).await.unwrap()[0].blackhole);
        cloud.remove_instance("n1");
        assert!(cloud.list("k", &[]).await.unwrap()[0].blackhole);
    }
}
