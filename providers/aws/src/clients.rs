//! Building the AWS SDK clients: region, credentials (the SDK's default chain; `RoleARN`
//! assumed through STS), endpoints (`AWS_ENDPOINT_URL[_<SERVICE>]` from the environment, as
//! the SDK reads them, or a `[ServiceOverride]`), standard retries and request timeouts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::CloudConfig;

/// Attempts per call, the first included, in the SDK's standard mode (exponential backoff with
/// jitter). Not adaptive mode: measured here, its client-side rate limiter held the first call
/// after two throttles for 45 s, the very worker stall this project exists to avoid; the shared
/// delay in `throttling.rs` slows calls down instead, by at most 2 s.
const MAX_ATTEMPTS: u32 = 5;

pub async fn sdk_config(config: &CloudConfig, region: &str) -> SdkConfig {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
        .load()
        .await;
    match &config.global.role_arn {
        Some(role) => {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("cloud-controller-manager")
                .configure(&base)
                .build()
                .await;
            base.into_builder()
                .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(provider))
                .build()
        }
        None => base,
    }
}

/// The endpoint and signing region a `[ServiceOverride]` sets for `service`, if any.
fn override_of<'a>(config: &'a CloudConfig, service: &str, region: &str) -> Option<(&'a str, Region)> {
    config.override_for(service, region).map(|o| (o.url.as_str(), Region::new(o.signing_region.clone())))
}

pub fn ec2(sdk: &SdkConfig, config: &CloudConfig, region: &str) -> aws_sdk_ec2::Client {
    let mut builder = aws_sdk_ec2::config::Builder::from(sdk);
    if let Some((url, signing)) = override_of(config, "EC2", region) {
        builder = builder.endpoint_url(url).region(signing);
    }
    aws_sdk_ec2::Client::from_conf(builder.build())
}

pub fn elb(sdk: &SdkConfig, config: &CloudConfig, region: &str) -> aws_sdk_elasticloadbalancing::Client {
    let mut builder = aws_sdk_elasticloadbalancing::config::Builder::from(sdk);
    if let Some((url, signing)) = override_of(config, "Elastic Load Balancing", region) {
        builder = builder.endpoint_url(url).region(signing);
    }
    aws_sdk_elasticloadbalancing::Client::from_conf(builder.build())
}

pub fn elbv2(sdk: &SdkConfig, config: &CloudConfig, region: &str) -> aws_sdk_elasticloadbalancingv2::Client {
    let mut builder = aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk);
    if let Some((url, signing)) = override_of(config, "Elastic Load Balancing v2", region) {
        builder = builder.endpoint_url(url).region(signing);
    }
    aws_sdk_elasticloadbalancingv2::Client::from_conf(builder.build())
}

/// The IMDS client (IMDSv2 tokens), at a `[ServiceOverride] Service=ec2imds` URL or the SDK's
/// default (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, else 169.254.169.254).
pub fn imds(config: &CloudConfig) -> Result<aws_config::imds::Client, String> {
    let mut builder = aws_config::imds::Client::builder();
    if let Some(o) = config.overrides.iter().find(|o| o.service == "ec2imds") {
        builder = builder.endpoint(&o.url).map_err(|e| format!("ec2imds override URL {}: {e}", o.url))?;
    }
    Ok(builder.build())
}
