//! A cloud-controller-manager as a process: ours (the binary cargo built) or upstream's
//! `aws-cloud-controller-manager` (the test oracle, built by `e2e/upstream/build.sh`), started
//! the same way with the same cloud-config, so the two can be run side by side.
//!
//! Neither binary watches its stdin, so each runs under a small `sh` supervisor that does: it
//! stops the CCM when its stdin closes, which happens when the test process exits for any
//! reason. A CCM never outlives the test that started it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::child::ChildProcess;
use crate::paths;

/// Which cloud-controller-manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CcmFlavor {
    /// Ours, at this path (`env!("CARGO_BIN_EXE_cloud-controller-manager")` in a test).
    Ours(PathBuf),
    /// Upstream's, pinned in `e2e/upstream/version.env`.
    Upstream,
}

impl CcmFlavor {
    pub fn label(&self) -> &'static str {
        match self {
            CcmFlavor::Ours(_) => "ours",
            CcmFlavor::Upstream => "upstream",
        }
    }
}

/// How to start one.
#[derive(Debug, Clone)]
pub struct CcmLaunch {
    pub flavor: CcmFlavor,
    pub kubeconfig: PathBuf,
    /// The cloud-config text (written to a file next to the log).
    pub cloud_config: String,
    pub cluster_name: String,
    /// `--controllers`.
    pub controllers: String,
    /// Any further flags, e.g. `--configure-cloud-routes=false`.
    pub extra_args: Vec<String>,
    /// Environment on top of dummy credentials.
    pub envs: Vec<(String, String)>,
}

/// A running CCM; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct CcmProcess {
    pub flavor: CcmFlavor,
    pub port: u16,
    pub log: PathBuf,
    process: ChildProcess,
}

/// Our CCM in the tests serves `/metrics` without a token, as upstream does with this flag
/// (the serving test checks the default: delegated authentication and authorization).
pub const OPEN_METRICS: &str = "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics";

/// The upstream binary (built by `e2e/upstream/build.sh`).
pub fn upstream_binary() -> PathBuf {
    paths::repo_root().join("e2e/upstream/bin/aws-cloud-controller-manager")
}

impl CcmLaunch {
    /// The flags both binaries understand, then the ones only upstream needs: off-cluster it
    /// wants kubeconfigs for delegated authentication and authorization, or its serving setup
    /// complains about in-cluster config.
    fn args(&self, port: u16, cloud_config: &Path) -> Vec<String> {
        let kubeconfig = self.kubeconfig.display();
        let mut args = vec![
            "--cloud-provider=aws".to_string(),
            format!("--cloud-config={}", cloud_config.display()),
            format!("--kubeconfig={kubeconfig}"),
            format!("--cluster-name={}", self.cluster_name),
            format!("--controllers={}", self.controllers),
            "--leader-elect=false".to_string(),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
        ];
        if let CcmFlavor::Ours(_) = self.flavor {
            args.push(OPEN_METRICS.to_string());
        }
        if self.flavor == CcmFlavor::Upstream {
            args.push(format!("--authentication-kubeconfig={kubeconfig}"));
            args.push(format!("--authorization-kubeconfig={kubeconfig}"));
            args.push("--v=2".to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub fn start(&self) -> Result<CcmProcess> {
        let binary = match &self.flavor {
            CcmFlavor::Ours(path) => path.clone(),
            CcmFlavor::Upstream => upstream_binary(),
        };
        if !binary.exists() {
            bail!(
                "{} is missing: build it with e2e/upstream/build.sh (the README's test command does)",
                binary.display()
            );
        }
        let port = crate::aws_emulator::free_port()?;
        let name = format!("ccm-{}-{}-{port}", self.flavor.label(), self.cluster_name);
        let config_path = paths::log_dir().join(format!("{name}.conf"));
        std::fs::write(&config_path, &self.cloud_config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        CcmProcess::supervise(self.flavor.clone(), &binary, &name, port, &self.args(port, &config_path), &self.envs)
    }
}

/// What `cloud-controller-manager plan` printed, and its exit code.
#[derive(Debug, Clone)]
pub struct PlanOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl PlanOutput {
    /// The `--output=json` document.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("plan printed no JSON (exit {}): {}{}", self.code, self.stdout, self.stderr))
    }
}

impl CcmLaunch {
    /// Runs `cloud-controller-manager plan` (ours only) with the flags the controller would get,
    /// plus `extra`; off the async runtime, which keeps serving the proxy meanwhile.
    pub async fn plan(&self, extra: &[&str]) -> Result<PlanOutput> {
        let (launch, extra) = (self.clone(), extra.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        tokio::task::spawn_blocking(move || launch.plan_blocking(&extra)).await?
    }

    fn plan_blocking(&self, extra: &[String]) -> Result<PlanOutput> {
        let CcmFlavor::Ours(binary) = &self.flavor else { bail!("only this CCM has a plan command") };
        let port = crate::aws_emulator::free_port()?;
        let config_path = paths::log_dir().join(format!("plan-{}-{port}.conf", self.cluster_name));
        std::fs::write(&config_path, &self.cloud_config)?;
        let out = Command::new(binary)
            .arg("plan")
            .args(self.args(port, &config_path))
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("NO_COLOR", "1")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .context("running cloud-controller-manager plan")?;
        Ok(PlanOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

impl CcmProcess {
    /// Starts our `binary` with exactly `args` and `envs` (plus serving on a free local port
    /// and dummy AWS credentials), for tests that build the whole command line themselves.
    pub fn start_ours(binary: &Path, args: &[String], envs: &[(String, String)]) -> Result<Self> {
        let port = crate::aws_emulator::free_port()?;
        let mut args = args.to_vec();
        args.extend([
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            OPEN_METRICS.to_string(),
        ]);
        let flavor = CcmFlavor::Ours(binary.to_path_buf());
        Self::supervise(flavor, binary, &format!("ccm-ours-{port}"), port, &args, envs)
    }

    /// Runs `binary args` under the supervisor, its log in the log directory.
    fn supervise(
        flavor: CcmFlavor,
        binary: &Path,
        name: &str,
        port: u16,
        args: &[String],
        envs: &[(String, String)],
    ) -> Result<Self> {
        // The supervisor: start the CCM, say READY, wait for stdin to close, stop the CCM.
        let script = r#""$@" & pid=$!; echo "READY $pid"; cat >/dev/null; kill -TERM $pid 2>/dev/null; for _ in $(seq 50); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL $pid 2>/dev/null; wait $pid"#;
        let mut command = Command::new("sh");
        command.arg("-c").arg(script).arg("sh").arg(binary).args(args);
        command
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("RUST_LOG", "info,cloud_controller_manager=debug,cloud_provider_aws=debug")
            .env("NO_COLOR", "1")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let dir = paths::log_dir();
        let process = ChildProcess::spawn(name, command, &dir, Duration::from_secs(10))?;
        let log = dir.join(format!("{name}-{}.log", std::process::id()));
        Ok(CcmProcess { flavor, port, log, process })
    }

    /// `GET /metrics` on its serving port (ours serves it to anyone in the tests, see
    /// [`OPEN_METRICS`]).
    pub fn metrics(&self) -> Result<String> {
        crate::https::get(self.port, "/metrics", None)
    }

    /// The value of an unlabelled metric (a counter's `…_total` line, say) on `/metrics`.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let text = self.metrics()?;
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .with_context(|| format!("no metric {name} on /metrics"))?;
        Ok(line.split_whitespace().nth(1).unwrap_or_default().parse()?)
    }

    /// SIGKILL to the CCM (a crash, not a shutdown), and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = Command::new("kill").args(["-KILL", self.process.ready_value()]).status();
        for _ in 0..100 {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `n` lines of its log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "last lines of {} ({}):\n{}",
            self.log.display(),
            self.flavor.label(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    /// The CCM's peak resident memory so far (`VmHWM` of the process itself, not its
    /// supervisor), in MiB.
    pub fn peak_rss_mib(&self) -> Result<f64> {
        self.memory_mib("VmHWM")
    }

    /// The CCM's resident memory now (`VmRSS`), in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        self.memory_mib("VmRSS")
    }

    fn memory_mib(&self, field: &str) -> Result<f64> {
        let pid = self.process.ready_value();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} line"))?;
        Ok(kib / 1024.0)
    }

    /// Whether the CCM itself (not its supervisor) is still running: a process that exited
    /// but is not reaped yet (a zombie) is not.
    pub fn is_running(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.ready_value())).unwrap_or_default();
        // `pid (comm) state …`: the state follows the last `)`.
        stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s) and waits.
    pub fn stop(mut self) {
        self.process.stop();
    }
}
