use std::time::Duration;

/// How a caller should retry a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying the same input cannot succeed (e.g. an invalid annotation); wait for a change.
    Never,
    /// Retry after exactly this delay (Go's `api.RetryError`), not the usual backoff.
    After(Duration),
    /// Retry with the caller's exponential backoff.
    Backoff,
}

/// Why a cloud call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// Another controller owns this object (e.g. a Service left to the AWS Load Balancer
    /// Controller): not an error, and the caller must not touch its status.
    #[error("implemented elsewhere")]
    ImplementedElsewhere,
    /// The instance behind a Node does not exist. Stopped instances do exist.
    #[error("instance not found")]
    InstanceNotFound,
    /// Anything else.
    #[error("{op}: {message}")]
    Failed {
        /// Where it failed, e.g. `aws/nlb.ensure_target_group`; also a bounded metric label.
        op: &'static str,
        message: String,
        retry: Retry,
        /// A short, bounded classification for metrics and event reasons (`throttled`,
        /// `invalid_config`, `not_found`, ...).
        kind: &'static str,
    },
}

impl CloudError {
    /// A failure worth retrying with backoff.
    pub fn transient(op: &'static str, message: impl Into<String>) -> Self {
        Self::Failed { op, message: message.into(), retry: Retry::Backoff, kind: "transient" }
    }

    /// A failure that needs a change of input (configuration, annotations) to go away.
    pub fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Self::Failed { op, message: message.into(), retry: Retry::Never, kind: "invalid_config" }
    }

    /// Not done yet (e.g. a dependency still in use): come back after `delay`.
    pub fn retry_after(op: &'static str, message: impl Into<String>, delay: Duration) -> Self {
        Self::Failed { op, message: message.into(), retry: Retry::After(delay), kind: "pending" }
    }

    /// Over an AWS quota (rules per security group, ...): nothing was changed, and the same
    /// input cannot succeed until something else frees room; looked at again after `delay`.
    pub fn over_quota(op: &'static str, message: impl Into<String>, delay: Duration) -> Self {
        Self::Failed { op, message: message.into(), retry: Retry::After(delay), kind: "quota_exceeded" }
    }

    pub fn retry(&self) -> Retry {
        match self {
            Self::ImplementedElsewhere => Retry::Never,
            Self::InstanceNotFound => Retry::Backoff,
            Self::Failed { retry, .. } => *retry,
        }
    }

    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ImplementedElsewhere => "implemented_elsewhere",
            Self::InstanceNotFound => "instance_not_found",
            Self::Failed { kind, .. } => kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_know_how_to_retry() {
        assert_eq!(CloudError::transient("x", "boom").retry(), Retry::Backoff);
        assert_eq!(CloudError::invalid("x", "bad").retry(), Retry::Never);
        let later = CloudError::retry_after("x", "in use", Duration::from_secs(30));
        assert_eq!(later.retry(), Retry::After(Duration::from_secs(30)));
        assert_eq!(later.kind(), "pending");
        assert_eq!(CloudError::ImplementedElsewhere.retry(), Retry::Never);
        assert_eq!(CloudError::transient("aws/ec2.describe", "boom").to_string(), "aws/ec2.describe: boom");
    }
}
