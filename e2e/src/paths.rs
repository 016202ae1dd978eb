use std::path::{Path, PathBuf};

/// The repository root: the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives one level below the repository root")
        .to_path_buf()
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
