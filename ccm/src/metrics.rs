//! Prometheus metrics, under upstream's names where upstream has them.
//!
//! Labels are bounded: controller names and error kinds, never object names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub kind: &'static str,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// Every metric the process exports.
pub struct Metrics {
    pub registry: Registry,
    /// upstream: service_controller_loadbalancer_sync_total
    pub lb_sync: Counter,
    /// upstream: service_controller_nodesync_error_total
    pub nodesync_errors: Counter,
    /// upstream: service_controller_nodesync_latency_seconds
    pub nodesync_latency: Histogram,
    /// upstream: service_controller_update_loadbalancer_host_latency_seconds
    pub update_hosts_latency: Histogram,
    /// upstream: node_controller_cloud_provider_taint_removal_delay_seconds
    pub taint_removal_delay: Histogram,
    /// upstream: node_controller_initial_node_sync_delay_seconds
    pub initial_node_sync_delay: Histogram,
    /// upstream: route_controller_route_sync_total
    pub route_sync: Counter,
    /// cloud_controller_manager_reconcile_total{controller}
    pub reconciles: Family<ControllerLabels, Counter>,
    /// cloud_controller_manager_reconcile_errors_total{controller,kind}
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// cloud_controller_manager_reconcile_duration_seconds{controller}
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// cloud_controller_manager_leader: 1 while this process holds the Lease
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            lb_sync: Counter::default(),
            nodesync_errors: Counter::default(),
            nodesync_latency: latency(),
            update_hosts_latency: latency(),
            taint_removal_delay: latency(),
            initial_node_sync_delay: latency(),
            route_sync: Counter::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(latency),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "service_controller_loadbalancer_sync",
            "Load balancer syncs (ensure calls) by the service controller",
            m.lb_sync.clone(),
        );
        registry.register(
            "service_controller_nodesync_error",
            "Failed load balancer host updates after node changes",
            m.nodesync_errors.clone(),
        );
        registry.register(
            "service_controller_nodesync_latency_seconds",
            "Time to push a node-set change to the load balancers",
            m.nodesync_latency.clone(),
        );
        registry.register(
            "service_controller_update_loadbalancer_host_latency_seconds",
            "Time of one load balancer host update",
            m.update_hosts_latency.clone(),
        );
        registry.register(
            "node_controller_cloud_provider_taint_removal_delay_seconds",
            "Time from Node creation to removal of the uninitialized taint",
            m.taint_removal_delay.clone(),
        );
        registry.register(
            "node_controller_initial_node_sync_delay_seconds",
            "Time from Node creation to its first successful sync",
            m.initial_node_sync_delay.clone(),
        );
        registry.register("route_controller_route_sync", "Route reconciliation passes", m.route_sync.clone());
        registry.register("cloud_controller_manager_reconcile", "Reconciles by controller", m.reconciles.clone());
        registry.register(
            "cloud_controller_manager_reconcile_errors",
            "Failed reconciles by controller and error kind",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "cloud_controller_manager_reconcile_duration_seconds",
            "Reconcile duration by controller",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "cloud_controller_manager_leader",
            "Whether this process holds the leader Lease (1) or not (0)",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn reconciled(&self, controller: &'static str, seconds: f64) {
        self.reconciles.get_or_create(&ControllerLabels { controller }).inc();
        self.reconcile_duration.get_or_create(&ControllerLabels { controller }).observe(seconds);
    }

    pub fn failed(&self, controller: &'static str, kind: &'static str) {
        self.reconcile_errors.get_or_create(&ErrorLabels { controller, kind }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_upstream_names() {
        let m = Metrics::default();
        m.lb_sync.inc();
        m.failed("service", "transient");
        let text = m.encode();
        for name in [
            "service_controller_loadbalancer_sync_total 1",
            "service_controller_nodesync_error_total",
            "service_controller_update_loadbalancer_host_latency_seconds_bucket",
            "node_controller_cloud_provider_taint_removal_delay_seconds",
            "route_controller_route_sync_total",
            "cloud_controller_manager_reconcile_errors_total{controller=\"service\",kind=\"transient\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
