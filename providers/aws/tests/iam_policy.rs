//! `manifests/iam-policy.json` is derived from the provider's own list of the AWS actions it
//! calls ([`cloud_provider_aws::operations`]) and the scope of each ([`iam::scope`]); the table
//! in `docs/iam.md` too. This test fails when either drifts from the code (regenerate both with
//! `UPDATE_DOCS=1 cargo test -p cloud-provider-aws --test iam_policy`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cloud_provider_aws::iam::{self, Resource, Scope};
use serde_json::{Value, json};

/// The placeholder an operator replaces with the cluster ID.
const CLUSTER_ID: &str = "CLUSTER_ID";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Statement {
    sid: &'static str,
    actions: BTreeSet<String>,
    resources: BTreeSet<&'static str>,
    condition: Option<Value>,
}

impl Statement {
    fn new(sid: &'static str, condition: Option<Value>) -> Self {
        Self { sid, actions: BTreeSet::new(), resources: BTreeSet::new(), condition }
    }

    fn add(&mut self, action: &str, resources: &[Resource]) {
        self.actions.insert(action.to_string());
        self.resources.extend(resources.iter().map(|r| r.arn()));
    }

    fn json(&self) -> Option<Value> {
        if self.actions.is_empty() {
            return None;
        }
        let resource: Value =
            if self.resources.is_empty() { json!("*") } else { json!(self.resources.iter().collect::<Vec<_>>()) };
        let mut s = json!({"Sid": self.sid, "Effect": "Allow", "Action": self.actions, "Resource": resource});
        if let Some(c) = &self.condition {
            s["Condition"] = c.clone();
        }
        Some(s)
    }
}

fn policy(actions: &[String]) -> String {
    let tag = format!("aws:ResourceTag/kubernetes.io/cluster/{CLUSTER_ID}");
    let request_tag = format!("aws:RequestTag/kubernetes.io/cluster/{CLUSTER_ID}");
    let mut read = Statement::new("Describe", None);
    let mut create = Statement::new("CreateOwned", Some(json!({"StringEquals": {&request_tag: "owned"}})));
    let mut create_in = Statement::new("CreateInTheClusterVpc", None);
    let mut ec2_tag_on_create = Statement::new("Ec2TagOnCreate", None);
    let mut elb_tag_on_create = Statement::new("ElbTagOnCreate", None);
    let mut owned = Statement::new("ChangeOwned", Some(json!({"StringEquals": {&tag: "owned"}})));
    let mut cluster = Statement::new("ChangeTheClusters", Some(json!({"Null": {&tag: "false"}})));
    let mut unscoped = Statement::new("Unscoped", None);
    let mut ec2_creates: BTreeSet<&str> = BTreeSet::new();
    let mut elb_creates: BTreeSet<&str> = BTreeSet::new();
    for action in actions {
        let scope = iam::scope(action).unwrap_or_else(|| panic!("{action}: no IAM scope in providers/aws/src/iam.rs"));
        match scope {
            Scope::Read => read.add(action, &[]),
            Scope::Create { resource, also } => {
                create.add(action, &[resource]);
                if !also.is_empty() {
                    create_in.add(action, also);
                }
            }
            Scope::Tag { resources, create_actions } => {
                if action.starts_with("ec2:") {
                    ec2_tag_on_create.add(action, resources);
                    ec2_creates.extend(create_actions);
                } else {
                    elb_tag_on_create.add(action, resources);
                    elb_creates.extend(create_actions);
                }
                owned.add(action, resources);
            }
            Scope::Owned { resources } => owned.add(action, resources),
            Scope::Cluster { resources } => cluster.add(action, resources),
            Scope::Unscoped { .. } => unscoped.add(action, &[]),
        }
    }
    ec2_tag_on_create.condition = Some(json!({"StringEquals": {"ec2:CreateAction": ec2_creates}}));
    elb_tag_on_create.condition = Some(json!({"StringEquals": {"elasticloadbalancing:CreateAction": elb_creates}}));
    let statements: Vec<Value> =
        [read, create, create_in, ec2_tag_on_create, elb_tag_on_create, owned, cluster, unscoped]
            .iter()
            .filter_map(Statement::json)
            .collect();
    let mut text = serde_json::to_string_pretty(&json!({"Version": "2012-10-17", "Statement": statements}))
        .expect("serialize the policy");
    text.push('\n');
    text
}

/// The generated table in docs/iam.md: every action and what it is held to.
fn table(actions: &[String]) -> String {
    let mut out = String::from("| action | held to |\n|---|---|\n");
    for action in actions {
        let held = match iam::scope(action).expect("scoped") {
            Scope::Read => "any resource (reads)".to_string(),
            Scope::Create { resource, also } => {
                let mut s = format!("new {resource:?} tagged `owned` in the request");
                if !also.is_empty() {
                    s.push_str(&format!(
                        ", in any {}",
                        also.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", ")
                    ));
                }
                s
            }
            Scope::Tag { resources, create_actions } => format!(
                "{} while {} creates it, or already `owned`",
                resources.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", "),
                create_actions.join("/")
            ),
            Scope::Owned { resources } => {
                format!("{} tagged `owned`", resources.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", "))
            }
            Scope::Cluster { resources } => format!(
                "{} tagged for the cluster (`owned` or `shared`)",
                resources.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", ")
            ),
            Scope::Unscoped { reason } => format!("**any resource**: {reason}"),
        };
        out.push_str(&format!("| `{action}` | {held} |\n"));
    }
    out
}

const BEGIN: &str = "<!-- BEGIN generated by providers/aws/tests/iam_policy.rs -->\n";
const END: &str = "<!-- END generated -->";

fn check_or_write(path: &Path, expected: &str) {
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, expected).expect("write");
        return;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        text,
        expected,
        "{} is stale: UPDATE_DOCS=1 cargo test -p cloud-provider-aws --test iam_policy",
        path.display()
    );
}

#[test]
fn the_policy_and_its_table_are_derived_from_the_operations_the_code_calls() {
    let actions = cloud_provider_aws::operations();
    check_or_write(&repo().join("manifests/iam-policy.json"), &policy(&actions));

    let doc = repo().join("docs/iam.md");
    let text = std::fs::read_to_string(&doc).expect("docs/iam.md");
    let (head, rest) = text.split_once(BEGIN).expect("docs/iam.md has the BEGIN marker");
    let (_, tail) = rest.split_once(END).expect("docs/iam.md has the END marker");
    check_or_write(&doc, &format!("{head}{BEGIN}{}{END}{tail}", table(&actions)));
}

#[test]
fn every_write_is_held_to_the_cluster_tag_or_listed_as_unscoped() {
    let actions = cloud_provider_aws::operations();
    let value: Value = serde_json::from_str(&policy(&actions)).expect("valid JSON");
    let statements = value["Statement"].as_array().expect("statements");
    let mut granted = BTreeSet::new();
    for s in statements {
        let resource_any = s["Resource"] == json!("*");
        for a in s["Action"].as_array().expect("actions") {
            let a = a.as_str().expect("action").to_string();
            let read = matches!(iam::scope(&a), Some(Scope::Read));
            let unscoped = matches!(iam::scope(&a), Some(Scope::Unscoped { .. }));
            // A write on every resource with no condition must be one the table says cannot be
            // narrowed; every other write names resource types or carries a tag condition.
            if resource_any && s.get("Condition").is_none() {
                assert!(read || unscoped, "{a} is granted on every resource with no condition");
            }
            granted.insert(a);
        }
    }
    // Exactly the operations the code calls: none missing, none extra.
    assert_eq!(granted, actions.iter().cloned().collect::<BTreeSet<_>>());
    // Deletions are held to what the cluster owns.
    for delete in
        ["ec2:DeleteSecurityGroup", "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteTargetGroup"]
    {
        assert!(matches!(iam::scope(delete), Some(Scope::Owned { .. })), "{delete}");
    }
    let text = policy(&actions);
    assert!(!text.contains("Volume") && !text.contains("autoscaling:") && !text.contains("kms:"));
}

/// Every AWS call goes through one of the three service wrappers (`ec2.rs`, `elb.rs`,
/// `elbv2.rs`): only they make calls (`calls.run` / `calls.page`, each naming its operation), and
/// only `clients.rs` and they name an SDK client. `Calls::run` takes an operation of
/// `cloud_provider_aws::operations`, so a call missing from the list does not compile; this
/// checks the other way too: every listed operation is called by its wrapper.
#[test]
fn every_call_goes_through_a_wrapper_and_every_listed_operation_is_called() {
    fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                out.push((path, text));
            }
        }
    }
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let wrappers = ["ec2.rs", "elb.rs", "elbv2.rs"].map(|f| src.join(f));
    let call = regex::Regex::new(r"calls\s*\.(run|page)\(\s*(Ec2Op|ElbOp|Elbv2Op)::([A-Z][A-Za-z]+)").expect("regex");
    let client =
        regex::Regex::new(r"aws_sdk_(ec2|elasticloadbalancing|elasticloadbalancingv2)::Client\b").expect("regex");
    let mut called = BTreeSet::new();
    for (path, text) in &files {
        let is_wrapper = wrappers.contains(path);
        if !is_wrapper {
            assert!(
                !text.contains("calls.run(") && !text.contains("calls.page("),
                "{} calls AWS itself; calls belong in ec2.rs, elb.rs or elbv2.rs",
                path.display()
            );
            assert!(
                path.ends_with("clients.rs") || !client.is_match(text),
                "{} holds an SDK client; only the wrappers do",
                path.display()
            );
            continue;
        }
        let service = match path.file_name().and_then(|f| f.to_str()) {
            Some("ec2.rs") => "Ec2Op",
            Some("elb.rs") => "ElbOp",
            _ => "Elbv2Op",
        };
        for c in call.captures_iter(text) {
            assert_eq!(&c[2], service, "{} calls {}::{}", path.display(), &c[2], &c[3]);
            called.insert(format!("{}::{}", &c[2], &c[3]));
        }
    }
    use cloud_provider_aws::operations::{Ec2Op, ElbOp, Elbv2Op};
    let listed: BTreeSet<String> = Ec2Op::ALL
        .iter()
        .map(|o| format!("Ec2Op::{o:?}"))
        .chain(ElbOp::ALL.iter().map(|o| format!("ElbOp::{o:?}")))
        .chain(Elbv2Op::ALL.iter().map(|o| format!("Elbv2Op::{o:?}")))
        .collect();
    let uncalled: Vec<&String> = listed.difference(&called).collect();
    assert!(called.len() > 40, "the scan found only {} calls: {called:?}", called.len());
    assert!(uncalled.is_empty(), "listed but never called (so needlessly in the IAM policy): {uncalled:?}");
}
