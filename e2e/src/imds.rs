//! An EC2 instance-metadata service (IMDSv2) for one seeded instance.
//!
//! moto's IMDS answers the token request without the TTL header the Rust SDK requires, and
//! its values are fixed, not tied to the instances a test created. This stub serves the
//! instance it is given, requires a session token on every read (IMDSv2 only, as hardened
//! instances are configured), and counts the reads so a test can assert that a mode that
//! needs no IMDS really makes none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// What IMDS says about an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceIdentity {
    pub account_id: String,
    pub instance_id: String,
    pub instance_type: String,
    pub image_id: String,
    pub region: String,
    pub availability_zone: String,
    pub availability_zone_id: Option<String>,
    pub private_ip: String,
    pub private_dns: String,
    pub public_ip: Option<String>,
    pub public_dns: Option<String>,
    pub mac: String,
    pub vpc_id: String,
    pub vpc_cidr: String,
    pub subnet_id: String,
    pub subnet_cidr: String,
}

struct Stub {
    identity: InstanceIdentity,
    token: String,
    reads: AtomicUsize,
    tokens: AtomicUsize,
}

/// A running IMDS stub; stops when dropped.
pub struct ImdsStub {
    endpoint: String,
    stub: Arc<Stub>,
    server: tokio::task::JoinHandle<()>,
}

impl ImdsStub {
    pub async fn start(identity: InstanceIdentity) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let token = format!("e2e-token-{:016x}", fastrand::u64(..));
        let stub = Arc::new(Stub { identity, token, reads: AtomicUsize::new(0), tokens: AtomicUsize::new(0) });
        let app = axum::Router::new().fallback(serve).with_state(stub.clone());
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "IMDS stub stopped");
            }
        });
        Ok(Self { endpoint, stub, server })
    }

    /// The URL to configure as the IMDS endpoint (`AWS_EC2_METADATA_SERVICE_ENDPOINT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Metadata reads served so far (token requests not included).
    pub fn reads(&self) -> usize {
        self.stub.reads.load(Ordering::SeqCst)
    }

    /// Session tokens handed out so far.
    pub fn tokens_issued(&self) -> usize {
        self.stub.tokens.load(Ordering::SeqCst)
    }
}

impl Drop for ImdsStub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(State(stub): State<Arc<Stub>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let Some(ttl) = headers.get(TTL_HEADER).cloned() else {
            return (StatusCode::BAD_REQUEST, "missing token TTL").into_response();
        };
        stub.tokens.fetch_add(1, Ordering::SeqCst);
        return ([(TTL_HEADER, ttl)], stub.token.clone()).into_response();
    }
    if method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) != Some(stub.token.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    stub.reads.fetch_add(1, Ordering::SeqCst);
    match lookup(&stub.identity, path) {
        Some(body) => body.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn lookup(id: &InstanceIdentity, path: &str) -> Option<String> {
    if path == "/latest/dynamic/instance-identity/document" {
        return Some(identity_document(id));
    }
    let key = path.strip_prefix("/latest/meta-data/")?;
    let mac_prefix = format!("network/interfaces/macs/{}/", id.mac);
    if let Some(field) = key.strip_prefix(&mac_prefix) {
        return match field {
            "device-number" => Some("0".into()),
            "vpc-id" => Some(id.vpc_id.clone()),
            "subnet-id" => Some(id.subnet_id.clone()),
            "local-ipv4s" => Some(id.private_ip.clone()),
            "local-hostname" => Some(id.private_dns.clone()),
            "vpc-ipv4-cidr-block" | "vpc-ipv4-cidr-blocks" => Some(id.vpc_cidr.clone()),
            "subnet-ipv4-cidr-block" => Some(id.subnet_cidr.clone()),
            "public-ipv4s" => id.public_ip.clone(),
            "mac" => Some(id.mac.clone()),
            _ => None,
        };
    }
    match key {
        "instance-id" => Some(id.instance_id.clone()),
        "instance-type" => Some(id.instance_type.clone()),
        "ami-id" => Some(id.image_id.clone()),
        "local-ipv4" => Some(id.private_ip.clone()),
        "local-hostname" | "hostname" => Some(id.private_dns.clone()),
        "public-ipv4" => id.public_ip.clone(),
        "public-hostname" => id.public_dns.clone(),
        "mac" => Some(id.mac.clone()),
        "placement/availability-zone" => Some(id.availability_zone.clone()),
        "placement/availability-zone-id" => id.availability_zone_id.clone(),
        "placement/region" => Some(id.region.clone()),
        "network/interfaces/macs" | "network/interfaces/macs/" => Some(format!("{}/", id.mac)),
        _ => None,
    }
}

fn identity_document(id: &InstanceIdentity) -> String {
    serde_json::json!({
        "accountId": id.account_id,
        "architecture": "x86_64",
        "availabilityZone": id.availability_zone,
        "imageId": id.image_id,
        "instanceId": id.instance_id,
        "instanceType": id.instance_type,
        "pendingTime": "2026-01-01T00:00:00Z",
        "privateIp": id.private_ip,
        "region": id.region,
        "version": "2017-09-30",
    })
    .to_string()
}
