//! The contract between the cloud-controller-manager's controllers and a cloud.
//!
//! A cloud is a [`CloudProvider`] with up to three optional capabilities, each behind an
//! accessor that returns `None` when the cloud lacks it, in which case the controller that
//! needs it is not started (Go's `(impl, bool)` pairs in `k8s.io/cloud-provider`):
//!
//! | capability | trait | used by |
//! |---|---|---|
//! | instances | [`Instances`] | cloud-node, cloud-node-lifecycle |
//! | load balancers | [`LoadBalancers`] | service |
//! | routes | [`Routes`] | route |
//!
//! The types here describe Nodes and Services in the cloud's terms ([`NodeInfo`],
//! [`ServiceInfo`]) rather than as Kubernetes objects: the controllers translate, so a provider
//! neither depends on nor can mutate the API objects.
//!
//! Every method returns a [`CloudError`], which says how the caller should retry
//! ([`Retry`]) and carries the two outcomes the controllers treat specially:
//! [`CloudError::ImplementedElsewhere`] and [`CloudError::InstanceNotFound`].
//!
//! A provider that writes to the cloud should also offer a [`Fence`] and check it before each
//! write, so that a leader which lost its Lease (or cannot tell any more) stops at once.
//!
//! Dispatch is static: controllers are generic over the provider, and the binary picks the
//! implementation by `--cloud-provider` name.

mod error;
mod fence;
mod instances;
mod load_balancers;
mod routes;

pub use error::{CloudError, Retry};
pub use fence::{Fence, Fenced};
pub use instances::{AddressType, InstanceMetadata, Instances, NodeAddress, NodeInfo};
pub use load_balancers::{
    IngressPoint, LoadBalancerStatus, LoadBalancers, PlannedChange, Protocol, ServiceInfo, ServicePort, TrafficPolicy,
};
pub use routes::{Route, Routes};

/// A cloud. Each capability accessor returns `None` when the cloud does not offer it.
pub trait CloudProvider: Send + Sync + 'static {
    type Instances: Instances;
    type LoadBalancers: LoadBalancers;
    type Routes: Routes;

    /// The provider's name: the `--cloud-provider` value and the providerID scheme (`aws`).
    fn name(&self) -> &'static str;
    fn instances(&self) -> Option<&Self::Instances>;
    fn load_balancers(&self) -> Option<&Self::LoadBalancers>;
    fn routes(&self) -> Option<&Self::Routes>;

    /// The [`Fence`] this provider checks before every mutating call, if it has one: the
    /// leader elector closes it while this process does not hold the Lease for sure.
    fn fence(&self) -> Option<&Fence> {
        None
    }
}

/// The capability type of a provider that lacks it: it has no values, so an accessor
/// returning `Option<&Unsupported>` can only return `None`.
#[derive(Debug, Clone, Copy)]
pub enum Unsupported {}

impl Instances for Unsupported {
    async fn instance_exists(&self, _: &NodeInfo) -> Result<bool, CloudError> {
        match *self {}
    }
    async fn instance_shutdown(&self, _: &NodeInfo) -> Result<bool, CloudError> {
        match *self {}
    }
    async fn instance_metadata(&self, _: &NodeInfo) -> Result<InstanceMetadata, CloudError> {
        match *self {}
    }
}

impl LoadBalancers for Unsupported {
    async fn get(&self, _: &str, _: &ServiceInfo) -> Result<Option<LoadBalancerStatus>, CloudError> {
        match *self {}
    }
    fn name(&self, _: &str, _: &ServiceInfo) -> String {
        match *self {}
    }
    async fn ensure(&self, _: &str, _: &ServiceInfo, _: &[NodeInfo]) -> Result<LoadBalancerStatus, CloudError> {
        match *self {}
    }
    async fn update_hosts(&self, _: &str, _: &ServiceInfo, _: &[NodeInfo]) -> Result<(), CloudError> {
        match *self {}
    }
    async fn ensure_deleted(&self, _: &str, _: &ServiceInfo) -> Result<(), CloudError> {
        match *self {}
    }
}

impl Routes for Unsupported {
    async fn list(&self, _: &str, _: &[NodeInfo]) -> Result<Vec<Route>, CloudError> {
        match *self {}
    }
    async fn create(&self, _: &str, _: &str, _: &Route, _: &NodeInfo) -> Result<(), CloudError> {
        match *self {}
    }
    async fn delete(&self, _: &str, _: &Route) -> Result<(), CloudError> {
        match *self {}
    }
}
