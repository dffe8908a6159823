//! Logs read off a terminal (`kubectl logs`, `docker logs`, a file) carry no ANSI
//! colour codes: the binary is run with its stderr piped, as a container runtime
//! runs it, and made to log through tracing without any network (a start-up that
//! fails on a missing inventory file logs its error before exiting).
#![cfg(feature = "server")]

use std::process::{Command, Stdio};

const ESC: u8 = 0x1b;

/// Runs the webhook with an inventory file that does not exist and returns what it
/// wrote to stderr; the run must fail.
fn stderr_of_a_failing_start(log_format: &str) -> String {
    let dir = std::env::temp_dir().join(format!("cwh-plain-logs-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_commerce-webhook"))
        .args(["--bind-address", "127.0.0.1", "--port", "0"])
        .arg("--inventory-file")
        .arg(dir.join("missing-inventory.yaml"))
        .args(["--log-format", log_format])
        // Whatever the developer's shell says, the decision must come from stderr.
        .env_remove("NO_COLOR")
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run commerce-webhook");
    assert!(
        !output.status.success(),
        "a missing inventory must stop start-up"
    );
    let stderr = output.stderr;
    assert!(
        !stderr.contains(&ESC),
        "stderr is not a terminal, yet the log has escape codes: {:?}",
        String::from_utf8_lossy(&stderr)
    );
    String::from_utf8(stderr).expect("stderr is UTF-8")
}

#[test]
fn text_logs_off_a_terminal_have_no_colour_codes() {
    let stderr = stderr_of_a_failing_start("text");
    // The tracing line (its level and the file named), not only the final eprintln.
    let logged = stderr
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("missing-inventory.yaml"));
    assert!(
        logged.is_some(),
        "no ERROR line logged through tracing: {stderr}"
    );
}

#[test]
fn json_logs_stay_one_object_per_line() {
    let stderr = stderr_of_a_failing_start("json");
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .collect();
    assert!(
        logged
            .iter()
            .any(|line| line.contains("\"level\":\"ERROR\"")
                && line.contains("missing-inventory.yaml")),
        "no JSON ERROR line: {stderr}"
    );
}
