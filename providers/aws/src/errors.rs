//! AWS errors: one place that maps AWS error codes to retry decisions.

use std::time::Duration;

use cloud_provider::{CloudError, Retry};

/// Error codes AWS uses for throttling.
pub(crate) const THROTTLING: [&str; 7] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "SlowDown",
];

/// A failed AWS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {}{message}", .code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    /// e.g. `aws/ec2.DescribeInstances`
    pub op: &'static str,
    /// AWS's error code, when AWS answered with one.
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn is_throttling(&self) -> bool {
        self.code.as_deref().is_some_and(|c| THROTTLING.contains(&c))
    }

    /// `InvalidInstanceID.NotFound`, `LoadBalancerNotFound`, `TargetGroupNotFound`, ...
    pub fn is_not_found(&self) -> bool {
        self.code.as_deref().is_some_and(|c| c.contains("NotFound"))
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// A short, bounded label.
    pub fn kind(&self) -> &'static str {
        match self.code.as_deref() {
            _ if self.is_throttling() => "throttled",
            _ if self.is_not_found() => "not_found",
            Some("UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" | "AuthFailure") => "access_denied",
            Some("DependencyViolation" | "ResourceInUse") => "in_use",
            Some(c) if c.starts_with("Invalid") || c == "ValidationError" => "invalid_request",
            Some(_) => "aws_error",
            None => "transport",
        }
    }

    fn retry(&self) -> Retry {
        match self.kind() {
            // Still referenced elsewhere: come back later instead of hammering.
            "in_use" => Retry::After(Duration::from_secs(30)),
            _ => Retry::Backoff,
        }
    }
}

impl From<AwsError> for CloudError {
    fn from(err: AwsError) -> Self {
        // The operation is the error's `op`; the message names it no second time.
        let message = match &err.code {
            Some(code) => format!("{code}: {}", err.message),
            None => err.message.clone(),
        };
        CloudError::Failed { op: err.op, retry: err.retry(), kind: err.kind(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str) -> AwsError {
        AwsError { op: "aws/ec2.DescribeInstances", code: Some(code.into()), message: "m".into() }
    }

    #[test]
    fn classifies_codes() {
        assert!(err("RequestLimitExceeded").is_throttling());
        assert!(err("Throttling").is_throttling());
        assert_eq!(err("InvalidInstanceID.NotFound").kind(), "not_found");
        assert_eq!(err("UnauthorizedOperation").kind(), "access_denied");
        assert_eq!(err("InvalidParameterValue").kind(), "invalid_request");
        let cloud: CloudError = err("DependencyViolation").into();
        assert_eq!(cloud.retry(), Retry::After(Duration::from_secs(30)));
        assert_eq!(err("Throttling").to_string(), "aws/ec2.DescribeInstances: Throttling: m");
        let cloud: CloudError = err("InternalFailure").into();
        assert_eq!(cloud.to_string(), "aws/ec2.DescribeInstances: InternalFailure: m", "the operation named once");
    }
}
