//! HTTPS on `--secure-port`, as upstream serves it: TLS with the given certificate or, without
//! one, a self-signed one made at start; requests to paths outside
//! `--authorization-always-allow-paths` are authenticated with a `TokenReview` and authorized
//! with a `SubjectAccessReview` against the cluster (delegated authentication and
//! authorization), each answer kept for 10 s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long an authentication or authorization answer is reused (upstream's default TTLs).
const CACHE_TTL: Duration = Duration::from_secs(10);
/// At most this many answers of each kind are kept (random tokens cannot grow the cache).
const CACHE_MAX: usize = 4096;
/// How long a client may take to send a request's head (upstream serves with 32 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(32);
/// A connection is closed (gracefully, between requests) after this long.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// What `--secure-port` serves with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingConfig {
    pub addr: SocketAddr,
    /// `--tls-cert-file` and `--tls-private-key-file`; self-signed when `None`.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// `--authentication-kubeconfig`, `--authorization-kubeconfig`: the cluster asked to review
    /// tokens and access; when empty, the in-cluster config, else the CCM's own `--kubeconfig`.
    pub authentication_kubeconfig: Option<PathBuf>,
    pub authorization_kubeconfig: Option<PathBuf>,
    /// `--authorization-always-allow-paths`: served to anyone (a trailing `*` matches a prefix).
    pub always_allow_paths: Vec<String>,
}

impl ServingConfig {
    fn always_allowed(&self, path: &str) -> bool {
        self.always_allow_paths.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        })
    }
}

/// The TLS server config: the files' certificate chain and key, or a self-signed certificate
/// for `localhost`, the bind address and 127.0.0.1, made now and kept in memory only.
fn tls_config(config: &ServingConfig) -> Result<rustls::ServerConfig> {
    let (chain, key) = match &config.tls_files {
        Some((cert, key)) => {
            let read =
                |path: &PathBuf, flag: &str| std::fs::read(path).with_context(|| format!("{flag} {}", path.display()));
            let chain = CertificateDer::pem_slice_iter(&read(cert, "--tls-cert-file")?)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--tls-cert-file {}: not a PEM certificate", cert.display()))?;
            anyhow::ensure!(!chain.is_empty(), "--tls-cert-file {}: no certificate in it", cert.display());
            let key = PrivateKeyDer::from_pem_slice(&read(key, "--tls-private-key-file")?)
                .with_context(|| format!("--tls-private-key-file {}: not a PEM private key", key.display()))?;
            (chain, key)
        }
        None => {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            if !config.addr.ip().is_unspecified() {
                names.push(config.addr.ip().to_string());
            }
            let made = rcgen::generate_simple_self_signed(names).context("making a self-signed certificate")?;
            let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
                .map_err(|e| anyhow::anyhow!("self-signed key: {e}"))?;
            (vec![made.cert.der().clone()], key)
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the serving certificate and key do not match")?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Who a request comes from, as the token review said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    name: String,
    uid: Option<String>,
    groups: Vec<String>,
    extra: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

impl User {
    fn anonymous() -> Self {
        Self { name: "system:anonymous".into(), uid: None, groups: vec!["system:unauthenticated".into()], extra: None }
    }
    fn from_info(info: UserInfo) -> Self {
        Self {
            name: info.username.unwrap_or_default(),
            uid: info.uid,
            groups: info.groups.unwrap_or_default(),
            extra: info.extra,
        }
    }
}

/// An authorization question: the whole user (name, uid, groups, extra), verb, path.
type AccessKey = (String, String, Vec<String>, String, String, String);

/// Delegated authentication and authorization, with answers cached for [`CACHE_TTL`].
struct Delegation {
    config: ServingConfig,
    reviews: Api<TokenReview>,
    access: Api<SubjectAccessReview>,
    tokens: Mutex<HashMap<String, (Instant, Option<User>)>>,
    decisions: Mutex<HashMap<AccessKey, (Instant, bool)>>,
}

impl Delegation {
    async fn user(&self, token: &str) -> Result<Option<User>> {
        // Kept by the token's digest, never the token itself.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let key: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if let Some((at, user)) = self.tokens.lock().expect("lock").get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(user.clone());
        }
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), ..Default::default() },
            ..Default::default()
        };
        let answer = self.reviews.create(&PostParams::default(), &review).await.context("TokenReview")?;
        let status = answer.status.unwrap_or_default();
        let user = (status.authenticated == Some(true)).then(|| User::from_info(status.user.unwrap_or_default()));
        let mut tokens = self.tokens.lock().expect("lock");
        if tokens.len() >= CACHE_MAX {
            tokens.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if tokens.len() >= CACHE_MAX {
                tokens.clear();
            }
        }
        tokens.insert(key, (Instant::now(), user.clone()));
        Ok(user)
    }

    async fn allowed(&self, user: &User, verb: &str, path: &str) -> Result<bool> {
        let key = (
            user.name.clone(),
            user.uid.clone().unwrap_or_default(),
            user.groups.clone(),
            format!("{:?}", user.extra),
            verb.to_string(),
            path.to_string(),
        );
        if let Some((at, allowed)) = self.decisions.lock().expect("lock").get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(*allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: user.extra.clone(),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_string()),
                    verb: Some(verb.to_string()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = self.access.create(&PostParams::default(), &review).await.context("SubjectAccessReview")?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        let mut decisions = self.decisions.lock().expect("lock");
        if decisions.len() >= CACHE_MAX {
            decisions.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if decisions.len() >= CACHE_MAX {
                decisions.clear();
            }
        }
        decisions.insert(key, (Instant::now(), allowed));
        Ok(allowed)
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
}

async fn guard(State(delegation): State<Arc<Delegation>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if delegation.config.always_allowed(&path) {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|scheme| scheme.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let user = match bearer {
        None => User::anonymous(),
        Some(token) => match delegation.user(token).await {
            Ok(Some(user)) => user,
            Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "Unauthorized\n".into()),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "authenticating a request to {path} failed");
                return refuse(StatusCode::UNAUTHORIZED, "Unauthorized\n".into());
            }
        },
    };
    let verb = request.method().as_str().to_ascii_lowercase();
    match delegation.allowed(&user, &verb, &path).await {
        Ok(true) => next.run(request).await,
        Ok(false) => {
            refuse(StatusCode::FORBIDDEN, format!("forbidden: User \"{}\" cannot {verb} path \"{path}\"\n", user.name))
        }
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "authorizing a request to {path} failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error: authorization failed\n".into())
        }
    }
}

/// The client that reviews tokens or access: the given kubeconfig, else the in-cluster config,
/// else the CCM's own.
async fn review_client(path: Option<&PathBuf>, own: &kube::Client) -> Result<kube::Client> {
    let config = match path {
        Some(path) => {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => match kube::Config::incluster() {
            Ok(config) => config,
            Err(_) => return Ok(own.clone()),
        },
    };
    Ok(kube::Client::try_from(config)?)
}

/// Binds `config.addr` and serves `app` over TLS behind the delegation guard. Returns the
/// bound address; serving goes on in the background.
pub async fn serve(config: ServingConfig, app: axum::Router, own: &kube::Client) -> Result<SocketAddr> {
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&config)?));
    let delegation = Arc::new(Delegation {
        reviews: Api::all(review_client(config.authentication_kubeconfig.as_ref(), own).await?),
        access: Api::all(review_client(config.authorization_kubeconfig.as_ref(), own).await?),
        config: config.clone(),
        tokens: Mutex::default(),
        decisions: Mutex::default(),
    });
    let app = app.layer(axum::middleware::from_fn_with_state(delegation, guard));
    let listener =
        tokio::net::TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accepting a connection on the serving port");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (tls, app) = (tls.clone(), app.clone());
            tokio::spawn(async move {
                // A client that never finishes its handshake holds only its own task.
                let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        use tower::ServiceExt;
                        app.oneshot(req.map(Body::new)).await
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                // A request's head must come within HEADER_TIMEOUT (also after an idle
                // keep-alive), and a connection ends gracefully after CONNECTION_LIFETIME: a
                // client that connects and sends nothing holds nothing for long.
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(io, service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = tokio::time::sleep(CONNECTION_LIFETIME) => {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(HEADER_TIMEOUT, connection).await;
                    }
                }
            });
        }
    });
    Ok(bound)
}
