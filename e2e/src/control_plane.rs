use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::child::ChildProcess;
use crate::paths;

/// A real kube-apiserver + etcd, started once per test binary from
/// `e2e/apiserver/bin/apiserver-harness` (built by `e2e/apiserver/hack/build.sh`), or the one
/// named by `E2E_KUBECONFIG`.
pub struct ControlPlane {
    kubeconfig: PathBuf,
    _process: Option<ChildProcess>,
    /// For [`Self::restart`]: the harness's directory (removed on drop) and port.
    state: Option<(PathBuf, u16)>,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

impl ControlPlane {
    /// The test binary's control plane, started on first use.
    ///
    /// # Panics
    /// When it cannot be started: the e2e tests never skip silently.
    pub fn shared() -> &'static ControlPlane {
        SHARED.get_or_init(|| Self::start().expect("starting the kube-apiserver harness"))
    }

    /// Starts a control plane owned by the caller (stopped when dropped).
    pub fn start() -> Result<Self> {
        if let Some(path) = std::env::var_os("E2E_KUBECONFIG") {
            return Ok(Self { kubeconfig: PathBuf::from(path), _process: None, state: None });
        }
        let (kubeconfig, process) = Self::spawn("apiserver", &[])?;
        Ok(Self { kubeconfig, _process: Some(process), state: None })
    }

    /// Starts a control plane owned by the caller that [`Self::restart`] can restart: etcd's
    /// data, the credentials, the serving certificate and the port survive, so clients (and
    /// their kubeconfigs) keep working once it is back.
    pub fn start_restartable() -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = paths::log_dir().join(format!("apiserver-state-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let args = Self::state_args(&dir, port);
        let (kubeconfig, process) = Self::spawn("apiserver-restartable", &args)?;
        Ok(Self { kubeconfig, _process: Some(process), state: Some((dir, port)) })
    }

    fn state_args(dir: &std::path::Path, port: u16) -> Vec<String> {
        vec!["--dir".into(), dir.display().to_string(), "--port".into(), port.to_string(), "--keep-state".into()]
    }

    /// Stops the apiserver and etcd (politely, as a node reboot would) and starts them again on
    /// the same state; returns once it is ready. Only for [`Self::start_restartable`].
    pub fn restart(&mut self) -> Result<()> {
        let (dir, port) = self.state.clone().context("restart needs a control plane from start_restartable")?;
        if let Some(mut process) = self._process.take() {
            process.stop();
        }
        let (kubeconfig, process) = Self::spawn("apiserver-restarted", &Self::state_args(&dir, port))?;
        self.kubeconfig = kubeconfig;
        self._process = Some(process);
        Ok(())
    }

    fn spawn(name: &str, args: &[String]) -> Result<(PathBuf, ChildProcess)> {
        let binary = paths::harness_binary();
        if !binary.exists() {
            bail!(
                "{} is missing: build it with e2e/apiserver/hack/build.sh (the README's test command does)",
                binary.display()
            );
        }
        // Without --dir the harness makes its own temporary directory and removes it when it
        // stops, which it does when our end of its stdin closes, even if we never drop it.
        let mut command = Command::new(&binary);
        command.arg("--exit-on-stdin-close").args(args);
        let process = ChildProcess::spawn(name, command, &paths::log_dir(), Duration::from_secs(120))?;
        Ok((PathBuf::from(process.ready_value()), process))
    }

    /// The kubeconfig file (for a restartable control plane: the same file, the same content,
    /// after a restart).
    pub fn kubeconfig_path(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// A kubeconfig (written to `path`) that reaches this control plane through `relay` (see
    /// [`crate::TcpProxy`]): same credentials, the relay's address.
    pub fn kubeconfig_through(&self, relay: &crate::TcpProxy, path: &std::path::Path) -> Result<PathBuf> {
        let text = std::fs::read_to_string(&self.kubeconfig)?;
        let server = self.server()?;
        let through = server.replace(&self.server_address()?, &relay.addr().to_string());
        std::fs::write(path, text.replace(&server, &through))?;
        Ok(path.to_path_buf())
    }

    /// The apiserver's `host:port`.
    pub fn server_address(&self) -> Result<String> {
        let server = self.server()?;
        let url = url::Url::parse(&server).with_context(|| format!("server {server}"))?;
        Ok(format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port_or_known_default().unwrap_or(443)))
    }

    fn server(&self) -> Result<String> {
        let parsed = Kubeconfig::read_from(&self.kubeconfig)?;
        parsed
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref()?.server.clone())
            .context("a kubeconfig without a server")
    }

    /// A client for this control plane. Build one per test: a `kube::Client` belongs to the
    /// tokio runtime it was made on.
    pub async fn client(&self) -> Result<kube::Client> {
        client_for(&self.kubeconfig).await
    }
}

/// A client from the kubeconfig at `path`.
pub(crate) async fn client_for(path: &std::path::Path) -> Result<kube::Client> {
    crate::init_crypto();
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some((dir, _)) = self.state.take() {
            if let Some(mut process) = self._process.take() {
                process.stop();
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
