//! The operator's logs read off a terminal (`kubectl logs`) carry no ANSI colour
//! codes. The binary runs with its stderr piped, as the kubelet runs it, against an
//! API server address on loopback where nothing listens: leader election cannot
//! reach the Lease and logs that through tracing, with no cluster involved.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const ESC: char = '\u{1b}';

/// Kills the operator when the test ends, also when it fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kubeconfig naming a loopback port that was just free: every API call is refused.
fn kubeconfig_of_a_closed_port(dir: &std::path::Path) -> std::path::PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: none\n\
             clusters: [{{name: none, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             users: [{{name: none, user: {{}}}}]\n\
             contexts: [{{name: none, context: {{cluster: none, user: none}}}}]\n"
        ),
    )
    .expect("write kubeconfig");
    path
}

#[test]
fn text_logs_off_a_terminal_have_no_colour_codes() {
    let dir = std::env::temp_dir().join(format!("cwo-plain-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let kubeconfig = kubeconfig_of_a_closed_port(&dir);
    let child = Command::new(env!("CARGO_BIN_EXE_commerce-webhook-operator"))
        .args([
            "run",
            "--leader-elect",
            "--leader-election-seconds",
            "3",
            "--watch-namespace",
            "plain-logs",
            "--metrics-address",
            "127.0.0.1:0",
            "--webhook-image",
            "cwo.local/commerce-webhook:0.1.0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "plain-logs-test")
        .env("LOG_LEVEL", "info")
        // Whatever the developer's shell says, the decision must come from stderr.
        .env_remove("NO_COLOR")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start commerce-webhook-operator");
    let mut child = KillOnDrop(child);
    let stderr = child.0.stderr.take().expect("piped stderr");

    // The first tracing line (a level word in it), read on a thread so a silent
    // operator fails the test instead of hanging it.
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let is_log = ["INFO", "WARN", "ERROR"].iter().any(|l| line.contains(l));
            if lines.send((is_log, line)).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let logged = loop {
        match received.recv_timeout(Duration::from_secs(60)) {
            Ok((true, line)) => break line,
            Ok((false, line)) => seen.push(line),
            Err(error) => panic!("no log line from the operator ({error}); it wrote: {seen:?}"),
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !logged.contains(ESC) && !seen.iter().any(|line| line.contains(ESC)),
        "stderr is not a terminal, yet the log has escape codes: {logged:?} after {seen:?}"
    );
}
