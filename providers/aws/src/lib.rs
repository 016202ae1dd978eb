//! The AWS cloud: EC2 instances, VPC routes and (next) Classic ELB / NLB load balancers,
//! compatible with upstream `kubernetes/cloud-provider-aws`.
//!
//! [`AwsCloud::new`] reads the cloud-config (every problem reported at once), finds the region,
//! VPC and cluster ID ([`discovery`]), and builds the clients. Every AWS call goes through
//! [`calls::Calls`], which counts and times it by operation and slows all calls down while the
//! account is being throttled; DescribeInstances lookups are served from a shared snapshot
//! ([`instance_cache`]).

pub mod api_metrics;
mod calls;
mod clients;
pub mod config;
mod describe_batch;
pub mod discovery;
mod ec2;
mod elb;
mod elbv2;
pub mod errors;
pub mod iam;
pub mod instance_cache;
pub mod instances;
pub mod load_balancers;
pub mod operations;
pub mod provider_id;
pub mod routes;
pub mod tags;
mod throttling;
pub mod topology;

use std::sync::Arc;

use cloud_provider::CloudProvider;

pub use config::{CloudConfig, ConfigErrors};
pub use instances::AwsInstances;
pub use load_balancers::AwsLoadBalancers;
pub use routes::AwsRoutes;

pub const PROVIDER_NAME: &str = "aws";

/// Every AWS operation the provider can call, as `service:Action` (the IAM policy's terms).
pub fn operations() -> Vec<String> {
    let mut all: Vec<String> = operations::all().iter().map(|op| op.iam.to_string()).collect();
    all.sort();
    all.dedup();
    all
}

/// Why the provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("AWS discovery: {0}")]
    Discovery(String),
}

pub struct AwsCloud {
    instances: AwsInstances,
    load_balancers: AwsLoadBalancers,
    routes: AwsRoutes,
    calls: Arc<calls::Calls>,
    pub region: String,
    pub discovered: discovery::Discovered,
    /// Notes for the startup log (retired cloud-config keys).
    pub warnings: Vec<String>,
}

impl AwsCloud {
    /// Reads the cloud-config text (none: all defaults) and discovers the cluster.
    pub async fn new(cloud_config: Option<&str>) -> Result<Self, StartupError> {
        let config = CloudConfig::parse(cloud_config.unwrap_or(""))?;
        let region = discovery::region(&config).await.map_err(StartupError::Discovery)?;
        let sdk = clients::sdk_config(&config, &region).await;
        let calls = Arc::new(calls::Calls::default());
        let ec2 = ec2::Ec2::new(clients::ec2(&sdk, &config, &region, &calls), calls.clone());
        let discovered = discovery::discover(&config, &ec2).await.map_err(StartupError::Discovery)?;
        let cache = Arc::new(instance_cache::InstanceCache::new(ec2.clone(), discovered.cluster.clone()));
        // The pattern was checked when the cloud-config was read.
        let topology =
            topology::Topology::new(ec2.clone(), config.global.supported_topology_instance_type_pattern.as_deref())
                .map_err(StartupError::Discovery)?;
        let instances = AwsInstances::new(
            cache.clone(),
            ec2.clone(),
            region.clone(),
            config.global.node_ip_families.clone(),
            topology,
        );
        let settings = load_balancers::Settings::from(&config.global);
        let load_balancers = AwsLoadBalancers::new(
            ec2.clone(),
            elb::Elb::new(clients::elb(&sdk, &config, &region, &calls), calls.clone()),
            elbv2::Elbv2::new(clients::elbv2(&sdk, &config, &region, &calls), calls.clone()),
            cache.clone(),
            discovered.cluster.clone(),
            discovered.vpc_id.clone(),
            discovered.subnet_id.clone(),
            settings,
        );
        let routes = AwsRoutes::new(
            ec2,
            cache,
            discovered.cluster.clone(),
            discovered.vpc_id.clone(),
            config.global.route_table_id.clone(),
        );
        Ok(Self { instances, load_balancers, routes, calls, region, discovered, warnings: config.warnings })
    }

    /// Adds the AWS API metrics to the process's registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.calls.metrics.register(registry);
    }
}

impl CloudProvider for AwsCloud {
    type Instances = AwsInstances;
    type LoadBalancers = AwsLoadBalancers;
    type Routes = AwsRoutes;

    fn name(&self) -> &'static str {
        PROVIDER_NAME
    }
    fn instances(&self) -> Option<&AwsInstances> {
        Some(&self.instances)
    }
    fn load_balancers(&self) -> Option<&AwsLoadBalancers> {
        Some(&self.load_balancers)
    }
    fn routes(&self) -> Option<&AwsRoutes> {
        Some(&self.routes)
    }
    fn fence(&self) -> Option<&cloud_provider::Fence> {
        Some(&self.calls.fence)
    }
}
