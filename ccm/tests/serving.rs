//! `--secure-port` serves like upstream: HTTPS (a self-signed certificate unless one is given),
//! `/healthz`, `/readyz` and `/livez` to anyone, everything else only to a bearer token the
//! real apiserver authenticates (TokenReview) and authorizes (SubjectAccessReview).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use ccm_e2e::ControlPlane;
use ccm_e2e::https::{get, peer_certificate, status};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use support::eventually;

/// Our binary with the fake cloud and the default serving flags (plus `extra`).
struct Serving {
    child: Child,
    port: u16,
}

impl Serving {
    fn start(kubeconfig: &std::path::Path, extra: &[String]) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::env::temp_dir().join(format!("ccm-serving-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_cloud-controller-manager"))
            .args(["--cloud-provider=fake", "--controllers=cloud-node", "--leader-elect=false"])
            .args(["--bind-address=127.0.0.1", &format!("--secure-port={port}")])
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting cloud-controller-manager")?;
        Ok(Self { child, port })
    }

    async fn up(&self) -> Result<()> {
        eventually("serving", Duration::from_secs(20), || async {
            Ok(get(self.port, "/healthz", None).ok().filter(|r| status(r) == 200).map(|_| ()))
        })
        .await
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn token_of(client: &kube::Client, account: &str) -> Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some(account.into()), ..Default::default() },
        ..Default::default()
    };
    if accounts.get_opt(account).await?.is_none() {
        accounts.create(&PostParams::default(), &sa).await?;
    }
    let request = TokenRequest {
        metadata: ObjectMeta::default(),
        spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() }),
        status: None,
    };
    accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .context("no token")
}

/// A reader of `/metrics`, as a Prometheus ServiceAccount is given one.
async fn grant_metrics(client: &kube::Client, account: &str) -> Result<()> {
    let name = "ccm-serving-test-metrics-reader";
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let _ = roles.delete(name, &DeleteParams::default()).await;
    let _ = bindings.delete(name, &DeleteParams::default()).await;
    let role = ClusterRole {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        rules: Some(vec![PolicyRule {
            non_resource_urls: Some(vec!["/metrics".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    roles.create(&PostParams::default(), &role).await?;
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: name.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.into(),
            namespace: Some("default".into()),
            ..Default::default()
        }]),
    };
    bindings.create(&PostParams::default(), &binding).await?;
    Ok(())
}

#[tokio::test]
async fn metrics_need_a_token_the_cluster_authorizes_and_health_is_open() -> Result<()> {
    let plane = ControlPlane::shared();
    let client = plane.client().await?;
    let reader = token_of(&client, "serving-test-reader").await?;
    let nobody = token_of(&client, "serving-test-nobody").await?;
    grant_metrics(&client, "serving-test-reader").await?;

    let ccm = Serving::start(plane.kubeconfig_path(), &[])?;
    ccm.up().await?;
    for open in ["/healthz", "/readyz", "/livez"] {
        assert_eq!(status(&get(ccm.port, open, None)?), 200, "{open} without a token");
    }
    // RBAC reaches the authorizer within a moment of the binding.
    let allowed = eventually("the reader's token allowed", Duration::from_secs(20), || async {
        Ok(get(ccm.port, "/metrics", Some(&reader)).ok().filter(|r| status(r) == 200))
    })
    .await?;
    assert!(allowed.contains("cloud_controller_manager_leader"), "{allowed}");

    let forbidden = get(ccm.port, "/metrics", Some(&nobody))?;
    assert_eq!(status(&forbidden), 403, "{forbidden}");
    assert!(forbidden.contains("system:serviceaccount:default:serving-test-nobody"), "{forbidden}");
    assert!(forbidden.contains(r#"cannot get path "/metrics""#), "{forbidden}");
    let anonymous = get(ccm.port, "/metrics", None)?;
    assert_eq!(status(&anonymous), 403, "{anonymous}");
    assert!(anonymous.contains("system:anonymous"), "{anonymous}");
    let unknown = get(ccm.port, "/metrics", Some("not-a-token"))?;
    assert_eq!(status(&unknown), 401, "{unknown}");
    // Under the same rules: a path outside the always-allowed ones.
    assert_eq!(status(&get(ccm.port, "/healthz/cloud-node", Some(&nobody))?), 403);

    // Plain HTTP gets no HTTP answer: the port speaks TLS only.
    let plain = {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", ccm.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(tcp, "GET /healthz HTTP/1.0\r\n\r\n")?;
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out);
        out
    };
    assert!(!plain.starts_with(b"HTTP/"), "plain HTTP answered: {:?}", String::from_utf8_lossy(&plain));

    // --authorization-always-allow-paths opens a path to anyone.
    let open =
        Serving::start(plane.kubeconfig_path(), &["--authorization-always-allow-paths=/healthz,/metrics".to_string()])?;
    open.up().await?;
    assert_eq!(status(&get(open.port, "/metrics", None)?), 200);
    // The rest still asks the apiserver (whose default RBAC lets anyone read /readyz, but not
    // this path).
    assert_eq!(status(&get(open.port, "/healthz/cloud-node", None)?), 403, "not in the list");
    Ok(())
}

#[tokio::test]
async fn a_given_certificate_is_served_and_a_bad_one_stops_the_start() -> Result<()> {
    let plane = ControlPlane::shared();
    let dir = tempfile::tempdir()?;
    let made = rcgen::generate_simple_self_signed(vec!["ccm.example".to_string()])?;
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    let files = [format!("--tls-cert-file={}", cert.display()), format!("--tls-private-key-file={}", key.display())];

    let ccm = Serving::start(plane.kubeconfig_path(), &files)?;
    ccm.up().await?;
    assert_eq!(peer_certificate(ccm.port)?, made.cert.der().to_vec(), "the given certificate is served");

    // A key that is not the certificate's: the start fails and says so.
    let other = rcgen::generate_simple_self_signed(vec!["other.example".to_string()])?;
    std::fs::write(&key, other.signing_key.serialize_pem())?;
    let out = Command::new(env!("CARGO_BIN_EXE_cloud-controller-manager"))
        .args(["--cloud-provider=fake", "--controllers=cloud-node", "--leader-elect=false"])
        .args(["--bind-address=127.0.0.1", "--secure-port=0"])
        .arg(format!("--kubeconfig={}", plane.kubeconfig_path().display()))
        .args(&files)
        .env("NO_COLOR", "1")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a mismatched key: {stderr}");
    assert!(stderr.contains("do not match"), "{stderr}");
    Ok(())
}
