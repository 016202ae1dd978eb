use std::future::Future;

use crate::CloudError;

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
    /// The routes in the cluster's route table (all of them; the controller decides which are
    /// its own by CIDR).
    fn list(&self, cluster_name: &str) -> impl Future<Output = Result<Vec<Route>, CloudError>> + Send;

    /// Creates `route`; `name_hint` is the Node's UID.
    fn create(
        &self,
        cluster_name: &str,
        name_hint: &str,
        route: &Route,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Deletes a route returned by [`Routes::list`].
    fn delete(&self, cluster_name: &str, route: &Route) -> impl Future<Output = Result<(), CloudError>> + Send;
}
