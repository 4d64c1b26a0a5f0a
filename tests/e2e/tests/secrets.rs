//! R-CON-4 end to end: the KiotViet client secret and the access tokens KiotViet issues appear in
//! no log line (every event of every crate, at TRACE, as text and as JSON), in no answer of the
//! service API (bodies and headers) and in no run report — through a connection save, a refused
//! save, an update, a full sync, a token renewal, an order push, a customer push and a disconnect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use e2e_tests::{Answer, Api, StackOptions, connect, connection_body, start, sync};
use sandbox::abaha::Kind;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// Every byte any subscriber layer writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// An answer as a caller could see it: status, every header, the body.
fn seen(a: &Answer) -> String {
    let headers: Vec<String> = a
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .collect();
    format!("{} {} {}\n", a.status, headers.join("; "), a.body)
}

#[tokio::test]
async fn r_con_4_the_secret_and_the_access_tokens_appear_in_no_log_line_answer_or_report() {
    let logs = Capture::default();
    // This test binary holds only this test, so the process-wide subscriber is ours; every crate's
    // events reach it (the stack, its pollers and the sandboxes run in this process).
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(logs.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(logs.clone()),
        )
        .with(tracing_subscriber::filter::LevelFilter::TRACE);
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let shop = "shop-secret";
    let admin_token = stack.admin_token.clone();
    let kv = stack.kiotviet.as_ref().expect("KiotViet sandbox");
    let api = Api::admin(&stack);
    let path = format!("/v1/shops/{shop}/connection");
    let mut answers = String::new();
    let mut tokens = vec![];

    // GIVEN a refused save with a wrong secret, then the real one, an update without it, a rotation
    let mut wrong = connection_body(&stack);
    wrong["client_secret"] = json!("wrong-secret-8d1f");
    let a = api.put(&path, wrong).await;
    assert_eq!(a.status, 422, "{}", a.body);
    answers += &seen(&a);
    let shop_token = connect(&stack, shop).await;
    answers += &seen(&api.get(&path).await);
    let mut update = connection_body(&stack);
    update
        .as_object_mut()
        .expect("object")
        .remove("client_secret");
    let a = api
        .put(&format!("{path}?rotate_shop_token=true"), update)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    answers += &seen(&a);
    let rotated = a.body["shop_token"]
        .as_str()
        .expect("rotated token")
        .to_string();

    // WHEN a full sync runs, KiotViet's token is renewed, and a second sync runs
    let first = sync(&stack, shop, json!({"full": true})).await;
    assert_eq!(first["state"], json!("succeeded"), "{first}");
    answers += &format!("{first}\n");
    tokens.extend(kv.live_tokens());
    kv.expire_tokens();
    let second = sync(&stack, shop, json!({})).await;
    answers += &format!("{second}\n");
    tokens.extend(kv.live_tokens());

    // AND an order and a customer are pushed, the reports read, and the shop disconnected
    let abaha = stack.abaha.as_ref().expect("Abaha sandbox");
    let product = abaha
        .stored(shop, Kind::Products)
        .into_iter()
        .find(|p| {
            p.item["is_topping"] == json!(false)
                && p.item["price"].as_f64().is_some_and(|x| x > 0.0)
        })
        .expect("a sellable product");
    let order = json!({"id": "A-secret-1", "code": "DH-S1", "status": "approved",
        "customer": {"id": "U-s1", "name": "Lê Văn C", "phone": "0933000111", "email": null},
        "lines": [{"product_id": product.abaha_id, "quantity": 1, "price": product.item["price"]}],
        "shipping_fee": 0, "discount": 0, "total": product.item["price"]});
    let shop_api = api.with_token(Some(&rotated));
    let a = shop_api
        .post(&format!("/v1/shops/{shop}/orders"), order)
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    answers += &seen(&a);
    let customer = json!({"id": "U-s2", "name": "Phạm Thị D", "phone": "0944000222", "email": null,
        "address": null, "gender": null, "birth_date": null});
    let a = shop_api
        .post(&format!("/v1/shops/{shop}/customers"), customer)
        .await;
    assert!(a.status == 201 || a.status == 200, "{}", a.body);
    answers += &seen(&a);
    answers += &seen(&api.get(&format!("/v1/shops/{shop}/sync")).await);
    tokens.extend(kv.live_tokens());
    answers += &seen(&api.delete(&path).await);
    stack.stop().await;

    // THEN the capture did capture (so the assertions below can fail) …
    let logs = logs.text();
    assert!(
        logs.contains("connection saved") && logs.contains(shop),
        "the logs were captured"
    );
    assert!(
        logs.contains("\"level\":\"TRACE\"") || logs.contains(" TRACE "),
        "TRACE events were captured"
    );
    tokens.sort();
    tokens.dedup();
    assert!(
        tokens.len() >= 2,
        "KiotViet issued a token, and another after the renewal: {}",
        tokens.len()
    );

    // … and nothing secret is in it, nor in any answer or report.
    let secret = "demo-secret";
    let mut needles: Vec<(String, String)> = vec![
        ("the client secret".into(), secret.into()),
        ("the client secret, base64".into(), STANDARD.encode(secret)),
        (
            "the client secret, base64 without padding".into(),
            STANDARD_NO_PAD.encode(secret),
        ),
        ("a refused client secret".into(), "wrong-secret-8d1f".into()),
        ("the first shop token".into(), shop_token.clone()),
        ("the rotated shop token".into(), rotated.clone()),
        ("the admin token".into(), admin_token.clone()),
    ];
    needles.extend(
        tokens
            .iter()
            .map(|t| ("a KiotViet access token".to_string(), t.clone())),
    );
    for (what, needle) in &needles {
        if let Some(at) = logs.find(needle.as_str()) {
            let from = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let to = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!("{what} is in a log line: {}", &logs[from..to]);
        }
    }
    for (what, needle) in &needles {
        let allowed_in_answers = needle == &shop_token || needle == &rotated;
        if !allowed_in_answers {
            assert!(
                !answers.contains(needle.as_str()),
                "{what} is in an answer or a report"
            );
        }
    }
    // The shop token is shown exactly where the contract says: once at creation, once at rotation.
    assert_eq!(
        answers.matches(rotated.as_str()).count(),
        1,
        "the rotated token is shown once"
    );
}
