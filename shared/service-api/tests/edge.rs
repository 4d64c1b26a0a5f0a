//! The edge on the in-memory fakes: the order of checks, the statuses and the error shape
//! (CONTRACTS.md §1), without KiotViet (unreachable here) or the network.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use std::sync::Arc;

use chrono::Utc;
use engine::{Service, ServiceParts, Settings};
use kiotviet::KiotVietConfig;
use secrecy::SecretString;
use serde_json::json;
use service_api::{ApiRequest, ApiResponse, handle};
use store::{Connection, SealedSecret, Switches};

const ADMIN: &str = "admin-token";

fn service() -> Service {
    Service::new(ServiceParts {
        settings: Settings::default(),
        store: Arc::new(store::MemoryStore::new()),
        sealer: Arc::new(store::MemorySealer::new()),
        queue: Arc::new(store::MemoryQueue::new()),
        kv_config: KiotVietConfig::for_urls("http://127.0.0.1:9", "http://127.0.0.1:9"),
        abaha_token: SecretString::from("t".to_string()),
        admin_token: SecretString::from(ADMIN.to_string()),
        clock: Arc::new(mapping::time::SystemClock),
    })
}

/// `shop` connected, with `shop_token` as its shop token.
async fn connect(svc: &Service, shop: &str, shop_token: &str) {
    let now = Utc::now();
    svc.store
        .put_connection(&Connection {
            shop_id: shop.into(),
            account_type: "fnb".into(),
            retailer: "cafe".into(),
            client_id: "id".into(),
            sealed_secret: SealedSecret::from_base64("c2VjcmV0"),
            branch_id: 1,
            sync: Switches {
                products: true,
                customers: true,
                orders: false,
            },
            keep_app_product_status: true,
            invoice_history_days: 30,
            shop_token_hash: Some(store::hash_token(shop_token)),
            webhook_secret: None,
            webhook_ids: vec![],
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
}

fn request(method: &str, path: &str, token: Option<&str>, body: &[u8]) -> ApiRequest {
    let mut req = ApiRequest {
        method: method.into(),
        path: path.into(),
        body: body.to_vec(),
        ..ApiRequest::default()
    };
    if let Some(t) = token {
        req.headers
            .insert("authorization".into(), format!("Bearer {t}"));
    }
    req
}

fn code(a: &ApiResponse) -> &str {
    a.body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn checks_run_route_then_method_then_size_then_token() {
    let svc = service();
    let big = vec![b' '; svc.settings.max_body_bytes + 1];
    let cases: Vec<(ApiRequest, u16, &str)> = vec![
        (request("GET", "/v1/nowhere", None, b""), 404, "not_found"),
        (
            request("PATCH", "/v1/shops/s1/connection", None, b""),
            405,
            "method_not_allowed",
        ),
        (
            request("POST", "/v1/shops/s1/orders", None, &big),
            413,
            "payload_too_large",
        ),
        (
            request("GET", "/v1/shops/s1/connection", None, b""),
            401,
            "unauthorized",
        ),
        (
            request("GET", "/v1/shops/s1/connection", Some("wrong"), b""),
            401,
            "unauthorized",
        ),
        (
            request("GET", "/v1/shops/a%2Fb/connection", Some(ADMIN), b""),
            422,
            "validation_failed",
        ),
    ];
    for (req, status, want) in cases {
        let label = format!("{} {}", req.method, req.path);
        let a = handle(&svc, req).await;
        assert_eq!((a.status, code(&a)), (status, want), "{label}: {}", a.body);
        assert!(
            a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(a.body["error"]["details"].is_object());
    }
}

#[tokio::test]
async fn a_405_names_the_allowed_methods() {
    let a = handle(
        &service(),
        request("DELETE", "/v1/shops/s1/sync", Some(ADMIN), b""),
    )
    .await;
    assert_eq!(a.status, 405);
    assert!(a.headers.contains(&("allow".into(), "POST, GET".into())));
}

#[tokio::test]
async fn a_shop_token_may_push_its_own_shop_only() {
    let svc = service();
    connect(&svc, "s1", "tok-1").await;
    connect(&svc, "s2", "tok-2").await;
    // Its own shop's connection: not a route for a shop token.
    let a = handle(
        &svc,
        request("GET", "/v1/shops/s1/connection", Some("tok-1"), b""),
    )
    .await;
    assert_eq!((a.status, code(&a)), (403, "forbidden"));
    // Another shop's orders: someone else's token.
    let a = handle(
        &svc,
        request("POST", "/v1/shops/s2/orders", Some("tok-1"), b"{}"),
    )
    .await;
    assert_eq!((a.status, code(&a)), (403, "forbidden"));
    // Its own shop's orders: past authentication, to the body's rules.
    let a = handle(
        &svc,
        request("POST", "/v1/shops/s1/orders", Some("tok-1"), b"{"),
    )
    .await;
    assert_eq!((a.status, code(&a)), (400, "malformed_json"));
}

#[tokio::test]
async fn engine_errors_answer_with_their_codes_status() {
    let svc = service();
    connect(&svc, "s1", "tok-1").await;
    let cases: Vec<(ApiRequest, u16, &str)> = vec![
        (
            request("GET", "/v1/shops/nobody/connection", Some(ADMIN), b""),
            404,
            "unknown_shop",
        ),
        (
            request("POST", "/v1/shops/nobody/sync", Some(ADMIN), b""),
            404,
            "unknown_shop",
        ),
        (
            request("GET", "/v1/shops/s1/sync", Some(ADMIN), b""),
            404,
            "not_found",
        ),
        (
            request("POST", "/v1/shops/s1/sync", Some(ADMIN), b"[1]"),
            422,
            "validation_failed",
        ),
        (
            request(
                "POST",
                "/v1/shops/s1/sync",
                Some(ADMIN),
                br#"{"entities": []}"#,
            ),
            422,
            "validation_failed",
        ),
        (
            request(
                "POST",
                "/v1/shops/s1/customers",
                Some(ADMIN),
                br#"{"id": "U-1", "phone": "12"}"#,
            ),
            422,
            "validation_failed",
        ),
    ];
    for (req, status, want) in cases {
        let label = format!("{} {}", req.method, req.path);
        let a = handle(&svc, req).await;
        assert_eq!((a.status, code(&a)), (status, want), "{label}: {}", a.body);
    }
    // GET of a connection: the view, never the secret.
    let a = handle(
        &svc,
        request("GET", "/v1/shops/s1/connection", Some(ADMIN), b""),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["connection"]["shop_id"], json!("s1"));
    assert_eq!(a.body["connection"]["secret_set"], json!(true));
    assert!(a.body["connection"].get("client_secret").is_none());
}

#[tokio::test]
async fn r_syn_8_a_webhook_is_answered_200_whatever_it_carries() {
    // KiotViet switches a hook off after a 4xx: forged, unsigned, unknown shop, oversized — all 200.
    let svc = service();
    connect(&svc, "s1", "tok-1").await;
    let big = vec![b' '; svc.settings.max_body_bytes + 1];
    for (shop, body, signature) in [
        ("s1", b"{}".to_vec(), Some("sha1=00ff")),
        ("s1", b"{}".to_vec(), None),
        ("nobody", b"{}".to_vec(), Some("sha1=00ff")),
        ("s1", big, None),
    ] {
        let mut req = request(
            "POST",
            &format!("/v1/kiotviet/webhooks/{shop}"),
            None,
            &body,
        );
        if let Some(sig) = signature {
            req.headers.insert("x-hub-signature".into(), sig.into());
        }
        let a = handle(&svc, req).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["accepted"], json!(false), "{}", a.body);
        assert!(a.body["reason"].is_string());
    }
}
