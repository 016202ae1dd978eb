use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A helper process that announces readiness with a `READY <value>` line on stdout.
///
/// Its stdin is a pipe held here: helpers started with `--exit-on-stdin-close` shut down when
/// it closes, which happens when this value is dropped *or* when the test process dies, so a
/// helper kept in a `static` (never dropped) still does not outlive the tests.
pub struct ChildProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    ready: String,
}

impl ChildProcess {
    /// Spawns `command`, sends its stderr to `<log_dir>/<name>.log`, and waits up to `limit`
    /// for the READY line.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path, limit: Duration) -> Result<Self> {
        let log_path = log_dir.join(format!("{name}-{}.log", std::process::id()));
        let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        // A process group of its own: Ctrl-C in a terminal signals the whole foreground group,
        // and a helper must not die under the sandbox while it still cleans up through it (the
        // closing stdin stops the helper when its parent goes, whatever the signal).
        let mut child = command
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");

        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(value) = line.strip_prefix("READY ") {
                    let _ = tx.send(value.trim().to_string());
                }
            }
        });
        let mut process = Self { name: name.to_string(), child, stdin, ready: String::new() };
        match rx.recv_timeout(limit) {
            Ok(value) => {
                process.ready = value;
                Ok(process)
            }
            Err(_) => {
                let status = process.child.try_wait().ok().flatten();
                process.stop();
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(30).collect();
                bail!(
                    "{name} did not become ready within {limit:?} (exit: {status:?}); last lines of {}:\n{}",
                    log_path.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        }
    }

    /// What the process printed after `READY `.
    pub fn ready_value(&self) -> &str {
        &self.ready
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin (the polite stop), waits up to 20 s, then kills the process by PID.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::warn!(name = %self.name, pid = self.child.id(), "did not stop after stdin closed; killing");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
