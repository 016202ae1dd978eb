//! The sandbox: a real kube-apiserver, a few Nodes as kubelets register them, the
//! cloud-controller-manager binary, and an example LoadBalancer Service — printing, as it
//! happens, what the controllers do, until Ctrl-C. Run it with `e2e/sandbox.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ccm_e2e::{
    AwsClients, AwsEmulator, AwsProxy, ControlPlane, NodeRegistration, SeedOptions, SeededVpc, UNINITIALIZED_TAINT,
};
use k8s_openapi::api::core::v1::{Event, Node, Service};
use kube::api::{Api, ListParams, PostParams};

struct Options {
    provider: String,
    nodes: usize,
    /// `None` with `--service none`.
    service: Option<PathBuf>,
    until_ready: Option<Duration>,
}

fn usage() -> ! {
    eprintln!(
        "usage: sandbox [--cloud-provider aws|fake] [--nodes N] [--service FILE] [--until-ready SECONDS]\n\
         \n  --service      a Service manifest to apply (default manifests/examples/service-clb.yaml; `none`: no Service)\n  --until-ready  exit 0 once every Node is initialized (and routed, with aws) and the Service has a\n                 load balancer (exit 1 if that takes longer than SECONDS); without it, run until Ctrl-C"
    );
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut options = Options {
        provider: "aws".into(),
        nodes: 3,
        service: Some(ccm_e2e::repo_root().join("manifests/examples/service-clb.yaml")),
        until_ready: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--cloud-provider" => options.provider = value(),
            "--nodes" => options.nodes = value().parse().unwrap_or_else(|_| usage()),
            "--service" => options.service = Some(value()).filter(|v| v != "none").map(PathBuf::from),
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
async fn main() {
    // One line for any error, never a backtrace.
    if let Err(err) = sandbox().await {
        eprintln!("sandbox: {err:#}");
        std::process::exit(1);
    }
}

async fn sandbox() -> Result<()> {
    let options = parse_options();
    if !matches!(options.provider.as_str(), "aws" | "fake") {
        bail!(
            "--cloud-provider {}: the sandbox runs `aws` (against moto or E2E_AWS_ENDPOINT) or `fake`",
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

    let aws = if options.provider == "aws" {
        Some(AwsSandbox::start(options.nodes, options.service.is_some()).await?)
    } else {
        None
    };
    // Whatever happens from here on, an emulator that outlives the sandbox keeps nothing of it.
    let outcome: Result<()> = async {

    println!(
        "==> registering {} Nodes as kubelets with --cloud-provider=external do (tainted, uninitialized)",
        options.nodes
    );
    for i in 0..options.nodes {
        let registration = match &aws {
            Some(aws) => NodeRegistration::for_instance(&aws.vpc.instances[i]),
            None => NodeRegistration::named(format!("sandbox-node-{i}")).with_internal_ip(format!("10.0.0.{}", 10 + i)),
        };
        registration.with_pod_cidr(format!("10.244.{i}.0/24")).register(&client).await?;
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log_path = std::env::temp_dir().join(format!("ccm-sandbox-{}.log", std::process::id()));
    println!(
        "==> starting cloud-controller-manager --cloud-provider={} (log: {})",
        options.provider,
        log_path.display()
    );
    // The flags the controller runs with; `plan` takes the same.
    let mut flags = vec![
        format!("--cloud-provider={}", options.provider),
        format!("--kubeconfig={}", kubeconfig.display()),
        "--cluster-cidr=10.244.0.0/16".to_string(),
    ];
    let mut envs: Vec<(&'static str, String)> = Vec::new();
    if let Some(aws) = &aws {
        flags.push(format!("--cloud-config={}", aws.cloud_config.display()));
        flags.push(format!("--cluster-name={}", aws.vpc.cluster_id));
        envs = aws.env();
    }
    let mut command = Command::new(&ccm_binary);
    // Out of the terminal's process group (Ctrl-C reaches the sandbox alone, which deletes the
    // Service through this CCM, then stops it); dropping `CcmProcess` stops it in any case.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .args(&flags)
        .args(["--bind-address=127.0.0.1", "--node-monitor-period=2s", ccm_e2e::OPEN_METRICS])
        .arg(format!("--secure-port={port}"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?);
    let ccm = CcmProcess(command.spawn().context("starting cloud-controller-manager")?);
    // The fake cloud lives in the controller's memory: another process cannot plan against it.
    let plan = aws.is_some().then(|| PlanCommand { binary: ccm_binary.clone(), flags, envs });

    if let Some(path) = &options.service {
        apply_service(&client, path).await?;
    }

    println!("\nTo look around while it runs:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes -o wide; kubectl get svc -A; kubectl get events -A");
    // Self-signed certificate; /metrics open to anyone here (no token), unlike the default.
    println!("  curl -sk https://127.0.0.1:{port}/metrics | grep -v '^#'");
    if let Some(aws) = &aws {
        println!(
            // AWS_DEFAULT_REGION: the AWS CLI v1 ignores AWS_REGION.
            "  export AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION={REGION}",
            aws.proxy.endpoint(),
        );
        if aws.load_balancers {
            println!(
                "  aws ec2 describe-instances; aws elb describe-load-balancers; aws elbv2 describe-load-balancers"
            );
        } else {
            println!("  aws ec2 describe-instances; aws ec2 describe-route-tables");
        }
    }
    if let Some(plan) = &plan {
        println!("  what it would change now (reads only; exit 0: nothing, 2: changes):");
        println!("    {}", plan.shell());
        println!(
            "  to see a plan with changes, pause the controller first (kill -STOP {0}), edit, plan, then kill -CONT {0}",
            ccm.0.id()
        );
    }
    println!("Ctrl-C stops everything this started.\n");
    // Listening from here on: a Ctrl-C pressed while the loop below is busy (reading the
    // cluster, running the plan) waits for it instead of being lost.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;

    let started = Instant::now();
    let mut planned = false;
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_events = std::collections::BTreeSet::new();
    loop {
        let mut ready = show_changes(&client, &mut shown, &mut seen_events).await?;
        if let Some(aws) = &aws {
            ready &= aws.show_changes(&mut shown).await?;
        }
        if let Some(plan) = plan.as_ref().filter(|_| ready && !planned) {
            planned = true;
            println!("==> everything is up; cloud-controller-manager plan now says:");
            for line in plan.run().await?.lines() {
                println!("    {line}");
            }
        }
        if let Some(limit) = options.until_ready {
            if ready {
                println!(
                    "\nsandbox: ready (every Node initialized{}{}) after {:?}",
                    if aws.is_some() { ", every Node routed" } else { "" },
                    if options.service.is_some() { ", the Service has a load balancer" } else { "" },
                    started.elapsed()
                );
                break;
            }
            if started.elapsed() > limit {
                bail!("not ready within {limit:?}; see {}", log_path.display());
            }
        }
        tokio::select! {
            _ = interrupt.recv() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    if let Some(path) = &options.service {
        delete_service(&client, path, aws.as_ref()).await?;
    }
    println!("==> stopping cloud-controller-manager and the apiserver");
    drop(ccm);
    if let Some(aws) = &aws {
        println!("==> AWS calls made by cloud-controller-manager: {:?}", aws.proxy.summary());
    }
    Ok(())
    }
    .await;
    if let Some(aws) = &aws {
        aws.clean_up().await;
    }
    drop(aws);
    drop(plane);
    outcome
}

/// `cloud-controller-manager plan` with the controller's flags.
struct PlanCommand {
    binary: PathBuf,
    flags: Vec<String>,
    envs: Vec<(&'static str, String)>,
}

impl PlanCommand {
    /// The command line to copy into a shell.
    fn shell(&self) -> String {
        let envs: Vec<String> = self.envs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} {} plan {}", envs.join(" "), self.binary.display(), self.flags.join(" ")).trim().to_string()
    }

    /// Runs it; its output (stdout, then stderr).
    async fn run(&self) -> Result<String> {
        let mut command = Command::new(&self.binary);
        command.arg("plan").args(&self.flags).envs(self.envs.iter().map(|(k, v)| (*k, v.as_str())));
        // Its own process group: a Ctrl-C in the terminal meanwhile is the sandbox's to handle.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let out = tokio::task::spawn_blocking(move || command.output()).await??;
        Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

async fn apply_service(client: &kube::Client, path: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let service: Service = serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let namespace = service.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    services.create(&PostParams::default(), &service).await?;
    println!("==> applied {} ({namespace}/{})", path.display(), service.metadata.name.clone().unwrap_or_default());
    Ok(())
}

/// Deletes the example Service and waits for its finalizer to go, i.e. for the load balancer
/// and all it owns to be deleted; with AWS, shows what is left.
async fn delete_service(client: &kube::Client, path: &std::path::Path, aws: Option<&AwsSandbox>) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let service: Service = serde_saphyr::from_str(&text)?;
    let namespace = service.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = service.metadata.name.clone().unwrap_or_default();
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    println!("==> deleting {namespace}/{name}: its finalizer holds it until the load balancer is gone");
    services.delete(&name, &Default::default()).await?;
    let started = Instant::now();
    while services.get_opt(&name).await?.is_some() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{namespace}/{name} still there after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("    deleted after {:?}", started.elapsed());
    if let Some(aws) = aws {
        println!("    load balancers left in AWS: {}", aws.load_balancer_count().await?);
    }
    Ok(())
}

const REGION: &str = "us-east-1";

/// The AWS side: moto (or `E2E_AWS_ENDPOINT`), a seeded cluster VPC, and the call-counting
/// proxy the CCM talks through.
struct AwsSandbox {
    _emulator: AwsEmulator,
    proxy: AwsProxy,
    direct: AwsClients,
    vpc: SeededVpc,
    cloud_config: PathBuf,
    /// Whether the sandbox reads load balancers: only when a Service asks for one, so an
    /// emulator without ELB (LocalStack Community) serves `--service none`.
    load_balancers: bool,
}

impl AwsSandbox {
    async fn start(nodes: usize, load_balancers: bool) -> Result<Self> {
        let emulator = AwsEmulator::start()?;
        let what = if emulator.started_here() { "starting" } else { "using" };
        println!("==> {what} {} and seeding a cluster VPC", emulator.describe());
        let direct = AwsClients::connect(emulator.endpoint(), REGION).await;
        if load_balancers && let Err(err) = direct.elb.describe_load_balancers().send().await {
            use aws_sdk_elasticloadbalancing::error::ProvideErrorMetadata;
            let answer = match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                _ => err.to_string(),
            };
            bail!(
                "{} does not serve the ELB API ({answer}): run the sandbox with --service none, or on moto (without E2E_AWS_ENDPOINT)",
                emulator.describe()
            );
        }
        let vpc = SeededVpc::create(
            &direct.ec2,
            "sandbox",
            REGION,
            &SeedOptions::default().with_instances(nodes).without_brownfield(),
        )
        .await?;
        let proxy = AwsProxy::start(emulator.endpoint()).await?;
        let cloud_config = std::env::temp_dir().join(format!("ccm-sandbox-{}.conf", std::process::id()));
        let private = vpc.subnets.iter().find(|s| !s.public).context("a private subnet")?;
        std::fs::write(
            &cloud_config,
            format!(
                "[Global]\nRegion = {REGION}\nVPC = {}\nSubnetID = {}\nKubernetesClusterID = {}\n",
                vpc.vpc_id, private.id, vpc.cluster_id
            ),
        )?;
        println!(
            "    VPC {} with {} subnets in {} zones, {} instances; cloud-config {}",
            vpc.vpc_id,
            vpc.subnets.len(),
            vpc.zone_ids.len(),
            vpc.instances.len(),
            cloud_config.display()
        );
        Ok(Self { _emulator: emulator, proxy, direct, vpc, cloud_config, load_balancers })
    }

    /// An emulator that outlives the sandbox keeps nothing of it: the seeded VPC goes.
    async fn clean_up(&self) {
        if self._emulator.started_here() {
            return;
        }
        match self.vpc.delete(&self.direct.ec2).await {
            Ok(()) => println!("==> deleted the seeded VPC {} from {}", self.vpc.vpc_id, self._emulator.describe()),
            Err(err) => println!("==> could not delete all of the seeded VPC {}: {err:#}", self.vpc.vpc_id),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.proxy.endpoint().to_string()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            // Off-AWS mode asks IMDS nothing; make sure nothing could reach 169.254.169.254.
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    async fn load_balancer_count(&self) -> Result<usize> {
        let classic = self.direct.elb.describe_load_balancers().send().await?.load_balancer_descriptions().len();
        let v2 = self.direct.elbv2.describe_load_balancers().send().await?.load_balancers().len();
        Ok(classic + v2)
    }

    /// Prints the cluster's routes and load balancers as AWS has them; true once every Node
    /// has its route.
    async fn show_changes(&self, shown: &mut BTreeMap<String, String>) -> Result<bool> {
        let tables =
            self.direct.ec2.describe_route_tables().route_table_ids(&self.vpc.cluster_route_table_id).send().await?;
        let mut routes: Vec<String> = tables
            .route_tables()
            .iter()
            .flat_map(|t| t.routes())
            .filter_map(|r| Some(format!("{}→{}", r.destination_cidr_block()?, r.instance_id()?)))
            .collect();
        routes.sort();
        let ready = routes.len() >= self.vpc.instances.len();
        print_change(shown, "aws/route-table", format!("{} routes: {}", routes.len(), routes.join(" ")));
        if !self.load_balancers {
            return Ok(ready);
        }
        for lb in self.direct.elb.describe_load_balancers().send().await?.load_balancer_descriptions() {
            let listeners: Vec<String> = lb
                .listener_descriptions()
                .iter()
                .filter_map(|l| l.listener())
                .map(|l| format!("{}:{}→{}", l.protocol(), l.load_balancer_port(), l.instance_port()))
                .collect();
            let summary = format!(
                "{} listeners=[{}] instances={}",
                lb.dns_name().unwrap_or_default(),
                listeners.join(","),
                lb.instances().len()
            );
            print_change(shown, &format!("aws/elb/{}", lb.load_balancer_name().unwrap_or_default()), summary);
        }
        for lb in self.direct.elbv2.describe_load_balancers().send().await?.load_balancers() {
            let summary = format!("{} type={:?}", lb.dns_name().unwrap_or_default(), lb.r#type());
            print_change(shown, &format!("aws/elbv2/{}", lb.load_balancer_name().unwrap_or_default()), summary);
        }
        Ok(ready)
    }
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
