//! POST /orders, invoicing an order, customer writes, webhooks — and the admin routes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::{TimeZone, Utc};
use common::start;
use reqwest::StatusCode;
use sandbox::kiotviet::{InvoiceEdits, KvConfig, LineInput, NewProduct};
use serde_json::{Value, json};

fn cfg() -> KvConfig {
    KvConfig {
        now: Some(Utc.with_ymd_and_hms(2026, 5, 1, 3, 0, 0).unwrap()),
        ..KvConfig::default()
    }
}

#[tokio::test]
async fn an_order_is_created_from_the_fnb_body_and_answered_in_camel_case() {
    let kv = start(cfg()).await;
    let pid = kv.sim.product_ids()[8];
    let body = json!({
        "BranchId": 233443,
        "DeliveryDetail": {"Receiver": "Nguyễn Văn A", "ContactNumber": "0987654321",
            "Address": "1 Lê Lợi", "LocationName": "Hồ Chí Minh - Quận 1", "WardName": "Phường Bến Nghé",
            "ExpectedDelivery": "2026-05-01T11:30:00", "Price": 15000, "Status": 3},
        "OrderDetails": [{"ProductId": pid, "Price": 35000, "Quantity": 2, "Note": "Giao cổng sau - ít đá", "Rank": 1}]
    });
    let a = kv.post("/orders", &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let o = a.json();
    let code = o["code"].as_str().unwrap();
    assert!(
        code.len() == 8 && code.starts_with("DH") && code[2..].bytes().all(|b| b.is_ascii_digit())
    );
    assert_eq!(o["total"], 85_000.0);
    assert_eq!(
        o["orderDelivery"]["expectedDelivery"],
        "2026-05-01T11:30:00.0000000"
    );
    assert_eq!(o["orderDelivery"]["price"], 15_000.0);
    assert!(o["orderDelivery"]["deliveryCode"].is_string());
    assert_eq!(o["orderDetails"][0]["note"], "Giao cổng sau - ít đá");
    assert!(o["orderDetails"][0]["uuid"].is_string());
    assert_eq!(o["status"], 1);

    // camelCase keys bind too, and codes keep counting.
    let camel = kv
        .post(
            "/orders",
            &json!({"branchId": 233443, "orderDetails": [{"productId": pid, "quantity": 1}]}),
        )
        .await;
    assert_eq!(camel.status, StatusCode::OK, "{}", camel.text);
    assert_ne!(camel.json()["code"], o["code"]);

    let created = kv.sim.created_orders();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["_request"], body);
    let listed = kv
        .get("/orders?lastModifiedFrom=2026-05-01T09:59:00&includeOrderDelivery=true")
        .await;
    assert_eq!(listed["total"], 2);
    let by_id = kv.get(&format!("/orders/{}", o["id"])).await;
    assert_eq!(by_id["code"], o["code"]);
}

#[tokio::test]
async fn invalid_orders_are_refused_with_a_message() {
    let kv = start(cfg()).await;
    let pid = kv.sim.product_ids()[8];
    let cases = [
        (
            json!({"OrderDetails": [{"ProductId": pid, "Quantity": 1}]}),
            "chi nhánh",
        ),
        (
            json!({"BranchId": 1, "OrderDetails": [{"ProductId": pid, "Quantity": 1}]}),
            "Chi nhánh 1",
        ),
        (json!({"BranchId": 233443, "OrderDetails": []}), "ít nhất"),
        (
            json!({"BranchId": 233443, "OrderDetails": [{"ProductId": 42, "Quantity": 1}]}),
            "42",
        ),
        (
            json!({"BranchId": 233443, "OrderDetails": [{"ProductId": pid, "Quantity": 0}]}),
            "Số lượng",
        ),
        (
            json!({"BranchId": 233443, "CustomerId": 5, "OrderDetails": [{"ProductId": pid, "Quantity": 1}]}),
            "Khách hàng",
        ),
    ];
    for (body, needle) in cases {
        let a = kv.post("/orders", &body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        let msg = a.json()["responseStatus"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let not_json = kv
        .send(kv.authed(kv.http.post(kv.url("/orders"))).body("{oops"))
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(kv.sim.created_orders().is_empty());
}

#[tokio::test]
async fn delivery_is_refused_when_the_shop_setting_is_off() {
    let kv = start(cfg()).await;
    kv.sim.set_delivery_enabled(false);
    let pid = kv.sim.product_ids()[8];
    let with_delivery = json!({"BranchId": 233443, "DeliveryDetail": {"Receiver": "A", "Price": 0},
        "OrderDetails": [{"ProductId": pid, "Quantity": 1}]});
    let a = kv.post("/orders", &with_delivery).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.json()["responseStatus"]["message"],
        "Thiết lập \"Sử dụng tính năng giao hàng.\" đang không được bật"
    );
    let without = json!({"BranchId": 233443, "OrderDetails": [{"ProductId": pid, "Quantity": 1}]});
    assert_eq!(kv.post("/orders", &without).await.status, StatusCode::OK);
}

#[tokio::test]
async fn invoicing_an_order_makes_a_completed_invoice_with_its_order_code() {
    let kv = start(cfg()).await;
    let pid = kv.sim.product_ids()[8];
    let other = kv.sim.product_ids()[12];
    let o = kv
        .post(
            "/orders",
            &json!({"BranchId": 233443, "OrderDetails": [{"ProductId": pid, "Quantity": 2, "Price": 30000}]}),
        )
        .await
        .json();
    let order_id = o["id"].as_i64().unwrap();
    let inv_id = kv
        .sim
        .invoice_order(
            order_id,
            InvoiceEdits {
                lines: Some(vec![
                    LineInput {
                        product_id: pid,
                        quantity: 3.0,
                        price: Some(30_000.0),
                        ..LineInput::default()
                    },
                    LineInput {
                        product_id: other,
                        quantity: 1.0,
                        ..LineInput::default()
                    },
                ]),
                ..InvoiceEdits::default()
            },
        )
        .unwrap();
    let inv = kv.get(&format!("/invoices/{inv_id}")).await;
    assert_eq!(inv["orderCode"], o["code"]);
    assert_eq!(inv["status"], 1);
    assert_eq!(inv["statusValue"], "Hoàn thành");
    assert_eq!(inv["invoiceDetails"][0]["quantity"], 3.0);
    assert_eq!(inv["invoiceDetails"].as_array().map(Vec::len), Some(2));
    assert_eq!(inv["totalPayment"], inv["total"]);
    let listed = kv
        .get("/invoices?lastModifiedFrom=2026-05-01T10:00:00&includePayment=true")
        .await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["data"][0]["orderCode"], o["code"]);
    assert_eq!(kv.get(&format!("/orders/{order_id}")).await["status"], 3);
    // Completed once only.
    assert!(
        kv.sim
            .invoice_order(order_id, InvoiceEdits::default())
            .is_err()
    );

    // Cancel it later: status 2 and a newer modifiedDate.
    kv.sim.advance(chrono::Duration::hours(2));
    kv.sim.set_invoice_status(inv_id, 2).unwrap();
    let later = kv
        .get("/invoices?lastModifiedFrom=2026-05-01T11:00:00")
        .await;
    assert_eq!(later["data"][0]["status"], 2);
    assert_eq!(later["data"][0]["statusValue"], "Đã hủy");
}

#[tokio::test]
async fn customers_are_created_updated_and_refused_on_a_duplicate_phone() {
    let kv = start(cfg()).await;
    let a = kv
        .post(
            "/customers",
            &json!({"name": "Nguyễn Văn A", "contactNumber": "0987000111", "gender": true,
                    "birthDate": "1995-06-01T00:00:00", "email": "a@example.com", "comment": "Khách app",
                    "branchId": 233443}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let c = a.json();
    assert!(c["code"].as_str().unwrap().starts_with("KH"));
    assert_eq!(
        c["birthDate"].as_str().map(|d| &d[..19]),
        Some("1995-06-01T00:00:00")
    );
    let dup = kv
        .post(
            "/customers",
            &json!({"name": "B", "contactNumber": "0987000111"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        dup.json()["responseStatus"]["message"],
        "Số điện thoại đã tồn tại"
    );

    let id = c["id"].as_i64().unwrap();
    let up = kv
        .put(
            &format!("/customers/{id}"),
            &json!({"Name": "Nguyễn Văn An", "Email": "an@example.com"}),
        )
        .await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text);
    assert_eq!(up.json()["name"], "Nguyễn Văn An");
    assert_eq!(up.json()["contactNumber"], "0987000111");
    assert!(up.json()["modifiedDate"].is_string());
    let missing = kv.put("/customers/1", &json!({"name": "X"})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(kv.sim.created_customers().len(), 1);
    let found = kv.get("/customers?contactNumber=0987000111").await;
    assert_eq!(found["total"], 1);
}

#[tokio::test]
async fn webhooks_are_registered_listed_and_deleted() {
    let kv = start(cfg()).await;
    let a = kv
        .post(
            "/webhooks",
            &json!({"Webhook": {"Type": "product.update", "Url": "https://example.com/h",
                    "IsActive": true, "Description": "sync", "Secret": "c2VjcmV0MTIz"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let w = a.json();
    assert_eq!(w["type"], "product.update");
    assert!(w.get("secret").is_none() && w["retailerId"].is_i64());
    assert_eq!(kv.get("/webhooks").await["total"], 1);
    let bad = kv
        .post(
            "/webhooks",
            &json!({"Webhook": {"Type": "invoice.update", "Url": "https://x"}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let del = kv
        .send(kv.authed(kv.http.delete(kv.url(&format!("/webhooks/{}", w["id"])))))
        .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(kv.get("/webhooks").await["total"], 0);
}

#[tokio::test]
async fn product_changes_are_delivered_signed_and_retried() {
    // A receiver that fails the first attempt.
    let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let mut s = store.lock().unwrap();
                s.push((headers, body));
                if s.len() == 1 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let kv = start(KvConfig {
        webhook_retry_delay_ms: 50,
        ..cfg()
    })
    .await;
    let reg = kv
        .post(
            "/webhooks",
            &json!({"Webhook": {"Type": "product.update", "Url": hook_url, "Secret": "s3cret"}}),
        )
        .await;
    assert_eq!(reg.status, StatusCode::OK, "{}", reg.text);
    let pid = kv
        .sim
        .add_product(NewProduct {
            name: "Cà phê dừa".into(),
            base_price: 39_000.0,
            ..NewProduct::default()
        })
        .unwrap();

    for _ in 0..100 {
        if seen.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (headers, body) = &seen[1];
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["Attempt"], 2);
    let first: Value = serde_json::from_slice(&seen[0].1).unwrap();
    assert_eq!(first["Attempt"], 1);
    assert_eq!(first["Id"], v["Id"], "a retry keeps its notification id");
    assert_eq!(v["Notifications"][0]["Action"], "product.update");
    assert_eq!(v["Notifications"][0]["Data"][0]["Id"], pid);
    assert_eq!(v["Notifications"][0]["Data"][0]["Name"], "Cà phê dừa");
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body);
    let want = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(headers["x-hub-signature"], want.as_str());
    assert_eq!(kv.sim.webhook_deliveries().len(), 2);
}

#[tokio::test]
async fn admin_routes_drive_the_simulator_out_of_process() {
    let kv = start(cfg()).await;
    let admin = |path: &str| format!("{}/_sandbox{path}", kv.sim.url());
    let http = &kv.http;
    let r: Value = http
        .post(admin("/products"))
        .json(
            &json!({"name": "Bánh mì chảo", "basePrice": 45000, "imagesAsObjects": true,
                      "images": ["https://cdn.example/bmc.jpg"], "onHand": 12}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = r["id"].as_i64().unwrap();
    let p = kv.get(&format!("/products/{pid}")).await;
    assert_eq!(p["images"][0]["Image"], "https://cdn.example/bmc.jpg");
    assert_eq!(p["inventories"][0]["onHand"], 12.0);

    let patched = http
        .patch(admin(&format!("/products/{pid}")))
        .json(&json!({"name": "Bánh mì chảo đặc biệt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(
        kv.get(&format!("/products/{pid}")).await["name"],
        "Bánh mì chảo đặc biệt"
    );

    let missing = http.delete(admin("/products/1")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["code"], "not_found");

    let settings = http
        .post(admin("/settings"))
        .json(&json!({"delivery_enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), StatusCode::OK);
    assert!(!kv.sim.settings().delivery_enabled);

    let clock: Value = http
        .post(admin("/clock"))
        .json(&json!({"advance_secs": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(clock["now"], "2026-05-01T04:00:00+00:00");

    let o = kv
        .post(
            "/orders",
            &json!({"BranchId": 233443, "OrderDetails": [{"ProductId": pid, "Quantity": 1}]}),
        )
        .await
        .json();
    let inv: Value = http
        .post(admin(&format!("/orders/{}/invoice", o["id"])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inv = kv.get(&format!("/invoices/{}", inv["id"])).await;
    assert_eq!(inv["orderCode"], o["code"]);
    let orders: Value = http
        .get(admin("/orders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(orders.as_array().map(Vec::len), Some(1));

    let reset = http.post(admin("/reset")).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(
        kv.get_raw(&format!("/products/{pid}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(kv.sim.settings().delivery_enabled);
}
