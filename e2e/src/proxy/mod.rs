//! The fault-injecting, call-recording AWS proxy.
//!
//! The code under test is pointed at [`AwsProxy::endpoint`] instead of the emulator. Every
//! request is identified ([`CallId`]), recorded, checked against the injected [`FaultRule`]s
//! and, unless a rule answers it with an error, forwarded unchanged to the emulator. Tests
//! read the record to assert AWS call budgets ("100 joining nodes cost at most 5
//! DescribeInstances") and call order, and inject throttling, 5xx errors and latency.

mod call;
mod fault;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use call::{CallId, Service};
pub use fault::{Fault, FaultRule};

/// One request the proxy saw, its form parameters, and the fault it injected, if any.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call: CallId,
    pub fault: Option<Fault>,
    /// The query-protocol parameters (`SubnetMappings.member.1.AllocationId=…`), for tests that
    /// assert what was asked where the emulator's answer would not show it.
    pub params: Vec<(String, String)>,
    /// The request's headers (names lower-case), e.g. to check what credentials signed it.
    pub headers: Vec<(String, String)>,
    /// When the proxy received it (before any injected latency).
    pub at: std::time::SystemTime,
    /// The error code AWS answered with (`InvalidPermission.Duplicate`, ...), once answered.
    answer: Arc<std::sync::OnceLock<String>>,
}

impl CallRecord {
    /// The error code of the emulator's answer (not of an injected fault), if it was an error.
    pub fn error_code(&self) -> Option<&str> {
        self.answer.get().map(String::as_str)
    }

    /// How many permissions (`IpPermissions.N`) an ingress call carried.
    pub fn permissions(&self) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for (key, _) in &self.params {
            if let Some(rest) = key.strip_prefix("IpPermissions.") {
                seen.insert(rest.split('.').next().unwrap_or_default().to_string());
            }
        }
        seen.len()
    }
}

#[derive(Default)]
struct Record {
    rules: Vec<FaultRule>,
    calls: Vec<CallRecord>,
}

struct Inner {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    record: Mutex<Record>,
}

/// A running proxy; stops when dropped.
pub struct AwsProxy {
    endpoint: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl AwsProxy {
    /// Starts a proxy on a free 127.0.0.1 port that forwards to `upstream` (an `http://` URL).
    pub async fn start(upstream: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: http_client(),
            record: Mutex::default(),
        });
        let app = axum::Router::new().fallback(forward).with_state(inner.clone());
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "AWS proxy stopped");
            }
        });
        Ok(Self { endpoint, inner, server })
    }

    /// The URL to give the code under test as its AWS endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Adds a fault rule. Latency rules add up; of the error rules that hit a call, the first
    /// added wins.
    pub fn inject(&self, rule: FaultRule) {
        self.record().rules.push(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.record().rules.clear();
    }

    /// Forgets the calls recorded so far (the rules stay).
    pub fn reset_calls(&self) {
        self.record().calls.clear();
    }

    /// Every call so far, in the order they arrived.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.record().calls.clone()
    }

    /// How many `action` calls to `service` arrived, including those answered with a fault.
    pub fn count(&self, service: Service, action: &str) -> usize {
        self.count_where(|r| r.call.service == service && r.call.action == action)
    }

    /// How many `action` calls to `service` were answered with an injected fault.
    pub fn count_faulted(&self, service: Service, action: &str) -> usize {
        self.count_where(|r| r.call.service == service && r.call.action == action && r.fault.is_some())
    }

    pub fn count_where(&self, pred: impl Fn(&CallRecord) -> bool) -> usize {
        self.record().calls.iter().filter(|r| pred(r)).count()
    }

    /// The parameters of every `action` call to `service`, in order.
    pub fn requests(&self, service: Service, action: &str) -> Vec<Vec<(String, String)>> {
        self.record()
            .calls
            .iter()
            .filter(|r| r.call.service == service && r.call.action == action)
            .map(|r| r.params.clone())
            .collect()
    }

    /// The calls that could have changed AWS state (anything but Describe/Get/List), in order.
    pub fn mutating_calls(&self) -> Vec<CallId> {
        self.record().calls.iter().filter(|r| r.call.is_mutating()).map(|r| r.call.clone()).collect()
    }

    /// Calls per `service/action`, for messages and budgets in docs.
    pub fn summary(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in &self.record().calls {
            *out.entry(format!("{}/{}", r.call.service, r.call.action)).or_default() += 1;
        }
        out
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.inner.record.lock().expect("proxy record lock")
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(body) => body,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("reading the request: {err}")).into_response(),
    };
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let call = CallId::parse(parts.uri.query(), &body, authorization);

    let (delay, error, answer) = {
        let mut record = inner.record.lock().expect("proxy record lock");
        let mut delay = Duration::ZERO;
        let mut error = None;
        for rule in &mut record.rules {
            let is_latency = matches!(rule.fault, Fault::Latency(_));
            // Once an error is chosen, later error rules are not consulted (nor counted).
            if (is_latency || error.is_none()) && rule.fires(&call) {
                match rule.fault {
                    Fault::Latency(d) => delay += d,
                    ref fault => error = Some(fault.clone()),
                }
            }
        }
        let params = url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let answer = Arc::new(std::sync::OnceLock::new());
        record.calls.push(CallRecord {
            call: call.clone(),
            fault: error.clone(),
            params,
            headers,
            at: std::time::SystemTime::now(),
            answer: answer.clone(),
        });
        (delay, error, answer)
    };
    tracing::debug!(service = %call.service, action = %call.action, ?error, ?delay, "AWS call");
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(fault) = error {
        let (status, xml) = fault::error_response(&fault, &call.service);
        return Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/xml")
            .body(Body::from(xml))
            .expect("static response parts");
    }

    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("{}{path}", inner.upstream).parse::<Uri>() {
        Ok(uri) => uri,
        Err(err) => return (StatusCode::BAD_GATEWAY, format!("upstream URL: {err}")).into_response(),
    };
    parts.headers.remove(header::HOST);
    match inner.client.request(http::Request::from_parts(parts, Full::new(body))).await {
        Ok(response) if response.status().as_u16() >= 400 => {
            // Errors are small: read the code for the record, then pass the answer on.
            let (parts, body) = response.into_parts();
            let bytes = http_body_util::BodyExt::collect(body).await.map(|b| b.to_bytes()).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            if let Some(code) = text.split("<Code>").nth(1).and_then(|rest| rest.split("</Code>").next()) {
                let _ = answer.set(code.to_string());
            }
            Response::from_parts(parts, Body::from(bytes))
        }
        Ok(response) => response.map(Body::new),
        Err(err) => (StatusCode::BAD_GATEWAY, format!("forwarding to {}: {err}", inner.upstream)).into_response(),
    }
}

fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http()
}

/// POSTs an empty body to a plain-HTTP URL and returns the status (the emulator's admin API).
pub(crate) async fn http_post_empty(url: &str) -> Result<u16> {
    let request = http::Request::post(url).body(Full::new(Bytes::new())).context("building the request")?;
    let response = http_client().request(request).await.with_context(|| format!("POST {url}"))?;
    Ok(response.status().as_u16())
}
