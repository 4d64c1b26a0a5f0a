//! Abaha Sync API sandbox, as the service's Abaha client would meet it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use reqwest::StatusCode;
use sandbox::Faults;
use sandbox::abaha::{AbahaConfig, AbahaHandle, AbahaSim, Kind};
use serde_json::{Value, json};

const TOKEN: &str = "abaha-demo-token";

async fn start(cfg: AbahaConfig) -> (AbahaHandle, reqwest::Client) {
    (AbahaSim::start(cfg).await.unwrap(), reqwest::Client::new())
}

async fn upsert(
    ab: &AbahaHandle,
    http: &reqwest::Client,
    shop: &str,
    kind: &str,
    token: &str,
    body: &Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = http
        .post(format!("{}/v1/shops/{shop}/{kind}:upsert", ab.url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn product(id: i64, name: &str, price: f64) -> Value {
    json!({
        "kiotviet_id": id, "code": format!("SP{id}"), "name": name, "full_name": name,
        "category_kiotviet_id": 100002, "unit": "Ly", "description": null,
        "images": ["https://cdn.example/a.jpg"], "attributes": [{"name": "Size", "value": "M"}],
        "master_kiotviet_id": null, "is_topping": false, "topping_kiotviet_ids": [],
        "price": price, "list_price": price, "stock": null
    })
}

fn statuses(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("error").to_string())
        .collect()
}

#[tokio::test]
async fn upserts_answer_created_updated_unchanged_in_item_order() {
    let (ab, http) = start(AbahaConfig::default()).await;
    let batch = json!({"items": [product(1, "Bạc xỉu", 32000.0), product(2, "Trà đào", 45000.0)]});
    let (s, _, v) = upsert(&ab, &http, "shop-1", "products", TOKEN, &batch).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(statuses(&v), ["created", "created"]);
    assert_eq!(v["results"][0]["abaha_id"], "prd-1");
    assert_eq!(v["results"][1]["kiotviet_id"], 2);

    // The same again (prices now as integers): nothing changes.
    let mut same = batch.clone();
    same["items"][0]["price"] = json!(32000);
    same["items"][0]["list_price"] = json!(32000);
    let (_, _, v) = upsert(&ab, &http, "shop-1", "products", TOKEN, &same).await;
    assert_eq!(statuses(&v), ["unchanged", "unchanged"]);

    let changed =
        json!({"items": [product(2, "Trà đào cam sả", 45000.0), product(3, "Latte", 45000.0)]});
    let (_, _, v) = upsert(&ab, &http, "shop-1", "products", TOKEN, &changed).await;
    assert_eq!(statuses(&v), ["updated", "created"]);
    assert_eq!(v["results"][0]["abaha_id"], "prd-2");

    let items = ab.items("shop-1", Kind::Products);
    assert_eq!(items.len(), 3);
    assert_eq!(items[1]["name"], "Trà đào cam sả");
    let c = ab.counts(Kind::Products);
    assert_eq!((c.created, c.updated, c.unchanged, c.failed), (3, 1, 2, 0));
    assert_eq!(
        ab.stats()
            .requests
            .get("POST /v1/shops/{shop_id}/products:upsert"),
        3
    );
    // Shops are separate.
    assert!(ab.items("shop-2", Kind::Products).is_empty());
}

#[tokio::test]
async fn more_than_100_items_or_a_malformed_body_is_422() {
    let (ab, http) = start(AbahaConfig::default()).await;
    let items: Vec<Value> = (1..=101)
        .map(|i| json!({"kiotviet_id": i, "name": "C", "rank": i}))
        .collect();
    let (s, _, v) = upsert(
        &ab,
        &http,
        "s",
        "categories",
        TOKEN,
        &json!({"items": items}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "validation_failed");
    assert_eq!(v["error"]["details"]["max_items"], 100);
    assert!(
        ab.items("s", Kind::Categories).is_empty(),
        "nothing written"
    );

    let hundred: Vec<Value> = (1..=100)
        .map(|i| json!({"kiotviet_id": i, "name": "C"}))
        .collect();
    let (s, _, _) = upsert(
        &ab,
        &http,
        "s",
        "categories",
        TOKEN,
        &json!({"items": hundred}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    for bad in [json!([1, 2]), json!({"items": "x"}), json!({})] {
        let (s, _, v) = upsert(&ab, &http, "s", "categories", TOKEN, &bad).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(v["error"]["message"].is_string());
    }
    let raw = http
        .post(format!("{}/v1/shops/s/categories:upsert", ab.url()))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(ab.stats().rejected_batches, 5);
}

#[tokio::test]
async fn a_wrong_token_is_401_and_an_unknown_shop_404() {
    let (ab, http) = start(AbahaConfig {
        known_shops: Some(vec!["shop-1".into()]),
        ..AbahaConfig::default()
    })
    .await;
    let body = json!({"items": []});
    let (s, _, v) = upsert(&ab, &http, "shop-1", "customers", "wrong", &body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthorized");
    assert!(v["error"]["details"].is_object());
    let (s, _, v) = upsert(&ab, &http, "shop-9", "customers", TOKEN, &body).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "unknown_shop");
    ab.add_shop("shop-9");
    let (s, _, _) = upsert(&ab, &http, "shop-9", "customers", TOKEN, &body).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, v) = upsert(&ab, &http, "shop-1", "widgets", TOKEN, &body).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn invalid_items_fail_alone() {
    let (ab, http) = start(AbahaConfig::default()).await;
    let body = json!({"items": [
        {"kiotviet_id": 1, "code": "KH1", "phone": "0987000111", "name": "A", "email": null,
         "address": null, "gender": "female", "birth_date": "1995-06-01"},
        {"code": "KH2", "phone": "0987000222", "name": "B"},
        {"kiotviet_id": 3, "name": "C"},
        {"kiotviet_id": "4", "phone": "0987000444", "name": "D", "gender": "nam"},
    ]});
    let (s, _, v) = upsert(&ab, &http, "s", "customers", TOKEN, &body).await;
    assert_eq!(s, StatusCode::OK);
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["status"], "created");
    assert_eq!(r[0]["abaha_id"], "cus-1");
    assert!(r[1]["kiotviet_id"].is_null() && r[1]["error"]["code"] == "validation_failed");
    assert_eq!(r[2]["kiotviet_id"], 3);
    assert!(r[2]["error"]["message"].as_str().unwrap().contains("phone"));
    assert_eq!(r[3]["kiotviet_id"], "4");
    assert!(
        r[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gender")
    );
    assert_eq!(ab.items("s", Kind::Customers).len(), 1);
    assert_eq!(ab.counts(Kind::Customers).failed, 3);
}

#[tokio::test]
async fn r_prd_3_upserts_never_change_visibility() {
    let (ab, http) = start(AbahaConfig::default()).await;
    let (_, _, _) = upsert(
        &ab,
        &http,
        "s",
        "products",
        TOKEN,
        &json!({"items": [product(7, "Mocha", 49000.0)]}),
    )
    .await;
    assert_eq!(ab.visible("s", 7), Some(true), "new products arrive shown");
    assert!(ab.set_visible("s", 7, false), "the owner hides it");
    let (_, _, v) = upsert(
        &ab,
        &http,
        "s",
        "products",
        TOKEN,
        &json!({"items": [product(7, "Mocha đá", 52000.0)]}),
    )
    .await;
    assert_eq!(statuses(&v), ["updated"]);
    assert_eq!(
        ab.visible("s", 7),
        Some(false),
        "still hidden after the sync"
    );
    assert_eq!(ab.item("s", Kind::Products, 7).unwrap()["visible"], false);
    // A visibility field in a sync item is a bug in the caller.
    let mut with_visible = product(8, "Latte", 45000.0);
    with_visible["visible"] = json!(true);
    let (_, _, v) = upsert(
        &ab,
        &http,
        "s",
        "products",
        TOKEN,
        &json!({"items": [with_visible]}),
    )
    .await;
    assert_eq!(v["results"][0]["error"]["code"], "validation_failed");

    // Over HTTP too.
    let r = http
        .post(format!(
            "{}/_sandbox/shops/s/products/7/visibility",
            ab.url()
        ))
        .json(&json!({"visible": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ab.visible("s", 7), Some(true));
}

#[tokio::test]
async fn r_inv_2_an_invoice_of_a_pushed_order_updates_that_abaha_order() {
    let (ab, http) = start(AbahaConfig::default()).await;
    let order = |invoice: i64, total: f64, abaha: Value| {
        json!({"kiotviet_id": invoice, "invoice_code": "HD000301", "kiotviet_order_code": "DH000035",
               "abaha_order_id": abaha, "status": "completed", "purchased_at": "2026-05-01T10:00:00+07:00",
               "customer": null, "lines": [{"kiotviet_product_id": 1, "abaha_product_id": "prd-1",
               "name": "Bạc xỉu", "quantity": 2, "price": 32000, "discount": 0, "note": null}],
               "subtotal": total, "discount": 0, "total": total, "paid": total,
               "payments": [{"method": "Cash", "amount": total}]})
    };
    let (_, _, v) = upsert(
        &ab,
        &http,
        "s",
        "orders",
        TOKEN,
        &json!({"items": [order(901, 64000.0, json!("A-1001"))]}),
    )
    .await;
    assert_eq!(v["results"][0]["abaha_id"], "A-1001");
    assert_eq!(v["results"][0]["status"], "updated");
    let (_, _, v) = upsert(
        &ab,
        &http,
        "s",
        "orders",
        TOKEN,
        &json!({"items": [order(901, 64000.0, json!("A-1001"))]}),
    )
    .await;
    assert_eq!(v["results"][0]["status"], "unchanged");
    let (_, _, v) = upsert(
        &ab,
        &http,
        "s",
        "orders",
        TOKEN,
        &json!({"items": [order(902, 30000.0, Value::Null)]}),
    )
    .await;
    assert_eq!(v["results"][0]["status"], "created");
    assert_eq!(v["results"][0]["abaha_id"], "ord-1");
    assert_eq!(ab.items("s", Kind::Orders).len(), 2);

    let listed: Value = http
        .get(format!("{}/_sandbox/shops/s/orders", ab.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["abaha_id"], "A-1001");
}

#[tokio::test]
async fn faults_answer_429_with_retry_after_and_5xx_in_the_error_shape() {
    let (ab, http) = start(AbahaConfig {
        faults: Faults {
            p_429: 1.0,
            retry_after_secs: 3,
            ..Faults::default()
        },
        ..AbahaConfig::default()
    })
    .await;
    let body = json!({"items": [product(1, "A", 1.0)]});
    let (s, h, v) = upsert(&ab, &http, "s", "products", TOKEN, &body).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h["retry-after"], "3");
    assert_eq!(v["error"]["code"], "rate_limited");
    assert!(ab.items("s", Kind::Products).is_empty());

    ab.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    let (s, _, v) = upsert(&ab, &http, "s", "products", TOKEN, &body).await;
    assert!(s.is_server_error());
    assert_eq!(v["error"]["code"], "unavailable");

    let reset = http
        .post(format!("{}/_sandbox/reset", ab.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(
        ab.faults().p_429,
        1.0,
        "reset returns to the start configuration"
    );
    ab.set_faults(Faults::default());
    let (s, _, _) = upsert(&ab, &http, "s", "products", TOKEN, &body).await;
    assert_eq!(s, StatusCode::OK);
}
