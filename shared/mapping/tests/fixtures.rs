//! The reference's example bodies (tests/fixtures/, copied from reference/kiotviet-fnb-api.md and
//! CONTRACTS.md) read with the crate's types, and the rules applied to them end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use mapping::abaha::Gender;
use mapping::api::AbahaOrder;
use mapping::catalog::{category_item, flatten_categories, product_item};
use mapping::customers::customer_item;
use mapping::invoices::{InvoiceClass, classify, order_customer, order_item};
use mapping::kiotviet::{
    Branch, Category, Customer, CustomerWrite, Detail, Inventory, Invoice, OrderCreate,
    OrderCreated, Page, Product, WebhookEnvelope, WebhookEvent, WebhookPayload,
};
use mapping::orders::{OrderStatus, PushContext, build_kv_order};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn page(name: &str) -> Page {
    serde_json::from_value(fixture(name)).unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn branches_page_decodes() {
    let p = page("branches.json");
    assert_eq!((p.total, p.page_size), (Some(1), Some(100)));
    assert_eq!(
        p.timestamp.unwrap().with_timezone(&Utc),
        utc("2026-10-07T07:39:09.4969693Z")
    );
    let branches: Vec<Branch> = p.decode().into_iter().map(Result::unwrap).collect();
    assert_eq!(branches[0].id, 233443);
    assert_eq!(
        branches[0].branch_name.as_deref(),
        Some("Chi nhánh trung tâm")
    );
    assert_eq!(
        branches[0].created_date.unwrap().with_timezone(&Utc),
        utc("2026-02-28T03:57:15.607Z")
    );
}

#[test]
fn r_cat_1_category_tree_decodes_and_flattens() {
    let p = page("categories_tree.json");
    assert!(p.removed_ids.is_empty());
    let tree: Vec<Category> = p.decode().into_iter().map(Result::unwrap).collect();
    let items: Vec<_> = flatten_categories(tree).iter().map(category_item).collect();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0].kiotviet_id, items[0].parent_kiotviet_id),
        (1001, None)
    );
    assert_eq!(
        (items[1].kiotviet_id, items[1].parent_kiotviet_id),
        (1002, Some(1001))
    );
    assert_eq!(items[1].name, "Cà phê pha máy");
}

#[test]
fn r_prd_1_products_page_decodes_and_maps() {
    let p = page("products.json");
    assert!(p.removed_ids.is_empty());
    let products: Vec<Product> = p.decode().into_iter().map(Result::unwrap).collect();
    let product = &products[0];
    assert_eq!(product.units[0].id, 5002);
    assert_eq!(product.toppings[0].base_price, Some(5000.0));
    assert_eq!(product.inventories[0].cost, Some(8000.0));

    let item = product_item(product, 233443);
    assert_eq!(item.kiotviet_id, 5001);
    assert_eq!((item.price, item.list_price), (35000.0, 35000.0));
    assert_eq!(item.master_kiotviet_id, Some(5000));
    assert_eq!(item.images, vec!["https://cdn.example/cf001.jpg"]);
    assert_eq!(item.topping_kiotviet_ids, vec![6001]);
    assert_eq!(item.stock, Some(0.0));
    assert_eq!(item.attributes[0].name, "Size");
}

#[test]
fn customer_create_body_and_answer_decode() {
    let body: CustomerWrite =
        serde_json::from_value(fixture("customer_create_request.json")).unwrap();
    assert_eq!(body.comment.as_deref(), Some("Khách app"));
    assert_eq!(body.branch_id, Some(233443));
    // Serializing it back gives the reference's body.
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        fixture("customer_create_request.json")
    );

    let created: Customer =
        serde_json::from_value::<Detail<Customer>>(fixture("customer_create_response.json"))
            .unwrap()
            .into_inner();
    assert_eq!(created.id, 880001);
    let item = customer_item(&created).unwrap();
    assert_eq!(item.gender, Some(Gender::Male));
    assert_eq!(item.birth_date.unwrap().to_string(), "1995-06-01");
}

#[test]
fn order_create_request_and_answer_decode() {
    let req: OrderCreate = serde_json::from_value(fixture("order_create_request.json")).unwrap();
    assert_eq!(req.order_details[0].note.as_deref(), Some("ít đá"));
    assert_eq!(req.delivery_detail.as_ref().unwrap().status, 3);
    // Our serialization is the reference's body, byte for byte in meaning.
    let ours = serde_json::to_value(&req).unwrap();
    let theirs = fixture("order_create_request.json");
    assert_eq!(numbers_as_f64(&ours), numbers_as_f64(&theirs));

    let created: OrderCreated =
        serde_json::from_value(fixture("order_create_response.json")).unwrap();
    assert_eq!(created.id, 9100001);
    assert_eq!(created.code.as_deref(), Some("DH000451"));
    assert_eq!(created.order_details[0].product_id, Some(5001));
    let delivery = created.order_delivery.unwrap();
    assert_eq!(delivery.price, Some(15000.0));
    assert_eq!(
        delivery.expected_delivery.unwrap().with_timezone(&Utc),
        utc("2026-05-01T04:30:00Z")
    );
}

#[test]
fn r_ord_3_4_8_contract_order_builds_a_body_with_only_documented_fields() {
    // GIVEN the contract's example Abaha order
    let order: AbahaOrder = serde_json::from_value(fixture("abaha_order.json")).unwrap();
    assert!(OrderStatus::parse(&order.status).unwrap().is_pushable());
    // WHEN built
    let ctx = PushContext {
        branch_id: 233443,
        customer_id: Some(880001),
        kiotviet_product_ids: vec![5001],
        reference: "abaha:A-1001".into(),
        now: utc("2026-11-29T02:00:00Z"),
    };
    let body = serde_json::to_value(build_kv_order(&order, &ctx)).unwrap();
    // THEN every key it sends is one the reference's request uses (DeliveryCode is documented
    // on F2 p.18, just absent from the example)
    let mut documented = keys(&fixture("order_create_request.json"));
    documented.insert("DeliveryDetail.DeliveryCode".into());
    let sent = keys(&body);
    assert!(
        sent.is_subset(&documented),
        "undocumented: {:?}",
        sent.difference(&documented)
    );
    assert_eq!(
        body["DeliveryDetail"]["ExpectedDelivery"],
        "2026-11-29T12:00:00"
    );
}

#[test]
fn r_inv_1_2_invoices_page_decodes_and_maps() {
    let p = page("invoices.json");
    let invoices: Vec<Invoice> = p.decode().into_iter().map(Result::unwrap).collect();
    let inv = &invoices[0];
    assert_eq!(classify(inv), InvoiceClass::Completed);
    let item = order_item(
        inv,
        None,
        None,
        |_| Some("P-9".into()),
        order_customer(inv, None),
    );
    assert_eq!(item.kiotviet_id, 251996687);
    assert_eq!(item.invoice_code.as_deref(), Some("HD012345"));
    assert_eq!(
        (item.subtotal, item.total, item.paid),
        (70000.0, 85000.0, 85000.0)
    );
    assert_eq!(item.payments[0].method.as_deref(), Some("Cash"));
    assert_eq!(item.lines[0].abaha_product_id.as_deref(), Some("P-9"));
    let v = serde_json::to_value(&item).unwrap();
    assert_eq!(v["purchased_at"], "2026-05-01T10:52:12.573+07:00");
    assert_eq!(v["customer"]["kiotviet_id"], 880001);
}

#[test]
fn r_syn_8_webhook_envelope_decodes_into_rest_types() {
    let payload = WebhookPayload::from_value(&fixture("webhook_product_update.json")).unwrap();
    let WebhookPayload::Envelope(env) = payload else {
        panic!("envelope expected")
    };
    assert_eq!(env.id.as_deref(), Some("b1f0…"));
    assert_eq!(env.attempt, Some(1));
    let n = &env.notifications[0];
    assert_eq!(n.event(), WebhookEvent::ProductUpdate);
    let products: Vec<Product> = n.decode().into_iter().map(Result::unwrap).collect();
    assert_eq!(products[0].id, 5001);
    assert_eq!(products[0].base_price, Some(35000.0));
    assert_eq!(products[0].master_unit_id, None);
    assert_eq!(products[0].category_id, Some(1002));

    // A stock.update record reads as an Inventory once camel-cased.
    let env: WebhookEnvelope = serde_json::from_value(serde_json::json!({
        "Id": "s1", "Attempt": 1,
        "Notifications": [{"Action": "stock.update", "Data": [
            {"ProductId": 5001, "ProductCode": "CF001", "BranchId": 233443, "OnHand": 12, "Reserved": 1, "Cost": 8000}
        ]}]
    }))
    .unwrap();
    let stock: Vec<Inventory> = env.notifications[0]
        .decode()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        (stock[0].branch_id, stock[0].on_hand),
        (Some(233443), Some(12.0))
    );
}

/// Dotted key paths of a JSON document (array items share their parent's path).
fn keys(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.insert(path.clone());
                    walk(v, &path, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, prefix, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

/// `15000` and `15000.0` are the same amount on the wire.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
