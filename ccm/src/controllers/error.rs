use cloud_provider::{CloudError, Retry};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

impl ReconcileError {
    pub fn retry(&self) -> Retry {
        match self {
            Self::Cloud(err) => err.retry(),
            Self::Kube(_) => Retry::Backoff,
            Self::Invalid(_) => Retry::Never,
        }
    }

    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cloud(err) => err.kind(),
            Self::Kube(_) => "kube_api",
            Self::Invalid(_) => "invalid",
        }
    }
}
