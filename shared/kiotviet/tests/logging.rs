//! R-CON-4: the client's debug logs name requests, never the client secret or the access token.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiotviet::{Credentials, InProcessBudget, KiotVietClient, KiotVietConfig, RetryPolicy};
use serde_json::json;
use support::{Reply, Scripted};

const SECRET: &str = "client-secret-xyz";
const TOKEN: &str = "access-token-abc";

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn r_con_4_debug_logs_never_show_the_secret_or_the_token() {
    // GIVEN debug logging, and a server that refuses the first token once and fails once with 5xx
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = Scripted::start(|seen, n| match (seen.path(), n) {
        ("/connect/token", _) => Reply::json(
            200,
            json!({"access_token": TOKEN, "expires_in": 86400, "token_type": "Bearer"}),
        ),
        ("/branches", 0) => Reply::json(401, json!({})),
        ("/branches", 1) => Reply::json(503, json!({"message": "busy"})),
        _ => Reply::json(200, json!({"total": 1, "data": [{"id": 1}]})),
    });
    let mut cfg = KiotVietConfig::for_urls(server.url(), server.token_url());
    cfg.retry = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
    };
    let client = KiotVietClient::new(
        reqwest::Client::new(),
        Arc::new(cfg),
        Credentials::new("testfnb", "client-1", SECRET),
        Arc::new(InProcessBudget::per_hour(100)),
    );
    // WHEN it reads through a renewal and a retry
    client.branches().await.expect("branches");
    // THEN the log names each request, and holds neither secret nor token
    let log = String::from_utf8(captured.0.lock().expect("buffer").clone()).expect("utf-8");
    assert!(log.contains("kiotviet request"), "{log}");
    assert!(log.contains("kiotviet token request"), "{log}");
    assert!(log.contains("status=503"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
    assert!(!format!("{client:?}").contains(SECRET));
}
