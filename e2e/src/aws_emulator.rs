use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::child::ChildProcess;
use crate::paths;

/// The AWS API emulator: moto, started once per test binary from `e2e/moto/.venv` (made by
/// `e2e/moto/setup.sh`), or an emulator already running at `E2E_AWS_ENDPOINT`.
///
/// `E2E_AWS_ENDPOINT` is how the tests are aimed at LocalStack. LocalStack Community serves EC2
/// but not ELB/ELBv2, so with `E2E_AWS_FLAVOR=localstack` the load-balancer tests say they are
/// skipped and why (see [`AwsEmulator::supports_elb`]).
pub struct AwsEmulator {
    endpoint: String,
    flavor: Flavor,
    _process: Option<ChildProcess>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Moto,
    LocalStack,
}

static SHARED: OnceLock<AwsEmulator> = OnceLock::new();

impl AwsEmulator {
    /// The test binary's emulator, started on first use.
    ///
    /// # Panics
    /// When it cannot be started: the e2e tests never skip silently.
    pub fn shared() -> &'static AwsEmulator {
        SHARED.get_or_init(|| Self::start().expect("starting the AWS emulator"))
    }

    /// Starts an emulator owned by the caller (stopped when dropped).
    pub fn start() -> Result<Self> {
        let flavor = match std::env::var("E2E_AWS_FLAVOR").as_deref() {
            Ok("localstack") => Flavor::LocalStack,
            Ok("moto") | Err(_) => Flavor::Moto,
            Ok(other) => bail!("E2E_AWS_FLAVOR={other}: expected moto or localstack"),
        };
        if let Ok(endpoint) = std::env::var("E2E_AWS_ENDPOINT") {
            return Ok(Self { endpoint: endpoint.trim_end_matches('/').to_string(), flavor, _process: None });
        }
        if flavor == Flavor::LocalStack {
            bail!("E2E_AWS_FLAVOR=localstack needs E2E_AWS_ENDPOINT: LocalStack is not started by the tests");
        }
        let python = paths::moto_python();
        if !python.exists() {
            bail!("{} is missing: create it with e2e/moto/setup.sh (the README's test command does)", python.display());
        }
        // A free port can be taken between the probe and moto's bind; try a few.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut command = Command::new(&python);
            command.arg(paths::moto_launcher()).arg("--port").arg(port.to_string()).arg("--exit-on-stdin-close");
            match ChildProcess::spawn("moto", command, &paths::log_dir(), Duration::from_secs(90)) {
                Ok(process) => {
                    let endpoint = process.ready_value().to_string();
                    return Ok(Self { endpoint, flavor, _process: Some(process) });
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// The emulator's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What it is, for people: `moto (e2e/moto) at URL` or `the emulator at URL (E2E_AWS_ENDPOINT)`.
    pub fn describe(&self) -> String {
        match (&self._process, self.flavor) {
            (Some(_), _) => format!("moto (e2e/moto) at {}", self.endpoint),
            (None, Flavor::LocalStack) => format!("LocalStack at {} (E2E_AWS_ENDPOINT)", self.endpoint),
            (None, Flavor::Moto) => format!("the emulator at {} (E2E_AWS_ENDPOINT)", self.endpoint),
        }
    }

    /// The account its state belongs to by default (an assumed role of another account sees
    /// none of it): moto's 123456789012, LocalStack's 000000000000.
    pub fn account_id(&self) -> &'static str {
        match self.flavor {
            Flavor::Moto => "123456789012",
            Flavor::LocalStack => "000000000000",
        }
    }

    /// Whether this process started it (and so stops it, with all its state).
    pub fn started_here(&self) -> bool {
        self._process.is_some()
    }

    /// Whether the emulator serves ELB and ELBv2 (moto does; LocalStack Community does not).
    pub fn supports_elb(&self) -> bool {
        self.flavor == Flavor::Moto
    }

    /// Forgets all emulated state (moto only). Global to every test using this emulator, so
    /// only for tests that run alone; parallel tests isolate themselves by cluster ID instead.
    pub async fn reset(&self) -> Result<()> {
        if self.flavor != Flavor::Moto {
            bail!("reset is a moto feature");
        }
        let url = format!("{}/moto-api/reset", self.endpoint);
        let status = crate::proxy::http_post_empty(&url).await.context("POST /moto-api/reset")?;
        if status != 200 {
            bail!("POST /moto-api/reset answered {status}");
        }
        Ok(())
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
