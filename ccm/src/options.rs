//! Command-line flags, with upstream `cloud-controller-manager` names and defaults, and their
//! validation into a [`Config`].
//!
//! Every problem is collected and reported at once, before anything starts. Flags upstream
//! accepts but that do nothing here are accepted too (so existing manifests keep working) and
//! named in a startup warning.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use ipnet::IpNet;

use crate::controllers::ControllerSet;
use crate::duration::parse_duration;

/// A Kubernetes cloud-controller-manager.
#[derive(Debug, Clone, Parser)]
// Like Go's pflag, a repeated flag takes its last value (list flags such as --controllers append).
#[command(
    name = "cloud-controller-manager",
    version,
    about,
    long_about = None,
    args_override_self = true,
    after_help = "Subcommand: `cloud-controller-manager plan [FLAGS] [--output text|json] [--service NAMESPACE/NAME]...` \
                  prints what the controllers would change now, changing nothing (exit 0: nothing, 2: changes, 1: error)."
)]
pub struct Args {
    /// The cloud provider: `aws` or `fake` (an in-memory cloud for trying the controllers).
    #[arg(long, env = "CLOUD_PROVIDER")]
    pub cloud_provider: Option<String>,

    /// The path to the cloud provider configuration file.
    #[arg(long)]
    pub cloud_config: Option<PathBuf>,

    /// The path to a kubeconfig. Without it: $KUBECONFIG, ~/.kube/config, or in-cluster.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// The controllers to run: `*` for all; `name` enables, `-name` disables. Names and
    /// aliases: cloud-node-controller (cloud-node), cloud-node-lifecycle-controller
    /// (cloud-node-lifecycle), service-lb-controller (service), node-route-controller (route).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,

    /// The cluster's name, passed to the cloud for load balancers and routes.
    #[arg(long, default_value = "kubernetes")]
    pub cluster_name: String,

    /// The CIDR range(s) of pods in the cluster (comma-separated, at most one per IP family).
    #[arg(long, default_value = "")]
    pub cluster_cidr: String,

    /// Whether to program cloud routes for the pod CIDRs of Nodes (needs --cluster-cidr).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub configure_cloud_routes: bool,

    /// How often the route controller reconciles routes.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub route_reconciliation_period: Duration,

    /// How often the cloud-node-lifecycle controller checks Nodes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,

    /// How often the cloud-node controller refreshes the addresses of initialized Nodes.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub node_status_update_frequency: Duration,

    /// How often every load balancer is re-ensured even when nothing changed, so that drift
    /// in the cloud is repaired (0 disables). Upstream has no such repair.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub load_balancer_resync_period: Duration,

    /// Services synced in parallel. Upstream's default is 1, which lets one slow delete stall
    /// every load balancer.
    #[arg(long, default_value_t = 5)]
    pub concurrent_service_syncs: u16,

    /// Nodes initialized in parallel.
    #[arg(long, default_value_t = 1)]
    pub concurrent_node_syncs: u16,

    /// Run only while holding the leader Lease.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,

    /// How long a Lease is valid without renewal; others wait this long before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it gives up leadership (and exits).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,

    /// How long to wait between attempts to acquire or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,

    /// The lock type; only `leases` is supported (as upstream).
    #[arg(long, default_value = "leases")]
    pub leader_elect_resource_lock: String,

    /// The Lease's name.
    #[arg(long, default_value = "cloud-controller-manager")]
    pub leader_elect_resource_name: String,

    /// The Lease's namespace.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,

    /// The address to serve /healthz, /readyz, /livez and /metrics on (HTTPS).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// The port to serve /healthz, /readyz, /livez and /metrics on, over HTTPS.
    #[arg(long, default_value_t = 10258)]
    pub secure_port: u16,

    /// The serving certificate (PEM, with its chain); without it and --tls-private-key-file, a
    /// self-signed certificate is made at start and kept in memory.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,

    /// The serving certificate's private key (PEM).
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,

    /// A kubeconfig for the cluster that reviews bearer tokens (TokenReview); empty: the
    /// in-cluster config, else --kubeconfig.
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// A kubeconfig for the cluster that authorizes requests (SubjectAccessReview); empty: the
    /// in-cluster config, else --kubeconfig.
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,

    /// Paths served without authentication or authorization (a trailing `*` matches a prefix).
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,

    /// Log verbosity, as klog's -v: 0-1 info, 2-3 debug, 4+ trace.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,

    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text")]
    pub logging_format: String,

    /// Accepted for compatibility; per-controller ServiceAccount credentials are not used.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_service_account_credentials: Option<bool>,

    /// Accepted for compatibility; no node-IPAM controller exists (as upstream AWS).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allocate_node_cidrs: Option<bool>,

    /// Accepted for compatibility; no effect.
    #[arg(long)]
    pub cidr_allocator_type: Option<String>,

    /// Accepted for compatibility (deprecated upstream); no effect.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_untagged_cloud: Option<bool>,

    /// Accepted for compatibility; leader migration is not implemented.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_leader_migration: Option<bool>,

    /// The rest of upstream's flags (serving, authentication, profiling, client tuning,
    /// webhooks, the tagging controller): accepted, no effect.
    #[command(flatten)]
    pub compat: crate::compat_flags::CompatFlags,
}

/// How the process logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub verbosity: u8,
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub name: String,
    pub namespace: String,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub provider: String,
    pub cloud_config: Option<PathBuf>,
    pub kubeconfig: Option<PathBuf>,
    pub controllers: ControllerSet,
    pub cluster_name: String,
    pub cluster_cidrs: Vec<IpNet>,
    pub configure_cloud_routes: bool,
    pub route_reconciliation_period: Duration,
    pub node_monitor_period: Duration,
    pub node_status_update_frequency: Duration,
    pub load_balancer_resync_period: Option<Duration>,
    pub service_workers: u16,
    pub node_workers: u16,
    pub leader_election: Option<LeaderElection>,
    pub serving: crate::serving::ServingConfig,
    pub log: LogConfig,
    /// Flags that were given but have no effect here, for a startup warning.
    pub ignored_flags: Vec<&'static str>,
    /// Non-fatal notes about the configuration, for startup warnings.
    pub warnings: Vec<String>,
}

/// Every problem found in the flags.
#[derive(Debug, thiserror::Error)]
#[error("invalid flags:\n  - {}", .0.join("\n  - "))]
pub struct InvalidFlags(pub Vec<String>);

impl TryFrom<Args> for Config {
    type Error = InvalidFlags;

    fn try_from(args: Args) -> Result<Self, InvalidFlags> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();

        let provider = args.cloud_provider.clone().unwrap_or_default();
        if provider.is_empty() {
            problems.push("--cloud-provider is required (aws or fake)".to_string());
        }
        if args.tls_cert_file.is_some() != args.tls_private_key_file.is_some() {
            problems.push("--tls-cert-file and --tls-private-key-file go together: give both or neither".to_string());
        }

        let controllers = match ControllerSet::parse(&args.controllers) {
            Ok((set, notes)) => {
                warnings.extend(notes);
                set
            }
            Err(errs) => {
                problems.extend(errs);
                ControllerSet::default()
            }
        };

        let cluster_cidrs = parse_cluster_cidrs(&args.cluster_cidr, &mut problems);
        let routes_wanted = args.configure_cloud_routes && controllers.route;
        if routes_wanted && cluster_cidrs.is_empty() && !args.cluster_cidr.contains(|c: char| !c.is_whitespace()) {
            problems.push(
                "--configure-cloud-routes is true (the default) but --cluster-cidr is empty: give the pod CIDR, \
                 or turn routes off with --configure-cloud-routes=false"
                    .to_string(),
            );
        }

        for (flag, value) in [
            ("--route-reconciliation-period", args.route_reconciliation_period),
            ("--node-monitor-period", args.node_monitor_period),
            ("--node-status-update-frequency", args.node_status_update_frequency),
        ] {
            if value.is_zero() {
                problems.push(format!("{flag} must be greater than zero"));
            }
        }
        for (flag, value) in [
            ("--concurrent-service-syncs", args.concurrent_service_syncs),
            ("--concurrent-node-syncs", args.concurrent_node_syncs),
        ] {
            if value == 0 {
                problems.push(format!("{flag} must be at least 1"));
            }
        }

        let leader_election = if args.leader_elect {
            validate_leader_election(&args, &mut problems);
            Some(LeaderElection {
                lease_duration: args.leader_elect_lease_duration,
                renew_deadline: args.leader_elect_renew_deadline,
                retry_period: args.leader_elect_retry_period,
                name: args.leader_elect_resource_name.clone(),
                namespace: args.leader_elect_resource_namespace.clone(),
            })
        } else {
            None
        };

        let json = match args.logging_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                problems.push(format!("--logging-format={other}: expected text or json"));
                false
            }
        };
        if args.cluster_name.is_empty() {
            problems.push("--cluster-name must not be empty".to_string());
        }

        let ignored_flags = [
            ("--use-service-account-credentials", args.use_service_account_credentials.is_some()),
            ("--allocate-node-cidrs", args.allocate_node_cidrs.is_some()),
            ("--cidr-allocator-type", args.cidr_allocator_type.is_some()),
            ("--allow-untagged-cloud", args.allow_untagged_cloud.is_some()),
            ("--enable-leader-migration", args.enable_leader_migration.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .chain(args.compat.given())
        .collect();

        if !problems.is_empty() {
            return Err(InvalidFlags(problems));
        }
        Ok(Config {
            provider,
            cloud_config: args.cloud_config,
            kubeconfig: args.kubeconfig,
            controllers,
            cluster_name: args.cluster_name,
            cluster_cidrs,
            configure_cloud_routes: args.configure_cloud_routes,
            route_reconciliation_period: args.route_reconciliation_period,
            node_monitor_period: args.node_monitor_period,
            node_status_update_frequency: args.node_status_update_frequency,
            load_balancer_resync_period: (!args.load_balancer_resync_period.is_zero())
                .then_some(args.load_balancer_resync_period),
            service_workers: args.concurrent_service_syncs,
            node_workers: args.concurrent_node_syncs,
            leader_election,
            serving: crate::serving::ServingConfig {
                addr: SocketAddr::new(args.bind_address, args.secure_port),
                tls_files: args.tls_cert_file.zip(args.tls_private_key_file),
                authentication_kubeconfig: args.authentication_kubeconfig,
                authorization_kubeconfig: args.authorization_kubeconfig,
                always_allow_paths: args
                    .authorization_always_allow_paths
                    .into_iter()
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            },
            log: LogConfig { verbosity: args.verbosity, json },
            ignored_flags,
            warnings,
        })
    }
}

fn parse_cluster_cidrs(raw: &str, problems: &mut Vec<String>) -> Vec<IpNet> {
    let mut cidrs = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<IpNet>() {
            Ok(net) => cidrs.push(net),
            Err(_) => problems.push(format!("--cluster-cidr: {part:?} is not a CIDR")),
        }
    }
    // The route controller may delete routes inside the cluster CIDR: a CIDR that wide would
    // put the VPC's own default and NAT routes there.
    for net in &cidrs {
        if net.prefix_len() < 8 {
            problems.push(format!(
                "--cluster-cidr: {net} is too broad to be a pod CIDR (at most /8): the route controller \
                 manages routes inside it, and it would cover the VPC's own routes"
            ));
        }
    }
    match cidrs.as_slice() {
        [] | [_] => {}
        [a, b] if matches!((a, b), (IpNet::V4(_), IpNet::V6(_)) | (IpNet::V6(_), IpNet::V4(_))) => {}
        [_, _] => problems.push("--cluster-cidr: two CIDRs must be one IPv4 and one IPv6 (dual-stack)".into()),
        _ => problems.push("--cluster-cidr: at most two CIDRs (one per IP family)".into()),
    }
    cidrs
}

fn validate_leader_election(args: &Args, problems: &mut Vec<String>) {
    if args.leader_elect_resource_lock != "leases" {
        problems.push(format!(
            "--leader-elect-resource-lock={}: only `leases` is supported",
            args.leader_elect_resource_lock
        ));
    }
    if args.leader_elect_lease_duration <= args.leader_elect_renew_deadline {
        problems.push("--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline".into());
    }
    // client-go's rule: the renew deadline must leave room for a jittered retry (factor 1.2).
    if args.leader_elect_renew_deadline.as_secs_f64() <= 1.2 * args.leader_elect_retry_period.as_secs_f64() {
        problems.push("--leader-elect-renew-deadline must be greater than 1.2 × --leader-elect-retry-period".into());
    }
    if args.leader_elect_retry_period.is_zero() {
        problems.push("--leader-elect-retry-period must be greater than zero".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: &[&str]) -> Result<Config, InvalidFlags> {
        let mut argv = vec!["cloud-controller-manager"];
        argv.extend_from_slice(flags);
        Config::try_from(Args::try_parse_from(argv).expect("flags parse"))
    }

    #[test]
    fn upstream_defaults() {
        let c = config(&["--cloud-provider=fake", "--cluster-cidr=10.244.0.0/16"]).unwrap();
        assert_eq!(c.cluster_name, "kubernetes");
        assert!(c.configure_cloud_routes);
        assert_eq!(c.route_reconciliation_period, Duration::from_secs(10));
        assert_eq!(c.node_monitor_period, Duration::from_secs(5));
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(300));
        assert_eq!(c.load_balancer_resync_period, Some(Duration::from_secs(600)));
        assert!(c.service_workers > 1);
        let le = c.leader_election.unwrap();
        assert_eq!(
            (le.lease_duration, le.renew_deadline, le.retry_period),
            (Duration::from_secs(15), Duration::from_secs(10), Duration::from_secs(2))
        );
        assert_eq!((le.namespace.as_str(), le.name.as_str()), ("kube-system", "cloud-controller-manager"));
        assert_eq!(c.serving.addr.port(), 10258);
        assert_eq!(c.serving.always_allow_paths, ["/healthz", "/readyz", "/livez"]);
        assert_eq!(c.serving.tls_files, None);
        assert!(c.controllers.all());
    }

    #[test]
    fn go_style_booleans_and_verbosity() {
        let c = config(&["--cloud-provider=fake", "--configure-cloud-routes=false", "--leader-elect=false", "-v=2"])
            .unwrap();
        assert!(!c.configure_cloud_routes);
        assert!(c.leader_election.is_none());
        assert_eq!(c.log.verbosity, 2);
        let c = config(&["--cloud-provider=fake", "--configure-cloud-routes", "--cluster-cidr=10.0.0.0/8", "--v=4"])
            .unwrap();
        assert!(c.configure_cloud_routes);
        assert_eq!(c.log.verbosity, 4);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = config(&[
            "--controllers=*,bogus",
            "--cluster-cidr=10.0.0.0/8,10.1.0.0/16",
            "--leader-elect-lease-duration=5s",
            "--logging-format=xml",
            "--concurrent-service-syncs=0",
            "--tls-cert-file=/etc/tls/tls.crt",
        ])
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "--cloud-provider is required",
            "bogus",
            "dual-stack",
            "--leader-elect-lease-duration",
            "--logging-format=xml",
            "--concurrent-service-syncs",
            "--tls-cert-file and --tls-private-key-file go together",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 7, "{text}");
    }

    #[test]
    fn an_over_broad_cluster_cidr_is_refused() {
        for broad in ["0.0.0.0/0", "10.0.0.0/7", "::/0", "10.244.0.0/16,::/0"] {
            let err = config(&["--cloud-provider=fake", &format!("--cluster-cidr={broad}")]).unwrap_err();
            assert!(err.to_string().contains("too broad"), "{broad}: {err}");
        }
        assert!(config(&["--cloud-provider=fake", "--cluster-cidr=10.0.0.0/8"]).is_ok());
    }

    #[test]
    fn routes_without_a_cluster_cidr_are_refused_unless_off() {
        let err = config(&["--cloud-provider=fake"]).unwrap_err();
        assert!(err.to_string().contains("--cluster-cidr is empty"));
        assert!(config(&["--cloud-provider=fake", "--configure-cloud-routes=false"]).is_ok());
        assert!(config(&["--cloud-provider=fake", "--controllers=*,-route"]).is_ok());
    }

    #[test]
    fn compatibility_flags_are_accepted_and_named() {
        let c = config(&[
            "--cloud-provider=fake",
            "--configure-cloud-routes=false",
            "--use-service-account-credentials=true",
            "--allocate-node-cidrs=false",
        ])
        .unwrap();
        assert_eq!(c.ignored_flags, ["--use-service-account-credentials", "--allocate-node-cidrs"]);
    }
}
