use std::path::{Path, PathBuf};

/// The repository root, found at run time: `CCM_REPO_ROOT`; else the parent of the running
/// test's package (`cargo test` sets `CARGO_MANIFEST_DIR`, and every package is one level
/// below the root); else the current directory when it is the root (`e2e/sandbox.sh` runs
/// there). Not the compile-time path: a shared target dir may hold this crate built from
/// another clone.
pub fn repo_root() -> PathBuf {
    let is_root = |p: &Path| p.join("e2e/apiserver/go.mod").exists();
    if let Some(root) = std::env::var_os("CCM_REPO_ROOT") {
        return PathBuf::from(root);
    }
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from)
        && let Some(parent) = dir.parent().filter(|p| is_root(p))
    {
        return parent.to_path_buf();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    if is_root(&cwd) {
        return cwd;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or(cwd)
}

pub(crate) fn harness_binary() -> PathBuf {
    repo_root().join("e2e/apiserver/bin/apiserver-harness")
}

/// The moto virtualenv's python: `$MOTO_VENV`, by default `e2e/moto/.venv` (as `setup.sh`).
pub(crate) fn moto_python() -> PathBuf {
    let venv = std::env::var_os("MOTO_VENV").map_or_else(|| repo_root().join("e2e/moto/.venv"), PathBuf::from);
    venv.join("bin/python")
}

pub(crate) fn moto_launcher() -> PathBuf {
    repo_root().join("e2e/moto/serve.py")
}

/// Where helper processes write their logs: the cargo target dir's `e2e-logs`, or a temp dir.
pub(crate) fn log_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let dir = base.join("e2e-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}
