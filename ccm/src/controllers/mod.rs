//! The four controllers, and which of them `--controllers` enables.

mod backoff;
pub mod cache;
mod error;

pub use error::ReconcileError;
pub mod node;
pub mod node_lifecycle;
pub mod route;
pub mod service;

/// One controller's upstream name and alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerName {
    pub canonical: &'static str,
    pub alias: &'static str,
}

pub const CLOUD_NODE: ControllerName = ControllerName { canonical: "cloud-node-controller", alias: "cloud-node" };
pub const CLOUD_NODE_LIFECYCLE: ControllerName =
    ControllerName { canonical: "cloud-node-lifecycle-controller", alias: "cloud-node-lifecycle" };
pub const SERVICE: ControllerName = ControllerName { canonical: "service-lb-controller", alias: "service" };
pub const ROUTE: ControllerName = ControllerName { canonical: "node-route-controller", alias: "route" };

pub const ALL: [ControllerName; 4] = [CLOUD_NODE, CLOUD_NODE_LIFECYCLE, SERVICE, ROUTE];

/// Upstream controllers this binary knows of but does not run; enabling one is a warning.
const NOT_IMPLEMENTED: [&str; 2] = ["tagging", "tagging-controller"];

/// Which controllers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerSet {
    pub cloud_node: bool,
    pub cloud_node_lifecycle: bool,
    pub service: bool,
    pub route: bool,
}

impl Default for ControllerSet {
    fn default() -> Self {
        Self { cloud_node: true, cloud_node_lifecycle: true, service: true, route: true }
    }
}

impl ControllerSet {
    pub fn all(&self) -> bool {
        *self == Self::default()
    }

    fn slot(&mut self, name: ControllerName) -> &mut bool {
        match name.canonical {
            "cloud-node-controller" => &mut self.cloud_node,
            "cloud-node-lifecycle-controller" => &mut self.cloud_node_lifecycle,
            "service-lb-controller" => &mut self.service,
            _ => &mut self.route,
        }
    }

    pub fn enabled(&self, name: ControllerName) -> bool {
        *self.clone().slot(name)
    }

    /// Upstream semantics: `*` enables everything on by default, `name` enables, `-name`
    /// disables; without `*` only the named ones run. Returns warnings on success and every
    /// unknown name on failure.
    pub fn parse(items: &[String]) -> Result<(Self, Vec<String>), Vec<String>> {
        let star = items.iter().any(|i| i.trim() == "*");
        let mut set = if star {
            Self::default()
        } else {
            Self { cloud_node: false, cloud_node_lifecycle: false, service: false, route: false }
        };
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for raw in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty() && *i != "*") {
            let (enable, name) = match raw.strip_prefix('-') {
                Some(name) => (false, name),
                None => (true, raw),
            };
            if let Some(known) = ALL.iter().find(|c| c.canonical == name || c.alias == name) {
                *set.slot(*known) = enable;
            } else if NOT_IMPLEMENTED.contains(&name) {
                if enable {
                    warnings.push(format!(
                        "--controllers: {name:?} is an upstream controller this binary does not have; ignored"
                    ));
                }
            } else {
                let names: Vec<_> = ALL.iter().map(|c| format!("{} ({})", c.canonical, c.alias)).collect();
                errors.push(format!("--controllers: unknown controller {name:?}; known: {}", names.join(", ")));
            }
        }
        if errors.is_empty() { Ok((set, warnings)) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &str) -> Result<(ControllerSet, Vec<String>), Vec<String>> {
        ControllerSet::parse(&list.split(',').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn star_minus_and_aliases() {
        let (set, _) = parse("*,-route").unwrap();
        assert!(set.cloud_node && set.cloud_node_lifecycle && set.service && !set.route);
        let (set, _) = parse("*,-node-route-controller,-service").unwrap();
        assert!(!set.route && !set.service && set.cloud_node);
        let (set, _) = parse("cloud-node,service-lb-controller").unwrap();
        assert_eq!(set, ControllerSet { cloud_node: true, cloud_node_lifecycle: false, service: true, route: false });
    }

    #[test]
    fn unknown_names_fail_and_tagging_warns() {
        assert_eq!(parse("*,nodes,-bogus").unwrap_err().len(), 2);
        let (set, warnings) = parse("*,tagging").unwrap();
        assert!(set.all());
        assert_eq!(warnings.len(), 1);
    }
}

/// What every controller gets: the API client, the metrics, this process's identity (the
/// `reportingInstance` of its Events), and the one cache of all Nodes ([`cache::Watched`]; the
/// process fills it while any controller runs).
#[derive(Clone)]
pub struct Shared {
    pub client: kube::Client,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub instance: String,
    pub nodes: cache::Reader<k8s_openapi::api::core::v1::Node>,
}

/// Runs `pass` every `period` over the shared cache of all Nodes, until `shutdown`: the shape of
/// the lifecycle and route controllers, which act on the whole Node set rather than per object.
/// Each pass is timed into the reconcile metrics under `name`.
pub async fn every_period_over_nodes<F, Fut>(
    shared: &Shared,
    name: &'static str,
    period: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send,
    mut pass: F,
) where
    F: FnMut(kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Node>) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = shared.nodes.store.clone();
    let mut shutdown = std::pin::pin!(shutdown);
    let stopped = tokio::select! { ready = shared.nodes.ready() => !ready, () = &mut shutdown => true };
    if !stopped {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = &mut shutdown => break,
            }
            let started = std::time::Instant::now();
            pass(store.clone()).await;
            shared.metrics.reconciled(name, started.elapsed().as_secs_f64());
        }
    }
}
