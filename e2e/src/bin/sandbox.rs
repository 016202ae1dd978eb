//! The sandbox: a real kube-apiserver, a few Nodes as kubelets register them, the
//! cloud-controller-manager binary, and an example LoadBalancer Service — printing, as it
//! happens, what the controllers do, until Ctrl-C. Run it with `e2e/sandbox.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ccm_e2e::{ControlPlane, NodeRegistration, UNINITIALIZED_TAINT};
use k8s_openapi::api::core::v1::{Event, Node, Service};
use kube::api::{Api, ListParams, PostParams};

struct Options {
    provider: String,
    nodes: usize,
    service: PathBuf,
    until_ready: Option<Duration>,
}

fn usage() -> ! {
    eprintln!(
        "usage: sandbox [--cloud-provider fake] [--nodes N] [--service FILE] [--until-ready SECONDS]\n\
         \n  --until-ready  exit 0 once every Node is initialized and the Service has a load balancer\n                 (exit 1 if that takes longer than SECONDS); without it, run until Ctrl-C"
    );
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut options = Options {
        provider: "fake".into(),
        nodes: 3,
        service: ccm_e2e::repo_root().join("manifests/examples/service-clb.yaml"),
        until_ready: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--cloud-provider" => options.provider = value(),
            "--nodes" => options.nodes = value().parse().unwrap_or_else(|_| usage()),
            "--service" => options.service = PathBuf::from(value()),
            "--until-ready" => {
                options.until_ready = Some(Duration::from_secs(value().parse().unwrap_or_else(|_| usage())))
            }
            _ => usage(),
        }
    }
    options
}

struct CcmProcess(Child);

impl Drop for CcmProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..150 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_options();
    if options.provider != "fake" {
        bail!(
            "--cloud-provider {}: this build's sandbox supports `fake` (the AWS provider is not built yet)",
            options.provider
        );
    }
    ccm_e2e::init_crypto();
    let ccm_binary = std::env::current_exe()?.with_file_name("cloud-controller-manager");
    if !ccm_binary.exists() {
        bail!("{} is missing: run the sandbox through e2e/sandbox.sh, which builds it", ccm_binary.display());
    }

    println!("==> starting a real kube-apiserver + etcd (e2e/apiserver)");
    let plane = ControlPlane::start()?;
    let kubeconfig = plane.kubeconfig_path().to_path_buf();
    let client = plane.client().await?;

    println!(
        "==> registering {} Nodes as kubelets with --cloud-provider=external do (tainted, uninitialized)",
        options.nodes
    );
    for i in 0..options.nodes {
        NodeRegistration::named(format!("sandbox-node-{i}"))
            .with_internal_ip(format!("10.0.0.{}", 10 + i))
            .with_pod_cidr(format!("10.244.{i}.0/24"))
            .register(&client)
            .await?;
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log_path = std::env::temp_dir().join(format!("ccm-sandbox-{}.log", std::process::id()));
    println!(
        "==> starting cloud-controller-manager --cloud-provider={} (log: {})",
        options.provider,
        log_path.display()
    );
    let ccm = CcmProcess(
        Command::new(&ccm_binary)
            .arg(format!("--cloud-provider={}", options.provider))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--cluster-cidr=10.244.0.0/16", "--bind-address=127.0.0.1", "--node-monitor-period=2s"])
            .arg(format!("--secure-port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()
            .context("starting cloud-controller-manager")?,
    );

    let text =
        std::fs::read_to_string(&options.service).with_context(|| format!("reading {}", options.service.display()))?;
    let service: Service =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", options.service.display()))?;
    let namespace = service.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    services.create(&PostParams::default(), &service).await?;
    println!(
        "==> applied {} ({namespace}/{})",
        options.service.display(),
        service.metadata.name.clone().unwrap_or_default()
    );

    println!("\nTo look around while it runs:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes -o wide; kubectl get svc -A; kubectl get events -A");
    println!("  curl -s http://127.0.0.1:{port}/metrics | grep -v '^#'");
    println!("Ctrl-C stops everything this started.\n");

    let started = Instant::now();
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_events = std::collections::BTreeSet::new();
    loop {
        let ready = show_changes(&client, &mut shown, &mut seen_events).await?;
        if let Some(limit) = options.until_ready {
            if ready {
                println!(
                    "\nsandbox: every Node initialized and the Service has a load balancer after {:?}",
                    started.elapsed()
                );
                break;
            }
            if started.elapsed() > limit {
                bail!("not ready within {limit:?}; see {}", log_path.display());
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    println!("==> stopping cloud-controller-manager and the apiserver");
    drop(ccm);
    drop(plane);
    Ok(())
}

/// Prints what changed since the last call; true once every Node is initialized and every
/// LoadBalancer Service has an ingress.
async fn show_changes(
    client: &kube::Client,
    shown: &mut BTreeMap<String, String>,
    seen_events: &mut std::collections::BTreeSet<String>,
) -> Result<bool> {
    let mut ready = true;
    for node in Api::<Node>::all(client.clone()).list(&ListParams::default()).await? {
        let name = node.metadata.name.clone().unwrap_or_default();
        let spec = node.spec.clone().unwrap_or_default();
        let tainted = spec.taints.unwrap_or_default().iter().any(|t| t.key == UNINITIALIZED_TAINT);
        ready &= !tainted;
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let addresses: Vec<String> =
            status.addresses.unwrap_or_default().into_iter().map(|a| format!("{}={}", a.type_, a.address)).collect();
        let network = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "NetworkUnavailable")
            .map(|c| c.reason.unwrap_or_default())
            .unwrap_or_else(|| "-".into());
        let summary = format!(
            "{} providerID={} zone={} type={} route={} addresses=[{}]",
            if tainted { "UNINITIALIZED" } else { "initialized" },
            spec.provider_id.unwrap_or_else(|| "-".into()),
            labels.get("topology.kubernetes.io/zone").map_or("-", String::as_str),
            labels.get("node.kubernetes.io/instance-type").map_or("-", String::as_str),
            network,
            addresses.join(" "),
        );
        print_change(shown, &format!("node/{name}"), summary);
    }
    for svc in Api::<Service>::all(client.clone()).list(&ListParams::default()).await? {
        if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
            continue;
        }
        let key = format!(
            "service/{}/{}",
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default()
        );
        let ingress: Vec<String> = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.hostname.or(i.ip))
            .collect();
        ready &= !ingress.is_empty();
        let finalizers = svc.metadata.finalizers.unwrap_or_default().join(",");
        let summary = format!(
            "external={} finalizers=[{finalizers}]",
            if ingress.is_empty() { "<pending>".into() } else { ingress.join(",") }
        );
        print_change(shown, &key, summary);
    }
    let events = Api::<Event>::all(client.clone()).list(&ListParams::default()).await?;
    for event in events {
        let id = event.metadata.uid.clone().unwrap_or_default();
        let source = event.reporting_component.clone().filter(|s| !s.is_empty()).unwrap_or_default();
        if source.is_empty() || !seen_events.insert(id) {
            continue;
        }
        let object = event.involved_object;
        println!(
            "  event  {:<8} {:<22} {}/{}: {}",
            event.type_.unwrap_or_default(),
            event.reason.unwrap_or_default(),
            object.kind.unwrap_or_default().to_lowercase(),
            object.name.unwrap_or_default(),
            event.message.unwrap_or_default()
        );
    }
    Ok(ready)
}

fn print_change(shown: &mut BTreeMap<String, String>, key: &str, summary: String) {
    if shown.get(key) != Some(&summary) {
        println!("  {key:<32} {summary}");
        shown.insert(key.to_string(), summary);
    }
}
