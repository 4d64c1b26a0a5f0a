//! The money path at its edges (issue 14): every Abaha order is exactly one KiotViet sale, also
//! when the order came from KiotViet itself, when two orders share a code, when KiotViet is slow
//! past the API's deadline, and when the input is absurd. Each test failed on the code before
//! the fix; each counts what reached the KiotViet sandbox, not only what the service answered.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::{Api, StackOptions, sync};
use engine::Settings;
use mapping::time::ManualClock;
use sandbox::abaha::Kind;
use sandbox::kiotviet::OrderFault;
use serde_json::{Value, json};
use support::{SHOP, code_of, kv_order_posts, kv_orders, menu, order, push, shop_with_menu};

fn clocked(settings: Settings) -> (StackOptions, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    (
        StackOptions {
            settings: Some(settings),
            clock: Some(clock.clone()),
            ..StackOptions::default()
        },
        clock,
    )
}

fn references(orders: &[Value]) -> Vec<String> {
    orders
        .iter()
        .map(|o| {
            o["orderDelivery"]["deliveryCode"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn r_syn_4_an_order_the_invoice_pull_made_is_never_pushed_back_as_a_second_sale() {
    let Some((stack, shop_token)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    // GIVEN the shop's KiotViet invoices synced to Abaha as orders
    let report = sync(
        &stack,
        SHOP,
        json!({"entities": ["invoices"], "full": true}),
    )
    .await;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    let abaha = stack.abaha.as_ref().unwrap();
    let synced = abaha.items(SHOP, Kind::Orders);
    let made = synced
        .iter()
        .find(|o| o["abaha_order_id"].is_null() && o["abaha_id"].is_string())
        .expect("an Abaha order made from a KiotViet invoice")
        .clone();
    let abaha_id = made["abaha_id"].as_str().unwrap();
    let invoice_id = made["kiotviet_id"].as_i64().unwrap();

    // WHEN Abaha's order webhook fires for it and it is pushed back with the shop token
    let mut echo = order(abaha_id, "DH-ECHO", &menu(&stack));
    echo["status"] = json!("completed");
    let api = Api::admin(&stack).with_token(Some(&shop_token));
    let answer = push(&api, &echo).await;

    // THEN nothing reaches KiotViet, and the answer names the invoice it came from
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["kiotviet_invoice_id"], json!(invoice_id));
    assert!(answer.body["message"].as_str().unwrap().contains("invoice"));
    assert_eq!(kv_order_posts(&stack), 0);
    assert!(kv_orders(&stack).is_empty());
    // AND again, however often it fires
    assert_eq!(push(&api, &echo).await.status, 200);
    assert_eq!(kv_order_posts(&stack), 0);
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_5_two_orders_sharing_a_code_never_adopt_each_others_sale() {
    let (opts, clock) = clocked(Settings::default());
    let Some((stack, _)) = shop_with_menu(opts).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    let m = menu(&stack);
    // GIVEN X-1 with code C pushed
    let x1 = push(&api, &order("X-1", "C", &m)).await;
    assert_eq!(x1.status, 201, "{}", x1.body);
    // AND X-2 with the same code C pushed while KiotViet answers 503 without creating it
    kv.push_order_fault(OrderFault::FailBeforeWrite);
    let x2 = push(&api, &order("X-2", "C", &m)).await;
    assert_eq!(
        (x2.status, code_of(&x2)),
        (502, Some("kiotviet_unavailable")),
        "{}",
        x2.body
    );
    // AND the 502 does not claim that nothing changed: the POST may have arrived
    let msg = x2.body["error"]["message"].as_str().unwrap();
    assert!(!msg.contains("Nothing was changed"), "{msg}");
    assert!(x2.headers.contains_key("retry-after"));

    // WHEN X-2 is pushed again once its claim has run out
    clock.advance(chrono::Duration::seconds(120));
    let again = push(&api, &order("X-2", "C", &m)).await;

    // THEN X-2 gets a sale of its own, not X-1's
    assert_eq!(again.status, 201, "{}", again.body);
    assert_ne!(
        again.body["kiotviet_order_id"], x1.body["kiotviet_order_id"],
        "X-2 adopted X-1's sale"
    );
    let orders = kv_orders(&stack);
    assert_eq!(orders.len(), 2, "{orders:?}");
    let refs = references(&orders);
    assert_eq!(refs, ["ABH-X-1", "ABH-X-2"]);
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_5_an_id_with_a_stray_space_is_the_same_order() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let m = menu(&stack);
    let first = push(&api, &order("SP-1", "SP", &m)).await;
    let spaced = push(&api, &order("SP-1 ", "SP", &m)).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(spaced.status, 200, "{}", spaced.body);
    assert_eq!(spaced.body["replayed"], json!(true));
    assert_eq!(kv_orders(&stack).len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_5_a_slow_kiotviet_is_answered_within_the_deadline_and_a_retry_makes_one_order() {
    let settings = Settings {
        api_deadline: Duration::from_secs(4),
        ..Settings::default()
    };
    let (opts, clock) = clocked(settings);
    let Some((stack, _)) = shop_with_menu(opts).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    let o = order("S-1", "DHS1", &menu(&stack));
    // GIVEN a KiotViet that creates the order but answers only after 8 s (API deadline: 4 s)
    kv.push_order_fault(OrderFault::SlowAnswer { ms: 8000 });

    // WHEN the order is pushed
    let started = Instant::now();
    let first = push(&api, &o).await;

    // THEN the answer comes within the deadline, in the error shape, with Retry-After
    assert!(
        started.elapsed() < Duration::from_millis(5500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (first.status, code_of(&first)),
        (502, Some("kiotviet_unavailable")),
        "{}",
        first.body
    );
    let wait: i64 = first.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(kv_orders(&stack).len(), 1, "KiotViet has the order");

    // AND a retry at once is told to wait: the first POST may still be landing
    let early = push(&api, &o).await;
    assert_eq!(
        (early.status, code_of(&early)),
        (409, Some("push_in_progress")),
        "{}",
        early.body
    );

    // WHEN retried after Retry-After
    clock.advance(chrono::Duration::seconds(wait + 1));
    let retry = push(&api, &o).await;

    // THEN it finds the order KiotViet made and creates no other
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(retry.body["kiotviet_order_id"], kv_orders(&stack)[0]["id"]);
    assert_eq!(kv_orders(&stack).len(), 1);
    assert_eq!(kv_order_posts(&stack), 1);
    stack.stop().await;
}

#[tokio::test]
async fn every_service_api_answer_comes_within_the_deadline_when_kiotviet_hangs() {
    let settings = Settings {
        api_deadline: Duration::from_secs(4),
        ..Settings::default()
    };
    let Some((stack, _)) = shop_with_menu(StackOptions {
        settings: Some(settings),
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let api = Api::admin(&stack);
    let o = order("H-1", "DHH1", &menu(&stack));
    // GIVEN a KiotViet (token endpoint included) that answers after 8 s (API deadline: 4 s)
    stack
        .kiotviet
        .as_ref()
        .unwrap()
        .set_faults(sandbox::Faults {
            latency_ms: 8000,
            ..Default::default()
        });
    // WHEN a connection is saved, an order and a customer are pushed
    let calls = [
        (
            "PUT",
            format!("/v1/shops/{SHOP}/connection"),
            e2e_tests::connection_body(&stack),
        ),
        ("POST", format!("/v1/shops/{SHOP}/orders"), o),
        (
            "POST",
            format!("/v1/shops/{SHOP}/customers"),
            json!({"id": "U-slow", "name": "Chậm", "phone": "0909123123"}),
        ),
    ];
    for (method, path, body) in calls {
        let started = Instant::now();
        let answer = api.call(method, &path, Some(body)).await;
        // THEN each answers within the deadline, in the error shape, with Retry-After
        assert!(
            started.elapsed() < Duration::from_millis(5500),
            "{method} {path} took {:?}",
            started.elapsed()
        );
        assert_eq!(answer.status, 502, "{method} {path}: {}", answer.body);
        assert_eq!(code_of(&answer), Some("kiotviet_unavailable"));
        assert!(
            answer.headers.contains_key("retry-after"),
            "{method} {path}"
        );
        // AND nothing was sent that could have landed: no token, so no POST left
        assert_eq!(
            answer.body["error"]["details"]["may_have_reached_kiotviet"],
            Value::Null,
            "{method} {path}: {}",
            answer.body
        );
    }
    assert_eq!(kv_order_posts(&stack), 0);
    stack.stop().await;
}

#[tokio::test]
async fn absurd_money_and_oversized_ids_are_refused_by_field_and_nothing_is_sent() {
    let Some((stack, shop_token)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack).with_token(Some(&shop_token));
    let m = menu(&stack);
    let long = "x".repeat(2000);
    let base = order("M-1", "DHM1", &m);
    let mut cases: Vec<(Value, &str)> = Vec::new();
    for (path, value, field) in [
        ("/shipping_fee", json!(-15000), "shipping_fee"),
        ("/discount", json!(-1), "discount"),
        ("/lines/0/quantity", json!(-2), "lines[0].quantity"),
        ("/lines/0/price", json!(1e300), "lines[0].price"),
        ("/total", json!(-1), "total"),
        ("/id", json!(long.clone()), "id"),
        (
            "/lines/1/product_id",
            json!(long.clone()),
            "lines[1].product_id",
        ),
        ("/customer/id", json!(long.clone()), "customer.id"),
    ] {
        let mut o = base.clone();
        *o.pointer_mut(path).unwrap() = value;
        cases.push((o, field));
    }
    let mut cancel = json!({"id": long.clone(), "status": "cancelled", "lines": []});
    cases.push((cancel.take(), "id"));
    for (o, field) in cases {
        let a = push(&api, &o).await;
        assert_eq!(
            (a.status, code_of(&a)),
            (422, Some("validation_failed")),
            "{field}: {}",
            a.body
        );
        assert_eq!(
            a.body["error"]["details"]["field"],
            json!(field),
            "{}",
            a.body
        );
    }
    let customer = api
        .post(
            &format!("/v1/shops/{SHOP}/customers"),
            json!({"id": long, "name": "Dài", "phone": "0909000111"}),
        )
        .await;
    assert_eq!(
        (customer.status, code_of(&customer)),
        (422, Some("validation_failed"))
    );
    assert_eq!(kv_order_posts(&stack), 0);
    assert!(kv_orders(&stack).is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn r_cus_3_a_customer_answered_200_names_its_kiotviet_code() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let path = format!("/v1/shops/{SHOP}/customers");
    let c = json!({"id": "U-code", "name": "Lê Văn C", "phone": "0933444555"});
    let created = api.post(&path, c.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let code = created.body["kiotviet_code"].clone();
    assert!(code.is_string(), "{}", created.body);
    // WHEN the same customer is pushed again (unchanged) and then changed
    let unchanged = api.post(&path, c).await;
    let updated = api
        .post(
            &path,
            json!({"id": "U-code", "name": "Lê Văn Cường", "phone": "0933444555"}),
        )
        .await;
    // THEN both 200 answers carry the KiotViet code
    assert_eq!(
        (unchanged.status, &unchanged.body["status"]),
        (200, &json!("unchanged"))
    );
    assert_eq!(unchanged.body["kiotviet_code"], code, "{}", unchanged.body);
    assert_eq!(
        (updated.status, &updated.body["status"]),
        (200, &json!("updated"))
    );
    assert_eq!(updated.body["kiotviet_code"], code, "{}", updated.body);
    stack.stop().await;
}
