//! The client against a scripted server: exact requests and the edge cases of KiotViet's answers
//! that the sandbox does not produce on demand.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use kiotviet::{
    Credentials, InProcessBudget, KiotVietClient, KiotVietConfig, KvError, ListEntity, ListRequest,
    Pager, RetryPolicy,
};
use mapping::kiotviet::{OrderCreate, OrderDetail};
use serde_json::{Value, json};
use support::{Reply, Scripted, Seen};

const SECRET: &str = "s3cret-never-shown";

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
    }
}

fn config(server: &Scripted) -> KiotVietConfig {
    let mut cfg = KiotVietConfig::for_urls(server.url(), server.token_url());
    cfg.retry = fast_retries();
    cfg
}

fn client_with(cfg: KiotVietConfig) -> KiotVietClient {
    KiotVietClient::new(
        reqwest::Client::new(),
        Arc::new(cfg),
        Credentials::new("testfnb", "client-1", SECRET),
        Arc::new(InProcessBudget::per_hour(4000)),
    )
}

fn client(server: &Scripted) -> KiotVietClient {
    client_with(config(server))
}

fn page(total: i64, ids: std::ops::RangeInclusive<i64>) -> Reply {
    let data: Vec<Value> = ids
        .map(|id| json!({"id": id, "name": format!("r{id}")}))
        .collect();
    Reply::json(200, json!({"total": total, "pageSize": 100, "data": data}))
}

fn is_token(seen: &Seen) -> bool {
    seen.path() == "/connect/token"
}

fn order() -> OrderCreate {
    OrderCreate {
        branch_id: 233_443,
        customer_id: Some(880_001),
        description: None,
        discount: None,
        delivery_detail: None,
        order_details: vec![OrderDetail {
            product_id: 5001,
            price: 35_000.0,
            quantity: 2.0,
            note: Some("ít đá".into()),
            rank: 1,
        }],
        surcharges: Vec::new(),
    }
}

fn created_order() -> Reply {
    Reply::json(
        200,
        json!({"id": 9_100_001, "code": "DH000451", "status": 1, "orderDetails": [{"poductId": 5001}]}),
    )
}

#[tokio::test]
async fn token_form_carries_both_scope_keys_and_api_calls_carry_retailer_and_bearer() {
    // GIVEN a server that issues a token and lists one branch
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            page(1, 1..=1)
        }
    });
    // WHEN the branches are read
    let branches = client(&server).branches().await.expect("branches");
    // THEN the token request is the client-credentials form with the FnB scope under both names
    assert_eq!(branches.len(), 1);
    let seen = server.seen();
    let token = &seen[0];
    assert_eq!(token.method, "POST");
    assert_eq!(
        token.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        token.param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(token.param("client_id").as_deref(), Some("client-1"));
    assert_eq!(token.param("client_secret").as_deref(), Some(SECRET));
    assert_eq!(
        token.param("scopes").as_deref(),
        Some("PublicApi.Access.FNB")
    );
    assert_eq!(
        token.param("scope").as_deref(),
        Some("PublicApi.Access.FNB")
    );
    // AND the API call carries the Retailer header and the bearer token, and pages by 100
    let api = &seen[1];
    assert_eq!(api.header("retailer"), Some("testfnb"));
    assert_eq!(api.header("authorization"), Some("Bearer tok-123"));
    assert_eq!(api.param("pageSize").as_deref(), Some("100"));
    assert_eq!(api.param("currentItem").as_deref(), Some("0"));
}

#[tokio::test]
async fn r_con_3_refused_client_secret_is_invalid_credentials_and_never_shown() {
    // GIVEN a token host that refuses the client (OAuth error shape, HTTP 400)
    let server = Scripted::start(|_, _| {
        Reply::json(
            400,
            json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        )
    });
    // WHEN the connection is checked
    let error = client(&server)
        .check_connection()
        .await
        .expect_err("refused");
    // THEN the error names the cause, and neither it nor the client shows the secret
    match &error {
        KvError::InvalidCredentials { message } => {
            assert_eq!(message, "Client authentication failed");
        }
        other => panic!("expected InvalidCredentials, got {other:?}"),
    }
    assert!(!error.is_retryable());
    assert!(!format!("{error} {error:?}").contains(SECRET));
    assert!(!format!("{:?}", client(&server)).contains(SECRET));
    // AND no API request was made, and the refusal was not retried
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn token_fallback_host_is_tried_on_400_and_remembered_for_renewals() {
    // GIVEN a primary token host that refuses and a fallback host that accepts (and serves the API;
    // its second branches call answers 401 to force a renewal)
    let primary = Scripted::start(|_, _| Reply::json(400, json!({"error": "invalid_client"})));
    let fallback = Scripted::start(|seen, n| match (seen.path(), n) {
        ("/connect/token", _) => Reply::token(),
        ("/branches", 1) => Reply::json(401, json!({"message": "token expired"})),
        _ => page(1, 1..=1),
    });
    let mut cfg = config(&fallback);
    cfg.token_url = primary.token_url();
    cfg.fallback_token_url = Some(fallback.token_url());
    let client = client_with(cfg);
    // WHEN branches are read twice (the second needs a new token)
    client.branches().await.expect("first read");
    client.branches().await.expect("second read");
    // THEN the primary was asked once, and the renewal went straight to the fallback
    assert_eq!(primary.count("POST", "/connect/token"), 1);
    assert_eq!(fallback.count("POST", "/connect/token"), 2);
}

#[tokio::test]
async fn refusal_then_unreachable_fallback_is_transient_not_invalid_credentials() {
    let primary = Scripted::start(|_, _| Reply::json(400, json!({"error": "invalid_client"})));
    let mut cfg = config(&primary);
    cfg.fallback_token_url = Some("http://127.0.0.1:1/connect/token".into());
    let error = client_with(cfg)
        .check_connection()
        .await
        .expect_err("no token");
    assert!(
        matches!(error, KvError::Transient { status: None, .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn api_401_about_the_retailer_after_one_renewal_is_unknown_retailer() {
    // GIVEN an API that refuses the Retailer header
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            Reply::json(
                401,
                json!({"responseStatus": {"errorCode": "Unauthorized", "message": "Retailer không tồn tại"}}),
            )
        }
    });
    // WHEN the connection is checked
    let error = client(&server)
        .check_connection()
        .await
        .expect_err("refused");
    // THEN it says the retailer is unknown, after exactly one renewal
    assert!(
        matches!(&error, KvError::UnknownRetailer { message } if message == "Retailer không tồn tại"),
        "{error:?}"
    );
    assert_eq!(server.count("POST", "/connect/token"), 2);
    assert_eq!(server.count("GET", "/branches"), 2);
}

#[tokio::test]
async fn api_401_that_survives_a_renewal_is_unauthorized() {
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            Reply::json(401, json!({}))
        }
    });
    let error = client(&server).branches().await.expect_err("refused");
    assert!(matches!(error, KvError::Unauthorized), "{error:?}");
    // The first token and two renewals: a bounded number, not a loop.
    assert_eq!(server.count("POST", "/connect/token"), 3);
    assert_eq!(server.count("GET", "/branches"), 3);
}

#[tokio::test]
async fn r_syn_6_a_token_that_expires_again_during_the_retries_is_renewed_again() {
    // GIVEN a token that expires, then a 503, then the renewed token expiring too (KiotViet may
    // revoke tokens; the fault suite expires them every few requests)
    let server = Scripted::start(|seen, n| match (seen.path(), n) {
        ("/connect/token", _) => Reply::token(),
        (_, 0 | 2) => Reply::json(401, json!({})),
        (_, 1) => Reply::json(503, json!({})),
        _ => page(1, 1..=1),
    });
    // WHEN branches are read
    let branches = client(&server).branches().await.expect("read");
    // THEN each expiry was renewed once, and the read went through
    assert_eq!(branches.len(), 1);
    assert_eq!(server.count("POST", "/connect/token"), 3);
    assert_eq!(server.count("GET", "/branches"), 4);
}

#[tokio::test]
async fn a_page_that_repeats_the_previous_one_stops_the_read() {
    // GIVEN a server that ignores currentItem
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            page(500, 1..=2)
        }
    });
    let client = client(&server);
    let mut pager = Pager::new(ListRequest::new(ListEntity::Customers));
    // WHEN it pages
    assert!(pager.next(&client).await.expect("first page").is_some());
    let error = pager.next(&client).await.expect_err("repeat");
    // THEN the second page is refused instead of looping, and the position did not move
    assert!(
        matches!(&error, KvError::Decode { path, .. } if path.contains("currentItem=2")),
        "{error:?}"
    );
    assert_eq!(pager.position().current_item, 2);
}

#[tokio::test]
async fn a_total_that_moves_is_followed_and_recorded() {
    // GIVEN a total that grows from 150 to 160 while paging
    let server = Scripted::start(|seen, n| match (seen.path(), n) {
        ("/connect/token", _) => Reply::token(),
        (_, 0) => page(150, 1..=100),
        (_, 1) => page(160, 101..=150),
        _ => page(160, 151..=160),
    });
    let client = client(&server);
    let mut pager = Pager::new(ListRequest::new(ListEntity::Customers));
    let mut ids = Vec::new();
    while let Some(page) = pager.next(&client).await.expect("page") {
        ids.extend(page.data.iter().filter_map(|r| r["id"].as_i64()));
    }
    // THEN every record is read once, the pager says the total moved, and it asked 3 pages
    assert_eq!(ids, (1..=160).collect::<Vec<_>>());
    assert!(pager.total_moved());
    assert_eq!(pager.total(), Some(160));
    assert_eq!(server.count("GET", "/customers"), 3);
    let offsets: Vec<String> = server
        .seen()
        .iter()
        .filter_map(|s| s.param("currentItem"))
        .collect();
    assert_eq!(offsets, ["0", "100", "150"]);
}

#[tokio::test]
async fn an_empty_page_with_removed_ids_is_still_returned() {
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            Reply::json(200, json!({"total": 0, "data": [], "removeIds": [5, 6]}))
        }
    });
    let client = client(&server);
    let since = Utc
        .with_ymd_and_hms(2026, 5, 1, 0, 0, 0)
        .single()
        .expect("valid");
    let mut pager = Pager::new(ListRequest::new(ListEntity::Customers).modified_since(since));
    let page = pager
        .next(&client)
        .await
        .expect("page")
        .expect("has removed ids");
    assert_eq!(page.removed_ids, vec![5, 6]);
    assert!(pager.next(&client).await.expect("end").is_none());
    let seen = server.seen();
    let get = seen.iter().find(|s| s.method == "GET").expect("a GET");
    assert_eq!(
        get.param("lastModifiedFrom").as_deref(),
        Some("2026-05-01T07:00:00")
    );
    assert_eq!(get.param("includeRemoveIds").as_deref(), Some("true"));
}

#[tokio::test]
async fn post_orders_is_not_retried_after_a_5xx() {
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            Reply::json(500, json!({"message": "boom"}))
        }
    });
    let error = client(&server)
        .create_order(&order())
        .await
        .expect_err("500");
    assert!(
        matches!(&error, KvError::Transient { status: Some(500), message } if message.contains("may have reached")),
        "{error:?}"
    );
    assert_eq!(server.count("POST", "/orders"), 1);
}

#[tokio::test]
async fn post_orders_is_not_retried_after_a_timeout() {
    // GIVEN an order endpoint slower than the request timeout
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            created_order().delayed(Duration::from_millis(1500))
        }
    });
    let mut cfg = config(&server);
    cfg.request_timeout = Duration::from_millis(300);
    // WHEN the order is created THEN the timeout is reported once, never re-sent
    let error = client_with(cfg)
        .create_order(&order())
        .await
        .expect_err("timeout");
    assert!(
        matches!(&error, KvError::Transient { status: None, message } if message.contains("may have reached")),
        "{error:?}"
    );
    assert_eq!(server.count("POST", "/orders"), 1);
}

#[tokio::test]
async fn post_orders_is_retried_after_429_and_after_one_401() {
    // GIVEN an order endpoint that throttles once, then refuses the token once, then creates
    let server = Scripted::start(|seen, n| match (seen.path(), n) {
        ("/connect/token", _) => Reply::token(),
        (_, 0) => Reply::json(429, json!({})).header("Retry-After", "0"),
        (_, 1) => Reply::json(401, json!({})),
        _ => created_order(),
    });
    let client = client(&server);
    // WHEN the order is created
    let created = client.create_order(&order()).await.expect("created");
    // THEN both refusals were repeated safely, and the PascalCase body was sent each time
    assert_eq!(created.id, 9_100_001);
    assert_eq!(created.code.as_deref(), Some("DH000451"));
    assert_eq!(server.count("POST", "/orders"), 3);
    assert_eq!(server.count("POST", "/connect/token"), 2);
    let posts: Vec<Seen> = server
        .seen()
        .into_iter()
        .filter(|s| s.path() == "/orders")
        .collect();
    let body: Value = serde_json::from_str(&posts[2].body).expect("json body");
    assert_eq!(body["BranchId"], 233_443);
    assert_eq!(body["OrderDetails"][0]["ProductId"], 5001);
    assert_eq!(posts[2].header("content-type"), Some("application/json"));
    assert_eq!(client.api_call_counts().writes, 3);
}

#[tokio::test]
async fn a_post_that_cannot_connect_is_retried_and_reported_as_never_sent() {
    let token = Scripted::start(|_, _| Reply::token());
    let mut cfg = config(&token);
    cfg.api_url = "http://127.0.0.1:1".into();
    let client = client_with(cfg);
    let error = client.create_order(&order()).await.expect_err("no server");
    assert!(
        matches!(&error, KvError::Transient { status: None, message } if !message.contains("may have reached")),
        "{error:?}"
    );
    assert_eq!(
        client.api_call_counts().writes,
        4,
        "connect errors are retried"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed_and_persistent_ones_become_transient() {
    let server = Scripted::start(|seen, n| match (seen.path(), n) {
        ("/connect/token", _) => Reply::token(),
        ("/branches", 0 | 1) => Reply::text(502, "<html>bad gateway</html>"),
        ("/branches", _) => page(1, 1..=1),
        _ => Reply::text(503, "<html>maintenance</html>"),
    });
    let client = client(&server);
    assert_eq!(client.branches().await.expect("third time").len(), 1);
    assert_eq!(server.count("GET", "/branches"), 3);

    let error = client.product(1).await.expect_err("down");
    assert!(
        matches!(&error, KvError::Transient { status: Some(503), message } if message == "HTTP 503 Service Unavailable"),
        "{error:?}"
    );
    assert_eq!(server.count("GET", "/products/1"), 4, "max_attempts");
}

#[tokio::test]
async fn details_accept_wrapped_and_bare_answers_and_name_the_failing_path() {
    let server = Scripted::start(|seen, _| match seen.path() {
        "/connect/token" => Reply::token(),
        "/products/1" => Reply::json(200, json!({"data": {"id": 1, "code": "CF001"}})),
        "/customers/2" => Reply::json(200, json!({"id": 2, "comments": "VIP"})),
        "/invoices/3" => Reply::json(200, json!({"id": 3, "code": "HD1", "status": 1})),
        "/products/404" => Reply::json(
            404,
            json!({"responseStatus": {"message": "Không tìm thấy"}}),
        ),
        _ => Reply::json(200, json!({"id": {"nested": true}})),
    });
    let client = client(&server);
    assert_eq!(
        client.product(1).await.expect("wrapped").code.as_deref(),
        Some("CF001")
    );
    assert_eq!(
        client.customer(2).await.expect("bare").comment.as_deref(),
        Some("VIP")
    );
    assert_eq!(
        client.invoice(3).await.expect("bare").code.as_deref(),
        Some("HD1")
    );

    let error = client.product(404).await.expect_err("absent");
    assert!(matches!(&error, KvError::NotFound { message } if message == "Không tìm thấy"));
    assert_eq!(
        server.count("GET", "/products/404"),
        1,
        "404 is not retried"
    );

    let error = client.product(9).await.expect_err("bad id");
    assert!(
        matches!(&error, KvError::Decode { path, .. } if path.starts_with("GET /products/9")),
        "{error:?}"
    );
}

#[tokio::test]
async fn customer_search_webhooks_and_recent_orders_send_what_kiotviet_expects() {
    let server = Scripted::start(|seen, _| match (seen.method.as_str(), seen.path()) {
        (_, "/connect/token") => Reply::token(),
        ("GET", "/customers") => Reply::json(
            200,
            json!({"total": 2, "data": [{"id": 1, "contactNumber": "0987654321"}, {"id": "bad"}]}),
        ),
        ("POST", "/webhooks") => Reply::json(200, json!({"id": 77, "type": "product.update"})),
        ("DELETE", _) => Reply::json(404, json!({"message": "gone"})),
        ("GET", "/orders") => {
            Reply::json(200, json!({"total": 1, "data": [{"id": 5, "code": "DH1"}]}))
        }
        _ => Reply::json(400, json!({})),
    });
    let client = client(&server);

    let found = client
        .find_customers_by_phone("0987654321")
        .await
        .expect("search");
    assert_eq!(found.len(), 1, "the unreadable record is skipped");

    let id = client
        .register_webhook("product.update", "https://hooks.example/kv/1", "c2VjcmV0")
        .await
        .expect("registered");
    assert_eq!(id, 77);
    client
        .delete_webhook(77)
        .await
        .expect("already gone counts as deleted");

    let since = Utc
        .with_ymd_and_hms(2026, 5, 1, 3, 30, 0)
        .single()
        .expect("valid");
    let orders = client
        .recent_orders(since, None, 233443)
        .await
        .expect("orders");
    assert_eq!(orders.len(), 1);

    let seen = server.seen();
    let search = seen
        .iter()
        .find(|s| s.path() == "/customers")
        .expect("search");
    assert_eq!(search.param("contactNumber").as_deref(), Some("0987654321"));
    let hook = seen.iter().find(|s| s.path() == "/webhooks").expect("hook");
    let body: Value = serde_json::from_str(&hook.body).expect("json");
    assert_eq!(body["Webhook"]["Type"], "product.update");
    assert_eq!(body["Webhook"]["Url"], "https://hooks.example/kv/1");
    assert_eq!(body["Webhook"]["IsActive"], true);
    assert_eq!(body["Webhook"]["Secret"], "c2VjcmV0");
    let orders = seen.iter().find(|s| s.path() == "/orders").expect("orders");
    assert_eq!(
        orders.param("includeOrderDelivery").as_deref(),
        Some("true")
    );
    assert_eq!(
        orders.param("lastModifiedFrom").as_deref(),
        Some("2026-05-01T10:30:00")
    );
    // Oldest first by creation, so an order edited during the read does not shift the pages;
    // only the connection's branch.
    assert_eq!(orders.param("orderBy").as_deref(), Some("createdDate"));
    assert_eq!(orders.param("branchIds").as_deref(), Some("233443"));
}

#[tokio::test]
async fn a_throttle_longer_than_the_cap_is_handed_over_with_its_wait() {
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            Reply::json(429, json!({})).header("Retry-After", "120")
        }
    });
    let started = Instant::now();
    let error = client(&server).branches().await.expect_err("throttled");
    assert!(
        matches!(error, KvError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(120)),
        "{error:?}"
    );
    assert!(error.is_hand_over());
    assert!(started.elapsed() < Duration::from_secs(2), "did not sleep");
    assert_eq!(server.count("GET", "/branches"), 1);
}

#[tokio::test]
async fn clients_sharing_a_token_slot_ask_for_one_token_between_them() {
    // GIVEN a server that issues tokens and lists one branch
    let server = Scripted::start(|seen, _| {
        if is_token(seen) {
            Reply::token()
        } else {
            page(1, 1..=1)
        }
    });
    let cfg = Arc::new(config(&server));
    let slot = Arc::new(kiotviet::TokenSlot::default());
    let shared = |slot: &Arc<kiotviet::TokenSlot>| {
        KiotVietClient::with_token_slot(
            reqwest::Client::new(),
            cfg.clone(),
            Credentials::new("testfnb", "client-1", SECRET),
            Arc::new(InProcessBudget::per_hour(4000)),
            slot.clone(),
        )
    };
    // WHEN two clients of one slot read, one after the other (two jobs of one process)
    shared(&slot).branches().await.expect("first job");
    shared(&slot).branches().await.expect("second job");
    // THEN KiotViet was asked for one token
    assert_eq!(server.count("POST", "/connect/token"), 1);
    // AND a client with a slot of its own (other credentials) asks for its own
    shared(&Arc::default())
        .branches()
        .await
        .expect("other slot");
    assert_eq!(server.count("POST", "/connect/token"), 2);
}
