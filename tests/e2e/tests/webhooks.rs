//! KiotViet webhooks end to end (R-SYN-8): the KiotViet sandbox registers our hooks and sends its
//! signed deliveries to the local stack's API, which queues them for the pull functions.
//!
//! Tests that must see what was queued run without the queue pollers (`no_workers`) and drain the
//! catalog queue by hand; the others let the pollers apply jobs as on AWS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use std::future::Future;
use std::time::{Duration, Instant};

use e2e_tests::{Api, Stack, StackOptions, connection_body, start, sync};
use sandbox::abaha::Kind;
use sandbox::kiotviet::WebhookDelivery;
use serde_json::{Value, json};

const SHOP: &str = "shop-wh";

/// A stack whose KiotViet sandbox delivers webhooks to the stack's own API.
async fn webhook_stack(no_workers: bool) -> Option<Stack> {
    start(StackOptions {
        webhooks: true,
        no_workers,
        ..StackOptions::default()
    })
    .await
}

/// Connects SHOP with these switches and checks that the webhooks are active.
async fn connect(stack: &Stack, products: bool, customers: bool) -> Value {
    let mut body = connection_body(stack);
    body["sync"] = json!({"products": products, "customers": customers, "orders": true});
    let a = Api::admin(stack)
        .put(&format!("/v1/shops/{SHOP}/connection"), body)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["connection"]["webhooks_active"],
        json!(true),
        "{}",
        a.body
    );
    a.body
}

/// Calls `check` every 20 ms until it answers Some, for at most `within`.
async fn poll_until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if started.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first delivery of `action` that our API has answered.
async fn answered_delivery(stack: &Stack, action: &str) -> WebhookDelivery {
    let kv = stack.kiotviet.as_ref().expect("KiotViet sandbox");
    poll_until(Duration::from_secs(5), || async {
        kv.webhook_deliveries()
            .into_iter()
            .find(|d| d.action == action && d.status.is_some())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no {action} delivery was answered: {:?}",
            kv.webhook_deliveries()
        )
    })
}

/// Posts a delivery to the receiver as KiotViet does (no bearer token; signature header).
async fn post_delivery(
    stack: &Stack,
    shop: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!(
            "{}/v1/kiotviet/webhooks/{shop}?event=product.update",
            stack.api_url
        ))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("X-Hub-Signature", sig);
    }
    let resp = req.send().await.expect("the receiver answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Runs every job waiting on a queue, as the pull function would; answers how many there were.
async fn drain(stack: &Stack, queue: &str) -> usize {
    let svc = &stack.service;
    let mut n = 0;
    loop {
        let jobs = svc.queue.receive(queue, 10, 0, 60).await.expect("receive");
        if jobs.is_empty() {
            return n;
        }
        n += jobs.len();
        let records = jobs
            .iter()
            .map(|j| (j.id.clone(), j.body.to_string()))
            .collect();
        let failed =
            engine::jobs::handle_batch(svc, records, Instant::now() + Duration::from_secs(30))
                .await;
        assert!(failed.is_empty(), "jobs failed: {failed:?}");
        for j in &jobs {
            svc.queue.delete(queue, &j.receipt).await.expect("delete");
        }
    }
}

fn abaha_writes(stack: &Stack, kind: Kind, kiotviet_id: i64) -> Option<u32> {
    let abaha = stack.abaha.as_ref().expect("Abaha sandbox");
    abaha
        .stored(SHOP, kind)
        .into_iter()
        .find(|i| i.kiotviet_id == kiotviet_id.to_string())
        .map(|i| i.writes)
}

/// A product of the seeded café that is sold on its own (not a topping).
fn a_product(stack: &Stack) -> i64 {
    let kv = stack.kiotviet.as_ref().expect("KiotViet sandbox");
    kv.product_ids()
        .into_iter()
        .find(|id| {
            kv.product(*id)
                .is_some_and(|p| p["isTopping"] != json!(true))
        })
        .expect("the seeded café has products")
}

#[tokio::test]
async fn r_syn_8_a_product_renamed_in_kiotviet_reaches_abaha_within_5_s_without_a_sync() {
    let Some(stack) = webhook_stack(false).await else {
        return;
    };
    // GIVEN a shop connected with webhooks, never synced
    connect(&stack, true, true).await;
    let kv = stack.kiotviet.as_ref().unwrap();
    let abaha = stack.abaha.as_ref().unwrap();
    let id = a_product(&stack);
    assert_eq!(kv.webhooks().len(), 5, "{:?}", kv.webhooks());

    // WHEN the product is renamed at the till
    let started = Instant::now();
    kv.rename_product(id, "Cà phê muối (đổi tên)").unwrap();

    // THEN Abaha has the new name within 5 s
    let took = poll_until(Duration::from_secs(5), || async {
        abaha
            .item(SHOP, Kind::Products, id)
            .filter(|p| p["name"] == json!("Cà phê muối (đổi tên)"))
            .map(|_| started.elapsed())
    })
    .await;
    let took = took.unwrap_or_else(|| {
        panic!(
            "not in Abaha after 5 s; deliveries: {:?}",
            kv.webhook_deliveries()
        )
    });
    eprintln!("change-to-Abaha latency: {} ms", took.as_millis());
    // AND no sync run was involved
    let runs = Api::admin(&stack)
        .get(&format!("/v1/shops/{SHOP}/sync"))
        .await;
    assert_eq!(runs.status, 404, "{}", runs.body);
    // AND KiotViet's delivery was signed, answered 200 once, and the hook is still active
    let d = answered_delivery(&stack, "product.update").await;
    assert!(
        d.signature
            .as_deref()
            .is_some_and(|s| s.starts_with("sha1="))
    );
    assert_eq!((d.status, d.attempt), (Some(200), 1));
    assert!(kv.webhooks().iter().all(|w| w["isActive"] == json!(true)));
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_8_a_duplicated_delivery_with_a_higher_attempt_applies_once() {
    let Some(stack) = webhook_stack(true).await else {
        return;
    };
    connect(&stack, true, true).await;
    let kv = stack.kiotviet.as_ref().unwrap();
    let catalog = stack.service.settings.queues.catalog.clone();
    let id = a_product(&stack);
    // GIVEN KiotViet delivered a rename
    kv.rename_product(id, "Trà đào (một lần)").unwrap();
    let first = answered_delivery(&stack, "product.update").await;
    assert_eq!(first.status, Some(200));

    // WHEN the same delivery comes again: once as it was, once as a retry with a higher Attempt
    let (status, answer) = post_delivery(
        &stack,
        SHOP,
        first.body.as_bytes(),
        first.signature.as_deref(),
    )
    .await;
    assert_eq!(
        (status, answer["duplicate"].clone()),
        (200, json!(true)),
        "{answer}"
    );
    let mut retry: Value = serde_json::from_str(&first.body).unwrap();
    retry["Attempt"] = json!(2);
    let retry = retry.to_string().into_bytes();
    let sig = engine::webhooks::signature_for_shop(&stack.service, SHOP, &retry)
        .await
        .unwrap();
    let (status, answer) = post_delivery(&stack, SHOP, &retry, sig.as_deref()).await;
    assert_eq!(
        (
            status,
            answer["accepted"].clone(),
            answer["duplicate"].clone()
        ),
        (200, json!(true), json!(true)),
        "{answer}"
    );

    // THEN one job was queued, and applying it writes the product to Abaha once
    assert_eq!(drain(&stack, &catalog).await, 1);
    assert_eq!(abaha_writes(&stack, Kind::Products, id), Some(1));
    let item = stack
        .abaha
        .as_ref()
        .unwrap()
        .item(SHOP, Kind::Products, id)
        .unwrap();
    assert_eq!(item["name"], json!("Trà đào (một lần)"));
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_8_a_forged_signature_changes_nothing_and_still_gets_200() {
    let Some(stack) = webhook_stack(true).await else {
        return;
    };
    connect(&stack, true, true).await;
    let id = a_product(&stack);
    let body = json!({"Id": "forged-1", "Attempt": 1, "Notifications": [
        {"Action": "product.update", "Data": [{"Id": id, "Name": "Hacked"}]}]})
    .to_string()
    .into_bytes();
    let real = engine::webhooks::signature_for_shop(&stack.service, SHOP, &body)
        .await
        .unwrap()
        .unwrap();
    // A signature of another body, a made-up one, and none at all.
    let other = engine::webhooks::signature_for_shop(&stack.service, SHOP, b"{}")
        .await
        .unwrap();
    let mut flipped = real.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (sig, reason) in [
        (other.as_deref(), "bad_signature"),
        (Some(flipped.as_str()), "bad_signature"),
        (Some("sha1=deadbeef"), "bad_signature"),
        (None, "missing_signature"),
    ] {
        // WHEN a delivery arrives that KiotViet did not sign with the shop's secret
        let (status, answer) = post_delivery(&stack, SHOP, &body, sig).await;
        // THEN it is answered 200 (a 4xx would make KiotViet disable the hook) and dropped
        assert_eq!(status, 200);
        assert_eq!(answer, json!({"accepted": false, "reason": reason}));
    }
    // AND a shop we do not know is answered the same way
    let (status, answer) = post_delivery(&stack, "no-such-shop", &body, Some(&real)).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (200, Some("unknown_shop"))
    );
    // AND nothing was queued or written
    assert_eq!(
        drain(&stack, &stack.service.settings.queues.catalog).await,
        0
    );
    assert!(
        stack
            .abaha
            .as_ref()
            .unwrap()
            .items(SHOP, Kind::Products)
            .is_empty()
    );
    stack.stop().await;
}

#[tokio::test]
async fn r_prd_4_a_product_deleted_in_kiotviet_becomes_a_manual_action_not_a_delete() {
    let Some(stack) = webhook_stack(false).await else {
        return;
    };
    // GIVEN a synced shop
    connect(&stack, true, true).await;
    let report = sync(&stack, SHOP, json!({"full": true})).await;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    let kv = stack.kiotviet.as_ref().unwrap();
    let abaha = stack.abaha.as_ref().unwrap();
    let id = a_product(&stack);
    let abaha_id = abaha.item(SHOP, Kind::Products, id).expect("synced")["abaha_id"].clone();
    let products_before = abaha.items(SHOP, Kind::Products).len();

    // WHEN the product is deleted at the till
    kv.delete_product(id).unwrap();

    // THEN the latest run report asks the owner to delete it in Abaha by hand
    let api = Api::admin(&stack);
    let action = poll_until(Duration::from_secs(5), || async {
        let latest = api.get(&format!("/v1/shops/{SHOP}/sync")).await;
        latest.body["manual_actions"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["kiotviet_id"] == json!(id)).cloned())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no manual action; deliveries: {:?}",
            kv.webhook_deliveries()
        )
    });
    assert_eq!(action["kind"], json!("delete_product_in_abaha"));
    assert_eq!(action["abaha_id"], abaha_id);
    // AND Abaha still has it: nothing is deleted there
    assert!(abaha.item(SHOP, Kind::Products, id).is_some());
    assert_eq!(abaha.items(SHOP, Kind::Products).len(), products_before);
    // AND the next sync does not report it a second time
    let again = sync(&stack, SHOP, json!({})).await;
    let repeated = again["manual_actions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m["kiotviet_id"] == json!(id)));
    assert!(!repeated, "{again}");
    stack.stop().await;
}

#[tokio::test]
async fn r_cus_1_a_customer_changed_in_kiotviet_arrives_by_webhook() {
    let Some(stack) = webhook_stack(false).await else {
        return;
    };
    connect(&stack, true, true).await;
    let kv = stack.kiotviet.as_ref().unwrap();
    let abaha = stack.abaha.as_ref().unwrap();
    let id = kv
        .customer_ids()
        .into_iter()
        .find(|c| {
            kv.customer(*c)
                .is_some_and(|v| v["contactNumber"].as_str().is_some_and(|p| !p.is_empty()))
        })
        .expect("a seeded customer with a phone");
    // WHEN the customer's name changes at the till
    let patch = sandbox::kiotviet::CustomerPatch {
        name: Some("Chị Lan (webhook)".into()),
        ..Default::default()
    };
    kv.update_customer(id, patch).unwrap();
    // THEN Abaha has the customer, keyed by phone, with the new name
    let item = poll_until(Duration::from_secs(5), || async {
        abaha
            .item(SHOP, Kind::Customers, id)
            .filter(|c| c["name"] == json!("Chị Lan (webhook)"))
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "customer not in Abaha; deliveries: {:?}",
            kv.webhook_deliveries()
        )
    });
    assert!(item["phone"].as_str().is_some_and(|p| !p.is_empty()));
    stack.stop().await;
}

#[tokio::test]
async fn r_con_6_a_webhook_for_a_switched_off_part_does_nothing() {
    let Some(stack) = webhook_stack(true).await else {
        return;
    };
    // GIVEN products switched off, customers on
    connect(&stack, false, true).await;
    let kv = stack.kiotviet.as_ref().unwrap();
    let id = a_product(&stack);
    // WHEN KiotViet sends a product change
    kv.rename_product(id, "Không đồng bộ").unwrap();
    let d = answered_delivery(&stack, "product.update").await;
    assert_eq!(d.status, Some(200));
    // THEN it is answered but ignored: nothing queued, nothing in Abaha
    let (status, answer) =
        post_delivery(&stack, SHOP, d.body.as_bytes(), d.signature.as_deref()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            answer["accepted"].clone(),
            answer["queued"].clone(),
            answer["ignored"].clone()
        ),
        (json!(true), json!(0), json!(1)),
        "{answer}"
    );
    assert_eq!(
        drain(&stack, &stack.service.settings.queues.catalog).await,
        0
    );
    assert!(
        stack
            .abaha
            .as_ref()
            .unwrap()
            .items(SHOP, Kind::Products)
            .is_empty()
    );
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_8_saving_again_replaces_the_hooks_and_disconnecting_removes_them() {
    let Some(stack) = webhook_stack(true).await else {
        return;
    };
    let kv = stack.kiotviet.as_ref().unwrap();
    // GIVEN a connected shop with its five hooks at our URL
    connect(&stack, true, true).await;
    let first: Vec<Value> = kv.webhooks();
    assert_eq!(first.len(), 5);
    assert!(first.iter().all(|w| {
        w["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&stack.api_url) && u.contains(SHOP))
    }));
    // WHEN the connection is saved again
    connect(&stack, true, true).await;
    // THEN there are still five hooks (the old ones were replaced, not piled up)
    let second = kv.webhooks();
    assert_eq!(second.len(), 5, "{second:?}");
    assert!(
        second
            .iter()
            .all(|w| !first.iter().any(|f| f["id"] == w["id"]))
    );
    // WHEN the shop disconnects
    let a = Api::admin(&stack)
        .delete(&format!("/v1/shops/{SHOP}/connection"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["webhooks_removed"], json!(5));
    // THEN KiotViet has no hooks left for it
    assert!(kv.webhooks().is_empty(), "{:?}", kv.webhooks());
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_8_a_refused_registration_still_saves_the_connection_and_says_why() {
    let Some(stack) = webhook_stack(true).await else {
        return;
    };
    let kv = stack.kiotviet.as_ref().unwrap();
    // GIVEN someone already registered one of our hooks (KiotViet refuses a second one)
    let client = stack.service.kiotviet_with(kiotviet::Credentials::new(
        kv.retailer(),
        "demo-client",
        "demo-secret",
    ));
    let url = engine::webhooks::registration::delivery_url(&stack.api_url, SHOP, "stock.update");
    client
        .register_webhook("stock.update", &url, "someone-elses-secret")
        .await
        .unwrap();
    // WHEN the shop connects
    let a = Api::admin(&stack)
        .put(
            &format!("/v1/shops/{SHOP}/connection"),
            connection_body(&stack),
        )
        .await;
    // THEN the connection is saved, webhooks are reported inactive with the reason
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["connection"]["webhooks_active"], json!(false));
    assert!(
        a.body["connection"]["webhooks_message"]
            .as_str()
            .is_some_and(|m| m.contains("scheduled sync")),
        "{}",
        a.body
    );
    // AND the hooks it did register were taken back (only the foreign one is left)
    assert_eq!(kv.webhooks().len(), 1, "{:?}", kv.webhooks());
    let g = Api::admin(&stack)
        .get(&format!("/v1/shops/{SHOP}/connection"))
        .await;
    assert_eq!(g.body["connection"]["webhooks_active"], json!(false));
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_8_without_a_public_url_no_hooks_are_registered_and_the_answer_says_so() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let a = Api::admin(&stack)
        .put(
            &format!("/v1/shops/{SHOP}/connection"),
            connection_body(&stack),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["connection"]["webhooks_active"], json!(false));
    assert!(
        a.body["connection"]["webhooks_message"]
            .as_str()
            .is_some_and(|m| m.contains("WEBHOOK_BASE_URL"))
    );
    assert!(stack.kiotviet.as_ref().unwrap().webhooks().is_empty());
    stack.stop().await;
}
