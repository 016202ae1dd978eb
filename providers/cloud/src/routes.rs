use std::future::Future;

use crate::{CloudError, NodeInfo};

/// A route sending a Node's pod CIDR to that Node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// The provider's name for it (informational).
    pub name: String,
    /// The Node the route targets; empty for a blackholed route whose target is gone.
    pub target_node: String,
    pub destination_cidr: String,
    /// The target no longer exists; the route controller deletes blackholed routes it owns.
    pub blackhole: bool,
}

/// Routes: what the route controller needs.
pub trait Routes: Send + Sync + 'static {
    /// The routes in the cluster's route table that target instances (the controller decides
    /// which are its own by CIDR). `nodes` lets the provider name each route's target Node
    /// (upstream uses its Node informer for this).
    fn list(
        &self,
        cluster_name: &str,
        nodes: &[NodeInfo],
    ) -> impl Future<Output = Result<Vec<Route>, CloudError>> + Send;

    /// Creates `route` to `node`; `name_hint` is the Node's UID.
    fn create(
        &self,
        cluster_name: &str,
        name_hint: &str,
        route: &Route,
        node: &NodeInfo,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Deletes a route returned by [`Routes::list`].
    fn delete(&self, cluster_name: &str, route: &Route) -> impl Future<Output = Result<(), CloudError>> + Send;
}
