//! `docs/flags.md` and `docs/metrics.md` are generated from the code (`--help`, the metric
//! registries); these tests fail when they drift. Regenerate with
//! `UPDATE_DOCS=1 cargo test -p cloud-controller-manager --test reference_docs`.

use std::path::PathBuf;

use cloud_controller_manager::metrics::Metrics;

fn check(file: &str, marker: &str, generated: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let begin = format!("<!-- BEGIN GENERATED: {marker} -->");
    let end = format!("<!-- END GENERATED: {marker} -->");
    let start = text.find(&begin).expect("begin marker") + begin.len();
    let stop = text.find(&end).expect("end marker");
    let block = format!("\n{generated}");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{block}{}", &text[..start], &text[stop..])).expect("write");
        return;
    }
    assert_eq!(
        &text[start..stop],
        block,
        "docs/{file} is stale: UPDATE_DOCS=1 cargo test -p cloud-controller-manager --test reference_docs"
    );
}

#[test]
fn flags_reference_matches_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloud-controller-manager"))
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8(out.stdout).expect("utf-8");
    check("flags.md", "flags", &format!("```text\n{}```\n", help));
}

#[test]
fn plan_reference_matches_its_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloud-controller-manager"))
        .args(["plan", "--help"])
        .output()
        .expect("plan --help");
    let help = String::from_utf8(out.stdout).expect("utf-8");
    // Only what `plan` adds: the controller's flags are above.
    let own: Vec<&str> = help.lines().skip_while(|l| !l.trim_start().starts_with("--output")).collect();
    check("flags.md", "plan", &format!("```text\n{}\n```\n", own.join("\n")));
}

#[test]
fn compat_flags_reference_matches_the_code() {
    let list: Vec<String> =
        cloud_controller_manager::compat_flags::CompatFlags::ALL.iter().map(|f| format!("`{f}`")).collect();
    check("flags.md", "compat-flags", &format!("{}\n", list.join(", ")));
}

#[test]
fn metrics_reference_matches_the_registries() {
    use cloud_provider_aws::api_metrics::{ApiMetrics, CallLabels, OperationLabels, RequestLabels};
    let mut metrics = Metrics::default();
    let aws = ApiMetrics::default();
    aws.register(&mut metrics.registry);
    // Families are only written once they have a sample: give each one.
    metrics.reconciled("service", 0.0);
    metrics.failed("service", "transient");
    aws.calls.get_or_create(&CallLabels { service: "ec2", operation: "DescribeInstances" }).inc();
    aws.latency.get_or_create(&RequestLabels { request: "DescribeInstances" }).observe(0.0);
    aws.errors.get_or_create(&RequestLabels { request: "DescribeInstances" }).inc();
    aws.throttled.get_or_create(&OperationLabels { operation_name: "DescribeInstances".into() }).inc();
    aws.throttle_delay.inc_by(0.5);
    let mut rows = Vec::new();
    let text = metrics.encode();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = text.lines().find_map(|l| l.strip_prefix(&format!("# TYPE {name} "))).unwrap_or("").to_string();
            let shown = if kind == "counter" { format!("{name}_total") } else { name.to_string() };
            let labels = text
                .lines()
                .find(|l| l.starts_with(name) && l.contains('{'))
                .and_then(|l| l.split_once('{').map(|(_, rest)| rest.split('}').next().unwrap_or("").to_string()))
                .map(|l| {
                    l.split(',')
                        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
                        .filter(|k| k != "le")
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            rows.push(format!("| `{shown}` | {kind} | {labels} | {help} |"));
        }
    }
    let table = format!("| metric | type | labels | meaning |\n|---|---|---|---|\n{}\n", rows.join("\n"));
    check("metrics.md", "metrics", &table);
}
