//! Per-operation AWS API metrics, under upstream's names, plus a plain call counter.
//! Labels are the service and operation names: bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub request: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation_name: String,
}

#[derive(Clone)]
pub struct ApiMetrics {
    /// cloudprovider_aws_api_requests_total{service,operation}
    pub calls: Family<CallLabels, Counter>,
    /// cloudprovider_aws_api_request_duration_seconds{request} (upstream)
    pub latency: Family<RequestLabels, Histogram>,
    /// cloudprovider_aws_api_request_errors_total{request} (upstream: ..._request_errors)
    pub errors: Family<RequestLabels, Counter>,
    /// cloudprovider_aws_api_throttled_requests_total{operation_name} (upstream): every
    /// throttled attempt, the SDK's retries included.
    pub throttled: Family<OperationLabels, Counter>,
    /// cloudprovider_aws_api_throttle_delay_seconds_total: the shared slow-down applied before
    /// calls while the account is being throttled.
    pub throttle_delay: Counter<f64, std::sync::atomic::AtomicU64>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            errors: Family::default(),
            throttled: Family::default(),
            throttle_delay: Counter::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cloudprovider_aws_api_requests",
            "AWS API calls by service and operation",
            self.calls.clone(),
        );
        registry.register(
            "cloudprovider_aws_api_request_duration_seconds",
            "Latency of AWS API calls, retries included",
            self.latency.clone(),
        );
        registry.register("cloudprovider_aws_api_request_errors", "AWS API calls that failed", self.errors.clone());
        registry.register(
            "cloudprovider_aws_api_throttled_requests",
            "AWS API attempts (the SDK's retries included) answered with a throttling error",
            self.throttled.clone(),
        );
        registry.register(
            "cloudprovider_aws_api_throttle_delay_seconds",
            "Time calls waited, in all, because recent attempts were throttled",
            self.throttle_delay.clone(),
        );
    }
}
