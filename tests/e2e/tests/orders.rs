//! Order push Abaha → KiotViet FnB, end to end (R-ORD-1…8, R-CUS-2): local stack on moto, the
//! KiotViet sandbox as the till. Every test counts what reached the sandbox, not only what the
//! service answered.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod support;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use e2e_tests::{Api, StackOptions, connection_body};
use futures::future::join_all;
use serde_json::{Value, json};
use support::{SHOP, code_of, kv_order_posts, kv_orders, menu, order, push, shop_with_menu};

/// KiotViet order times are Vietnam local without an offset.
fn kv_time(v: &Value) -> DateTime<FixedOffset> {
    mapping::time::parse_kv_datetime(v.as_str().expect("a KiotViet datetime")).expect("parses")
}

#[tokio::test]
async fn r_ord_5_twenty_concurrent_identical_pushes_make_one_kiotviet_order() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let o = order("A-500", "DH500", &menu(&stack));
    // GIVEN a till that answers slowly, so the pushes really overlap
    stack
        .kiotviet
        .as_ref()
        .unwrap()
        .set_faults(sandbox::Faults {
            latency_ms: 150,
            ..Default::default()
        });

    // WHEN the same order is pushed 20 times at once
    let answers = join_all((0..20).map(|_| push(&api, &o))).await;

    // THEN KiotViet holds exactly one order
    let created = kv_orders(&stack);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(kv_order_posts(&stack), 1);
    let (id, code) = (
        created[0]["id"].as_i64().unwrap(),
        created[0]["code"].as_str().unwrap(),
    );
    // AND exactly one answer created it; the others replayed it or asked to retry later
    let mut made = 0;
    for a in &answers {
        match a.status {
            201 => {
                made += 1;
                assert_eq!(a.body["replayed"], json!(false));
            }
            200 => assert_eq!(a.body["replayed"], json!(true), "{}", a.body),
            409 => {
                assert_eq!(code_of(a), Some("push_in_progress"), "{}", a.body);
                let secs: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&secs));
                continue;
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
        assert_eq!(
            (
                a.body["kiotviet_order_id"].as_i64(),
                a.body["kiotviet_order_code"].as_str()
            ),
            (Some(id), Some(code))
        );
    }
    assert_eq!(made, 1);

    // AND a later repeat replays the same order
    let later = push(&api, &o).await;
    assert_eq!(later.status, 200, "{}", later.body);
    assert_eq!(later.body["replayed"], json!(true));
    assert_eq!(later.body["kiotviet_order_id"], json!(id));
    assert_eq!(kv_orders(&stack).len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_5_a_push_whose_answer_was_lost_is_adopted_on_retry_not_created_twice() {
    let clock = std::sync::Arc::new(mapping::time::ManualClock::new(Utc::now()));
    let Some((stack, _)) = shop_with_menu(StackOptions {
        clock: Some(clock.clone()),
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    let o = order("A-501", "DH501", &menu(&stack));

    // GIVEN KiotViet creates the order but the answer never comes back
    kv.fail_next_order_answer();
    let first = push(&api, &o).await;
    assert_eq!(
        (first.status, code_of(&first)),
        (502, Some("kiotviet_unavailable")),
        "{}",
        first.body
    );
    let created = kv_orders(&stack);
    assert_eq!(
        created.len(),
        1,
        "the till has the order although the push failed"
    );
    assert_eq!(
        created[0]["orderDelivery"]["deliveryCode"],
        json!("ABH-A-501"),
        "our reference travels with it"
    );

    // AND the client is told when to retry: not before the POST can have landed
    let wait: i64 = first.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(push(&api, &o).await.status, 409, "a retry at once waits");

    // WHEN the push is retried after that
    clock.advance(Duration::seconds(wait));
    let retry = push(&api, &o).await;

    // THEN it finds our reference in KiotViet and adopts that order instead of creating another
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(retry.body["kiotviet_order_id"], created[0]["id"]);
    assert_eq!(retry.body["kiotviet_order_code"], created[0]["code"]);
    assert_eq!(kv_orders(&stack).len(), 1);
    assert_eq!(kv_order_posts(&stack), 1, "the retry did not post again");
    // AND from then on it replays
    let again = push(&api, &o).await;
    assert_eq!(
        (again.status, again.body["replayed"].clone()),
        (200, json!(true))
    );
    assert_eq!(again.body["kiotviet_order_id"], created[0]["id"]);
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_1_only_placed_approved_packed_shipped_completed_are_pushed_by_name_or_code() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let m = menu(&stack);
    let pushable: [Value; 10] = [
        json!("placed"),
        json!("approved"),
        json!("packed"),
        json!("shipped"),
        json!("completed"),
        json!(5),
        json!(10),
        json!(15),
        json!(20),
        json!(25),
    ];
    let refused: [Value; 4] = [json!("cart"), json!("closed"), json!(1), json!(30)];

    // GIVEN statuses that are not placed yet or are closed WHEN pushed THEN 422 and nothing made
    for (i, status) in refused.iter().enumerate() {
        let mut o = order(&format!("A-6{i:02}"), &format!("DH6{i:02}"), &m);
        o["status"] = status.clone();
        let a = push(&api, &o).await;
        assert_eq!(
            (a.status, code_of(&a)),
            (422, Some("status_not_pushable")),
            "{status}: {}",
            a.body
        );
    }
    // AND an unknown status is a validation error naming the accepted ones
    for status in [json!("shipping"), json!(7), json!(true)] {
        let mut o = order("A-699", "DH699", &m);
        o["status"] = status.clone();
        let a = push(&api, &o).await;
        assert_eq!(
            (a.status, code_of(&a)),
            (422, Some("validation_failed")),
            "{status}: {}",
            a.body
        );
    }
    assert!(
        kv_orders(&stack).is_empty(),
        "nothing was created for refused statuses"
    );

    // GIVEN each pushable status, by name and by Abaha's numeric code WHEN pushed THEN created
    for (i, status) in pushable.iter().enumerate() {
        let mut o = order(&format!("A-7{i:02}"), &format!("DH7{i:02}"), &m);
        o["status"] = status.clone();
        let a = push(&api, &o).await;
        assert_eq!(a.status, 201, "{status}: {}", a.body);
    }
    assert_eq!(kv_orders(&stack).len(), pushable.len());
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_2_cancel_after_push_is_a_manual_action_and_never_a_kiotviet_call() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    let mut o = order("A-502", "DH502", &menu(&stack));
    let pushed = push(&api, &o).await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let kv_code = pushed.body["kiotviet_order_code"]
        .as_str()
        .unwrap()
        .to_string();

    // WHEN the shop cancels the order in Abaha
    let calls_before = kv.stats().requests.total;
    o["status"] = json!("cancelled");
    let a = push(&api, &o).await;

    // THEN 202 with a manual action naming the KiotViet order, and KiotViet was not called
    assert_eq!(a.status, 202, "{}", a.body);
    let action = &a.body["manual_action"];
    assert_eq!(action["kind"], json!("cancel_order_in_kiotviet"));
    assert_eq!(action["kiotviet_id"], pushed.body["kiotviet_order_id"]);
    assert_eq!(action["abaha_id"], json!("A-502"));
    assert!(
        action["message"].as_str().unwrap().contains(&kv_code),
        "{action}"
    );
    assert_eq!(
        kv.stats().requests.total,
        calls_before,
        "no KiotViet call at all"
    );
    assert_eq!(
        kv_orders(&stack)[0]["status"],
        json!(1),
        "the KiotViet order is untouched"
    );

    // AND the shop's report lists it once, even when the cancel is delivered twice
    let again = push(&api, &o).await;
    assert_eq!(again.status, 202, "{}", again.body);
    let report = api.get(&format!("/v1/shops/{SHOP}/sync")).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let listed: Vec<&Value> = report.body["manual_actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == json!("cancel_order_in_kiotviet"))
        .collect();
    assert_eq!(listed.len(), 1, "{}", report.body);
    assert_eq!(listed[0]["kiotviet_id"], pushed.body["kiotviet_order_id"]);
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_2_a_cancelled_order_never_pushed_is_not_pushed() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let mut o = order("A-503", "DH503", &menu(&stack));
    o["status"] = json!(0);
    let a = push(&api, &o).await;
    assert_eq!(
        (a.status, code_of(&a)),
        (422, Some("status_not_pushable")),
        "{}",
        a.body
    );
    assert_eq!(kv_order_posts(&stack), 0);
    // AND an approval arriving after the cancel (Abaha retries webhooks, out of order) is not
    // sold either: the cancel is remembered, and the answer says why
    o["status"] = json!("placed");
    let late = push(&api, &o).await;
    assert_eq!(
        (late.status, code_of(&late)),
        (422, Some("status_not_pushable")),
        "{}",
        late.body
    );
    assert!(
        late.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled before")
    );
    assert_eq!(kv_order_posts(&stack), 0);
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_3_4_8_the_kiotviet_order_carries_note_delivery_fees_totals_and_customer() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    let m = menu(&stack);
    let (a, b) = (&m[0], &m[1]);
    // GIVEN an order without a delivery time, with a note, shipping and a fee Abaha added
    let mut o = order("A-504", "DH504", &m);
    o["total"] = json!(2.0 * a.price + b.price + 15000.0 + 5000.0);

    let before = Utc::now();
    let pushed = push(&api, &o).await;
    let after = Utc::now();
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let created = kv_orders(&stack);
    assert_eq!(created.len(), 1);
    let kvo = &created[0];
    let lines = kvo["orderDetails"].as_array().unwrap();

    // R-ORD-3: the order note leads the first line's own note; no order-level note
    assert_eq!(lines[0]["note"], json!("Giao cổng sau | ít đá"));
    assert!(lines[1]["note"].is_null(), "{}", lines[1]);
    assert!(kvo["description"].is_null(), "{kvo}");
    assert!(
        kvo["_request"]
            .get("Description")
            .is_none_or(Value::is_null)
    );
    // AND the lines are the mapped KiotViet products
    assert_eq!(lines[0]["productId"], json!(a.kiotviet_id));
    assert_eq!(lines[1]["productId"], json!(b.kiotviet_id));

    // R-ORD-4: no delivery time → the moment of the push + 1 h, sent as Vietnam local time
    let expected = kv_time(&kvo["orderDelivery"]["expectedDelivery"]);
    assert!(
        expected >= before + Duration::hours(1) - Duration::seconds(1),
        "{expected} vs {before}"
    );
    assert!(
        expected <= after + Duration::hours(1) + Duration::seconds(1),
        "{expected} vs {after}"
    );
    let sent = kvo["_request"]["DeliveryDetail"]["ExpectedDelivery"]
        .as_str()
        .unwrap();
    let local = expected
        .with_timezone(&mapping::time::vn())
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    assert_eq!(sent, local, "the body carries Vietnam local time");
    let answered: DateTime<FixedOffset> = pushed.body["expected_delivery"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(answered, expected);

    // R-ORD-8: shipping plus the extra fee on the delivery block; the totals balance
    assert_eq!(kvo["orderDelivery"]["price"].as_f64(), Some(20000.0));
    assert_eq!(kvo["total"].as_f64(), o["total"].as_f64(), "{kvo}");

    // R-CUS-2: the order's customer, found by exact phone or created, is on the order
    let customer = kv
        .customer(kvo["customerId"].as_i64().expect("a customer on the order"))
        .unwrap();
    assert_eq!(customer["contactNumber"], json!("0911222333"));
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_4_a_later_delivery_time_is_sent_unchanged_an_earlier_one_gets_one_hour() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let m = menu(&stack);
    let vn = mapping::time::vn();
    // GIVEN an order to deliver tomorrow at noon (Vietnam) and one whose time has passed
    let tomorrow = (Utc::now() + Duration::days(1))
        .with_timezone(&vn)
        .date_naive()
        .and_hms_opt(12, 0, 0)
        .unwrap();
    let later = tomorrow.and_local_timezone(vn).unwrap();
    let mut future = order("A-505", "DH505", &m);
    future["delivery_time"] = json!(later.to_rfc3339());
    let mut past = order("A-506", "DH506", &m);
    past["delivery_time"] = json!("2020-01-01T12:00:00+07:00");

    let f = push(&api, &future).await;
    let before = Utc::now();
    let p = push(&api, &past).await;
    let after = Utc::now();
    assert_eq!((f.status, p.status), (201, 201), "{} {}", f.body, p.body);

    let orders = kv_orders(&stack);
    // THEN the later time is sent as it is, in shop-local time
    assert_eq!(
        orders[0]["_request"]["DeliveryDetail"]["ExpectedDelivery"],
        json!(tomorrow.format("%Y-%m-%dT12:00:00").to_string())
    );
    assert_eq!(
        kv_time(&orders[0]["orderDelivery"]["expectedDelivery"]),
        later
    );
    // AND the passed one becomes the push's moment + 1 h
    let got = kv_time(&orders[1]["orderDelivery"]["expectedDelivery"]);
    assert!(
        got >= before + Duration::hours(1) - Duration::seconds(1)
            && got <= after + Duration::hours(1) + Duration::seconds(1),
        "{got}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_6_unmapped_lines_are_refused_by_name_and_nothing_is_created() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let m = menu(&stack);
    let mut o = order("A-507", "DH507", &m);
    o["lines"] = json!([
        {"product_id": m[0].abaha_id, "quantity": 1, "price": m[0].price},
        {"product_id": "P-not-from-kiotviet", "quantity": 1, "price": 10000},
        {"product_id": "P-also-unknown", "quantity": 2, "price": 10000}
    ]);
    let a = push(&api, &o).await;
    assert_eq!(
        (a.status, code_of(&a)),
        (422, Some("unmapped_lines")),
        "{}",
        a.body
    );
    let named: Vec<(u64, &str)> = a.body["error"]["details"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["index"].as_u64().unwrap(),
                l["product_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        vec![(1, "P-not-from-kiotviet"), (2, "P-also-unknown")]
    );
    assert_eq!(kv_order_posts(&stack), 0);
    assert!(
        stack
            .kiotviet
            .as_ref()
            .unwrap()
            .created_customers()
            .is_empty(),
        "not even the customer"
    );
    // AND once the order is fixed it can be pushed (the refusal left no claim behind)
    o["lines"] = json!([{"product_id": m[0].abaha_id, "quantity": 1, "price": m[0].price}]);
    o["total"] = json!(m[0].price + 15000.0);
    assert_eq!(push(&api, &o).await.status, 201);
    stack.stop().await;
}

#[tokio::test]
async fn r_ord_7_a_changed_repeat_is_replayed_sends_nothing_and_says_edits_belong_in_kiotviet() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let m = menu(&stack);
    let o = order("A-508", "DH508", &m);
    let first = push(&api, &o).await;
    assert_eq!(first.status, 201, "{}", first.body);
    // An identical repeat says nothing about edits.
    let same = push(&api, &o).await;
    assert_eq!(same.status, 200);
    assert!(
        same.body.get("edited_after_push").is_none(),
        "{}",
        same.body
    );

    // WHEN the order is edited in Abaha and pushed again
    let mut edited = o.clone();
    edited["lines"][0]["quantity"] = json!(5);
    edited["note"] = json!("Đổi giờ giao");
    edited["status"] = json!("packed");
    let a = push(&api, &edited).await;

    // THEN the pushed order is replayed, nothing is sent, and the answer says where edits go
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["replayed"], json!(true));
    assert_eq!(a.body["kiotviet_order_id"], first.body["kiotviet_order_id"]);
    assert_eq!(a.body["edited_after_push"], json!(true));
    assert!(
        a.body["message"].as_str().unwrap().contains("KiotViet"),
        "{}",
        a.body
    );
    assert_eq!(kv_order_posts(&stack), 1);
    assert_eq!(
        kv_orders(&stack)[0]["orderDetails"][0]["quantity"].as_f64(),
        Some(2.0)
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_kiotviet_business_refusal_is_502_kiotviet_rejected_with_its_message_and_nothing_recorded()
 {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    let o = order("A-509", "DH509", &menu(&stack));
    // GIVEN the shop's delivery feature is off in KiotViet FnB
    kv.set_delivery_enabled(false);
    let a = push(&api, &o).await;
    // THEN KiotViet's own (Vietnamese) words come back with a sentence the owner can act on
    assert_eq!(
        (a.status, code_of(&a)),
        (502, Some("kiotviet_rejected")),
        "{}",
        a.body
    );
    let said = a.body["error"]["details"]["kiotviet_message"]
        .as_str()
        .unwrap();
    assert!(said.contains("Sử dụng tính năng giao hàng"), "{said}");
    assert!(a.body["error"]["message"].as_str().unwrap().len() > 20);
    assert!(kv_orders(&stack).is_empty());

    // AND nothing counts as pushed: once delivery is on, the same order goes through
    kv.set_delivery_enabled(true);
    let retry = push(&api, &o).await;
    assert_eq!(
        (retry.status, retry.body["replayed"].clone()),
        (201, json!(false)),
        "{}",
        retry.body
    );
    assert_eq!(kv_orders(&stack).len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn push_guards_unknown_shop_switched_off_orders_malformed_orders_and_the_shop_token() {
    let Some((stack, token)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let m = menu(&stack);
    let o = order("A-510", "DH510", &m);

    // Unknown shop.
    let a = api.post("/v1/shops/nobody/orders", o.clone()).await;
    assert_eq!(
        (a.status, code_of(&a)),
        (404, Some("unknown_shop")),
        "{}",
        a.body
    );

    // Malformed orders: the documented error shape, nothing created.
    let mut no_id = o.clone();
    no_id.as_object_mut().unwrap().remove("id");
    let mut no_status = o.clone();
    no_status.as_object_mut().unwrap().remove("status");
    let mut no_lines = o.clone();
    no_lines["lines"] = json!([]);
    let mut zero_qty = o.clone();
    zero_qty["lines"][0]["quantity"] = json!(0);
    let mut text_price = o.clone();
    text_price["lines"][0]["price"] = json!("a lot");
    for bad in [no_id, no_status, no_lines, zero_qty, text_price] {
        let a = push(&api, &bad).await;
        assert_eq!(
            (a.status, code_of(&a)),
            (422, Some("validation_failed")),
            "{bad}: {}",
            a.body
        );
        assert!(a.body["error"]["details"].is_object());
    }
    let a = api
        .raw(
            "POST",
            &format!("/v1/shops/{SHOP}/orders"),
            Some(b"{\"id\":".to_vec()),
        )
        .await;
    assert_eq!((a.status, code_of(&a)), (400, Some("malformed_json")));
    assert_eq!(kv_order_posts(&stack), 0);

    // The shop's own token may push its orders (the Abaha order webhook).
    let shop = api.with_token(Some(&token));
    let a = push(&shop, &o).await;
    assert_eq!(a.status, 201, "{}", a.body);

    // Orders switched off: refused, nothing created.
    let mut off = connection_body(&stack);
    off["sync"]["orders"] = json!(false);
    assert_eq!(
        api.put(&format!("/v1/shops/{SHOP}/connection"), off)
            .await
            .status,
        200
    );
    let a = push(&api, &order("A-511", "DH511", &m)).await;
    assert_eq!(
        (a.status, code_of(&a)),
        (422, Some("orders_sync_disabled")),
        "{}",
        a.body
    );
    assert_eq!(kv_orders(&stack).len(), 1);
    stack.stop().await;
}
