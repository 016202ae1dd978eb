use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;

/// An AWS SDK config aimed at `endpoint` (the proxy, or the emulator itself) with dummy
/// credentials; the emulator does not check signatures. Retries are the SDK's standard mode
/// with short backoffs, so an injected throttle is retried quickly.
pub async fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "ccm-e2e"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(500)),
        )
        .load()
        .await
}

/// The three AWS APIs a cloud-controller-manager uses.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancing::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
}

impl AwsClients {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            ec2: aws_sdk_ec2::Client::new(config),
            elb: aws_sdk_elasticloadbalancing::Client::new(config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(config),
        }
    }

    pub async fn connect(endpoint: &str, region: &str) -> Self {
        Self::new(&sdk_config(endpoint, region).await)
    }
}
