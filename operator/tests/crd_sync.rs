//! The committed CRD YAML is exactly what the Rust types generate (and the Helm
//! chart ships the same file), so nobody installs a schema the operator does not use.

use std::path::Path;

fn repo_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn committed_crd_matches_the_types() {
    let generated = commerce_webhook_operator::resource::crd_yaml().unwrap();
    assert!(
        repo_file("crds/commercewebhook.yaml") == generated,
        "crds/commercewebhook.yaml is stale: run `cargo run -p commerce-webhook-operator -- crd > crds/commercewebhook.yaml`"
    );
}

#[test]
fn chart_crd_is_the_top_level_crd() {
    assert!(
        repo_file("charts/commerce-webhook-operator/crds/commercewebhook.yaml")
            == repo_file("crds/commercewebhook.yaml"),
        "charts/commerce-webhook-operator/crds/commercewebhook.yaml differs from crds/commercewebhook.yaml: copy it over"
    );
}
