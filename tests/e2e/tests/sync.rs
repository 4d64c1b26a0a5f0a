//! The sync engine end to end: local stack on moto + KiotViet FnB simulator + Abaha sandbox.
//!
//! What Abaha holds is always compared with the KiotViet simulator's own records (its handle's
//! `product(id)`, `customer(id)` …), never with hard-coded numbers, and the expectations below are
//! written from CONTRACTS §2 by hand — not with the mapping crate, whose bugs they must catch.
//! R-SYN-1…5, R-SYN-7, R-CAT-1, R-PRD-1…5, R-CUS-1, R-CON-6.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::check::{
    abaha, abaha_state, assert_each_written_once, assert_same_state, count, kv, norm, part,
};
use e2e_tests::{Api, Stack, StackOptions, connect, connection_body, start, sync, wait_run};
use engine::Settings;
use mapping::time::ManualClock;
use sandbox::Faults;
use sandbox::abaha::Kind;
use sandbox::kiotviet::{
    CategoryPatch, Counts, DataSize, KvConfig, NewCategory, NewCustomer, NewProduct,
};
use serde_json::{Value, json};

const SHOP: &str = "cafe-sync";

/// `v[key]`, with an absent key read as null (KiotViet leaves empty fields out).
fn field(v: &Value, key: &str) -> Value {
    v.get(key).cloned().unwrap_or(Value::Null)
}

/// Abaha's stored items of one kind for `shop`, by KiotViet id, as the sandbox received them.
fn abaha_items(stack: &Stack, shop: &str, kind: Kind) -> BTreeMap<i64, Value> {
    abaha(stack)
        .stored(shop, kind)
        .into_iter()
        .map(|s| {
            (
                s.kiotviet_id.parse::<i64>().expect("numeric kiotviet_id"),
                s.item,
            )
        })
        .collect()
}

/// Asserts that every field of `want` is in `got` with the same value.
fn assert_fields(what: &str, got: &Value, want: &Value) {
    for (k, w) in want.as_object().expect("expectation is an object") {
        assert_eq!(norm(&field(got, k)), norm(w), "{what}: field {k} of {got}");
    }
}

// ---- expectations, from the KiotViet records and CONTRACTS §2 ----------------------------------

/// R-CAT-1: name, parent link (null for roots), rank.
fn expected_category(c: &Value) -> Value {
    json!({"kiotviet_id": c["categoryId"], "name": c["categoryName"],
           "parent_kiotviet_id": field(c, "parentId"), "rank": c["rank"]})
}

/// R-PRD-1/2/5: what a KiotViet product must become in Abaha.
fn expected_product(p: &Value, branch_id: i64) -> Value {
    let list = |key: &str| {
        p.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    // Both image shapes KiotViet sends: "url" and {"Image": "url"}.
    let images: Vec<Value> = list("images")
        .iter()
        .map(|i| {
            if i.is_string() {
                i.clone()
            } else {
                i["Image"].clone()
            }
        })
        .collect();
    let attributes: Vec<Value> = list("attributes")
        .iter()
        .map(|a| json!({"name": a["attributeName"], "value": a["attributeValue"]}))
        .collect();
    let master = [field(p, "masterProductId"), field(p, "masterUnitId")]
        .into_iter()
        .find(|m| !m.is_null())
        .unwrap_or(Value::Null);
    let toppings: Vec<Value> = list("toppings").iter().map(|t| t["id"].clone()).collect();
    let stock = list("inventories")
        .iter()
        .find(|i| i["branchId"] == json!(branch_id))
        .map(|i| i["onHand"].clone())
        .unwrap_or(Value::Null);
    json!({"kiotviet_id": p["id"], "code": p["code"], "name": p["name"], "full_name": p["fullName"],
           "category_kiotviet_id": field(p, "categoryId"), "unit": field(p, "unit"),
           "description": field(p, "description"), "images": images, "attributes": attributes,
           "master_kiotviet_id": master, "is_topping": p["isTopping"],
           "topping_kiotviet_ids": toppings, "price": p["basePrice"], "list_price": p["basePrice"],
           "stock": stock})
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// R-CUS-1: None when the customer has no phone (skipped); a missing name becomes "Khách".
fn expected_customer(c: &Value) -> Option<Value> {
    let phone = c["contactNumber"]
        .as_str()
        .map(digits)
        .filter(|p| !p.is_empty())?;
    let name = c["name"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("Khách");
    let gender = match c["gender"].as_bool() {
        Some(true) => json!("male"),
        Some(false) => json!("female"),
        None => Value::Null,
    };
    let birth = c["birthDate"]
        .as_str()
        .map(|d| json!(&d[..10]))
        .unwrap_or(Value::Null);
    Some(
        json!({"kiotviet_id": c["id"], "code": c["code"], "phone": phone, "name": name,
                "email": field(c, "email"), "address": field(c, "address"),
                "gender": gender, "birth_date": birth}),
    )
}

/// Asserts that Abaha's categories are exactly KiotViet's (plus those deleted in KiotViet since
/// they synced: nothing is deleted in Abaha), parents stored before children.
fn assert_categories_copied(stack: &Stack, shop: &str, deleted_in_kiotviet: &[i64]) {
    let kv = kv(stack);
    let items = abaha_items(stack, shop, Kind::Categories);
    let ids: BTreeSet<i64> = kv.category_ids().into_iter().collect();
    let kept: BTreeSet<i64> = ids.iter().chain(deleted_in_kiotviet).copied().collect();
    assert_eq!(
        items.keys().copied().collect::<BTreeSet<_>>(),
        kept,
        "exactly KiotViet's categories"
    );
    for id in &ids {
        let c = kv.category(*id).expect("live category");
        assert_fields(
            &format!("category {id}"),
            &items[id],
            &expected_category(&c),
        );
    }
    // R-CAT-1: Abaha links a child to a parent it already has, so parents arrive first.
    let order: Vec<i64> = abaha(stack)
        .stored(shop, Kind::Categories)
        .iter()
        .map(|s| s.kiotviet_id.parse().unwrap())
        .collect();
    for (at, id) in order.iter().enumerate() {
        if let Some(parent) = items[id]["parent_kiotviet_id"].as_i64() {
            let parent_at = order
                .iter()
                .position(|p| *p == parent)
                .expect("parent in Abaha");
            assert!(parent_at < at, "parent {parent} stored before child {id}");
        }
    }
}

/// Asserts that Abaha's products are exactly KiotViet's, field by field.
fn assert_products_copied(stack: &Stack, shop: &str) {
    let kv = kv(stack);
    let branch = kv.central_branch_id();
    let items = abaha_items(stack, shop, Kind::Products);
    let ids: BTreeSet<i64> = kv.product_ids().into_iter().collect();
    assert_eq!(
        items.keys().copied().collect::<BTreeSet<_>>(),
        ids,
        "exactly KiotViet's products"
    );
    for id in &ids {
        let p = kv.product(*id).expect("live product");
        assert_fields(
            &format!("product {id}"),
            &items[id],
            &expected_product(&p, branch),
        );
    }
}

/// Asserts that Abaha's customers are KiotViet's customers with a phone; answers how many had none.
fn assert_customers_copied(stack: &Stack, shop: &str) -> u64 {
    let kv = kv(stack);
    let items = abaha_items(stack, shop, Kind::Customers);
    let mut want = BTreeMap::new();
    let mut phoneless = 0;
    for id in kv.customer_ids() {
        match expected_customer(&kv.customer(id).expect("live customer")) {
            Some(c) => {
                want.insert(id, c);
            }
            None => phoneless += 1,
        }
    }
    assert_eq!(
        items.keys().copied().collect::<BTreeSet<_>>(),
        want.keys().copied().collect::<BTreeSet<_>>(),
        "exactly KiotViet's customers that have a phone"
    );
    for (id, c) in &want {
        assert_fields(&format!("customer {id}"), &items[id], c);
    }
    phoneless
}

const CATALOG_AND_CUSTOMERS: [&str; 3] = ["categories", "products", "customers"];
const CATALOG_KINDS: [Kind; 3] = [Kind::Categories, Kind::Products, Kind::Customers];

// ---- first sync, second sync, incremental ------------------------------------------------------

#[tokio::test]
async fn r_syn_1_r_cat_1_r_prd_1_r_cus_1_first_sync_copies_exactly_what_kiotviet_has() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;

    // WHEN the shop presses Sync for the first time
    let report = sync(&stack, SHOP, json!({})).await;

    // THEN the run succeeded and Abaha holds exactly what KiotViet holds (R-CAT-1, R-PRD-1/2/5)
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert_categories_copied(&stack, SHOP, &[]);
    assert_products_copied(&stack, SHOP);
    // AND customers keyed by phone; phoneless ones skipped and counted (R-CUS-1)
    let phoneless = assert_customers_copied(&stack, SHOP);
    assert!(phoneless > 0, "the seed has customers without a phone");
    assert_eq!(
        part(&report, "customers")["skipped"]["no_phone"],
        json!(phoneless),
        "{report}"
    );
    // AND the counts say so
    let kv = kv(&stack);
    assert_eq!(
        count(&report, "categories", "created"),
        kv.category_ids().len() as u64
    );
    assert_eq!(
        count(&report, "products", "created"),
        kv.product_ids().len() as u64
    );
    assert_eq!(
        count(&report, "customers", "created"),
        kv.customer_ids().len() as u64 - phoneless
    );
    // AND the seed exercised what the rules are about, so the comparison above meant something
    let products: Vec<Value> = kv
        .product_ids()
        .iter()
        .filter_map(|id| kv.product(*id))
        .collect();
    let has = |f: &dyn Fn(&Value) -> bool| products.iter().any(f);
    assert!(has(&|p| p["images"]
        .as_array()
        .is_some_and(|i| i.iter().any(Value::is_string))));
    assert!(has(&|p| p["images"]
        .as_array()
        .is_some_and(|i| i.iter().any(Value::is_object))));
    assert!(has(&|p| p.get("masterProductId").is_some()), "variants");
    assert!(has(&|p| p.get("masterUnitId").is_some()), "other units");
    assert!(has(&|p| p["isTopping"] == json!(true)) && has(&|p| p.get("toppings").is_some()));
    // Stock differs between branches somewhere, so the wrong branch would show.
    assert!(has(&|p| {
        let inv = p["inventories"].as_array().cloned().unwrap_or_default();
        inv.iter()
            .map(|i| i["onHand"].to_string())
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    }));
    let customers: Vec<Value> = kv
        .customer_ids()
        .iter()
        .filter_map(|id| kv.customer(*id))
        .collect();
    assert!(
        customers
            .iter()
            .any(|c| c.get("name").is_none() && c.get("contactNumber").is_some()),
        "a nameless customer with a phone"
    );
    // AND price books were never asked for (R-PRD-2) and no visibility field was ever sent (R-PRD-3)
    assert_eq!(kv.stats().pricebook_requests, 0);
    for s in abaha(&stack).stored(SHOP, Kind::Products) {
        for key in ["visible", "visibility", "hidden", "is_visible"] {
            assert!(
                s.item.get(key).is_none(),
                "product {} carries {key}",
                s.kiotviet_id
            );
        }
        assert_eq!(s.visible, Some(true), "new products arrive shown");
    }
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_4_second_run_without_changes_sends_nothing_and_reads_one_page_per_entity() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let first = sync(&stack, SHOP, json!({})).await;
    assert_eq!(first["state"], json!("succeeded"), "{first}");
    // GIVEN nothing changed in KiotViet since the first run
    let kv = kv(&stack);
    kv.reset_stats();
    let abaha_before = abaha(&stack).stats();

    // WHEN Sync is pressed again
    let second = sync(&stack, SHOP, json!({})).await;

    // THEN nothing is sent to Abaha
    assert_eq!(second["state"], json!("succeeded"), "{second}");
    let abaha_after = abaha(&stack).stats();
    assert_eq!(
        abaha_after.requests.total, abaha_before.requests.total,
        "no Abaha call: {second}"
    );
    // AND each entity spent exactly one KiotViet GET, as the report and KiotViet itself agree
    let stats = kv.stats();
    for (name, route) in [
        ("categories", "GET /categories"),
        ("products", "GET /products"),
        ("customers", "GET /customers"),
        ("invoices", "GET /invoices"),
    ] {
        assert_eq!(count(&second, name, "api_calls"), 1, "{name}: {second}");
        assert_eq!(
            stats.requests.get(route),
            1,
            "{route}: {:?}",
            stats.requests
        );
        assert_eq!(
            count(&second, name, "created") + count(&second, name, "updated"),
            0,
            "{name}: {second}"
        );
    }
    stack.stop().await;
}

/// Invoices are mapped with the Abaha ids of their products (R-INV-2), so the product pull must
/// have linked them first; otherwise the next overlap window "updates" the invoice (the demo's
/// `updated: 1` on an unchanged second run).
#[tokio::test]
async fn r_syn_4_invoices_of_a_first_sync_carry_the_abaha_product_ids() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let report = sync(&stack, SHOP, json!({})).await;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    let products = abaha_items(&stack, SHOP, Kind::Products);
    let orders = abaha_items(&stack, SHOP, Kind::Orders);
    assert!(!orders.is_empty());
    for (id, order) in &orders {
        for line in order["lines"].as_array().expect("lines") {
            let pid = line["kiotviet_product_id"].as_i64().expect("product id");
            if let Some(p) = abaha(&stack).item(SHOP, Kind::Products, pid) {
                assert_eq!(
                    line["abaha_product_id"], p["abaha_id"],
                    "invoice {id} line of product {pid}"
                );
            } else {
                assert!(!products.contains_key(&pid));
            }
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn r_prd_4_incremental_run_carries_exactly_the_changes_and_lists_a_deletion_once() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let body = json!({"entities": CATALOG_AND_CUSTOMERS});
    // An empty category, so that one can be deleted later (KiotViet refuses to delete a used one).
    let spare_category = kv(&stack)
        .add_category(NewCategory {
            name: "Tạm thời".into(),
            ..NewCategory::default()
        })
        .unwrap();
    let first = sync(&stack, SHOP, body.clone()).await;
    assert_eq!(first["state"], json!("succeeded"), "{first}");
    let kv = kv(&stack);
    let products: Vec<Value> = kv
        .product_ids()
        .iter()
        .filter_map(|id| kv.product(*id))
        .collect();
    // A plain product: no variants, no units, not a topping (deleting it touches no other record).
    let plain: Vec<&Value> = products
        .iter()
        .filter(|p| {
            [
                "masterProductId",
                "masterUnitId",
                "units",
                "attributes",
                "toppings",
            ]
            .iter()
            .all(|k| p.get(*k).is_none())
                && p["isTopping"] == json!(false)
        })
        .collect();
    assert!(plain.len() >= 2, "the seed has plain products");
    let renamed = plain[0]["id"].as_i64().unwrap();
    let deleted = plain[1]["id"].as_i64().unwrap();
    let deleted_abaha_id =
        abaha(&stack).item(SHOP, Kind::Products, deleted).unwrap()["abaha_id"].clone();
    // A child category, moved under another root and renamed.
    let cats: Vec<Value> = kv
        .category_ids()
        .iter()
        .filter_map(|id| kv.category(*id))
        .collect();
    let child = cats
        .iter()
        .find(|c| c.get("parentId").is_some())
        .expect("a child category");
    let child_id = child["categoryId"].as_i64().unwrap();
    let new_parent = cats
        .iter()
        .find(|c| c.get("parentId").is_none() && c["categoryId"] != child["parentId"])
        .expect("another root")["categoryId"]
        .as_i64()
        .unwrap();
    let customers: Vec<Value> = kv
        .customer_ids()
        .iter()
        .filter_map(|id| kv.customer(*id))
        .collect();
    let with_phone: Vec<i64> = customers
        .iter()
        .filter(|c| c.get("contactNumber").is_some())
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    let (changed_customer, deleted_customer) = (with_phone[0], with_phone[1]);

    // GIVEN changes in KiotViet: one product renamed, one added, one deleted; a category moved and
    // renamed; a customer added and one changed
    kv.rename_product(renamed, "Cà phê đổi tên").unwrap();
    let added = kv
        .add_product(NewProduct {
            name: "Bánh flan".into(),
            category_id: Some(child_id),
            base_price: 25_000.0,
            unit: Some("Cái".into()),
            images: vec!["https://cdn.example/flan.jpg".into()],
            images_as_objects: true,
            on_hand: Some(12.0),
            ..NewProduct::default()
        })
        .unwrap();
    kv.delete_product(deleted).unwrap();
    kv.delete_category(spare_category).unwrap();
    kv.delete_customer(deleted_customer).unwrap();
    kv.update_category(
        child_id,
        CategoryPatch {
            name: Some("Nhóm đã chuyển".into()),
            parent_id: Some(new_parent),
            rank: None,
        },
    )
    .unwrap();
    let new_customer = kv
        .add_customer(NewCustomer {
            name: Some("Lê Mới".into()),
            contact_number: Some("0911222333".into()),
            gender: Some(false),
            ..NewCustomer::default()
        })
        .unwrap();
    kv.update_customer(
        changed_customer,
        NewCustomer {
            name: Some("Tên Mới".into()),
            ..NewCustomer::default()
        },
    )
    .unwrap();

    // WHEN the next (incremental) run goes
    let second = sync(&stack, SHOP, body.clone()).await;

    // THEN it carries exactly those changes
    assert_eq!(second["state"], json!("succeeded"), "{second}");
    for (name, created, updated) in [
        ("categories", 0, 1),
        ("products", 1, 1),
        ("customers", 1, 1),
    ] {
        assert_eq!(
            (
                count(&second, name, "created"),
                count(&second, name, "updated")
            ),
            (created, updated),
            "{name}: {second}"
        );
    }
    assert_categories_copied(&stack, SHOP, &[spare_category]);
    let branch = kv.central_branch_id();
    for id in [renamed, added] {
        let item = abaha(&stack)
            .item(SHOP, Kind::Products, id)
            .expect("in Abaha");
        assert_fields(
            &format!("product {id}"),
            &item,
            &expected_product(&kv.product(id).unwrap(), branch),
        );
    }
    for id in [new_customer, changed_customer] {
        let item = abaha(&stack)
            .item(SHOP, Kind::Customers, id)
            .expect("in Abaha");
        assert_fields(
            &format!("customer {id}"),
            &item,
            &expected_customer(&kv.customer(id).unwrap()).unwrap(),
        );
    }
    // AND the deleted product stays in Abaha, listed once as a manual action with its Abaha id
    assert!(
        abaha(&stack).item(SHOP, Kind::Products, deleted).is_some(),
        "never deleted in Abaha"
    );
    let actions = second["manual_actions"].as_array().expect("manual actions");
    assert_eq!(actions.len(), 1, "{second}");
    assert_eq!(actions[0]["kind"], json!("delete_product_in_abaha"));
    assert_eq!(actions[0]["kiotviet_id"], json!(deleted));
    assert_eq!(actions[0]["abaha_id"], deleted_abaha_id);
    assert!(
        actions[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains(deleted_abaha_id.as_str().unwrap()))
    );
    // AND the deleted category and customer are counted (and stay in Abaha too)
    for (name, kind, id) in [
        ("products", Kind::Products, deleted),
        ("categories", Kind::Categories, spare_category),
        ("customers", Kind::Customers, deleted_customer),
    ] {
        assert_eq!(
            count(&second, name, "removed_in_kiotviet"),
            1,
            "{name}: {second}"
        );
        assert!(
            abaha(&stack).item(SHOP, kind, id).is_some(),
            "{name} {id} kept in Abaha"
        );
    }

    // AND two later runs, whose overlap window still sees the deletions, do not count or list
    // them again
    for _ in 0..2 {
        let later = sync(&stack, SHOP, body.clone()).await;
        assert_eq!(later["state"], json!("succeeded"), "{later}");
        assert_eq!(later["manual_actions"], json!([]), "{later}");
        for name in CATALOG_AND_CUSTOMERS {
            assert_eq!(
                count(&later, name, "removed_in_kiotviet"),
                0,
                "{name}: {later}"
            );
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn r_prd_3_a_product_hidden_in_abaha_stays_hidden_after_its_rename_syncs() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let body = json!({"entities": ["categories", "products"]});
    sync(&stack, SHOP, body.clone()).await;
    let kv = kv(&stack);
    let hidden = kv.product_ids()[3];
    // GIVEN the owner hid a product in Abaha, and renamed it in KiotViet
    assert!(abaha(&stack).set_visible(SHOP, hidden, false));
    kv.rename_product(hidden, "Món ẩn đổi tên").unwrap();
    let added = kv
        .add_product(NewProduct {
            name: "Món mới".into(),
            base_price: 20_000.0,
            ..NewProduct::default()
        })
        .unwrap();

    // WHEN the change syncs
    let report = sync(&stack, SHOP, body).await;

    // THEN the rename arrived, the product is still hidden, and the new product is shown
    assert_eq!(count(&report, "products", "updated"), 1, "{report}");
    let item = abaha(&stack).item(SHOP, Kind::Products, hidden).unwrap();
    assert_eq!(item["name"], json!("Món ẩn đổi tên"));
    assert_eq!(abaha(&stack).visible(SHOP, hidden), Some(false));
    assert_eq!(abaha(&stack).visible(SHOP, added), Some(true));
    stack.stop().await;
}

// ---- switches, report, overlapping triggers ----------------------------------------------------

#[tokio::test]
async fn r_con_6_a_switched_off_part_is_never_synced() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    // GIVEN a connection with customers switched off
    let mut body = connection_body(&stack);
    body["sync"]["customers"] = json!(false);
    let a = api.put(&format!("/v1/shops/{SHOP}/connection"), body).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // WHEN Sync is pressed THEN every other part runs and customers are not touched
    let report = sync(&stack, SHOP, json!({})).await;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert!(report["entities"].get("customers").is_none(), "{report}");
    assert!(count(&report, "products", "created") > 0);
    assert!(abaha(&stack).stored(SHOP, Kind::Customers).is_empty());
    assert_eq!(kv(&stack).stats().requests.get("GET /customers"), 0);

    // AND asking for customers explicitly is refused, saying which part is off
    let a = api
        .post(
            &format!("/v1/shops/{SHOP}/sync"),
            json!({"entities": ["customers"]}),
        )
        .await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (422, Some("validation_failed")),
        "{}",
        a.body
    );
    assert_eq!(
        a.body["error"]["details"]["switched_off"],
        json!(["customers"])
    );
    stack.stop().await;
}

#[tokio::test]
async fn r_con_6_a_part_switched_off_after_its_run_was_queued_is_skipped() {
    let Some(stack) = start(StackOptions {
        no_workers: true,
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let api = Api::admin(&stack);
    connect(&stack, SHOP).await;
    // GIVEN a run queued with customers on
    let a = api
        .post(
            &format!("/v1/shops/{SHOP}/sync"),
            json!({"entities": ["customers"]}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let run_id = a.body["run_id"].as_str().unwrap().to_string();
    // WHEN customers are switched off before the job runs
    let mut body = connection_body(&stack);
    body["sync"]["customers"] = json!(false);
    assert_eq!(
        api.put(&format!("/v1/shops/{SHOP}/connection"), body)
            .await
            .status,
        200
    );
    run_jobs_until_done(&stack, SHOP, &run_id).await;
    // THEN the part is skipped with a reason and nothing reached Abaha or KiotViet
    let report = api
        .get(&format!("/v1/shops/{SHOP}/sync/{run_id}"))
        .await
        .body;
    assert_eq!(
        part(&report, "customers")["state"],
        json!("skipped"),
        "{report}"
    );
    assert!(
        part(&report, "customers")["message"]
            .as_str()
            .is_some_and(|m| m.contains("switched off"))
    );
    assert!(abaha(&stack).stored(SHOP, Kind::Customers).is_empty());
    assert_eq!(kv(&stack).stats().requests.get("GET /customers"), 0);
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_5_report_shows_queued_running_succeeded_and_honest_counts() {
    let Some(stack) = start(StackOptions {
        no_workers: true,
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let api = Api::admin(&stack);
    connect(&stack, SHOP).await;
    // GIVEN a run that was pressed but not yet picked up
    let a = api
        .post(
            &format!("/v1/shops/{SHOP}/sync"),
            json!({"entities": ["categories", "products"]}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let run_id = a.body["run_id"].as_str().unwrap().to_string();
    let path = format!("/v1/shops/{SHOP}/sync/{run_id}");
    let queued = api.get(&path).await.body;
    // THEN it reads as queued, with every entity queued
    assert_eq!(queued["state"], json!("queued"), "{queued}");
    assert_eq!(part(&queued, "products")["state"], json!("queued"));
    assert!(queued["finished_at"].is_null());

    // WHEN a pull function takes the job (KiotViet slowed so that the run is seen running)
    kv(&stack).set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let job = receive_one(&stack, &stack.service.settings.queues.catalog).await;
    let svc = stack.service.clone();
    let task = tokio::spawn(async move {
        let deadline = engine::jobs::local_deadline(&svc);
        engine::handle_job(&svc, &job, deadline).await
    });
    // THEN the report says running while it runs
    let mut seen_running = false;
    let started = Instant::now();
    while !task.is_finished() && started.elapsed() < Duration::from_secs(20) {
        if api.get(&path).await.body["state"] == json!("running") {
            seen_running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen_running, "the run was seen running");
    task.await.unwrap().unwrap();
    kv(&stack).set_faults(Faults::default());

    // AND succeeded at the end, with counts that match what Abaha received
    let done = api.get(&path).await.body;
    assert_eq!(done["state"], json!("succeeded"), "{done}");
    assert!(done["finished_at"].is_string());
    let counts = |k: Kind| abaha(&stack).counts(k);
    assert_eq!(
        count(&done, "categories", "created"),
        counts(Kind::Categories).created
    );
    assert_eq!(
        count(&done, "products", "created"),
        counts(Kind::Products).created
    );
    assert_eq!(
        count(&done, "products", "created"),
        kv(&stack).product_ids().len() as u64
    );
    assert_eq!(
        count(&done, "products", "read"),
        kv(&stack).product_ids().len() as u64
    );
    assert_eq!(
        count(&done, "products", "api_calls"),
        kv(&stack).stats().requests.get("GET /products")
    );
    assert_eq!(done["errors"], json!([]));
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_5_a_record_abaha_refuses_makes_the_run_partial_and_is_named() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let body = json!({"entities": ["categories", "products"]});
    sync(&stack, SHOP, body.clone()).await;
    // GIVEN a category whose name was blanked in KiotViet (Abaha refuses a nameless category)
    let kv = kv(&stack);
    let ids = kv.category_ids();
    let (bad, good) = (ids[1], ids[2]);
    kv.rename_category(bad, "   ").unwrap();
    kv.rename_category(good, "Đổi tên được").unwrap();

    // WHEN it syncs
    let report = sync(&stack, SHOP, body).await;

    // THEN the other records go on, the run is partial, and the refused record is named
    assert_eq!(report["state"], json!("partial"), "{report}");
    assert_eq!(part(&report, "categories")["state"], json!("partial"));
    assert_eq!(count(&report, "categories", "failed"), 1);
    assert_eq!(count(&report, "categories", "updated"), 1);
    assert_eq!(part(&report, "products")["state"], json!("succeeded"));
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["entity"], json!("categories"));
    assert_eq!(errors[0]["kiotviet_id"], json!(bad));
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("name")),
        "{report}"
    );
    assert_eq!(
        abaha(&stack).item(SHOP, Kind::Categories, good).unwrap()["name"],
        json!("Đổi tên được")
    );
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_3_overlapping_triggers_make_one_run_and_the_schedule_adds_none() {
    let Some(stack) = start(StackOptions {
        no_workers: true,
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let api = Api::admin(&stack);
    connect(&stack, SHOP).await;
    // WHEN Sync is pressed twice at once
    let path = format!("/v1/shops/{SHOP}/sync");
    let (a, b) = tokio::join!(api.post(&path, json!({})), api.post(&path, json!({})));
    // THEN both answer the same run, exactly one of them as already running
    assert_eq!((a.status, b.status), (202, 202), "{} {}", a.body, b.body);
    assert_eq!(a.body["run_id"], b.body["run_id"]);
    let already: Vec<bool> = [&a, &b]
        .iter()
        .map(|x| x.body["already_running"].as_bool().unwrap())
        .collect();
    assert_eq!(already.iter().filter(|x| **x).count(), 1, "{already:?}");
    let run_id = a.body["run_id"].clone();

    // AND a scheduled fan-out during that run starts nothing new
    let out = engine::fan_out(&stack.service, None).await.unwrap();
    assert_eq!(
        (out.shops, out.started, out.already_running),
        (1, 0, 1),
        "{out:?}"
    );
    assert_eq!(api.get(&path).await.body["run_id"], run_id);
    // AND exactly one job was queued for the catalog and one for customers; invoices follow the
    // catalog job (their lines need the products' Abaha ids)
    let queues = &stack.service.settings.queues;
    for (q, want) in [
        (&queues.catalog, 1),
        (&queues.customers, 1),
        (&queues.invoices, 0),
    ] {
        let jobs = stack.service.queue.receive(q, 10, 1, 60).await.unwrap();
        assert_eq!(jobs.len(), want, "{q}: {jobs:?}");
        assert!(jobs.iter().all(|j| j.body["run_id"] == run_id));
        if q == &queues.catalog {
            assert_eq!(jobs[0].body["entities"], json!(["categories", "products"]));
            assert_eq!(jobs[0].body["then"], json!(["invoices"]));
        }
    }
    stack.stop().await;
}

// ---- R-SYN-7: the schedule fans out, a broken shop blocks nobody -------------------------------

#[tokio::test]
async fn r_syn_7_fan_out_runs_every_shop_and_a_broken_shop_blocks_nobody() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let svc = &stack.service;
    for shop in ["shop-ok", "shop-sealed", "shop-wrong"] {
        connect(&stack, shop).await;
    }
    // GIVEN one shop whose stored secret can no longer be opened, and one whose secret was
    // changed in KiotViet after it connected
    let mut sealed = svc
        .store
        .get_connection("shop-sealed")
        .await
        .unwrap()
        .unwrap();
    sealed.sealed_secret = store::SealedSecret::from_base64("bm90IGEgc2VhbGVkIHNlY3JldA==");
    svc.store.put_connection(&sealed).await.unwrap();
    let mut wrong = svc
        .store
        .get_connection("shop-wrong")
        .await
        .unwrap()
        .unwrap();
    wrong.sealed_secret = svc
        .sealer
        .seal("shop-wrong", &secrecy::SecretString::from("not-the-secret"))
        .await
        .unwrap();
    svc.store.put_connection(&wrong).await.unwrap();

    // WHEN the schedule fires
    let out = engine::fan_out(svc, None).await.unwrap();

    // THEN one run per shop starts, and the good shop syncs in full
    assert_eq!((out.shops, out.started, out.failed), (3, 3, 0), "{out:?}");
    let mut reports = BTreeMap::new();
    for shop in ["shop-ok", "shop-sealed", "shop-wrong"] {
        let run_id = api.get(&format!("/v1/shops/{shop}/sync")).await.body["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        reports.insert(shop, wait_run(&stack, shop, &run_id).await);
    }
    assert_eq!(
        reports["shop-ok"]["state"],
        json!("succeeded"),
        "{}",
        reports["shop-ok"]
    );
    assert_products_copied(&stack, "shop-ok");
    // AND each broken shop's run failed with words its owner can act on, and without the secret
    for (shop, hint) in [
        ("shop-sealed", "save the connection again"),
        ("shop-wrong", "Client ID and secret"),
    ] {
        let r = &reports[shop];
        assert_eq!(r["state"], json!("failed"), "{r}");
        let errors = r["errors"].as_array().unwrap();
        assert!(!errors.is_empty(), "{r}");
        assert!(
            errors
                .iter()
                .all(|e| e["message"].as_str().is_some_and(|m| m.contains(hint))),
            "{r}"
        );
        assert!(
            !r.to_string().contains("not-the-secret") && !r.to_string().contains("demo-secret")
        );
        assert!(abaha(&stack).stored(shop, Kind::Products).is_empty());
    }
    // AND the broken shops are free for the next run (their leases were released)
    let again = api.post("/v1/shops/shop-wrong/sync", json!({})).await;
    assert_eq!(
        again.body["already_running"],
        json!(false),
        "{}",
        again.body
    );
    stack.stop().await;
}

// ---- R-SYN-2: runs stopped half-way resume -----------------------------------------------------

/// Receives one job message from `queue` (waiting up to a few seconds) and answers its body.
async fn receive_one(stack: &Stack, queue: &str) -> Value {
    for _ in 0..5 {
        let jobs = stack.service.queue.receive(queue, 1, 1, 300).await.unwrap();
        if let Some(j) = jobs.into_iter().next() {
            stack.service.queue.delete(queue, &j.receipt).await.unwrap();
            return j.body;
        }
    }
    panic!("no job on {queue}");
}

/// The pollers' part, by hand (stacks started with `no_workers`): runs every job of the stack's
/// queues until the run has ended; answers how many jobs ran.
async fn run_jobs_until_done(stack: &Stack, shop: &str, run_id: &str) -> usize {
    let svc = &stack.service;
    let queues = svc.settings.queues.clone();
    let started = Instant::now();
    let mut handled = 0;
    loop {
        for q in [&queues.catalog, &queues.customers, &queues.invoices] {
            for j in svc.queue.receive(q, 10, 0, 300).await.unwrap() {
                engine::handle_job(svc, &j.body, engine::jobs::local_deadline(svc))
                    .await
                    .unwrap();
                svc.queue.delete(q, &j.receipt).await.unwrap();
                handled += 1;
            }
        }
        let report =
            serde_json::to_value(svc.store.get_run(shop, run_id).await.unwrap().expect("run"))
                .unwrap();
        if matches!(
            report["state"].as_str(),
            Some("succeeded" | "partial" | "failed")
        ) {
            return handled;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run did not end: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn exact(categories: usize, products: usize, customers: usize) -> KvConfig {
    KvConfig {
        size: DataSize::Exact(Counts {
            categories,
            products,
            customers,
            invoices: 0,
        }),
        // Frozen, so two simulators started a moment apart hold the very same records.
        now: Some("2026-11-20T03:00:00Z".parse().unwrap()),
        ..KvConfig::default()
    }
}

#[tokio::test]
async fn r_syn_2_a_run_that_hands_over_at_every_deadline_ends_like_an_uninterrupted_one() {
    let kv_config = exact(4, 150, 250);
    // GIVEN a stack whose jobs hand over after every page (the margin exceeds the whole budget)
    let settings = Settings {
        handover_margin: Duration::from_secs(3600),
        ..Settings::default()
    };
    let opts = StackOptions {
        kiotviet: Some(kv_config.clone()),
        settings: Some(settings),
        no_workers: true,
        ..StackOptions::default()
    };
    let Some(stack) = start(opts).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let a = Api::admin(&stack)
        .post(
            &format!("/v1/shops/{SHOP}/sync"),
            json!({"entities": CATALOG_AND_CUSTOMERS}),
        )
        .await;
    let run_id = a.body["run_id"].as_str().unwrap().to_string();

    // WHEN its jobs run, each continuation picking up where the last stopped
    let jobs = run_jobs_until_done(&stack, SHOP, &run_id).await;

    // THEN it handed over (products: 2 pages, customers: 3 pages → 3 continuations) …
    let report = Api::admin(&stack)
        .get(&format!("/v1/shops/{SHOP}/sync/{run_id}"))
        .await
        .body;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert_eq!(jobs, 2 + 3, "two first jobs and three continuations");
    // … each page was read once, and the report sums the continuations
    assert_eq!(count(&report, "products", "api_calls"), 2);
    assert_eq!(count(&report, "customers", "api_calls"), 3);
    assert_eq!(count(&report, "customers", "read"), 250);
    assert_eq!(kv(&stack).stats().requests.get("GET /customers"), 3);
    // AND nothing was sent twice
    assert_each_written_once(&stack, SHOP, &CATALOG_KINDS);

    // AND Abaha ends exactly as after an uninterrupted run of the same data
    let Some(reference) = start(StackOptions {
        kiotviet: Some(kv_config),
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    connect(&reference, SHOP).await;
    let r = sync(&reference, SHOP, json!({"entities": CATALOG_AND_CUSTOMERS})).await;
    assert_eq!(r["state"], json!("succeeded"), "{r}");
    assert_same_state(
        "the interrupted run vs the uninterrupted one",
        &abaha_state(&stack, SHOP, &CATALOG_KINDS),
        &abaha_state(&reference, SHOP, &CATALOG_KINDS),
    );
    assert_eq!(
        count(&report, "customers", "created"),
        count(&r, "customers", "created")
    );
    reference.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn r_syn_6_a_sync_needing_more_than_the_hourly_allowance_waits_and_continues_by_itself() {
    // GIVEN a shop allowed 8 KiotViet GETs an hour, with 10 pages of customers, two seconds
    // before the hour turns
    let clock = Arc::new(ManualClock::new(
        "2026-11-29T09:59:58Z".parse().expect("a time"),
    ));
    let settings = Settings {
        get_budget_per_hour: 8,
        ..Settings::default()
    };
    let opts = StackOptions {
        kiotviet: Some(exact(1, 1, 1000)),
        settings: Some(settings),
        no_workers: true,
        clock: Some(clock.clone()),
        ..StackOptions::default()
    };
    let Some(stack) = start(opts).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let a = Api::admin(&stack)
        .post(
            &format!("/v1/shops/{SHOP}/sync"),
            json!({"entities": ["customers"]}),
        )
        .await;
    let run_id = a.body["run_id"].as_str().expect("run id").to_string();
    let svc = &stack.service;
    let queue = svc.settings.queues.customers.clone();

    // WHEN its first job runs
    let job = receive_one(&stack, &queue).await;
    engine::handle_job(svc, &job, engine::jobs::local_deadline(svc))
        .await
        .expect("the job hands over");

    // THEN it read what the allowance let it, and the report says it waits for the next hour
    let report = Api::admin(&stack)
        .get(&format!("/v1/shops/{SHOP}/sync/{run_id}"))
        .await
        .body;
    let customers = part(&report, "customers");
    assert_eq!(customers["state"], json!("waiting"), "{report}");
    assert_eq!(report["state"], json!("running"), "{report}");
    let until: chrono::DateTime<chrono::Utc> = customers["waiting_until"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("waiting_until");
    assert_eq!(
        until,
        "2026-11-29T10:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .expect("a time")
    );
    let message = customers["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("allowance") && message.contains("17:00"),
        "the shop owner is told why and until when (Vietnam time): {message}"
    );
    let read_before = count(&report, "customers", "read");
    assert!(read_before < 1000, "{report}");
    assert!(
        kv(&stack).stats().requests.gets <= 8,
        "no more GETs than the allowance (the connection check's included)"
    );

    // WHEN the hour turns
    clock.set("2026-11-29T10:00:01Z".parse().expect("a time"));

    // THEN the continuation (queued with a delay until then) finishes the sync by itself
    run_jobs_until_done(&stack, SHOP, &run_id).await;
    let report = Api::admin(&stack)
        .get(&format!("/v1/shops/{SHOP}/sync/{run_id}"))
        .await
        .body;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert_eq!(count(&report, "customers", "read"), 1000, "{report}");
    assert_customers_copied(&stack, SHOP);
    assert_each_written_once(&stack, SHOP, &CATALOG_KINDS);
}

#[tokio::test]
async fn r_syn_2_a_killed_job_resumes_from_its_checkpoint() {
    const CUSTOMERS: usize = 1000;
    let opts = StackOptions {
        kiotviet: Some(exact(2, 10, CUSTOMERS)),
        no_workers: true,
        settings: Some(Settings {
            part_lease_ttl: Duration::from_secs(1),
            ..Settings::default()
        }),
        ..StackOptions::default()
    };
    let Some(stack) = start(opts).await else {
        return;
    };
    let svc = stack.service.clone();
    connect(&stack, SHOP).await;
    let a = Api::admin(&stack)
        .post(
            &format!("/v1/shops/{SHOP}/sync"),
            json!({"entities": ["customers"]}),
        )
        .await;
    let run_id = a.body["run_id"].as_str().unwrap().to_string();
    let job = receive_one(&stack, &svc.settings.queues.customers).await;

    // GIVEN a pull that is killed half-way: KiotViet answers in one second, so the pull is still
    // reading (pages ahead of the checkpoint) for seconds after its first checkpoint
    kv(&stack).set_faults(Faults {
        latency_ms: 1000,
        ..Faults::default()
    });
    let task = {
        let (svc, job) = (svc.clone(), job.clone());
        tokio::spawn(async move {
            let deadline = engine::jobs::local_deadline(&svc);
            engine::handle_job(&svc, &job, deadline).await
        })
    };
    let started = Instant::now();
    loop {
        let ck = svc.store.get_checkpoint(SHOP, "customers").await.unwrap();
        if ck.as_ref().is_some_and(|c| c.position >= 100) {
            break;
        }
        assert!(
            !task.is_finished(),
            "the job ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no checkpoint came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    let _ = task.await;
    let checkpoint = svc
        .store
        .get_checkpoint(SHOP, "customers")
        .await
        .unwrap()
        .expect("a checkpoint stays");
    let resumed_at = checkpoint.position;
    assert!(
        (100..CUSTOMERS as i64).contains(&resumed_at),
        "killed mid-way: {checkpoint:?}"
    );
    assert!(
        svc.store
            .get_cursor(SHOP, "customers")
            .await
            .unwrap()
            .is_none(),
        "no cursor before the end"
    );

    // WHEN the same job is delivered again, once the dead pull missed its lease renewals
    tokio::time::sleep(svc.settings.part_lease_ttl + Duration::from_millis(100)).await;
    kv(&stack).set_faults(Faults::default());
    kv(&stack).reset_stats();
    engine::handle_job(&svc, &job, engine::jobs::local_deadline(&svc))
        .await
        .unwrap();

    // THEN it resumed from the checkpoint: fewer GETs than a full read
    let gets = kv(&stack).stats().requests.get("GET /customers");
    let remaining_pages = (CUSTOMERS as u64 - resumed_at as u64).div_ceil(100);
    assert!(
        gets >= remaining_pages && gets < (CUSTOMERS as u64).div_ceil(100),
        "{gets} GETs"
    );
    // AND the run ended with every customer in Abaha exactly once
    let report =
        serde_json::to_value(svc.store.get_run(SHOP, &run_id).await.unwrap().unwrap()).unwrap();
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert_eq!(count(&report, "customers", "read"), CUSTOMERS as u64);
    let phoneless = assert_customers_copied(&stack, SHOP);
    assert_each_written_once(&stack, SHOP, &CATALOG_KINDS);
    assert_eq!(
        count(&report, "customers", "created") + count(&report, "customers", "unchanged"),
        CUSTOMERS as u64 - phoneless,
        "{report}"
    );
    // AND the cursor moved to the pull's start and never moves back
    let cursor = svc
        .store
        .get_cursor(SHOP, "customers")
        .await
        .unwrap()
        .expect("cursor")
        .modified_from;
    let ck_started = checkpoint.started_at;
    assert_eq!(
        cursor, ck_started,
        "the cursor is the killed pull's start, kept across the resume"
    );
    svc.store
        .advance_cursor(SHOP, "customers", cursor - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(
        svc.store
            .get_cursor(SHOP, "customers")
            .await
            .unwrap()
            .unwrap()
            .modified_from,
        cursor
    );
    stack.stop().await;
}
