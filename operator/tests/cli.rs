//! The operator's command line, run as users run it: the webhook image has no
//! default (issue 17 item 6: a default naming a registry namespace this project
//! does not own would run whoever claims it), so `run` without one stops at once
//! with an error naming the flag and its variable, before any cluster is contacted;
//! the commands that need no image still work without it.

use std::process::{Command, Output};

fn operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_commerce-webhook-operator"))
        .args(args)
        .env_remove("WEBHOOK_IMAGE")
        // No cluster: a run that got past the flags would fail on this instead.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("running the operator binary")
}

#[test]
fn run_without_a_webhook_image_is_refused_naming_the_flag() {
    for args in [&["run"][..], &[][..]] {
        let output = operator(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--webhook-image <WEBHOOK_IMAGE>"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_webhook_image_from_the_environment_satisfies_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_commerce-webhook-operator"))
        .arg("run")
        .env(
            "WEBHOOK_IMAGE",
            "registry.example/commerce-webhook@sha256:0",
        )
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("running the operator binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("--webhook-image"), "{stderr}");
    assert!(
        stderr.contains("cannot connect to Kubernetes"),
        "past the flags, it fails on the missing cluster: {stderr}"
    );
}

#[test]
fn commands_that_need_no_image_run_without_one() {
    let output = operator(&["crd"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("kind: CustomResourceDefinition"));
}
