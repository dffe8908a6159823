//! `docs/reference/webhook-config.md`, the webhook's variables and flags, generated
//! from the one definition of them (`commerce_webhook::contract::Args`, which the
//! binary parses and the operator builds pods from), so the page cannot drift.
//!
//! The test fails when the page differs from what it generates; run with
//! `CWO_BLESS=1` to write it instead:
//!
//!     CWO_BLESS=1 cargo test -p commerce-webhook --test reference_docs

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::CommandFactory;
use commerce_webhook::contract::{Args, var};

const BLESS: &str = "CWO_BLESS";
const REGENERATE: &str = "CWO_BLESS=1 cargo test -p commerce-webhook --test reference_docs";
const PAGE: &str = "docs/reference/webhook-config.md";

/// A table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn code(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn page() -> String {
    let command = Args::command();
    let mut page = format!(
        "<!-- Generated from commerce_webhook::contract::Args by webhook/tests/reference_docs.rs: do not edit.\n     \
         Regenerate: {REGENERATE} -->\n"
    );
    writeln!(
        page,
        "# `commerce-webhook` variables and flags\n\n\
         {}\n\n\
         Each setting is an environment variable and the flag beside it \
         (`commerce-webhook --help` prints the same). A bad value stops start-up with a \
         message naming the variable. Under the operator, pods get these variables from \
         typed CommerceWebhook fields ([commercewebhook.md](commercewebhook.md)); a \
         CommerceWebhook's `inputs` may set only `LOG_LEVEL` and custom parameters. \
         Secret values (tokens, the key) are never printed, in help or logs.\n\n\
         | variable | flag | default | values | description |\n|---|---|---|---|---|",
        cell(
            &command
                .get_about()
                .map(ToString::to_string)
                .unwrap_or_default()
        )
    )
    .unwrap();
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| code(v.get_name()))
            .collect();
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        writeln!(
            page,
            "| {} | {} | {} | {} | {} |",
            code(env),
            code(&format!("--{}", arg.get_long().unwrap_or_default())),
            cell(&code(&defaults.join(","))),
            values.join(", "),
            cell(&help),
        )
        .unwrap();
    }
    page
}

#[test]
fn webhook_config_reference_is_generated_from_the_contract() {
    let page = page();
    // Every variable of the contract has its row.
    for name in var::ALL {
        assert!(
            page.contains(&format!("| `{name}` |")),
            "{name} missing from:\n{page}"
        );
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(PAGE);
    if std::env::var_os(BLESS).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a parent directory")).unwrap();
        std::fs::write(&path, &page).unwrap_or_else(|e| panic!("writing {PAGE}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == page,
        "{PAGE} is stale: regenerate it with `{REGENERATE}`"
    );
}
