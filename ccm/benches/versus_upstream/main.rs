//! Upstream's `aws-cloud-controller-manager` and ours on the same ground (the apiserver harness,
//! moto behind the recording proxy, the same cloud-config), one after the other, and the ratios
//! of what each costs. See docs/performance.md.
//!
//! - `cargo bench -p cloud-controller-manager --bench versus_upstream` (release build): every
//!   scenario, printed as a table.
//! - Run by `cargo test` (the README's test command), the short mode: the AWS calls of one Service
//!   at a time (Classic ELB and NLB create, re-ensure with nothing changed, delete), compared with
//!   the ratios checked in (`ccm/benches/versus_upstream/baseline.txt`): a ratio worse than its baseline by more
//!   than the margin fails. Ratios of call counts, not times, so a slow machine does not fail it.

#[path = "../../tests/parity/mod.rs"]
#[allow(unused_imports)]
mod parity;

mod nodes;
mod scenarios;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ccm_e2e::{CcmFlavor, ControlPlane};

/// How much worse than its baseline a ratio may get before the short mode fails.
const MARGIN: f64 = 0.10;

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    ccm_e2e::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(full))
}

async fn run(full: bool) -> Result<()> {
    let upstream = ccm_e2e::upstream_binary();
    if !upstream.exists() {
        bail!("{} is missing: build it with e2e/upstream/build.sh (e2e/test.sh does)", upstream.display());
    }
    let ours = CcmFlavor::Ours(PathBuf::from(env!("CARGO_BIN_EXE_cloud-controller-manager")));
    let mut plane = ControlPlane::start()?;
    // Per figure: (upstream's, ours); a figure only one CCM has (a mode of ours) has no ratio.
    let mut figures: BTreeMap<&'static str, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for flavor in [CcmFlavor::Upstream, ours.clone()] {
        let (mut measured, back) = scenarios::one_at_a_time(flavor.clone(), plane).await?;
        plane = back;
        if full {
            let (more, back) = scenarios::full(flavor.clone(), plane).await?;
            (plane, measured) = (back, [measured, more].concat());
            let (more, back) = nodes::run(&flavor, plane).await?;
            (plane, measured) = (back, [measured, more].concat());
        }
        for (name, value) in measured {
            let entry = figures.entry(name).or_default();
            if flavor == CcmFlavor::Upstream { entry.0 = Some(value) } else { entry.1 = Some(value) }
        }
    }
    let show = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    println!("\n| figure | upstream | ours | ours / upstream |\n|---|---|---|---|");
    for (name, (up, our)) in &figures {
        let ratio = match (up, our) {
            (Some(up), Some(our)) if *up > 0.0 => format!("{:.2}", our / up),
            _ => "–".to_string(),
        };
        println!("| {name} | {} | {} | {ratio} |", show(*up), show(*our));
    }
    check_baseline(&figures)
}

/// Every ratio in the baseline file must hold within [`MARGIN`] (lower is better for all).
fn check_baseline(figures: &BTreeMap<&'static str, (Option<f64>, Option<f64>)>) -> Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/versus_upstream/baseline.txt");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut worse = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, ratio) = line.rsplit_once(' ').context("a baseline line is `<figure> <ratio>`")?;
        let baseline: f64 = ratio.parse().with_context(|| format!("baseline of {name}"))?;
        let (Some(up), Some(our)) = figures.get(name.trim()).copied().unwrap_or_default() else {
            bail!("{name}: in the baseline, not measured for both");
        };
        let ratio = our / up;
        if ratio > baseline * (1.0 + MARGIN) {
            worse.push(format!(
                "{name}: ours / upstream = {ratio:.2}, baseline {baseline:.2} (+{:.0} % allowed)",
                MARGIN * 100.0
            ));
        }
    }
    if !worse.is_empty() {
        bail!("worse than the checked-in baseline:\n  {}", worse.join("\n  "));
    }
    println!("\nevery ratio within {:.0} % of ccm/benches/versus_upstream/baseline.txt", MARGIN * 100.0);
    Ok(())
}
