//! Arbitrary input never panics: datetime strings, and arbitrary JSON fed to every decoder and
//! then to the rules. Data we do not control must end as a named error, never a crashed Lambda.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use chrono::{DateTime, Utc};
use mapping::api::{AbahaCustomer, AbahaOrder};
use mapping::catalog::{category_item, flatten_categories, parents_first, product_item};
use mapping::customers::{CustomerCore, customer_item, customer_write, normalize_phone};
use mapping::hash::content_hash;
use mapping::invoices::{classify, order_customer, order_item};
use mapping::kiotviet::{
    Category, Customer, Detail, ErrorBody, Invoice, OrderCreated, Page, Product, WebhookPayload,
    camel_case_keys, decode_detail,
};
use mapping::orders::{
    DeliveryTime, OrderStatus, PushContext, UnmappedLines, build_kv_order, fee_balance,
};
use mapping::time::{kv_local, parse_kv_datetime};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names the decoders look for, so that generated objects reach deep into them.
const KEYS: &[&str] = &[
    "id",
    "Id",
    "categoryId",
    "parentId",
    "categoryName",
    "rank",
    "hasChild",
    "children",
    "data",
    "total",
    "pageSize",
    "removedIds",
    "removeId",
    "removeIds",
    "timestamp",
    "code",
    "name",
    "fullName",
    "basePrice",
    "images",
    "Image",
    "image",
    "attributes",
    "attributeName",
    "attributeValue",
    "inventories",
    "branchId",
    "onHand",
    "toppings",
    "units",
    "masterUnitId",
    "masterProductId",
    "isTopping",
    "modifiedDate",
    "createdDate",
    "contactNumber",
    "gender",
    "birthDate",
    "comment",
    "comments",
    "status",
    "statusValue",
    "purchaseDate",
    "invoiceDetails",
    "productId",
    "poductId",
    "quantity",
    "price",
    "discount",
    "subTotal",
    "payments",
    "amount",
    "method",
    "totalPayment",
    "orderDetails",
    "orderDelivery",
    "expectedDelivery",
    "Notifications",
    "Action",
    "Data",
    "RemoveId",
    "responseStatus",
    "message",
    "error",
    "lines",
    "product_id",
    "note",
    "delivery_time",
    "shipping_fee",
    "shipping_address",
    "customer",
    "phone",
    "province",
];

fn datetime_like() -> impl Strategy<Value = String> {
    "[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?(\\.[0-9]{0,10})?(Z|[+-][0-9]{2}:?[0-9]{2})?)?"
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(KEYS).prop_map(String::from), 1 => ".{0,6}"]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1_000_000i64..1_000_000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "[0-9]{1,20}".prop_map(Value::from),
        datetime_like().prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_kv_datetime_never_panics(s in ".*") {
        let _ = parse_kv_datetime(&s);
    }

    #[test]
    fn parse_kv_datetime_never_panics_on_near_misses(s in datetime_like(), cut in 0usize..40) {
        if let Ok(dt) = parse_kv_datetime(&s) {
            // What parses formats back and re-parses to the same whole-second instant (unless the
            // shift to +07:00 left the 4-digit years).
            if let Ok(again) = parse_kv_datetime(&kv_local(&dt)) {
                prop_assert_eq!(again.timestamp(), dt.timestamp());
            }
        }
        let cut = s.char_indices().nth(cut).map_or(s.len(), |(i, _)| i);
        let _ = parse_kv_datetime(&s[..cut]);
    }

    #[test]
    fn page_and_records_decode_without_panic(records in prop::collection::vec(json(), 0..4), envelope in json()) {
        let mut page = match envelope { Value::Object(m) => m, _ => Map::new() };
        page.insert("data".into(), Value::Array(records));
        let page = Value::Object(page);
        if let Ok(p) = serde_json::from_value::<Page>(page.clone()) {
            for product in p.decode::<Product>().into_iter().flatten() {
                let item = product_item(&product, 233443);
                let _ = content_hash(&item);
            }
            let categories: Vec<Category> = p.decode::<Category>().into_iter().flatten().collect();
            let _ = parents_first(flatten_categories(categories.clone()));
            let _ = categories.iter().map(category_item).count();
            for c in p.decode::<Customer>().into_iter().flatten() {
                let _ = customer_item(&c);
                let _ = CustomerCore::from(&c);
            }
            for inv in p.decode::<Invoice>().into_iter().flatten() {
                let _ = classify(&inv);
                let _ = order_item(&inv, None, None, |id| Some(id.to_string()), order_customer(&inv, None));
            }
            for e in p.decode::<Product>().into_iter().filter_map(Result::err) {
                let _ = e.to_string();
            }
        }
        let _ = decode_detail::<Product>(&page);
        let _ = serde_json::from_value::<Detail<Invoice>>(page.clone());
    }

    #[test]
    fn single_records_and_bodies_decode_without_panic(v in json(), id in -3i64..10_000) {
        // Half of the runs get a valid id, so that records get past the key and into the fields.
        let mut keyed = v.clone();
        if let Value::Object(m) = &mut keyed {
            m.insert("id".into(), Value::from(id));
            m.insert("categoryId".into(), Value::from(id));
            m.insert("status".into(), Value::from("placed"));
        }
        exercise_record(v);
        exercise_record(keyed);
    }

    #[test]
    fn abaha_orders_with_wild_numbers_build_without_panic(
        qty in any::<f64>(), price in any::<f64>(), fee in any::<f64>(), total in any::<f64>(),
        note in proptest::option::of(".{0,20}"), line_note in proptest::option::of(".{0,20}"),
    ) {
        let v = serde_json::json!({
            "id": "A", "status": "placed", "note": note,
            "lines": [{"product_id": "P", "quantity": qty, "price": price, "note": line_note}],
            "shipping_fee": fee, "total": total
        });
        if let Ok(order) = serde_json::from_value::<AbahaOrder>(v) {
            let ctx = PushContext { branch_id: 1, customer_id: None, kiotviet_product_ids: vec![1], reference: "r".into(), now: now() };
            let _ = build_kv_order(&order, &ctx);
        }
    }
}

/// Every decoder on one value, and every rule on what decodes.
fn exercise_record(v: Value) {
    if let Ok(p) = serde_json::from_value::<Product>(v.clone()) {
        let _ = content_hash(&product_item(&p, 1));
    }
    if let Ok(c) = serde_json::from_value::<Customer>(v.clone()) {
        let _ = customer_item(&c);
    }
    if let Ok(inv) = serde_json::from_value::<Invoice>(v.clone()) {
        let _ = classify(&inv);
        let _ = order_item(
            &inv,
            None,
            None,
            |_| None,
            order_customer(&inv, Some("0".into())),
        );
    }
    if let Ok(c) = serde_json::from_value::<Category>(v.clone()) {
        let _ = flatten_categories(vec![c])
            .iter()
            .map(category_item)
            .count();
    }
    let _ = serde_json::from_value::<OrderCreated>(v.clone());
    let _ = WebhookPayload::from_value(&v);
    let _ = camel_case_keys(&v);
    let _ = ErrorBody::message(&v);
    let _ = ErrorBody::error_code(&v);
    let _ = OrderStatus::parse(&v);
    let _ = content_hash(&v);
    if let Ok(c) = serde_json::from_value::<AbahaCustomer>(v.clone()) {
        let _ = customer_write(&c, 1);
        let _ = CustomerCore::from(&c);
        let _ = c.phone.as_deref().map(normalize_phone);
    }
    if let Ok(order) = serde_json::from_value::<AbahaOrder>(v) {
        let per_line: Vec<Option<i64>> = (0..order.lines.len() as i64).map(Some).collect();
        let ids = UnmappedLines::check(&order, &per_line).unwrap_or_default();
        let ctx = PushContext {
            branch_id: 1,
            customer_id: None,
            kiotviet_product_ids: ids,
            reference: "r".into(),
            now: now(),
        };
        let _ = fee_balance(&order);
        let _ = serde_json::to_value(build_kv_order(&order, &ctx));
        let _ = DeliveryTime::for_push(order.delivery_time, now());
    }
}
