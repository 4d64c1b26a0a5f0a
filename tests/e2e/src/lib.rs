//! Harness for the end-to-end tests: a whole local stack per test (moto shared, everything else
//! its own), and a small client for the service API.
//!
//! moto is started once by the test command (`MOTO_ENDPOINT`); each test suffixes its table,
//! queues and key with a random tag, so tests run in parallel without meeting. Without
//! `MOTO_ENDPOINT` a test fails and says how to run it (never a silent pass); `SKIP_MOTO_TESTS=1`
//! skips them instead, each saying so.
// Test support: a failed unwrap here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

pub use local_stack::{Stack, StackOptions};
use serde_json::{Value, json};

pub mod check;
pub mod contract;

/// The moto endpoint for this test run, or None (the caller returns early) when absent.
pub fn moto() -> Option<String> {
    store::testing::moto_or_skip("an end-to-end test")
}

/// A fresh stack on moto with in-process sandboxes and an ephemeral API port.
pub async fn start(mut opts: StackOptions) -> Option<Stack> {
    let endpoint = moto()?;
    opts.aws_endpoint = Some(endpoint);
    opts.service_port = Some(0);
    opts.force_sandboxes = true;
    if opts.name_suffix.is_empty() {
        opts.name_suffix = format!("-t{:08x}", rand_u32());
    }
    Some(Stack::start(opts).await.expect("local stack starts"))
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// An answer of the service API.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

/// The service API, as a caller with `token` sees it.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    pub fn admin(stack: &Stack) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: stack.api_url.clone(),
            token: Some(stack.admin_token.clone()),
        }
    }

    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    pub async fn raw(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Answer {
        let method_name = method;
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        // The drift guard (contract.rs) sees the request as the service did.
        let request = body
            .as_deref()
            .filter(|b| !b.iter().all(u8::is_ascii_whitespace))
            .map(|b| {
                serde_json::from_slice(b)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
            });
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("service API answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !method_name.eq_ignore_ascii_case("HEAD") {
            let header_list: Vec<(String, String)> = headers
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect();
            if let Err(e) = contract::service_api().check_exchange(
                method_name,
                path,
                request.as_ref(),
                status,
                &header_list,
                &body,
            ) {
                panic!("the service API drifted from docs/openapi/service-api.yaml: {e}");
            }
        }
        Answer {
            status,
            body,
            headers,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.raw(method, path, body.map(|b| b.to_string().into_bytes()))
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call("PUT", path, Some(body)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None).await
    }
}

/// The connection body for the stack's KiotViet sandbox.
pub fn connection_body(stack: &Stack) -> Value {
    let kv = stack.kiotviet.as_ref().expect("KiotViet sandbox");
    json!({"account_type": "fnb", "retailer": kv.retailer(), "client_id": "demo-client",
           "client_secret": "demo-secret", "branch_id": kv.central_branch_id(),
           "sync": {"products": true, "customers": true, "orders": true},
           "keep_app_product_status": true, "invoice_history_days": 30})
}

/// Connects `shop` to the sandbox; answers the shop token.
pub async fn connect(stack: &Stack, shop: &str) -> String {
    let a = Api::admin(stack)
        .put(
            &format!("/v1/shops/{shop}/connection"),
            connection_body(stack),
        )
        .await;
    assert_eq!(a.status, 200, "connect: {}", a.body);
    a.body["shop_token"]
        .as_str()
        .expect("shop token on first connect")
        .to_string()
}

/// Presses Sync and waits for the run to end; answers the final report.
pub async fn sync(stack: &Stack, shop: &str, body: Value) -> Value {
    let api = Api::admin(stack);
    let a = api.post(&format!("/v1/shops/{shop}/sync"), body).await;
    assert_eq!(a.status, 202, "sync: {}", a.body);
    let run_id = a.body["run_id"].as_str().expect("run id").to_string();
    let report = wait_run(stack, shop, &run_id).await;
    if let Some(abaha) = &stack.abaha
        && let Err(e) = contract::check_abaha_writes(abaha, shop)
    {
        panic!("an Abaha Sync API request drifted from docs/openapi/abaha-sync-api.yaml: {e}");
    }
    report
}

/// Waits (up to two minutes) for a run to reach a final state.
pub async fn wait_run(stack: &Stack, shop: &str, run_id: &str) -> Value {
    let api = Api::admin(stack);
    let started = Instant::now();
    loop {
        let a = api.get(&format!("/v1/shops/{shop}/sync/{run_id}")).await;
        assert_eq!(a.status, 200, "run report: {}", a.body);
        if matches!(
            a.body["state"].as_str(),
            Some("succeeded" | "partial" | "failed")
        ) {
            return a.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "run did not end: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
