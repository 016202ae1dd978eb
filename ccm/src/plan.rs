//! `cloud-controller-manager plan`: what the controllers would change now, changing nothing.
//!
//! Same flags and cloud-config as the controller. It reads the cluster (Services, Nodes; read
//! RBAC is enough) and the cloud (only `Describe…` calls), and prints for every LoadBalancer
//! Service "no changes" or the planned cloud operations with their reasons, then the routes the
//! route controller would create or delete and the Nodes the cloud-node controller would
//! change. Exit code 0: nothing to change; 2: changes; 1: something could not be planned (as
//! `terraform plan -detailed-exitcode`). The migration check: run it against the cluster
//! upstream manages, expect "no changes" everywhere, then switch.

use std::collections::BTreeSet;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use cloud_provider::{CloudError, CloudProvider, Instances, LoadBalancers, NodeInfo, PlannedChange, Routes};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::controllers::{node, route};
use crate::objects;
use crate::options::{Args, Config};

/// Prints what the controllers would change in the cloud and the cluster, changing nothing.
/// Takes every flag the controller takes.
#[derive(Debug, Parser)]
#[command(
    name = "cloud-controller-manager plan",
    bin_name = "cloud-controller-manager plan",
    version,
    long_about = None,
    args_override_self = true,
    after_help = "Exit code 0: nothing to change; 2: changes; 1: something could not be planned."
)]
pub struct PlanArgs {
    #[command(flatten)]
    pub args: Args,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Only this Service (`namespace/name`; repeatable). Default: every LoadBalancer Service.
    #[arg(long = "service", value_name = "NAMESPACE/NAME")]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// What planning one object came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    Changes(Vec<T>),
    /// Not this controller's (another LB controller's Service, another provider's Node).
    Skipped(String),
    Failed(String),
}

#[derive(Debug)]
pub struct ServicePlan {
    pub key: String,
    pub load_balancer: String,
    pub outcome: Outcome<PlannedChange>,
}

#[derive(Debug)]
pub struct NodePlan {
    pub name: String,
    pub outcome: Outcome<String>,
}

/// The whole plan. `None` parts: that controller is not enabled (or the cloud lacks it).
#[derive(Debug, Default)]
pub struct Report {
    pub services: Option<Vec<ServicePlan>>,
    pub routes: Option<Outcome<String>>,
    pub nodes: Option<Vec<NodePlan>>,
    /// `--service` names that matched no LoadBalancer Service.
    pub unmatched: Vec<String>,
}

fn count<T>(o: &Outcome<T>) -> usize {
    match o {
        Outcome::Changes(c) => c.len(),
        _ => 0,
    }
}

impl Report {
    pub fn changes(&self) -> usize {
        self.services.iter().flatten().map(|s| count(&s.outcome)).sum::<usize>()
            + self.routes.as_ref().map_or(0, count)
            + self.nodes.iter().flatten().map(|n| count(&n.outcome)).sum::<usize>()
    }

    pub fn failures(&self) -> usize {
        let failed = |o: &Outcome<_>| matches!(o, Outcome::Failed(_));
        self.services.iter().flatten().filter(|s| matches!(s.outcome, Outcome::Failed(_))).count()
            + usize::from(self.routes.as_ref().is_some_and(failed))
            + self.nodes.iter().flatten().filter(|n| matches!(n.outcome, Outcome::Failed(_))).count()
            + self.unmatched.len()
    }

    /// 0: nothing to change; 2: changes; 1: something could not be planned.
    pub fn exit_code(&self) -> i32 {
        if self.failures() > 0 {
            1
        } else if self.changes() > 0 {
            2
        } else {
            0
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut section = |title: String, outcome: &Outcome<String>| {
            out.push_str(&title);
            match outcome {
                Outcome::Changes(c) if c.is_empty() => out.push_str(": no changes\n"),
                Outcome::Changes(c) => {
                    out.push_str(&format!(": {} change{}\n", c.len(), if c.len() == 1 { "" } else { "s" }));
                    for line in c {
                        out.push_str(&format!("  ~ {line}\n"));
                    }
                }
                Outcome::Skipped(why) => out.push_str(&format!(": skipped ({why})\n")),
                Outcome::Failed(why) => out.push_str(&format!(": ERROR {why}\n")),
            }
        };
        for s in self.services.iter().flatten() {
            let outcome = match &s.outcome {
                Outcome::Changes(c) => Outcome::Changes(c.iter().map(ToString::to_string).collect()),
                Outcome::Skipped(w) => Outcome::Skipped(w.clone()),
                Outcome::Failed(w) => Outcome::Failed(w.clone()),
            };
            section(format!("Service {} (load balancer {})", s.key, s.load_balancer), &outcome);
        }
        for key in &self.unmatched {
            section(format!("Service {key}"), &Outcome::Failed("no such LoadBalancer Service".into()));
        }
        if let Some(routes) = &self.routes {
            section("Routes".to_string(), routes);
        }
        // Nodes: only those with something to say; the rest are counted.
        for n in self.nodes.iter().flatten() {
            if matches!(&n.outcome, Outcome::Changes(c) if !c.is_empty()) || matches!(n.outcome, Outcome::Failed(_)) {
                section(format!("Node {}", n.name), &n.outcome);
            }
        }
        if let Some(nodes) = &self.nodes {
            let unchanged = nodes.iter().filter(|n| matches!(&n.outcome, Outcome::Changes(c) if c.is_empty())).count();
            let skipped = nodes.iter().filter(|n| matches!(n.outcome, Outcome::Skipped(_))).count();
            out.push_str(&format!("Nodes: {unchanged} with no changes"));
            if skipped > 0 {
                out.push_str(&format!(", {skipped} skipped (another provider's)"));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "Plan: {} change{}, {} error{}.\n",
            self.changes(),
            if self.changes() == 1 { "" } else { "s" },
            self.failures(),
            if self.failures() == 1 { "" } else { "s" }
        ));
        out
    }

    pub fn json(&self) -> Value {
        fn outcome<T>(o: &Outcome<T>, item: impl Fn(&T) -> Value) -> Value {
            match o {
                Outcome::Changes(c) => json!({ "status": if c.is_empty() { "no_changes" } else { "changes" },
                    "changes": c.iter().map(item).collect::<Vec<_>>() }),
                Outcome::Skipped(why) => json!({ "status": "skipped", "reason": why }),
                Outcome::Failed(why) => json!({ "status": "error", "error": why }),
            }
        }
        let change = |c: &PlannedChange| json!({ "operation": c.operation, "target": c.target, "detail": c.detail, "reason": c.reason });
        let text = |s: &String| json!(s);
        let services: Option<Vec<Value>> = self.services.as_ref().map(|list| {
            list.iter()
                .map(|s| {
                    let mut v = outcome(&s.outcome, change);
                    v["service"] = json!(s.key);
                    v["load_balancer"] = json!(s.load_balancer);
                    v
                })
                .collect()
        });
        let nodes: Option<Vec<Value>> = self.nodes.as_ref().map(|list| {
            list.iter()
                .map(|n| {
                    let mut v = outcome(&n.outcome, text);
                    v["node"] = json!(n.name);
                    v
                })
                .collect()
        });
        json!({
            "services": services,
            "unmatched_services": self.unmatched,
            "routes": self.routes.as_ref().map(|r| outcome(r, text)),
            "nodes": nodes,
            "changes": self.changes(),
            "errors": self.failures(),
        })
    }
}

fn failed(err: impl std::fmt::Display) -> String {
    err.to_string().replace('\n', " ")
}

/// Plans everything the enabled controllers would do.
pub async fn plan<P: CloudProvider>(
    config: &Config,
    client: kube::Client,
    cloud: &P,
    selected: &[String],
) -> Result<Report> {
    let nodes: Vec<Node> = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    let mut report = Report::default();
    let cluster = &config.cluster_name;

    if config.controllers.service
        && let Some(lbs) = cloud.load_balancers()
    {
        let targets: Vec<NodeInfo> =
            nodes.iter().filter(|n| objects::is_lb_eligible(n)).map(objects::node_info).collect();
        let services: Vec<Service> = Api::<Service>::all(client.clone()).list(&ListParams::default()).await?.items;
        let mut matched = BTreeSet::new();
        let mut plans = Vec::new();
        for service in services.iter().filter(|s| objects::wants_load_balancer(s)) {
            let key = format!("{}/{}", service.namespace().unwrap_or_default(), service.name_any());
            if !selected.is_empty() && !selected.contains(&key) {
                continue;
            }
            matched.insert(key.clone());
            let info = objects::service_info(service);
            let outcome = if service.metadata.deletion_timestamp.is_some() {
                Outcome::Skipped("being deleted: its load balancer will be deleted".into())
            } else {
                match lbs.plan(cluster, &info, &targets).await {
                    Ok(changes) => Outcome::Changes(changes),
                    Err(CloudError::ImplementedElsewhere) => Outcome::Skipped("left to another controller".into()),
                    Err(err) => Outcome::Failed(failed(err)),
                }
            };
            plans.push(ServicePlan { key, load_balancer: lbs.name(cluster, &info), outcome });
        }
        plans.sort_by(|a, b| a.key.cmp(&b.key));
        report.unmatched = selected.iter().filter(|s| !matched.contains(*s)).cloned().collect();
        report.services = Some(plans);
    }

    if config.controllers.route
        && config.configure_cloud_routes
        && let Some(routes) = cloud.routes()
    {
        let arcs: Vec<std::sync::Arc<Node>> = nodes.iter().cloned().map(std::sync::Arc::new).collect();
        let infos: Vec<NodeInfo> = nodes.iter().map(objects::node_info).collect();
        report.routes = Some(match routes.list(cluster, &infos).await {
            Ok(existing) => {
                let plan = route::plan(&existing, &route::wanted_routes(&arcs), &config.cluster_cidrs);
                let mut lines: Vec<String> = plan
                    .delete
                    .iter()
                    .map(|r| format!("delete route {} -> {}", r.destination_cidr, r.target_node))
                    .collect();
                lines.extend(plan.create.iter().map(|(cidr, node)| format!("create route {cidr} -> {node}")));
                Outcome::Changes(lines)
            }
            Err(err) => Outcome::Failed(failed(err)),
        });
    }

    if config.controllers.cloud_node
        && let Some(instances) = cloud.instances()
    {
        let mut plans = Vec::new();
        for n in nodes.iter().filter(|n| n.metadata.deletion_timestamp.is_none()) {
            let outcome = match instances.instance_metadata(&objects::node_info(n)).await {
                Ok(meta) => match node::planned_changes(n, &meta) {
                    Ok(changes) => Outcome::Changes(changes),
                    Err(err) => Outcome::Failed(failed(err)),
                },
                Err(err) if err.kind() == "foreign_provider_id" => Outcome::Skipped("another provider's Node".into()),
                Err(err) => Outcome::Failed(failed(err)),
            };
            plans.push(NodePlan { name: n.name_any(), outcome });
        }
        report.nodes = Some(plans);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: &str) -> PlannedChange {
        PlannedChange { operation: op.into(), target: "lb".into(), detail: String::new(), reason: "why".into() }
    }

    #[test]
    fn exit_codes_follow_terraforms_detailed_exitcode() {
        let mut report = Report {
            services: Some(vec![ServicePlan {
                key: "default/web".into(),
                load_balancer: "a1".into(),
                outcome: Outcome::Changes(vec![]),
            }]),
            routes: Some(Outcome::Changes(vec![])),
            nodes: Some(vec![]),
            unmatched: vec![],
        };
        assert_eq!(report.exit_code(), 0);
        assert!(report.text().contains("Service default/web (load balancer a1): no changes"), "{}", report.text());
        report.services.as_mut().unwrap()[0].outcome = Outcome::Changes(vec![change("aws/elb.AddTags")]);
        assert_eq!(report.exit_code(), 2);
        assert!(report.text().contains("  ~ aws/elb.AddTags lb  # why"), "{}", report.text());
        assert_eq!(report.json()["services"][0]["changes"][0]["operation"], "aws/elb.AddTags");
        report.routes = Some(Outcome::Failed("DescribeRouteTables: denied".into()));
        assert_eq!(report.exit_code(), 1);
        assert_eq!(report.json()["routes"]["status"], "error");
    }

    #[test]
    fn a_selected_service_that_does_not_exist_is_an_error() {
        let report = Report { services: Some(vec![]), unmatched: vec!["default/nope".into()], ..Default::default() };
        assert_eq!(report.exit_code(), 1);
        assert!(report.text().contains("Service default/nope: ERROR no such LoadBalancer Service"));
    }

    #[test]
    fn the_flags_are_the_controllers_plus_output_and_service() {
        let args = PlanArgs::try_parse_from([
            "plan",
            "--cloud-provider=aws",
            "--cluster-name=c",
            "--output=json",
            "--service=default/web",
            "--service=kube-system/dns",
        ])
        .unwrap();
        assert_eq!(args.output, Output::Json);
        assert_eq!(args.services, ["default/web", "kube-system/dns"]);
        assert_eq!(args.args.cloud_provider.as_deref(), Some("aws"));
    }
}
