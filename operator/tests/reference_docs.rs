//! Reference pages generated from the code, so they cannot drift from it:
//! `docs/reference/commercewebhook.md` from the CRD the operator generates,
//! `docs/reference/chart-values.md` from the chart's `values.yaml` and its comments,
//! `docs/reference/operator-cli.md` from the binary's own `--help`.
//!
//! Each test fails when its page differs from what it generates; run with
//! `CWO_BLESS=1` to write the pages instead:
//!
//!     CWO_BLESS=1 cargo test -p commerce-webhook-operator --test reference_docs

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use commerce_webhook_operator::resource::CommerceWebhook;
use kube::CustomResourceExt;
use serde_json::Value;

const BLESS: &str = "CWO_BLESS";
const REGENERATE: &str =
    "CWO_BLESS=1 cargo test -p commerce-webhook-operator --test reference_docs";

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Compares a generated page with the committed one, or writes it under `CWO_BLESS=1`.
fn check_or_bless(relative: &str, generated: &str) {
    let path = repo_path(relative);
    if std::env::var_os(BLESS).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a parent directory")).unwrap();
        std::fs::write(&path, generated).unwrap_or_else(|e| panic!("writing {relative}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{relative} is stale (first difference at line {}): regenerate it with `{REGENERATE}`",
            line + 1
        );
    }
}

fn header(source: &str) -> String {
    format!(
        "<!-- Generated from {source} by operator/tests/reference_docs.rs: do not edit.\n     \
         Regenerate: {REGENERATE} -->\n"
    )
}

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

// --- the CRD ------------------------------------------------------------------

fn type_of(schema: &Value) -> String {
    if schema.get("x-kubernetes-int-or-string").is_some() {
        return "int or string".into();
    }
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    match (kind, schema.get("format").and_then(Value::as_str)) {
        ("array", _) => format!("list of {}", type_of(&schema["items"])),
        ("object", _)
            if schema
                .get("additionalProperties")
                .is_some_and(Value::is_object) =>
        {
            format!("map of {}", type_of(&schema["additionalProperties"]))
        }
        (kind, Some(format)) => format!("{kind} ({format})"),
        (kind, None) => kind.to_owned(),
    }
}

fn constraints(schema: &Value) -> String {
    // Integral bounds as integers (schemars writes `1.0`).
    let number = |key: &str| {
        schema.get(key).map(|v| match v.as_f64() {
            Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
            _ => v.to_string(),
        })
    };
    let mut parts = Vec::new();
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| code(v.as_str().unwrap_or(&v.to_string())))
            .collect();
        parts.push(format!("one of {}", values.join(", ")));
    }
    for (name, low, high) in [
        ("", "minimum", "maximum"),
        ("length ", "minLength", "maxLength"),
        ("items ", "minItems", "maxItems"),
        ("keys ", "minProperties", "maxProperties"),
    ] {
        match (number(low), number(high)) {
            (Some(low), Some(high)) => parts.push(format!("{name}{low}..={high}")),
            (Some(low), None) => parts.push(format!("{name}>= {low}")),
            (None, Some(high)) => parts.push(format!("{name}<= {high}")),
            (None, None) => {}
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        parts.push(format!("matches {}", code(pattern)));
    }
    if let Some(keys) = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
    {
        let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        parts.push(format!("unique by {}", keys.join(", ")));
    }
    parts.join("; ")
}

fn fields(path: &str, schema: &Value, required: bool, rows: &mut Vec<String>) {
    let description = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let default = schema
        .get("default")
        .map(|v| code(&v.to_string()))
        .unwrap_or_default();
    rows.push(format!(
        "| {} | {} | {} | {} | {} | {} |",
        code(path),
        cell(&type_of(schema)),
        if required { "yes" } else { "" },
        cell(&default),
        cell(&constraints(schema)),
        cell(description),
    ));
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            fields(
                &format!("{path}.{name}"),
                child,
                required.contains(&name.as_str()),
                rows,
            );
        }
    }
    if let Some(items) = schema
        .get("items")
        .filter(|i| i.get("properties").is_some())
    {
        fields(&format!("{path}[]"), items, false, rows);
    }
}

fn crd_page() -> String {
    let crd = serde_json::to_value(CommerceWebhook::crd()).expect("the CRD serializes");
    let spec = &crd["spec"];
    let names = &spec["names"];
    let version = &spec["versions"][0];
    let mut page = header("`CommerceWebhook::crd()` (the same CRD as crds/commercewebhook.yaml)");
    let short: Vec<&str> = names["shortNames"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    writeln!(
        page,
        "# CommerceWebhook reference\n\n\
         `apiVersion: {}/{}`, `kind: {}`, {} (short name {}, category `{}`).\n\n\
         Every field the API server accepts, with its type, default and the bounds it \
         checks. What the operator does with a resource (children, status, events) is in \
         [commercewebhook-behaviour.md](commercewebhook-behaviour.md); an annotated \
         example is in [examples/check-stock.yaml](../../examples/check-stock.yaml).\n",
        spec["group"].as_str().unwrap_or_default(),
        version["name"].as_str().unwrap_or_default(),
        names["kind"].as_str().unwrap_or_default(),
        spec["scope"].as_str().unwrap_or_default().to_lowercase(),
        short.iter().map(|s| code(s)).collect::<Vec<_>>().join(", "),
        names["categories"][0].as_str().unwrap_or_default(),
    )
    .unwrap();
    writeln!(page, "## `kubectl get` columns\n").unwrap();
    writeln!(page, "| column | JSONPath | shown |\n|---|---|---|").unwrap();
    for column in version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let wide = column.get("priority").and_then(Value::as_i64).unwrap_or(0) > 0;
        writeln!(
            page,
            "| {} | {} | {} |",
            column["name"].as_str().unwrap_or_default(),
            cell(&code(column["jsonPath"].as_str().unwrap_or_default())),
            if wide { "with `-o wide`" } else { "always" },
        )
        .unwrap();
    }
    let root = &version["schema"]["openAPIV3Schema"]["properties"];
    for part in ["spec", "status"] {
        let mut rows = Vec::new();
        fields(part, &root[part], false, &mut rows);
        writeln!(
            page,
            "\n## `{part}`\n\n\
             | field | type | required | default | bounds | description |\n\
             |---|---|---|---|---|---|\n{}",
            rows.join("\n")
        )
        .unwrap();
    }
    page
}

#[test]
fn commercewebhook_reference_is_generated_from_the_crd() {
    let page = crd_page();
    // The walk reached nested fields, and bounds and defaults were read.
    for expected in [
        "`spec.stock.backOffice.url`",
        "`spec.inputs[].name`",
        "`status.conditions`",
        "one of `check-stock`",
    ] {
        assert!(page.contains(expected), "{expected} missing from:\n{page}");
    }
    check_or_bless("docs/reference/commercewebhook.md", &page);
}

// --- the chart's values -------------------------------------------------------

/// One documented value: its dotted key, its default as written, its comments.
struct ChartValue {
    key: String,
    default: String,
    comment: String,
}

/// Reads `values.yaml` as a chart author writes it: a comment block directly above a
/// key (or after its value on the same line) documents it; nested keys are indented.
fn chart_values(text: &str) -> Vec<ChartValue> {
    let mut values = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    let mut parents: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            comment.clear();
            continue;
        }
        if let Some(text) = trimmed.strip_prefix('#') {
            comment.push(text.trim().to_owned());
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some((key, rest)) = trimmed.split_once(':') else {
            comment.clear();
            continue;
        };
        if key.starts_with('-') || key.contains(' ') {
            comment.clear();
            continue;
        }
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let path: Vec<&str> = parents.iter().map(|(_, k)| k.as_str()).collect();
        let full = if path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", path.join("."))
        };
        let (default, trailing) = match rest.split_once(" #") {
            Some((value, note)) => (value.trim(), Some(note.trim())),
            None => (rest.trim(), None),
        };
        comment.extend(trailing.map(str::to_owned));
        if default.is_empty() {
            parents.push((indent, key.to_owned()));
        }
        if !default.is_empty() || !comment.is_empty() {
            values.push(ChartValue {
                key: full,
                default: default.to_owned(),
                comment: comment.join(" "),
            });
        }
        comment.clear();
    }
    values
}

const VALUES: &str = "charts/commerce-webhook-operator/values.yaml";

fn chart_values_page() -> String {
    let text = std::fs::read_to_string(repo_path(VALUES)).expect("values.yaml");
    let mut page = header(&format!("{VALUES} and its comments"));
    writeln!(
        page,
        "# Helm chart values\n\n\
         The values of `charts/commerce-webhook-operator`, their defaults and what they do, \
         as `values.yaml` documents them. `values.schema.json` refuses a wrong value with \
         the path of the offending key. A value without a default here is a map whose keys \
         follow.\n\n\
         | value | default | description |\n|---|---|---|"
    )
    .unwrap();
    for value in chart_values(&text) {
        writeln!(
            page,
            "| {} | {} | {} |",
            code(&value.key),
            cell(&code(&value.default)),
            cell(&value.comment)
        )
        .unwrap();
    }
    page
}

#[test]
fn chart_values_reference_is_generated_from_values_yaml() {
    let parsed = chart_values("# Top.\na:\n  # Inner.\n  b: 1   # note\n  c: {x: 1}\nd: []\n");
    let seen: Vec<(&str, &str, &str)> = parsed
        .iter()
        .map(|v| (v.key.as_str(), v.default.as_str(), v.comment.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("a", "", "Top."),
            ("a.b", "1", "Inner. note"),
            ("a.c", "{x: 1}", ""),
            ("d", "[]", ""),
        ]
    );
    let page = chart_values_page();
    assert!(page.contains("`leaderElection.enabled`"), "{page}");
    check_or_bless("docs/reference/chart-values.md", &page);
}

// --- the operator's command line ------------------------------------------------

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_commerce-webhook-operator"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run commerce-webhook-operator");
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

#[test]
fn operator_cli_reference_is_generated_from_its_help() {
    let mut page = header("`commerce-webhook-operator --help`");
    writeln!(
        page,
        "# `commerce-webhook-operator` command line\n\n\
         Every flag can also be set by the environment variable shown with it (the chart \
         sets them from its values).\n"
    )
    .unwrap();
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["commerce-config", "--help"],
        &["crd", "--help"],
    ] {
        let text = help(args);
        assert!(text.contains("Usage:"), "{text}");
        writeln!(
            page,
            "## `commerce-webhook-operator {}`\n\n```text\n{}\n```\n",
            args.join(" "),
            text.trim_end()
        )
        .unwrap();
    }
    check_or_bless("docs/reference/operator-cli.md", &page);
}
