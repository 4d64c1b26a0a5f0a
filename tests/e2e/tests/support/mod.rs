//! What the push and invoice tests share: a connected shop whose menu is already in Abaha, and
//! Abaha order documents built from that menu (CONTRACTS §1 "Order body").
#![allow(dead_code)]

use e2e_tests::{Answer, Api, Stack, StackOptions, connect, start, sync};
use sandbox::abaha::Kind;
use serde_json::{Value, json};

pub const SHOP: &str = "cafe-1";

/// A sellable menu item as both sides know it.
#[derive(Debug, Clone)]
pub struct MenuItem {
    pub abaha_id: String,
    pub kiotviet_id: i64,
    pub price: f64,
}

/// A stack whose shop is connected and whose categories and products are synced, so that order
/// lines can name Abaha products (R-ORD-6). Answers the shop token too.
pub async fn shop_with_menu(opts: StackOptions) -> Option<(Stack, String)> {
    let stack = start(opts).await?;
    let token = connect(&stack, SHOP).await;
    let report = sync(
        &stack,
        SHOP,
        json!({"entities": ["categories", "products"], "full": true}),
    )
    .await;
    assert_eq!(report["state"], json!("succeeded"), "menu sync: {report}");
    Some((stack, token))
}

/// Sellable (non-topping) products, as Abaha received them.
pub fn menu(stack: &Stack) -> Vec<MenuItem> {
    let items = stack
        .abaha
        .as_ref()
        .expect("Abaha sandbox")
        .items(SHOP, Kind::Products);
    let menu: Vec<MenuItem> = items
        .iter()
        .filter(|p| p["is_topping"] != json!(true) && p["master_kiotviet_id"].is_null())
        .filter_map(|p| {
            Some(MenuItem {
                abaha_id: p["abaha_id"].as_str()?.to_string(),
                kiotviet_id: p["kiotviet_id"].as_i64()?,
                price: p["price"].as_f64()?,
            })
        })
        .collect();
    assert!(
        menu.len() >= 3,
        "the sandbox menu has sellable products: {items:?}"
    );
    menu
}

/// An approved Abaha order for two menu items (2 × first with a line note, 1 × second), shipping
/// 15,000, no delivery time, total = lines + shipping.
pub fn order(id: &str, code: &str, menu: &[MenuItem]) -> Value {
    let (a, b) = (&menu[0], &menu[1]);
    json!({
        "id": id, "code": code, "status": "approved",
        "created_at": "2026-11-29T09:00:00+07:00", "delivery_time": null,
        "note": "Giao cổng sau",
        "customer": {"id": format!("U-{id}"), "name": "Nguyễn Văn A", "phone": "0911222333", "email": null},
        "shipping_address": {"name": "Nguyễn Văn A", "phone": "0911222333", "address": "1 Lê Lợi",
                             "ward": "Bến Nghé", "district": "Quận 1", "province": "Hồ Chí Minh"},
        "lines": [
            {"product_id": a.abaha_id, "quantity": 2, "price": a.price, "note": "ít đá"},
            {"product_id": b.abaha_id, "quantity": 1, "price": b.price, "note": null}
        ],
        "shipping_fee": 15000, "discount": 0, "total": 2.0 * a.price + b.price + 15000.0
    })
}

pub async fn push(api: &Api, order: &Value) -> Answer {
    api.post(&format!("/v1/shops/{SHOP}/orders"), order.clone())
        .await
}

pub fn code_of(a: &Answer) -> Option<&str> {
    a.body["error"]["code"].as_str()
}

/// Orders created in the KiotViet sandbox through `POST /orders`.
pub fn kv_orders(stack: &Stack) -> Vec<Value> {
    stack
        .kiotviet
        .as_ref()
        .expect("KiotViet sandbox")
        .created_orders()
}

/// `POST /orders` requests the KiotViet sandbox has seen.
pub fn kv_order_posts(stack: &Stack) -> u64 {
    stack
        .kiotviet
        .as_ref()
        .expect("KiotViet sandbox")
        .stats()
        .requests
        .get("POST /orders")
}
