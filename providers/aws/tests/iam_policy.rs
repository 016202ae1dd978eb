//! `manifests/iam-policy.json` lists exactly the AWS actions the provider can call; this test
//! fails when it drifts from the provider's own list of operations (regenerate with
//! `UPDATE_DOCS=1 cargo test -p cloud-provider-aws --test iam_policy`).

use std::path::PathBuf;

fn policy_for(actions: &[String]) -> String {
    let list: Vec<String> = actions.iter().map(|a| format!("        \"{a}\"")).collect();
    format!(
        "{{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {{\n      \"Sid\": \"CloudControllerManager\",\n      \"Effect\": \"Allow\",\n      \"Action\": [\n{}\n      ],\n      \"Resource\": \"*\"\n    }}\n  ]\n}}\n",
        list.join(",\n")
    )
}

#[test]
fn iam_policy_lists_exactly_the_operations_the_code_calls() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/iam-policy.json");
    let actions = cloud_provider_aws::operations();
    let expected = policy_for(&actions);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).expect("write the policy");
        return;
    }
    let text = std::fs::read_to_string(&path).expect("manifests/iam-policy.json");
    assert_eq!(
        text, expected,
        "manifests/iam-policy.json is stale: UPDATE_DOCS=1 cargo test -p cloud-provider-aws --test iam_policy"
    );
    // No leftovers of the volume era, and every action is one the code names.
    assert!(!text.contains("Volume") && !text.contains("autoscaling:") && !text.contains("kms:"));
    assert!(actions.iter().all(|a| a.starts_with("ec2:") || a.starts_with("elasticloadbalancing:")));
}
