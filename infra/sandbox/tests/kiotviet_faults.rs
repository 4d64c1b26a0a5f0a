//! Injected faults: 5xx and 429 rates, Retry-After, latency, token expiry every n requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Instant;

use common::start;
use reqwest::StatusCode;
use sandbox::Faults;
use sandbox::kiotviet::KvConfig;

#[tokio::test]
async fn five_xx_rate_follows_the_setting_and_the_seed() {
    let kv = start(KvConfig::default()).await;
    let faults = Faults {
        p_5xx: 0.3,
        seed: 11,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        kv.sim.set_faults(faults.clone());
        let mut statuses = Vec::new();
        for _ in 0..400 {
            statuses.push(kv.get_raw("/branches").await.status.as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "same seed, same sequence");
    let failed = runs[0].iter().filter(|s| **s >= 500).count();
    assert!(
        (80..=160).contains(&failed),
        "{failed} of 400 failed, expected about 120"
    );
    assert!(runs[0].iter().all(|s| [200, 500, 502, 503].contains(s)));
    assert_eq!(kv.sim.stats().injected_5xx as usize, failed * 2);
}

#[tokio::test]
async fn injected_429_carries_retry_after() {
    let kv = start(KvConfig {
        faults: Faults {
            p_429: 1.0,
            retry_after_secs: 7,
            ..Faults::default()
        },
        ..KvConfig::default()
    })
    .await;
    let a = kv.get_raw("/products").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "7");
    assert!(a.json()["responseStatus"]["message"].is_string());
    // The token endpoint is not subject to injected faults.
    let (status, _) =
        common::token(&kv.http, &kv.sim.token_url(), "demo-client", "demo-secret").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_call_takes_at_least_the_latency() {
    let kv = start(KvConfig::default()).await;
    kv.sim.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(kv.get_raw("/branches").await.status, StatusCode::OK);
    assert!(t.elapsed().as_millis() >= 150, "{:?}", t.elapsed());
}

#[tokio::test]
async fn tokens_expire_every_n_requests_when_asked() {
    let kv = start(KvConfig {
        faults: Faults {
            expire_token_every_n_requests: Some(3),
            ..Faults::default()
        },
        ..KvConfig::default()
    })
    .await;
    assert_eq!(kv.get_raw("/branches").await.status, StatusCode::OK);
    assert_eq!(kv.get_raw("/branches").await.status, StatusCode::OK);
    assert_eq!(
        kv.get_raw("/branches").await.status,
        StatusCode::UNAUTHORIZED
    );
    // The old token stays dead; a new one works.
    assert_eq!(
        kv.get_raw("/branches").await.status,
        StatusCode::UNAUTHORIZED
    );
    let (_, fresh) =
        common::token(&kv.http, &kv.sim.token_url(), "demo-client", "demo-secret").await;
    let fresh = fresh["access_token"].as_str().unwrap();
    let a = kv
        .send(
            kv.http
                .get(kv.url("/branches"))
                .bearer_auth(fresh)
                .header("Retailer", common::RETAILER),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn faults_can_be_set_over_http() {
    let kv = start(KvConfig::default()).await;
    let r = kv
        .http
        .post(kv.url("/_sandbox/faults"))
        .json(&serde_json::json!({"p_5xx": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(kv.get_raw("/branches").await.status.is_server_error());
    let stats: serde_json::Value = kv
        .http
        .get(kv.url("/_sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["injected_5xx"], 1);
    assert_eq!(stats["requests"]["by_route"]["GET /branches"], 1);
}
