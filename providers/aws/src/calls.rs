//! Every AWS call goes through [`Calls::run`]: the shared throttle delay before it, and after
//! it the metrics (calls, latency, errors, by operation) and the error mapping. Throttling is
//! seen per attempt, not per call: [`AttemptWatch`], an interceptor on every client, looks at
//! each HTTP answer, so the SDK's retries of a throttled request count too (otherwise the
//! slow-down and the metric would only see calls that failed all their attempts).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::api_metrics::{ApiMetrics, CallLabels, OperationLabels, RequestLabels};
use crate::errors::AwsError;
use crate::operations::Op;
use crate::throttling::ThrottleTracker;

#[derive(Default)]
pub struct Calls {
    pub metrics: ApiMetrics,
    throttle: ThrottleTracker,
    /// Checked before every mutating call and each of its attempts (see [`cloud_provider::Fence`]).
    pub fence: cloud_provider::Fence,
}

/// Whether an AWS operation changes something: all but the reads (`Describe…`, `Get…`, `List…`).
pub fn is_mutating(operation: &str) -> bool {
    !["Describe", "Get", "List"].iter().any(|read| operation.starts_with(read))
}

/// `aws/ec2.DescribeInstances` → (`ec2`, `DescribeInstances`).
fn split_op(op: &'static str) -> (&'static str, &'static str) {
    let rest = op.strip_prefix("aws/").unwrap_or(op);
    rest.split_once('.').unwrap_or(("aws", rest))
}

impl Calls {
    /// Runs one AWS call, `op` (every operation is one of [`crate::operations`]).
    pub async fn run<T, E, R>(
        self: &Arc<Self>,
        op: impl Into<Op>,
        call: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        self.observe(op.into(), call, |_| true).await
    }

    /// The next page of a paginated `op` (the SDK's paginator's `next()`): `None` after the
    /// last page, which costs no call and is not counted.
    pub async fn page<T, E, R>(
        self: &Arc<Self>,
        op: impl Into<Op>,
        next: impl Future<Output = Option<Result<T, SdkError<E, R>>>>,
    ) -> Result<Option<T>, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        self.observe(op.into(), async { next.await.transpose() }, Option::is_some).await
    }

    async fn observe<T, E, R>(
        self: &Arc<Self>,
        op: Op,
        call: impl Future<Output = Result<T, SdkError<E, R>>>,
        made_a_call: impl Fn(&T) -> bool,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let op = op.name;
        let delay = self.throttle.delay();
        if !delay.is_zero() {
            self.metrics.throttle_delay.inc_by(delay.as_secs_f64());
            tokio::time::sleep(delay).await;
        }
        let (service, operation) = split_op(op);
        if is_mutating(operation)
            && let Err(fenced) = self.fence.check()
        {
            tracing::warn!(op, "{fenced}");
            return Err(AwsError { op, code: Some(FENCED.into()), message: fenced.to_string() });
        }
        let started = Instant::now();
        let result = call.await;
        if result.as_ref().map_or(true, &made_a_call) {
            self.metrics.calls.get_or_create(&CallLabels { service, operation }).inc();
            self.metrics
                .latency
                .get_or_create(&RequestLabels { request: operation })
                .observe(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(value) => Ok(value),
            Err(err) => {
                let error = AwsError {
                    op,
                    code: err.code().map(str::to_string),
                    message: err.message().map_or_else(|| DisplayErrorContext(&err).to_string(), str::to_string),
                };
                self.metrics.errors.get_or_create(&RequestLabels { request: operation }).inc();
                tracing::debug!(%error, "AWS call failed");
                Err(error)
            }
        }
    }
}

impl Calls {
    /// One HTTP attempt of `operation` came back; `throttled` when AWS said so.
    pub fn attempt(&self, operation: &str, throttled: bool) {
        self.throttle.record(throttled);
        if throttled {
            self.metrics.throttled.get_or_create(&OperationLabels { operation_name: operation.to_string() }).inc();
        }
    }
}

/// Whether an AWS answer is a throttling error: its XML names one of the throttling codes.
pub fn is_throttle_answer(status: u16, body: &[u8]) -> bool {
    if status < 400 {
        return false;
    }
    let body = String::from_utf8_lossy(body);
    crate::errors::THROTTLING.iter().any(|code| body.contains(&format!("<Code>{code}</Code>")))
}

/// The error code of a call the fence refused.
pub const FENCED: &str = "Fenced";

/// The interceptor on every client that reports each attempt to [`Calls::attempt`], and stops
/// an attempt of a mutating call (a retry, say) when the fence has closed since the call began.
#[derive(Debug, Clone)]
pub struct AttemptWatch(pub Arc<Calls>);

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Calls")
    }
}

impl aws_sdk_ec2::config::Intercept for AttemptWatch {
    fn name(&self) -> &'static str {
        "AttemptWatch"
    }

    fn read_after_attempt(
        &self,
        context: &aws_sdk_ec2::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _components: &aws_sdk_ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk_ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk_ec2::error::BoxError> {
        let Some(response) = context.response() else { return Ok(()) };
        let throttled = is_throttle_answer(response.status().as_u16(), response.body().bytes().unwrap_or_default());
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or_else(|| "unknown".to_string(), |m| m.name().to_string());
        self.0.attempt(&operation, throttled);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk_ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk_ec2::error::BoxError> {
        let mutating =
            cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>().is_some_and(|m| is_mutating(m.name()));
        if mutating {
            self.0.fence.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn op_names_split_into_bounded_labels() {
        assert_eq!(super::split_op("aws/ec2.DescribeInstances"), ("ec2", "DescribeInstances"));
        assert_eq!(super::split_op("aws/elbv2.CreateListener"), ("elbv2", "CreateListener"));
    }

    #[test]
    fn reads_are_told_from_writes() {
        for read in ["DescribeInstances", "GetCallerIdentity", "ListTags"] {
            assert!(!super::is_mutating(read), "{read}");
        }
        for write in ["CreateRoute", "DeleteLoadBalancer", "AuthorizeSecurityGroupIngress", "ModifyInstanceAttribute"] {
            assert!(super::is_mutating(write), "{write}");
        }
    }

    #[test]
    fn throttle_answers_are_told_apart() {
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert!(super::is_throttle_answer(503, ec2));
        let elb = b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code></Error></ErrorResponse>";
        assert!(super::is_throttle_answer(400, elb));
        let other = b"<ErrorResponse><Error><Code>LoadBalancerNotFound</Code></Error></ErrorResponse>";
        assert!(!super::is_throttle_answer(400, other));
        assert!(!super::is_throttle_answer(200, ec2), "a success is never a throttle");
    }
}
