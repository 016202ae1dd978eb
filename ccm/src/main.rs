//! `cloud-controller-manager`: flags → validated config → provider → controllers.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cloud_controller_manager::metrics::Metrics;
use cloud_controller_manager::options::{Args, Config, LogConfig};
use cloud_controller_manager::plan::{self, PlanArgs};
use cloud_controller_manager::server::{self, Health};
use cloud_controller_manager::serving;
use cloud_provider::CloudProvider;
use cloud_provider_aws::AwsCloud;
use cloud_provider_fake::{FakeCloud, FakeConfig};
use tokio_util::sync::CancellationToken;

fn init_logging(log: LogConfig) {
    let level = match log.verbosity {
        0 | 1 => "info",
        2 | 3 => "debug",
        _ => "trace",
    };
    // Our own crates at the chosen level; libraries stay at warn unless -v is high.
    let default = if log.verbosity >= 4 {
        level.to_string()
    } else {
        format!("warn,cloud_controller_manager={level},cloud_provider={level},cloud_provider_fake={level}")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: in a pod's log (a file or a pipe) escape codes are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if log.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("plan") {
        let args = PlanArgs::parse_from(std::env::args().enumerate().filter(|(i, _)| *i != 1).map(|(_, a)| a));
        std::process::exit(plan_main(args).await);
    }
    let args = Args::parse();
    let config = match Config::try_from(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("cloud-controller-manager: {err}");
            std::process::exit(2);
        }
    };
    init_logging(config.log);
    if let Err(err) = run(config).await {
        tracing::error!("{err:#}");
        eprintln!("cloud-controller-manager: {err:#}");
        std::process::exit(1);
    }
}

/// `cloud-controller-manager plan`: see [`cloud_controller_manager::plan`].
async fn plan_main(args: PlanArgs) -> i32 {
    let (output, services) = (args.output, args.services);
    let config = match Config::try_from(args.args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("cloud-controller-manager plan: {err}");
            return 2;
        }
    };
    init_logging(config.log);
    let report = async {
        let cloud_config = read_cloud_config(&config)?;
        let client = cloud_controller_manager::kube_client(&config).await?;
        match config.provider.as_str() {
            "fake" => {
                let fake_config = cloud_config.as_deref().map(FakeConfig::parse).transpose()?.unwrap_or_default();
                let cloud = FakeCloud::new(fake_config);
                plan::plan(&config, client, &cloud, &services).await
            }
            "aws" => {
                let cloud = AwsCloud::new(cloud_config.as_deref()).await?;
                plan::plan(&config, client, &cloud, &services).await
            }
            other => bail!("--cloud-provider={other}: unknown provider (known: aws, fake)"),
        }
    }
    .await;
    match report {
        Ok(report) => {
            match output {
                plan::Output::Text => print!("{}", report.text()),
                plan::Output::Json => println!("{:#}", report.json()),
            }
            report.exit_code()
        }
        Err(err) => {
            eprintln!("cloud-controller-manager plan: {err:#}");
            1
        }
    }
}

fn read_cloud_config(config: &Config) -> Result<Option<String>> {
    match &config.cloud_config {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path).with_context(|| format!("reading --cloud-config {}", path.display()))?,
        )),
        None => Ok(None),
    }
}

async fn run(config: Config) -> Result<()> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if !config.ignored_flags.is_empty() {
        tracing::warn!(flags = ?config.ignored_flags, "accepted for compatibility, no effect here");
    }
    let cloud_config = read_cloud_config(&config)?;

    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("signal received");
        signal_stop.cancel();
    });

    // The provider first: a bad cloud-config must fail startup before anything else happens.
    let mut metrics = Metrics::default();
    match config.provider.as_str() {
        "fake" => {
            let fake_config = match cloud_config {
                Some(text) => FakeConfig::parse(&text)?,
                None => FakeConfig::default(),
            };
            let cloud = Arc::new(FakeCloud::new(fake_config));
            serve_and_run(config, cloud, metrics, stop).await
        }
        "aws" => {
            cloud_controller_manager::init_crypto();
            let cloud = AwsCloud::new(cloud_config.as_deref()).await?;
            for warning in &cloud.warnings {
                tracing::warn!("cloud-config: {warning}");
            }
            tracing::info!(
                region = %cloud.region,
                vpc = %cloud.discovered.vpc_id,
                cluster_id = %cloud.discovered.cluster.cluster_id,
                "AWS cluster found"
            );
            cloud.register_metrics(&mut metrics.registry);
            serve_and_run(config, Arc::new(cloud), metrics, stop).await
        }
        other => bail!("--cloud-provider={other}: unknown provider (known: aws, fake)"),
    }
}

async fn serve_and_run<P: CloudProvider>(
    config: Config,
    cloud: Arc<P>,
    metrics: Metrics,
    stop: CancellationToken,
) -> Result<()> {
    let metrics = Arc::new(metrics);
    let health = Arc::new(Health::default());
    let client = cloud_controller_manager::kube_client(&config).await?;
    let bound = serving::serve(config.serving.clone(), server::router(health.clone(), metrics.clone()), &client)
        .await
        .with_context(|| format!("serving health and metrics on {}", config.serving.addr))?;
    tracing::info!(%bound, "serving /healthz, /readyz, /livez, /metrics over HTTPS");
    cloud_controller_manager::run(config, client, cloud, metrics, health, stop).await?;
    Ok(())
}
