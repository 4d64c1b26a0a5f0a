//! Mapping micro-benchmark (issue 8): records/s of one core for what a pull does with each
//! KiotViet record — decode it from the page ([`Page::decode`]), map it to the Abaha item, and
//! hash the item ([`content_hash`], R-SYN-4).
//!
//! Each group reads one page of 100 records made by the deterministic generator below (shaped
//! like the fixtures in `tests/fixtures/`, but fuller: variants, units, toppings, inventories of
//! two branches, images in both shapes; invoices with five lines and payments) and is measured
//! twice:
//!
//! * `decode_map_hash` — from the page as the pager hands it over (records still `Value`s);
//! * `parse_decode_map_hash` — from the response body's bytes, as the KiotViet client reads it
//!   (`serde_json::from_slice` → `Page`), then the same.
//!
//! `Throughput::Elements` makes criterion print records/s; the benchmark is single-threaded, so
//! that is records/s per core. Run with `make bench-mapping` (or
//! `cargo bench -p mapping --bench mapping`).
// A benchmark: its generated inputs are known good; a failed expect is a broken benchmark.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mapping::catalog::product_item;
use mapping::customers::{CustomerCore, customer_item};
use mapping::hash::content_hash;
use mapping::invoices::{InvoiceClass, classify, order_customer, order_item};
use mapping::kiotviet::{Customer, Invoice, Page, Product, decode_record};
use serde_json::{Value, json};

/// Records per page: KiotViet's page size for products and invoices (`pageSize=100`).
const PAGE: usize = 100;
/// The connection's branch, and the other branch of the café (inventories carry both).
const BRANCH: i64 = 233443;
const OTHER_BRANCH: i64 = 233444;
const RETAILER: i64 = 500123;

// ---------------------------------------------------------------------------------------------
// The work measured: what the pull does per page (shared/engine/src/pull.rs)
// ---------------------------------------------------------------------------------------------

/// `products_page`: decode, `product_item` for the connection's branch, content hash.
fn products(page: &Page) -> Vec<String> {
    page.decode::<Product>()
        .into_iter()
        .filter_map(Result::ok)
        .map(|p| content_hash(&product_item(&p, BRANCH)))
        .collect()
}

/// `customers_page`: decode, `customer_item` (no phone ⇒ skipped), and the link hash the pull
/// stores — the item's content hash and its fingerprint (`CustomerCore`, R-CUS-3).
fn customers(page: &Page) -> Vec<String> {
    page.decode::<Customer>()
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|c| customer_item(&c).ok())
        .map(|item| {
            format!(
                "{}.{}",
                content_hash(&item),
                content_hash(&CustomerCore::from(&item))
            )
        })
        .collect()
}

/// `invoices_page`: decode, classify, `order_item` with product links looked up, content hash.
fn invoices(page: &Page, product_links: &HashMap<i64, String>) -> Vec<String> {
    page.decode::<Invoice>()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|inv| classify(inv) == InvoiceClass::Completed)
        .map(|inv| {
            let item = order_item(
                &inv,
                None,
                None,
                |pid| product_links.get(&pid).cloned(),
                order_customer(&inv, None),
            );
            content_hash(&item)
        })
        .collect()
}

/// The response body as the KiotViet client reads it: bytes → `Value` → `Page`.
fn parse(body: &[u8]) -> Page {
    let value: Value = serde_json::from_slice(body).expect("the generated body is JSON");
    decode_record(&value).expect("the generated body is a page")
}

// ---------------------------------------------------------------------------------------------
// Deterministic generator
// ---------------------------------------------------------------------------------------------

/// SplitMix64: small, deterministic, good enough to vary field values.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A KiotViet datetime in May 2026: naive, seven fractional digits (as the API sends them).
    fn datetime(&mut self) -> String {
        format!(
            "2026-05-{:02}T{:02}:{:02}:{:02}.{:07}",
            1 + self.below(28),
            7 + self.below(14),
            self.below(60),
            self.below(60),
            self.below(10_000_000)
        )
    }
}

const DRINKS: &[&str] = &[
    "Cà phê sữa",
    "Cà phê đen",
    "Bạc xỉu",
    "Trà đào cam sả",
    "Trà sữa trân châu",
    "Sinh tố bơ",
    "Nước ép cam",
    "Matcha latte",
    "Cacao nóng",
    "Bánh mì pate",
];
const SIZES: &[&str] = &["S", "M", "L"];
const TOPPINGS: &[&str] = &["Trân châu", "Thạch cà phê", "Kem cheese", "Pudding"];
const FAMILY: &[&str] = &["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Võ"];
const GIVEN: &[&str] = &["Văn An", "Thị Bình", "Minh Châu", "Quốc Dũng", "Thu Hà"];
const STREETS: &[&str] = &["Lê Lợi", "Nguyễn Huệ", "Hai Bà Trưng", "Pasteur"];
const NOTES: &[&str] = &["", "", "ít đá", "không đường", "mang đi"];

fn product_id(i: usize) -> i64 {
    10_000 + i as i64
}

fn envelope(data: Vec<Value>) -> Value {
    json!({
        "total": 2_000,
        "pageSize": PAGE,
        "data": data,
        "removeId": [],
        "timestamp": "2026-05-01T08:00:00.1234567+07:00",
    })
}

/// 100 products: every fourth a variant of the one before (`masterProductId`, attributes), every
/// third with other units, every tenth a topping; two to four toppings on drinks; inventories of
/// both branches; images as plain URLs and as `{"Image": url}` objects; price books and formulas
/// (read, not synced).
fn products_page() -> Value {
    let mut g = Gen(1);
    let data = (0..PAGE)
        .map(|i| {
            let id = product_id(i);
            let drink = DRINKS[i % DRINKS.len()];
            let size = SIZES[i % SIZES.len()];
            let is_variant = i % 4 == 3;
            let is_topping = i % 10 == 9;
            let price = 20_000 + 5_000 * g.below(8);
            let code = format!("SP{id:06}");
            let units: Vec<Value> = if i % 3 == 0 {
                (1..=1 + g.below(2))
                    .map(|u| {
                        json!({
                            "id": 50_000 + id * 10 + u as i64, "code": format!("{code}-{u}"),
                            "name": drink, "fullName": format!("{drink} (Bình {u}L)"),
                            "unit": "Bình", "conversionValue": 4 * u, "basePrice": price * 4 * u,
                        })
                    })
                    .collect()
            } else {
                vec![]
            };
            let toppings: Vec<Value> = if is_topping {
                vec![]
            } else {
                (0..2 + g.below(3))
                    .map(|t| {
                        let name = TOPPINGS[t as usize % TOPPINGS.len()];
                        json!({
                            "id": 6_001 + t as i64, "retailerId": RETAILER, "code": format!("TP{t:02}"),
                            "name": name, "fullName": name, "categoryId": 1_010,
                            "basePrice": 5_000 + 1_000 * t,
                        })
                    })
                    .collect()
            };
            let inventories: Vec<Value> = [(BRANCH, "Chi nhánh trung tâm"), (OTHER_BRANCH, "Chi nhánh Q3")]
                .iter()
                .map(|(branch, name)| {
                    json!({
                        "productId": id, "productCode": code, "productName": drink,
                        "branchId": branch, "branchName": name,
                        "onHand": g.below(200), "cost": price / 4, "reserved": g.below(3),
                    })
                })
                .collect();
            let cdn = "https://cdn.kiotviet.vn/fnb";
            let mut images = vec![
                json!(format!("{cdn}/{code}-1.jpg")),
                json!({"Image": format!("{cdn}/{code}-2.jpg")}),
            ];
            if i % 5 == 0 {
                images.push(json!({"image": format!("{cdn}/{code}-3.jpg")}));
            }
            let attributes = if is_variant {
                json!([
                    {"productId": id, "attributeName": "Size", "attributeValue": size},
                    {"productId": id, "attributeName": "Đá", "attributeValue": g.pick(&["ít", "vừa", "nhiều"])},
                ])
            } else {
                json!([])
            };
            json!({
                "id": id, "code": code, "retailerId": RETAILER, "allowsSale": true, "isActive": true,
                "name": drink, "fullName": format!("{drink} - Size {size}"),
                "categoryId": 1_001 + (i % 8) as i64, "categoryName": "Đồ uống",
                "productType": 2, "type": 2, "isTopping": is_topping, "isProcessedGoods": true,
                "isTimeType": false, "isRewardPoint": true, "hasVariants": is_variant,
                "description": format!("  {drink} pha theo công thức của quán.  "),
                "orderTemplate": "",
                "attributes": attributes,
                "unit": "Ly",
                "masterProductId": if is_variant { json!(id - 1) } else { Value::Null },
                "masterUnitId": if i % 7 == 6 { json!(product_id(i - 1)) } else { Value::Null },
                "conversionValue": 1,
                "units": units,
                "images": images,
                "inventories": inventories,
                "priceBooks": [{
                    "priceBookId": 7, "priceBookName": "Giá giờ vàng", "productId": id,
                    "isActive": true, "startDate": "2026-01-01T00:00:00",
                    "endDate": "2026-12-31T23:59:00", "price": price - 5_000,
                }],
                "toppings": toppings,
                "formulas": [{
                    "id": 70_000 + id, "code": "NL001", "name": "Sữa đặc", "fullName": "Sữa đặc",
                    "categoryId": 1_020, "basePrice": 25_000, "quantity": 0.05,
                }],
                "basePrice": price, "weight": 0,
                "modifiedDate": g.datetime(), "createdDate": g.datetime(),
            })
        })
        .collect();
    envelope(data)
}

/// 100 customers: phones in the shapes seen at tills (national, `+84 …`, dotted, two numbers),
/// every twenty-fifth without one (skipped, R-CUS-1); gender and birth date sometimes unset.
fn customers_page() -> Value {
    let mut g = Gen(2);
    let data = (0..PAGE)
        .map(|i| {
            let id = 880_000 + i as i64;
            let local = format!("9{:08}", g.below(100_000_000));
            let phone = match i % 25 {
                24 => Value::Null,
                n if n % 4 == 0 => json!(format!("0{local}")),
                n if n % 4 == 1 => json!(format!("+84 {} {} {}", &local[..3], &local[3..6], &local[6..])),
                n if n % 4 == 2 => json!(format!("0{}.{}.{}", &local[..3], &local[3..6], &local[6..])),
                _ => json!(format!("0{local} / 0912345678")),
            };
            let name = format!("{} {}", g.pick(FAMILY), g.pick(GIVEN));
            json!({
                "id": id, "code": format!("KH{id:06}"), "name": name,
                "gender": match i % 3 { 0 => json!(true), 1 => json!(false), _ => Value::Null },
                "birthDate": if i % 2 == 0 {
                    json!(format!("19{}-{:02}-{:02}T00:00:00.0000000", 70 + g.below(30), 1 + g.below(12), 1 + g.below(28)))
                } else {
                    Value::Null
                },
                "contactNumber": phone,
                "address": format!("{} {}, Q{}", 1 + g.below(200), g.pick(STREETS), 1 + g.below(12)),
                "locationName": "Hồ Chí Minh - Quận 1", "wardName": "Phường Bến Nghé",
                "email": if i % 3 == 0 { json!(format!("khach{id}@example.com")) } else { Value::Null },
                "organization": "", "comment": if i % 5 == 0 { "Khách quen" } else { "" },
                "taxCode": "", "retailerId": RETAILER, "branchId": BRANCH, "type": 0,
                "debt": 0, "totalInvoiced": 1_250_000, "totalPoint": 125, "rewardPoint": 25,
                "modifiedDate": g.datetime(), "createdDate": g.datetime(),
            })
        })
        .collect();
    envelope(data)
}

/// 100 completed invoices of five lines each (products of the products page, some with a line
/// discount or note), one or two payments; every fifth without a customer (walk-in).
fn invoices_page() -> Value {
    let mut g = Gen(3);
    let data = (0..PAGE)
        .map(|i| {
            let id = 251_000_000 + i as i64;
            let lines: Vec<(Value, u64)> = (0..5)
                .map(|_| {
                    let p = g.below(PAGE as u64) as usize;
                    let quantity = 1 + g.below(3);
                    let price = 20_000 + 5_000 * g.below(8);
                    let discount = if g.below(4) == 0 { 5_000 } else { 0 };
                    let sub_total = price * quantity - discount;
                    let line = json!({
                        "productId": product_id(p), "productCode": format!("SP{:06}", product_id(p)),
                        "productName": DRINKS[p % DRINKS.len()], "categoryName": "Đồ uống",
                        "quantity": quantity, "price": price, "discount": discount,
                        "discountRatio": 0, "note": g.pick(NOTES), "subTotal": sub_total,
                    });
                    (line, sub_total)
                })
                .collect();
            let subtotal: u64 = lines.iter().map(|(_, s)| s).sum();
            let discount = if i % 6 == 0 { 10_000 } else { 0 };
            let total = subtotal - discount;
            let payments = if i % 4 == 0 {
                let cash = total / 2;
                json!([
                    {"id": 770_000 + 2 * id, "code": format!("TT{id}A"), "amount": cash, "method": "Cash",
                     "status": 0, "statusValue": "Đã thanh toán", "transDate": g.datetime()},
                    {"id": 770_001 + 2 * id, "code": format!("TT{id}B"), "amount": total - cash, "method": "Transfer",
                     "status": 0, "statusValue": "Đã thanh toán", "transDate": g.datetime()},
                ])
            } else {
                json!([{"id": 770_000 + 2 * id, "code": format!("TT{id}"), "amount": total,
                        "method": "Cash", "transDate": g.datetime()}])
            };
            let walk_in = i % 5 == 4;
            let customer = 880_000 + g.below(PAGE as u64) as i64;
            let purchased = g.datetime();
            json!({
                "id": id, "uuid": format!("{id:x}-bench"), "code": format!("HD{id}"),
                "purchaseDate": purchased, "branchId": BRANCH, "branchName": "Chi nhánh trung tâm",
                "soldById": 90_641, "soldByName": "Thu ngân 1",
                "customerId": if walk_in { Value::Null } else { json!(customer) },
                "customerCode": if walk_in { Value::Null } else { json!(format!("KH{customer:06}")) },
                "customerName": if walk_in { "Khách lẻ".to_owned() } else { format!("{} {}", g.pick(FAMILY), g.pick(GIVEN)) },
                "total": total, "totalPayment": total, "discount": discount, "discountRatio": 0,
                "status": 1, "statusValue": "Hoàn thành", "description": "", "usingCod": false,
                "createdDate": purchased, "modifiedDate": g.datetime(),
                "invoiceDetails": lines.into_iter().map(|(l, _)| l).collect::<Vec<_>>(),
                "payments": payments,
                "invoiceDelivery": null,
                "invoiceOrderSurcharges": [],
            })
        })
        .collect();
    envelope(data)
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

/// Measures `work` on one page, from the page and from the body's bytes, in records/s.
/// `mapped` is how many of the page's records become items (the rest are skipped by a rule);
/// a record that fails to decode would lower it, so the generator is checked as well.
fn bench_page(
    c: &mut Criterion,
    entity: &str,
    value: Value,
    mapped: usize,
    work: impl Fn(&Page) -> Vec<String>,
) {
    let body = serde_json::to_vec(&value).expect("a Value serializes");
    let page = parse(&body);
    assert_eq!(page.len(), PAGE, "{entity}: records on the page");
    assert_eq!(work(&page).len(), mapped, "{entity}: records mapped");

    let mut group = c.benchmark_group(entity);
    group.throughput(Throughput::Elements(page.len() as u64));
    // Milliseconds per iteration: the same iteration count in every sample keeps 50 samples
    // within the measurement time (linear sampling would need 1 + 2 + … + 50 iterations).
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("decode_map_hash", |b| b.iter(|| work(black_box(&page))));
    group.bench_function("parse_decode_map_hash", |b| {
        b.iter(|| work(&parse(black_box(&body))))
    });
    group.finish();
}

fn mapping_benches(c: &mut Criterion) {
    bench_page(c, "products", products_page(), PAGE, products);
    // Every twenty-fifth customer has no phone and is skipped (R-CUS-1).
    bench_page(
        c,
        "customers",
        customers_page(),
        PAGE - PAGE / 25,
        customers,
    );
    // Every product of the catalog is linked, as after a full sync.
    let links: HashMap<i64, String> = (0..PAGE)
        .map(|i| (product_id(i), format!("abaha-prd-{i:04}")))
        .collect();
    bench_page(c, "invoices", invoices_page(), PAGE, |page| {
        invoices(page, &links)
    });
}

criterion_group! {
    name = benches;
    // Short by default so `make bench-mapping` ends in well under a minute; the command line
    // (`--warm-up-time`, `--measurement-time`, `--sample-size`) still overrides.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = mapping_benches
}
criterion_main!(benches);
