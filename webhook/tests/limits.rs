//! What keeps slow, many or large clients from exhausting the service: timeouts
//! on request heads and idle connections, the deadline over the body, the token
//! before the body, and the caps on calls and connections. Raw TCP on loopback,
//! since an HTTP client would not misbehave on purpose.

mod common;

use std::time::{Duration, Instant};

use common::{BackOfficeStub, Behaviour, Service, exception, success};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FALLBACK: &str = "We could not check the stock of your cart right now. Please try again.";

async fn connect(service: &Service) -> TcpStream {
    let address = service.base.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("connect")
}

/// Reads until the server closes the connection (bounded by `within`), returning
/// what it sent, or `None` if it was still open at the end.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    closed
        .ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// Reads one answer of a kept-alive connection (up to the end of its JSON body).
async fn read_answer(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        while !received.ends_with(b"}") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

/// Sends a head announcing 100 bytes of body, then nine of them and nothing more;
/// returns the answer and how long it took to come.
async fn answer_to_a_stalled_body(service: &Service) -> (String, Duration) {
    let mut stream = connect(service).await;
    stream
        .write_all(format!("{}{{\"data\":{{", head(100, "")).as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_answer(&mut stream, Duration::from_secs(5)).await;
    (answer, started.elapsed())
}

fn head(content_length: usize, extra: &str) -> String {
    format!(
        "POST /webhook/check-stock HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_request_head_sent_slowly_is_closed_at_the_header_timeout() {
    let service = Service::start(&["--header-timeout-ms", "300"]).await;
    let mut stream = connect(&service).await;
    stream
        .write_all(b"POST /webhook/check-stock HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    let started = Instant::now();
    let closed = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a half-sent head must not stay open");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let service = Service::start(&["--header-timeout-ms", "300"]).await;
    let mut stream = connect(&service).await;
    let body = r#"{"data":{"cart_id":"1","items":[{"sku":"MS-01","qty":1}]}}"#;
    stream
        .write_all(format!("{}{body}", head(body.len(), "")).as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.ends_with(r#"{"op":"success"}"#), "{answer}");
    let closed = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(
        closed.as_deref(),
        Some(""),
        "closed once idle, sending nothing"
    );
}

#[tokio::test]
async fn a_connection_that_keeps_sending_requests_stays_open_past_the_header_timeout() {
    // The timeout is checked once per period: a connection is closed only after a
    // whole period without a request, never while it keeps making calls (one
    // closed at a fixed time from its opening would fail this).
    let service = Service::start(&["--header-timeout-ms", "300"]).await;
    let mut stream = connect(&service).await;
    let body = r#"{"data":{"cart_id":"1","items":[{"sku":"MS-01","qty":1}]}}"#;
    let started = Instant::now();
    for call in 0..8 {
        stream
            .write_all(format!("{}{body}", head(body.len(), "")).as_bytes())
            .await
            .unwrap_or_else(|e| panic!("call {call} could not be sent: {e}"));
        let answer = read_answer(&mut stream, Duration::from_secs(5)).await;
        assert!(
            answer.ends_with(r#"{"op":"success"}"#),
            "call {call}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "spans 3 periods"
    );
}

#[tokio::test]
async fn a_call_longer_than_the_header_timeout_is_still_answered() {
    // A call in flight keeps its connection: the deadline, not the idle check, ends it.
    let service = Service::start(&[
        "--header-timeout-ms",
        "200",
        "--request-deadline-ms",
        "900",
        "--body-timeout-ms",
        "900",
    ])
    .await;
    let (answer, waited) = answer_to_a_stalled_body(&service).await;
    assert!(
        answer.contains(FALLBACK),
        "answered at the deadline: {answer:?}"
    );
    assert!(waited >= Duration::from_millis(800));
}

#[tokio::test]
async fn a_body_trickled_past_the_deadline_is_answered_within_it() {
    let service = Service::start(&["--request-deadline-ms", "300"]).await;
    let (answer, waited) = answer_to_a_stalled_body(&service).await;
    assert!(answer.contains(FALLBACK), "{answer}");
    assert!(waited < Duration::from_secs(2));
}

#[tokio::test]
async fn a_call_without_the_token_is_refused_before_its_body_is_read() {
    let service = Service::start(&["--webhook-auth-token", "s3cr3t"]).await;
    let mut stream = connect(&service).await;
    // A body under the size limit is announced but never sent: only an answer
    // that does not wait for it can arrive.
    stream
        .write_all(head(200_000, "authorization: Bearer wrong\r\n").as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(3)).await;
    assert!(
        answer.contains("invalid Authorization bearer token"),
        "{answer}"
    );
}

/// A service whose one answering slot is held by a call waiting on a slow
/// back-office, under the failure policy given.
async fn service_with_its_only_slot_taken(policy: &str) -> (Service, BackOfficeStub) {
    let stub = BackOfficeStub::start(Behaviour::Stock(vec![], Duration::from_secs(3))).await;
    let service = Service::start(&[
        "--max-in-flight",
        "1",
        "--request-deadline-ms",
        "5000",
        "--backoffice-timeout-ms",
        "4000",
        "--backoffice-url",
        &stub.url,
        "--backoffice-on-error",
        policy,
    ])
    .await;
    let holder = service.client.clone();
    let (url, body) = (service.url("/webhook/check-stock"), cart_body());
    tokio::spawn(async move {
        let _ = holder
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    (service, stub)
}

fn cart_body() -> String {
    common::cart(serde_json::json!([{"sku": "MS-01", "qty": 1}])).to_string()
}

#[tokio::test]
async fn calls_over_the_in_flight_cap_are_shed_at_once_and_counted() {
    let (service, _stub) = service_with_its_only_slot_taken("deny").await;
    let started = Instant::now();
    let (_, answer) = service
        .check(&serde_json::from_str(&cart_body()).unwrap())
        .await;
    assert_eq!(answer, exception(FALLBACK));
    assert!(started.elapsed() < Duration::from_secs(1), "not queued");
    let metrics = service.metrics().await;
    assert!(
        metrics.contains(r#"commerce_webhook_requests_total{outcome="overloaded"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_overload_answer_follows_the_failure_policy() {
    let (service, _stub) = service_with_its_only_slot_taken("allow").await;
    let (_, answer) = service
        .check(&serde_json::from_str(&cart_body()).unwrap())
        .await;
    assert_eq!(answer, success());
    let metrics = service.metrics().await;
    assert!(
        metrics.contains(r#"commerce_webhook_requests_total{outcome="overloaded"} 1"#),
        "{metrics}"
    );
}

/// Issue 17.1: bodies trickled in (a head and one byte) hold no answering slot, so
/// a whole call is answered while they are being read.
#[tokio::test]
async fn trickled_bodies_do_not_starve_whole_calls() {
    let service = Service::start(&[
        "--max-in-flight",
        "2",
        "--body-timeout-ms",
        "5000",
        "--request-deadline-ms",
        "5000",
    ])
    .await;
    let mut tricklers = Vec::new();
    for _ in 0..6 {
        let mut stream = connect(&service).await;
        stream
            .write_all(format!("{}{{", head(100, "")).as_bytes())
            .await
            .unwrap();
        tricklers.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for call in 0..3 {
        let (_, answer) = service
            .check(&serde_json::from_str(&cart_body()).unwrap())
            .await;
        assert_eq!(answer, success(), "call {call}");
    }
    drop(tricklers);
}

#[tokio::test]
async fn bodies_over_the_reading_cap_are_answered_as_overloaded() {
    let service = Service::start(&[
        "--max-bodies-reading",
        "1",
        "--body-timeout-ms",
        "5000",
        "--request-deadline-ms",
        "5000",
    ])
    .await;
    let mut trickler = connect(&service).await;
    trickler
        .write_all(format!("{}{{", head(100, "")).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, answer) = service
        .check(&serde_json::from_str(&cart_body()).unwrap())
        .await;
    assert_eq!(answer, exception(FALLBACK));
    drop(trickler);
}

/// A connection that completed a request, kept alive.
async fn kept_alive(service: &Service) -> TcpStream {
    let mut stream = connect(service).await;
    let body = cart_body();
    stream
        .write_all(format!("{}{body}", head(body.len(), "")).as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.ends_with(r#"{"op":"success"}"#), "{answer}");
    stream
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_on_arrival_and_counted() {
    let service = Service::start(&["--max-connections", "2"]).await;
    // Both have completed a request: neither is shed for the third.
    let first = kept_alive(&service).await;
    let second = kept_alive(&service).await;
    let mut third = connect(&service).await;
    let closed = read_to_close(&mut third, Duration::from_secs(2)).await;
    assert_eq!(closed.as_deref(), Some(""), "the third is closed at once");
    drop((first, second));
    let mut metrics = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(Ok(response)) = tokio::time::timeout(
            Duration::from_secs(1),
            service.client.get(service.url("/metrics")).send(),
        )
        .await
        {
            metrics = response.text().await.unwrap_or_default();
            break;
        }
    }
    assert!(
        metrics.contains("commerce_webhook_connections_refused_total 1"),
        "{metrics}"
    );
}

/// Issue 17.2: connections that send nothing fill the cap; a real call sheds the
/// oldest of them instead of being closed on arrival.
#[tokio::test]
async fn connections_that_send_nothing_are_shed_for_a_real_call() {
    let service = Service::start(&["--max-connections", "4"]).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(&service).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut real = connect(&service).await;
    let body = cart_body();
    real.write_all(format!("{}{body}", head(body.len(), "")).as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut real, Duration::from_secs(5)).await;
    assert!(answer.ends_with(r#"{"op":"success"}"#), "{answer:?}");
    let oldest = read_to_close(&mut idle[0], Duration::from_secs(2)).await;
    assert_eq!(oldest.as_deref(), Some(""), "the oldest idle one was shed");
}

#[tokio::test]
async fn a_first_head_has_a_shorter_budget_than_a_kept_alive_connection() {
    let service = Service::start(&[
        "--first-header-timeout-ms",
        "200",
        "--header-timeout-ms",
        "5000",
    ])
    .await;
    let mut silent = connect(&service).await;
    let mut kept = kept_alive(&service).await;
    let started = Instant::now();
    let closed = read_to_close(&mut silent, Duration::from_secs(3)).await;
    assert_eq!(
        closed.as_deref(),
        Some(""),
        "a connection that sends nothing is closed"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let body = cart_body();
    kept.write_all(format!("{}{body}", head(body.len(), "")).as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut kept, Duration::from_secs(5)).await;
    assert!(
        answer.ends_with(r#"{"op":"success"}"#),
        "kept alive past the first-head budget: {answer:?}"
    );
}
