//! The back-office client uses a proxy only when one is configured for it. Alone
//! in its test binary because it sets the process's proxy variables.

mod common;

use std::time::Duration;

use common::{BackOfficeStub, Behaviour, Service, cart, success};
use serde_json::json;

#[tokio::test]
async fn proxy_variables_are_ignored_and_an_explicit_proxy_is_used() {
    let back_office =
        BackOfficeStub::start(Behaviour::Stock(vec![("A", 5.0)], Duration::ZERO)).await;
    // Answers like the back-office (it routes on the path), so that a call sent
    // through it would succeed as well: only what each saw tells them apart.
    let proxy = BackOfficeStub::start(Behaviour::Stock(vec![("A", 5.0)], Duration::ZERO)).await;
    let proxy_origin = proxy.url.trim_end_matches("/stock").to_owned();
    // SAFETY: the only test of this binary, and no other thread reads the
    // environment while it is set.
    unsafe {
        for name in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"] {
            std::env::set_var(name, &proxy_origin);
        }
    }
    let direct_client = || {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };

    let mut service = Service::start(&["--backoffice-url", &back_office.url]).await;
    service.client = direct_client();
    let (_, answer) = service.check(&cart(json!([{"sku": "A", "qty": 1}]))).await;
    assert_eq!(answer, success());
    assert_eq!(back_office.seen.lock().unwrap().bodies.len(), 1);
    assert!(
        proxy.seen.lock().unwrap().bodies.is_empty(),
        "HTTP_PROXY was used"
    );

    let mut service = Service::start(&[
        "--backoffice-url",
        &back_office.url,
        "--backoffice-proxy",
        &proxy_origin,
    ])
    .await;
    service.client = direct_client();
    let (_, answer) = service.check(&cart(json!([{"sku": "A", "qty": 1}]))).await;
    assert_eq!(answer, success());
    assert_eq!(
        proxy.seen.lock().unwrap().bodies.len(),
        1,
        "the explicit proxy"
    );
}
