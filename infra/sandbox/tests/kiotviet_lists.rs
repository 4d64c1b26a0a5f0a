//! List endpoints: paging, ordering, lastModifiedFrom, removed ids, and the shape of records.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeSet, HashSet};

use chrono::{Duration, TimeZone, Utc};
use common::{dates, has_null, start};
use reqwest::StatusCode;
use sandbox::kiotviet::{Counts, DataSize, KvConfig, NewCustomer, ProductPatch, RemovedKeys};
use serde_json::Value;

fn exact(categories: usize, products: usize, customers: usize, invoices: usize) -> KvConfig {
    KvConfig {
        size: DataSize::Exact(Counts {
            categories,
            products,
            customers,
            invoices,
        }),
        // 2026-05-01T10:00:00 in Vietnam.
        now: Some(Utc.with_ymd_and_hms(2026, 5, 1, 3, 0, 0).unwrap()),
        ..KvConfig::default()
    }
}

fn ids(rows: &[Value], key: &str) -> Vec<i64> {
    rows.iter().filter_map(|r| r[key].as_i64()).collect()
}

#[tokio::test]
async fn paging_covers_totals_that_are_and_are_not_multiples_of_100() {
    let kv = start(exact(13, 300, 250, 0)).await;

    let (rows, pages) = kv.all("/products", 100).await;
    assert_eq!(rows.len(), 300);
    assert_eq!(pages.len(), 3);
    assert!(
        pages
            .iter()
            .all(|p| p["total"] == 300 && p["pageSize"] == 100)
    );
    assert_eq!(
        ids(&rows, "id").into_iter().collect::<HashSet<_>>().len(),
        300
    );
    let past_end = kv.get("/products?pageSize=100&currentItem=300").await;
    assert_eq!(past_end["data"].as_array().map(Vec::len), Some(0));
    assert_eq!(past_end["total"], 300);

    let (rows, pages) = kv.all("/customers", 100).await;
    assert_eq!(rows.len(), 250);
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["data"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
}

#[tokio::test]
async fn page_size_defaults_to_20_and_is_clamped_to_100() {
    let kv = start(exact(13, 150, 10, 0)).await;
    let default = kv.get("/products").await;
    assert_eq!(default["data"].as_array().map(Vec::len), Some(20));
    assert_eq!(default["pageSize"], 20);
    let big = kv.get("/products?pageSize=500").await;
    assert_eq!(big["data"].as_array().map(Vec::len), Some(100));
    assert_eq!(big["pageSize"], 100);
    let bad = kv.get_raw("/products?pageSize=lots").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn ordering_is_stable_across_pages_in_both_directions() {
    let kv = start(exact(13, 230, 10, 0)).await;
    // Names repeat (variants share a name), so ties must be broken the same way on every page.
    let (by_name, _) = kv.all("/products?orderBy=name", 50).await;
    let names: Vec<String> = by_name
        .iter()
        .map(|r| r["fullName"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(
        ids(&by_name, "id")
            .into_iter()
            .collect::<HashSet<_>>()
            .len(),
        230
    );

    let (desc, _) = kv
        .all("/products?orderBy=modifiedDate&orderDirection=DESC", 70)
        .await;
    let (asc, _) = kv
        .all("/products?orderBy=modifiedDate&orderDirection=asc", 70)
        .await;
    let mut reversed = ids(&asc, "id");
    reversed.reverse();
    assert_eq!(ids(&desc, "id"), reversed);

    let (by_id, _) = kv.all("/products?orderDirection=Desc", 100).await;
    let got = ids(&by_id, "id");
    assert!(got.windows(2).all(|w| w[0] > w[1]));

    let unknown = kv.get_raw("/products?orderBy=colour").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.json()["responseStatus"]["errorCode"],
        "ArgumentException"
    );
}

#[tokio::test]
async fn last_modified_from_accepts_every_datetime_shape() {
    let kv = start(exact(13, 60, 20, 0)).await;
    kv.sim.advance(Duration::hours(1)); // now 2026-05-01T11:00:00 in Vietnam
    let pid = kv.sim.product_ids()[10];
    kv.sim.rename_product(pid, "Cà phê sữa đá mới").unwrap();
    let cid = kv
        .sim
        .add_customer(NewCustomer {
            name: Some("Khách mới".into()),
            contact_number: Some("0912345000".into()),
            ..NewCustomer::default()
        })
        .unwrap();

    for shape in [
        "2026-05-01T10:30:00",
        "2026-05-01%2010:30:00",
        "2026-05-01+10:30:00",
        "2026-05-01T10:30",
        "2026-05-01T10:30:00.5",
        "2026-05-01T10:30:00.1234567",
        "2026-05-01T03:30:00Z",
        "2026-05-01T10:30:00%2B07:00",
        "2026-05-01T10:30:00+07:00",
    ] {
        let p = kv.get(&format!("/products?lastModifiedFrom={shape}")).await;
        assert_eq!(
            ids(p["data"].as_array().unwrap(), "id"),
            vec![pid],
            "{shape}"
        );
        assert_eq!(p["total"], 1, "{shape}");
        let c = kv
            .get(&format!("/customers?lastModifiedFrom={shape}"))
            .await;
        assert_eq!(
            ids(c["data"].as_array().unwrap(), "id"),
            vec![cid],
            "{shape}"
        );
    }

    // The bound is inclusive: the printed modifiedDate finds its own record again.
    let printed = kv.sim.product(pid).unwrap()["modifiedDate"]
        .as_str()
        .unwrap()
        .to_string();
    let again = kv
        .get(&format!("/products?lastModifiedFrom={printed}"))
        .await;
    assert_eq!(ids(again["data"].as_array().unwrap(), "id"), vec![pid]);

    let bad = kv.get_raw("/products?lastModifiedFrom=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // A bare date is midnight: everything changed that day.
    let day = kv
        .get("/products?lastModifiedFrom=2026-05-01&pageSize=100")
        .await;
    assert!(ids(day["data"].as_array().unwrap(), "id").contains(&pid));
}

#[tokio::test]
async fn removed_ids_use_each_entitys_key_and_respect_last_modified_from() {
    let kv = start(KvConfig {
        now: Some(Utc.with_ymd_and_hms(2026, 5, 1, 3, 0, 0).unwrap()),
        ..KvConfig::default()
    })
    .await;
    // Seeded deletions exist in the presets.
    let cats = kv.get("/categories?includeRemoveIds=true").await;
    let prods = kv.get("/products?includeRemoveIds=true").await;
    let custs = kv.get("/customers?includeRemoveIds=true").await;
    assert_eq!(cats["removedIds"].as_array().map(Vec::len), Some(1));
    assert_eq!(prods["removeId"].as_array().map(Vec::len), Some(2));
    assert_eq!(custs["removeIds"].as_array().map(Vec::len), Some(3));
    // Not asked, not sent.
    assert!(kv.get("/products").await.get("removeId").is_none());

    kv.sim.advance(Duration::hours(1));
    let pid = kv.sim.product_ids()[30];
    kv.sim.delete_product(pid).unwrap();
    let since = kv
        .get("/products?includeRemoveIds=true&lastModifiedFrom=2026-05-01T10:30:00")
        .await;
    assert_eq!(since["removeId"], serde_json::json!([pid]));
    assert_eq!(since["total"], 0);
    assert_eq!(
        kv.get_raw(&format!("/products/{pid}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn removed_id_keys_are_configurable() {
    let kv = start(KvConfig {
        removed_keys: RemovedKeys {
            categories: "removeIds".into(),
            products: "removedIds".into(),
            customers: "removeId".into(),
        },
        ..KvConfig::default()
    })
    .await;
    assert!(kv.get("/categories?includeRemoveIds=true").await["removeIds"].is_array());
    assert!(kv.get("/products?includeRemoveIds=true").await["removedIds"].is_array());
    assert!(kv.get("/customers?includeRemoveIds=true").await["removeId"].is_array());
}

#[tokio::test]
async fn datetimes_carry_0_to_7_fraction_digits_and_timestamps_an_offset() {
    let kv = start(KvConfig::default()).await;
    let mut all = Vec::new();
    for path in [
        "/products",
        "/customers",
        "/invoices?includePayment=true",
        "/categories",
    ] {
        let (rows, pages) = kv.all(path, 100).await;
        dates(&Value::Array(rows), &mut all);
        let ts = pages[0]["timestamp"].as_str().unwrap();
        assert!(ts.ends_with("+07:00") && ts.len() == 33, "{ts}");
    }
    let digits: BTreeSet<usize> = all
        .iter()
        .map(|d| d.split_once('.').map_or(0, |(_, f)| f.len()))
        .collect();
    assert_eq!(digits, (0..=7).collect());
    assert!(all.iter().all(|d| !d.contains('+') && !d.ends_with('Z')));
}

#[tokio::test]
async fn lists_never_contain_null() {
    let kv = start(KvConfig::default()).await;
    for path in [
        "/branches",
        "/categories",
        "/categories?hierachicalData=true",
        "/products?includeInventory=true&includeRemoveIds=true",
        "/customers?includeTotal=true&includeRemoveIds=true",
        "/invoices?includePayment=true&includeInvoiceDelivery=true",
        "/orders?includeOrderDelivery=true",
    ] {
        let (rows, pages) = kv.all(path, 100).await;
        assert!(!rows.is_empty(), "{path}");
        for p in &pages {
            assert!(!has_null(p), "{path} has a null");
        }
    }
}

#[tokio::test]
async fn products_look_like_a_cafe_menu() {
    let kv = start(KvConfig::default()).await;
    let (rows, _) = kv.all("/products", 100).await;
    let has = |f: &dyn Fn(&Value) -> bool| rows.iter().any(f);
    assert!(has(&|p| p["images"][0].is_string()), "images as URLs");
    assert!(
        has(&|p| p["images"][0]["Image"].is_string()),
        "images as objects"
    );
    assert!(
        has(&|p| p.get("images").is_none()),
        "products without images"
    );
    assert!(has(&|p| p.get("description").is_none()));
    assert!(has(
        &|p| p["masterProductId"].is_i64() && p["attributes"][0]["attributeValue"] == "L"
    ));
    assert!(has(
        &|p| p["masterUnitId"].is_i64() && p["conversionValue"].as_f64() > Some(1.0)
    ));
    assert!(has(&|p| p["units"][0]["id"].is_i64()));
    assert!(has(
        &|p| p["isTopping"] == true && p["categoryName"] == "Topping"
    ));
    assert!(has(&|p| p["toppings"][0]["basePrice"].is_number()));
    assert!(has(&|p| p["name"] == "Bạc xỉu"));
    assert!(
        rows.iter()
            .all(|p| p.get("inventories").is_none() && p.get("priceBooks").is_none())
    );

    let inv = kv.get("/products?includeInventory=true").await;
    assert_eq!(
        inv["data"][0]["inventories"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(kv.sim.stats().pricebook_requests, 0);
    let pb = kv.get("/products?includePricebook=true").await;
    assert!(pb["data"][0]["priceBooks"].is_array());
    assert_eq!(kv.sim.stats().pricebook_requests, 1);

    let one = &rows[5];
    let by_id = kv.get(&format!("/products/{}", one["id"])).await;
    assert_eq!(by_id["id"], one["id"], "detail is the bare object");
    let by_code = kv
        .get(&format!("/products/code/{}", one["code"].as_str().unwrap()))
        .await;
    assert_eq!(by_code["id"], one["id"]);
    let topping_cat = rows.iter().find(|p| p["isTopping"] == true).unwrap()["categoryId"].clone();
    let in_cat = kv
        .get(&format!("/products?categoryId={topping_cat}&pageSize=100"))
        .await;
    assert!(
        in_cat["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["isTopping"] == true)
    );
}

#[tokio::test]
async fn categories_come_flat_or_as_a_tree() {
    let kv = start(exact(13, 10, 1, 0)).await;
    kv.sim.advance(Duration::hours(1));
    let flat = kv.get("/categories?pageSize=100").await;
    assert_eq!(flat["total"], 13);
    assert!(
        flat["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("children").is_none())
    );
    assert!(
        flat["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["parentId"].is_i64())
    );

    let id = flat["data"][1]["categoryId"].as_i64().unwrap();
    kv.sim.rename_category(id, "Cà phê phin").unwrap();
    let changed = kv
        .get("/categories?lastModifiedFrom=2026-05-01T10:30:00")
        .await;
    assert_eq!(changed["total"], 1);
    let tree = kv
        .get("/categories?hierachicalData=true&lastModifiedFrom=2026-05-01T10:30:00")
        .await;
    assert_eq!(tree["total"], 5, "roots only, lastModifiedFrom ignored");
    assert!(tree["data"][0]["children"][0]["categoryId"].is_i64());
    assert_eq!(tree["data"][0]["hasChild"], true);

    let detail = kv.get(&format!("/categories/{id}")).await;
    assert_eq!(detail["data"]["categoryName"], "Cà phê phin");
}

#[tokio::test]
async fn customers_search_by_partial_phone_and_carry_optional_fields() {
    let kv = start(KvConfig::default()).await;
    let (rows, _) = kv.all("/customers", 100).await;
    let has = |f: &dyn Fn(&Value) -> bool| rows.iter().any(f);
    assert!(
        has(&|c| c.get("contactNumber").is_none()),
        "some without phone"
    );
    assert!(has(&|c| c.get("name").is_none()), "some without name");
    assert!(has(&|c| c["gender"] == true) && has(&|c| c["gender"] == false));
    assert!(has(&|c| c.get("gender").is_none()));
    assert!(has(&|c| c["birthDate"].is_string()));
    assert!(has(&|c| c["comment"].is_string()) && has(&|c| c["comments"].is_string()));

    let phone = rows
        .iter()
        .find_map(|c| c["contactNumber"].as_str())
        .unwrap();
    let tail = &phone[phone.len() - 6..];
    let found = kv.get(&format!("/customers?contactNumber={tail}")).await;
    let found = found["data"].as_array().unwrap();
    assert!(found.iter().any(|c| c["contactNumber"] == phone));
    assert!(
        found
            .iter()
            .all(|c| c["contactNumber"].as_str().unwrap().contains(tail))
    );
    // A short query matches many: partial, like KiotViet's search box.
    let many = kv.get("/customers?contactNumber=09").await;
    assert!(many["total"].as_u64() > Some(1));
}

#[tokio::test]
async fn invoices_span_the_history_window_with_every_status() {
    let kv = start(KvConfig {
        now: Some(Utc.with_ymd_and_hms(2026, 5, 31, 3, 0, 0).unwrap()),
        ..KvConfig::default()
    })
    .await;
    let (rows, _) = kv.all("/invoices?includePayment=true", 100).await;
    assert_eq!(rows.len(), 300);
    let statuses: BTreeSet<i64> = rows.iter().filter_map(|r| r["status"].as_i64()).collect();
    assert_eq!(statuses, BTreeSet::from([1, 2, 3, 5]));
    assert!(rows.iter().any(|r| r["orderCode"].is_string()));
    assert!(
        rows.iter()
            .all(|r| r["invoiceDetails"].is_array() && r["payments"].is_array())
    );
    let methods: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r["payments"].as_array().unwrap().iter())
        .filter_map(|p| p["method"].as_str())
        .collect();
    assert_eq!(methods, BTreeSet::from(["Card", "Cash", "Transfer"]));
    let purchase: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["purchaseDate"].as_str())
        .collect();
    assert!(
        purchase
            .iter()
            .all(|p| *p >= "2026-05-01" && *p < "2026-05-31T10")
    );

    let done = kv.get("/invoices?status=1&pageSize=100").await;
    assert!(
        done["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 1)
    );
    let day = kv
        .get("/invoices?fromPurchaseDate=2026-05-20 00:00:00&toPurchaseDate=2026-05-20 23:59:59&pageSize=100")
        .await;
    assert!(day["data"].as_array().unwrap().iter().all(|r| {
        r["purchaseDate"]
            .as_str()
            .is_some_and(|p| p.starts_with("2026-05-20"))
    }));
    assert!(day["total"].as_u64() > Some(0));
    let plain = kv.get("/invoices").await;
    assert!(
        plain["data"][0].get("payments").is_none(),
        "payments only when asked"
    );
}

#[tokio::test]
async fn product_changes_bump_modified_date_to_the_sim_clock() {
    let kv = start(exact(13, 20, 1, 0)).await;
    kv.sim.advance(Duration::minutes(5));
    let pid = kv.sim.product_ids()[3];
    kv.sim
        .update_product(
            pid,
            ProductPatch {
                base_price: Some(41_000.0),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    let p = kv.get(&format!("/products/{pid}")).await;
    assert_eq!(p["basePrice"], 41_000.0);
    assert!(
        p["modifiedDate"]
            .as_str()
            .unwrap()
            .starts_with("2026-05-01T10:05:00")
    );
}

#[tokio::test]
async fn large_data_is_generated_quickly() {
    let started = std::time::Instant::now();
    let kv = start(KvConfig {
        size: DataSize::Large,
        ..KvConfig::default()
    })
    .await;
    let took = started.elapsed();
    eprintln!("large data generated and served in {took:?}");
    // < 1 s in release; debug builds are several times slower.
    let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
    assert!(took.as_secs_f64() < limit, "took {took:?}");
    let last = kv
        .get("/invoices?orderBy=purchaseDate&currentItem=59900&pageSize=100")
        .await;
    assert_eq!(last["total"], 60_000);
    assert_eq!(last["data"].as_array().map(Vec::len), Some(100));
    assert_eq!(kv.get("/customers").await["total"], 30_000);
    assert_eq!(kv.get("/products").await["total"], 2_000);
}
