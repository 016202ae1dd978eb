//! Building the AWS SDK clients: region, credentials (the SDK's default chain; `RoleARN`
//! assumed through STS), endpoints (`AWS_ENDPOINT_URL[_<SERVICE>]` from the environment, as
//! the SDK reads them, or a `[ServiceOverride]`), standard retries and request timeouts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use std::sync::Arc;

use crate::calls::{AttemptWatch, Calls};
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
            let provider = AssumeRole::new(&base, role, config.global.source_arn.as_deref());
            base.into_builder()
                .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(provider))
                .build()
        }
        None => base,
    }
}

/// `RoleARN` assumed through STS, as upstream assumes it: with the confused-deputy headers
/// `x-amz-source-account` (the role's account) and, when `SourceARN` is set, `x-amz-source-arn`,
/// which a role's trust policy can require (`aws:SourceAccount`, `aws:SourceArn`). The SDK's
/// identity cache in front of it renews the credentials before they expire.
#[derive(Debug)]
struct AssumeRole {
    sts: aws_sdk_sts::Client,
    role: String,
}

/// Adds the source headers to every STS request.
#[derive(Debug)]
struct SourceHeaders(Vec<(&'static str, String)>);

impl aws_sdk_sts::config::Intercept for SourceHeaders {
    fn name(&self) -> &'static str {
        "SourceHeaders"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_sts::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_sts::config::RuntimeComponents,
        _cfg: &mut aws_sdk_sts::config::ConfigBag,
    ) -> Result<(), aws_sdk_sts::error::BoxError> {
        for (name, value) in &self.0 {
            context.request_mut().headers_mut().insert(*name, value.clone());
        }
        Ok(())
    }
}

/// The headers upstream sends on AssumeRole for `role` and `source_arn`.
pub fn source_headers(role: &str, source_arn: Option<&str>) -> Vec<(&'static str, String)> {
    // arn:partition:iam::<account>:role/<name>
    let account = role.split(':').nth(4).unwrap_or_default().to_string();
    let mut headers = vec![("x-amz-source-account", account)];
    headers.extend(source_arn.filter(|a| !a.is_empty()).map(|a| ("x-amz-source-arn", a.to_string())));
    headers
}

impl AssumeRole {
    fn new(base: &SdkConfig, role: &str, source_arn: Option<&str>) -> Self {
        let config = aws_sdk_sts::config::Builder::from(base)
            .interceptor(SourceHeaders(source_headers(role, source_arn)))
            .build();
        Self { sts: aws_sdk_sts::Client::from_conf(config), role: role.to_string() }
    }

    async fn assume(&self) -> aws_credential_types::provider::Result {
        use aws_credential_types::provider::error::CredentialsError;
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role)
            .role_session_name("cloud-controller-manager")
            .send()
            .await
            .map_err(CredentialsError::provider_error)?;
        let c =
            out.credentials().ok_or_else(|| CredentialsError::provider_error("AssumeRole returned no credentials"))?;
        let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
        Ok(aws_credential_types::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "AssumeRole",
        ))
    }
}

impl aws_credential_types::provider::ProvideCredentials for AssumeRole {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(self.assume())
    }
}

/// A `[ServiceOverride]`'s endpoint: its URL, signed for its `SigningRegion` and, when given,
/// its `SigningName` (upstream passes both to the SDK's SigV4 signer).
#[derive(Debug, Clone)]
struct Override {
    url: String,
    signing_region: String,
    signing_name: Option<String>,
}

impl Override {
    fn of(config: &CloudConfig, service: &str, region: &str) -> Option<Self> {
        config.override_for(service, region).map(|o| Self {
            url: o.url.clone(),
            signing_region: o.signing_region.clone(),
            signing_name: o.signing_name.clone().filter(|n| !n.is_empty()),
        })
    }

    /// The endpoint, with the signing settings where the SDK's signer reads them: the
    /// `authSchemes` property an endpoint resolver returns.
    fn endpoint(&self) -> aws_smithy_types::endpoint::Endpoint {
        use aws_smithy_types::Document;
        let mut scheme = std::collections::HashMap::new();
        scheme.insert("name".to_string(), Document::String("sigv4".into()));
        scheme.insert("signingRegion".to_string(), Document::String(self.signing_region.clone()));
        if let Some(name) = &self.signing_name {
            scheme.insert("signingName".to_string(), Document::String(name.clone()));
        }
        aws_smithy_types::endpoint::Endpoint::builder()
            .url(self.url.clone())
            .property("authSchemes", Document::Array(vec![Document::Object(scheme)]))
            .build()
    }
}

macro_rules! resolves_endpoints {
    ($($sdk:ident),*) => {$(
        impl $sdk::config::endpoint::ResolveEndpoint for Override {
            fn resolve_endpoint<'a>(
                &'a self,
                _params: &'a $sdk::config::endpoint::Params,
            ) -> $sdk::config::endpoint::EndpointFuture<'a> {
                $sdk::config::endpoint::EndpointFuture::ready(Ok(self.endpoint()))
            }
        }
    )*};
}

resolves_endpoints!(aws_sdk_ec2, aws_sdk_elasticloadbalancing, aws_sdk_elasticloadbalancingv2);

pub fn ec2(sdk: &SdkConfig, config: &CloudConfig, region: &str, calls: &Arc<Calls>) -> aws_sdk_ec2::Client {
    let mut builder = aws_sdk_ec2::config::Builder::from(sdk).interceptor(AttemptWatch(calls.clone()));
    if let Some(o) = Override::of(config, "EC2", region) {
        builder = builder.region(Region::new(o.signing_region.clone())).endpoint_resolver(o);
    }
    aws_sdk_ec2::Client::from_conf(builder.build())
}

pub fn elb(
    sdk: &SdkConfig,
    config: &CloudConfig,
    region: &str,
    calls: &Arc<Calls>,
) -> aws_sdk_elasticloadbalancing::Client {
    let mut builder = aws_sdk_elasticloadbalancing::config::Builder::from(sdk).interceptor(AttemptWatch(calls.clone()));
    if let Some(o) = Override::of(config, "Elastic Load Balancing", region) {
        builder = builder.region(Region::new(o.signing_region.clone())).endpoint_resolver(o);
    }
    aws_sdk_elasticloadbalancing::Client::from_conf(builder.build())
}

pub fn elbv2(
    sdk: &SdkConfig,
    config: &CloudConfig,
    region: &str,
    calls: &Arc<Calls>,
) -> aws_sdk_elasticloadbalancingv2::Client {
    let mut builder =
        aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk).interceptor(AttemptWatch(calls.clone()));
    if let Some(o) = Override::of(config, "Elastic Load Balancing v2", region) {
        builder = builder.region(Region::new(o.signing_region.clone())).endpoint_resolver(o);
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
