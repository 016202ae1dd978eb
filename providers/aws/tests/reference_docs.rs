//! The annotation reference in `docs/annotations.md` is generated from the registry; this test
//! fails when they drift (regenerate with `UPDATE_DOCS=1 cargo test -p cloud-provider-aws`).

use std::path::PathBuf;

use cloud_provider_aws::load_balancers::annotations;

const BEGIN: &str = "<!-- BEGIN GENERATED: annotations -->";
const END: &str = "<!-- END GENERATED: annotations -->";

#[test]
fn annotation_reference_matches_the_registry() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/annotations.md");
    let text = std::fs::read_to_string(&path).expect("docs/annotations.md");
    let start = text.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = text.find(END).expect("end marker");
    let generated = format!("\n{}", annotations::reference_table());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{generated}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).expect("write docs");
        return;
    }
    assert_eq!(
        &text[start..end],
        generated,
        "docs/annotations.md is stale: UPDATE_DOCS=1 cargo test -p cloud-provider-aws"
    );
}

#[test]
fn every_registered_annotation_is_upstreams_spelling() {
    for a in annotations::REGISTRY {
        assert!(a.key.starts_with(annotations::PREFIX), "{}", a.key);
        assert!(!a.doc.is_empty() && !a.default.is_empty(), "{}", a.key);
    }
    assert_eq!(annotations::REGISTRY.len(), 31);
}
