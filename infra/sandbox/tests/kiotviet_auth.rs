//! Token endpoint, bearer tokens, the Retailer header and the GET quota.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{RETAILER, start, token};
use reqwest::StatusCode;
use sandbox::kiotviet::KvConfig;

#[tokio::test]
async fn token_is_issued_on_both_paths_with_scope_or_scopes() {
    let kv = start(KvConfig::default()).await;
    for path in ["/identity/connect/token", "/connect/token"] {
        for scope_key in ["scope", "scopes"] {
            let body = format!(
                "{scope_key}=PublicApi.Access.FNB&grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret"
            );
            let a = kv
                .send(
                    kv.http
                        .post(kv.url(path))
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(body),
                )
                .await;
            assert_eq!(a.status, StatusCode::OK, "{path} {scope_key}: {}", a.text);
            let v = a.json();
            assert_eq!(v["token_type"], "Bearer");
            assert_eq!(v["expires_in"], 86_400);
            assert_eq!(v["scope"], "PublicApi.Access.FNB");
            assert!(v["access_token"].as_str().is_some_and(|t| t.len() > 20));
        }
    }
    assert_eq!(kv.sim.stats().tokens_issued, 5);
    assert_eq!(
        kv.sim.stats().requests.get("POST /connect/token"),
        2,
        "token calls are counted per path"
    );
}

#[tokio::test]
async fn wrong_credentials_answer_invalid_client() {
    let kv = start(KvConfig::default()).await;
    let (status, body) = token(&kv.http, &kv.sim.token_url(), "demo-client", "nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].is_string());
    let (status, _) = token(&kv.http, &kv.sim.token_url(), "other", "demo-secret").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn retail_scope_and_json_bodies_are_refused() {
    let kv = start(KvConfig::default()).await;
    let retail = kv
        .send(
            kv.http
                .post(kv.sim.token_url())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("scopes=PublicApi.Access&grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret"),
        )
        .await;
    assert_eq!(retail.status, StatusCode::BAD_REQUEST);
    assert_eq!(retail.json()["error"], "invalid_scope");
    let json = kv
        .send(kv.http.post(kv.sim.token_url()).json(&serde_json::json!({
            "grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"
        })))
        .await;
    assert_eq!(json.status, StatusCode::BAD_REQUEST);
    assert_eq!(json.json()["error"], "invalid_request");
}

#[tokio::test]
async fn missing_wrong_and_expired_tokens_get_401() {
    let kv = start(KvConfig::default()).await;
    assert_eq!(kv.get_raw("/branches").await.status, StatusCode::OK);

    let none = kv
        .send(
            kv.http
                .get(kv.url("/branches"))
                .header("Retailer", RETAILER),
        )
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.json()["responseStatus"]["message"].is_string());

    let wrong = kv
        .send(
            kv.http
                .get(kv.url("/branches"))
                .bearer_auth("not-a-token")
                .header("Retailer", RETAILER),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    kv.sim.expire_tokens();
    let expired = kv.get_raw("/branches").await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(kv.sim.stats().unauthorized, 3);
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime_on_the_sim_clock() {
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 3, 0, 0).unwrap();
    let kv = start(KvConfig {
        now: Some(t0),
        token_lifetime_secs: 600,
        ..KvConfig::default()
    })
    .await;
    kv.sim.advance(Duration::seconds(599));
    assert_eq!(kv.get_raw("/branches").await.status, StatusCode::OK);
    kv.sim.advance(Duration::seconds(1));
    assert_eq!(
        kv.get_raw("/branches").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn retailer_header_must_name_the_shop() {
    let kv = start(KvConfig::default()).await;
    let missing = kv
        .send(kv.http.get(kv.url("/products")).bearer_auth(&kv.token))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json()["responseStatus"]["errorCode"],
        "RetailerNotFound"
    );
    let wrong = kv
        .send(
            kv.http
                .get(kv.url("/products"))
                .bearer_auth(&kv.token)
                .header("Retailer", "someoneelse"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let msg = wrong.json()["responseStatus"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("someoneelse"), "{msg}");
}

#[tokio::test]
async fn get_quota_answers_429_with_retry_after_until_the_hour_passes() {
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 3, 0, 0).unwrap();
    let kv = start(KvConfig {
        now: Some(t0),
        get_limit_per_hour: Some(3),
        ..KvConfig::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(kv.get_raw("/branches").await.status, StatusCode::OK);
    }
    kv.sim.advance(Duration::minutes(10));
    let over = kv.get_raw("/branches").await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        over.headers["retry-after"], "3000",
        "50 minutes left in the window"
    );
    // POSTs are not limited.
    let post = kv
        .post(
            "/customers",
            &serde_json::json!({"name": "Khách mới", "contactNumber": "0911000111"}),
        )
        .await;
    assert_eq!(post.status, StatusCode::OK, "{}", post.text);
    kv.sim.advance(Duration::minutes(50));
    assert_eq!(kv.get_raw("/branches").await.status, StatusCode::OK);
    assert_eq!(kv.sim.stats().rate_limited, 1);
}

#[tokio::test]
async fn retailers_with_the_prefix_are_shops_with_a_get_quota_of_their_own() {
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 3, 0, 0).unwrap();
    let kv = start(KvConfig {
        now: Some(t0),
        get_limit_per_hour: Some(2),
        retailer_prefix: Some("benchshop".into()),
        ..KvConfig::default()
    })
    .await;
    let get_as = |retailer: &'static str| {
        kv.send(
            kv.http
                .get(kv.url("/branches"))
                .bearer_auth(&kv.token)
                .header("Retailer", retailer),
        )
    };
    // Two shops of the prefix, each with its own two GETs an hour.
    for r in ["benchshop1", "BenchShop2"] {
        for _ in 0..2 {
            let a = get_as(r).await;
            assert_eq!(a.status, StatusCode::OK, "{r}: {}", a.text);
        }
    }
    assert_eq!(
        get_as("benchshop1").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The configured retailer's quota is untouched by theirs.
    assert_eq!(kv.get_raw("/branches").await.status, StatusCode::OK);
    // The prefix alone, and other names, are not shops.
    for r in ["benchshop", "otherbench1"] {
        assert_eq!(get_as(r).await.status, StatusCode::BAD_REQUEST, "{r}");
    }
    let window = kv.sim.gets_in_window();
    assert_eq!(window.get("benchshop1"), Some(&2));
    assert_eq!(window.get("benchshop2"), Some(&2));
    assert_eq!(window.get(RETAILER), Some(&1));
    kv.sim.advance(Duration::hours(1));
    assert!(kv.sim.gets_in_window().is_empty());
}

#[tokio::test]
async fn without_a_prefix_only_the_configured_retailer_is_a_shop() {
    let kv = start(KvConfig::default()).await;
    let a = kv
        .send(
            kv.http
                .get(kv.url("/branches"))
                .bearer_auth(&kv.token)
                .header("Retailer", format!("{RETAILER}2")),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}
