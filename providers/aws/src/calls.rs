//! Every AWS call goes through [`Calls::run`]: the shared throttle delay before it, and after
//! it the metrics (calls, latency, errors, throttles, by operation) and the error mapping.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::api_metrics::{ApiMetrics, CallLabels, OperationLabels, RequestLabels};
use crate::errors::AwsError;
use crate::throttling::ThrottleTracker;

#[derive(Default)]
pub struct Calls {
    pub metrics: ApiMetrics,
    throttle: ThrottleTracker,
}

/// `aws/ec2.DescribeInstances` → (`ec2`, `DescribeInstances`).
fn split_op(op: &'static str) -> (&'static str, &'static str) {
    let rest = op.strip_prefix("aws/").unwrap_or(op);
    rest.split_once('.').unwrap_or(("aws", rest))
}

impl Calls {
    /// Runs one AWS call named `op` (`aws/<service>.<Operation>`).
    pub async fn run<T, E, R>(
        self: &Arc<Self>,
        op: &'static str,
        call: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let delay = self.throttle.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (service, operation) = split_op(op);
        let started = Instant::now();
        let result = call.await;
        self.metrics.calls.get_or_create(&CallLabels { service, operation }).inc();
        self.metrics
            .latency
            .get_or_create(&RequestLabels { request: operation })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(value) => {
                self.throttle.record(false);
                Ok(value)
            }
            Err(err) => {
                let error = AwsError {
                    op,
                    code: err.code().map(str::to_string),
                    message: err.message().map_or_else(|| DisplayErrorContext(&err).to_string(), str::to_string),
                };
                self.throttle.record(error.is_throttling());
                self.metrics.errors.get_or_create(&RequestLabels { request: operation }).inc();
                if error.is_throttling() {
                    self.metrics.throttled.get_or_create(&OperationLabels { operation_name: operation }).inc();
                }
                tracing::debug!(%error, "AWS call failed");
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn op_names_split_into_bounded_labels() {
        assert_eq!(super::split_op("aws/ec2.DescribeInstances"), ("ec2", "DescribeInstances"));
        assert_eq!(super::split_op("aws/elbv2.CreateListener"), ("elbv2", "CreateListener"));
    }
}
