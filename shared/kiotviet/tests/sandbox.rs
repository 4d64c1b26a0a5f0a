//! The client against the in-process KiotViet FnB simulator (`infra/sandbox`): token caching and
//! renewal, credentials and retailer errors, paging, removed ids, datetimes, throttling, 5xx,
//! deadline, budget, price books and the order POST.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kiotviet::{
    Credentials, GetBudget, InProcessBudget, KiotVietClient, KiotVietConfig, KvError, ListEntity,
    ListRequest, Page, Pager, RetryPolicy,
};
use mapping::kiotviet::{
    Branch, Category, Customer, CustomerWrite, Invoice, OrderCreate, OrderDetail, Product,
};
use sandbox::Faults;
use sandbox::kiotviet::{Counts, DataSize, KiotVietSim, KvConfig, KvHandle, RemovedKeys};
use serde_json::Value;

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base: Duration::from_millis(5),
        cap: Duration::from_secs(5),
    }
}

async fn sim(cfg: KvConfig) -> KvHandle {
    KiotVietSim::start(cfg).await.expect("simulator starts")
}

fn credentials() -> Credentials {
    let cfg = KvConfig::default();
    Credentials::new(cfg.retailer, cfg.client_id, cfg.client_secret)
}

fn client_with(kv: &KvHandle, creds: Credentials, budget: Arc<dyn GetBudget>) -> KiotVietClient {
    let mut cfg = KiotVietConfig::for_urls(kv.url(), kv.token_url());
    cfg.retry = fast_retries();
    KiotVietClient::new(reqwest::Client::new(), Arc::new(cfg), creds, budget)
}

fn client(kv: &KvHandle) -> KiotVietClient {
    client_with(kv, credentials(), Arc::new(InProcessBudget::per_hour(4000)))
}

fn exact(customers: usize) -> KvConfig {
    KvConfig {
        size: DataSize::Exact(Counts {
            categories: 3,
            products: 5,
            customers,
            invoices: 5,
        }),
        ..KvConfig::default()
    }
}

fn ids(page: &Page) -> Vec<i64> {
    page.data
        .iter()
        .filter_map(mapping::kiotviet::record_id)
        .collect()
}

/// Every record of a read, in order, through the resumable pager.
async fn read_all(client: &KiotVietClient, req: ListRequest) -> (Vec<Page>, Pager) {
    let mut pager = Pager::new(req);
    let mut pages = Vec::new();
    while let Some(page) = pager.next(client).await.expect("page") {
        pages.push(page);
    }
    (pages, pager)
}

fn gets(kv: &KvHandle, route: &str) -> u64 {
    kv.stats().requests.get(&format!("GET {route}"))
}

fn token_calls(kv: &KvHandle) -> u64 {
    kv.stats().tokens_issued
}

// ---- token --------------------------------------------------------------------------------------

#[tokio::test]
async fn r_syn_6_one_token_serves_many_requests() {
    // GIVEN a simulator and one client
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    // WHEN it makes several requests, some at once
    client.branches().await.expect("branches");
    let req = ListRequest::new(ListEntity::Customers);
    let (a, b, c) = tokio::join!(
        client.page(&req, 0),
        client.page(&req, 20),
        client.branches()
    );
    a.and(b).expect("pages");
    c.expect("branches");
    // THEN one token was requested
    assert_eq!(token_calls(&kv), 1);
    assert_eq!(client.api_call_counts().token_requests, 1);
    assert_eq!(client.api_call_counts().gets, 4);
}

#[tokio::test]
async fn r_syn_6_an_expired_token_is_renewed_once_and_the_call_repeated() {
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    client.branches().await.expect("first");
    // GIVEN every issued token stops working
    kv.expire_tokens();
    // WHEN the client reads again THEN it renews once and succeeds
    let branches = client.branches().await.expect("after renewal");
    assert_eq!(branches.len(), 2);
    assert_eq!(token_calls(&kv), 2);
    assert_eq!(kv.stats().unauthorized, 1);
}

#[tokio::test]
async fn a_token_refused_again_after_renewal_is_unauthorized_not_a_loop() {
    let kv = sim(KvConfig {
        faults: Faults {
            expire_token_every_n_requests: Some(1),
            ..Faults::default()
        },
        ..KvConfig::default()
    })
    .await;
    let error = client(&kv).branches().await.expect_err("always 401");
    assert!(matches!(error, KvError::Unauthorized), "{error:?}");
    assert_eq!(
        token_calls(&kv),
        3,
        "the first token and two renewals, then it gave up"
    );
}

// ---- R-CON-3: credentials and retailer -----------------------------------------------------------

#[tokio::test]
async fn r_con_3_wrong_secret_is_invalid_credentials() {
    let kv = sim(KvConfig::default()).await;
    let mut creds = credentials();
    creds.client_secret = "wrong-secret".to_owned().into();
    let error = client_with(&kv, creds, Arc::new(InProcessBudget::per_hour(10)))
        .check_connection()
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, KvError::InvalidCredentials { message } if message.contains("Client authentication failed")),
        "{error:?}"
    );
    assert!(!error.to_string().contains("wrong-secret"));
    assert_eq!(kv.stats().requests.gets, 0, "no API call without a token");
}

#[tokio::test]
async fn r_con_3_wrong_client_id_is_invalid_credentials() {
    let kv = sim(KvConfig::default()).await;
    let mut creds = credentials();
    creds.client_id = "someone-else".into();
    let error = client_with(&kv, creds, Arc::new(InProcessBudget::per_hour(10)))
        .check_connection()
        .await
        .expect_err("refused");
    assert!(
        matches!(error, KvError::InvalidCredentials { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn r_con_3_wrong_retailer_is_unknown_retailer() {
    let kv = sim(KvConfig::default()).await;
    let mut creds = credentials();
    creds.retailer = "not-my-shop".into();
    let error = client_with(&kv, creds, Arc::new(InProcessBudget::per_hour(10)))
        .check_connection()
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, KvError::UnknownRetailer { message } if message.contains("not-my-shop")),
        "{error:?}"
    );
    assert_eq!(gets(&kv, "/branches"), 1, "not retried");
}

#[tokio::test]
async fn r_con_3_check_connection_returns_the_branches() {
    let kv = sim(KvConfig::default()).await;
    let branches: Vec<Branch> = client(&kv).check_connection().await.expect("connected");
    let ids: Vec<i64> = branches.iter().map(|b| b.id).collect();
    assert_eq!(ids, vec![233_443, 233_444]);
    assert!(branches.iter().all(|b| b.branch_name.is_some()));
}

// ---- paging ------------------------------------------------------------------------------------

#[tokio::test]
async fn paging_through_a_total_that_is_an_exact_multiple_of_100() {
    // GIVEN exactly 200 customers
    let kv = sim(exact(200)).await;
    let client = client(&kv);
    // WHEN they are read page by page
    let (pages, pager) = read_all(&client, ListRequest::new(ListEntity::Customers)).await;
    // THEN two full pages, no third empty request, every customer once
    let all: Vec<i64> = pages.iter().flat_map(ids).collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(all.len(), 200);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 200);
    assert_eq!(gets(&kv, "/customers"), 2);
    assert_eq!(pager.position().current_item, 200);
    assert!(pager.is_done() && !pager.total_moved());
}

#[tokio::test]
async fn paging_through_a_total_that_is_not_a_multiple_of_100() {
    let kv = sim(exact(250)).await;
    let client = client(&kv);
    let (pages, _) = read_all(&client, ListRequest::new(ListEntity::Customers)).await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.data.len()).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let all: BTreeSet<i64> = pages.iter().flat_map(ids).collect();
    assert_eq!(all, kv.customer_ids().into_iter().collect());
    assert_eq!(gets(&kv, "/customers"), 3);
}

#[tokio::test]
async fn a_read_resumes_from_a_checkpointed_position() {
    let kv = sim(exact(250)).await;
    let client = client(&kv);
    // GIVEN a read stopped after its first page, its position stored as JSON
    let mut pager = Pager::new(ListRequest::new(ListEntity::Customers));
    let first = pager.next(&client).await.expect("page").expect("some");
    let stored = serde_json::to_string(&pager.position()).expect("json");
    // WHEN a new invocation resumes from it
    let mut resumed = Pager::resume(
        pager.request().clone(),
        serde_json::from_str(&stored).expect("position"),
    );
    let mut rest = Vec::new();
    while let Some(page) = resumed.next(&client).await.expect("page") {
        rest.extend(ids(&page));
    }
    // THEN it reads exactly the remaining records
    let mut all = ids(&first);
    all.extend(rest);
    assert_eq!(all.len(), 250);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 250);
}

#[tokio::test]
async fn page_streams_sequential_and_concurrent_yield_the_same_records_in_order() {
    let kv = sim(exact(250)).await;
    let client = client(&kv);
    let req = ListRequest::new(ListEntity::Customers);
    let sequential: Vec<i64> = client
        .pages(req.clone())
        .map(|page| ids(&page.expect("page")))
        .concat()
        .await;
    let concurrent: Vec<i64> = client
        .pages_concurrent(req, 3)
        .map(|page| ids(&page.expect("page")))
        .concat()
        .await;
    assert_eq!(sequential.len(), 250);
    assert_eq!(sequential, concurrent);
}

// ---- removed ids -------------------------------------------------------------------------------

#[tokio::test]
async fn removed_ids_arrive_under_each_entitys_spelling() {
    // GIVEN KiotViet's default spellings: categories `removedIds`, products `removeId`,
    // customers `removeIds`, and one deletion of each
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    let since = kv.now() - chrono::Duration::minutes(5);
    let category = kv
        .add_category(sandbox::kiotviet::NewCategory {
            name: "Tạm".into(),
            ..Default::default()
        })
        .expect("category");
    kv.delete_category(category).expect("deleted");
    let product = kv.product_ids()[0];
    kv.delete_product(product).expect("deleted");
    let customer = kv.customer_ids()[0];
    kv.delete_customer(customer).expect("deleted");
    // WHEN each entity is read incrementally THEN its deleted id comes through `Page::removed_ids`
    for (entity, id) in [
        (ListEntity::Categories, category),
        (ListEntity::Products, product),
        (ListEntity::Customers, customer),
    ] {
        let (pages, _) = read_all(&client, ListRequest::new(entity).modified_since(since)).await;
        let removed: Vec<i64> = pages.iter().flat_map(|p| p.removed_ids.clone()).collect();
        assert!(removed.contains(&id), "{entity:?}: {removed:?}");
    }
}

#[tokio::test]
async fn removed_ids_are_read_in_all_three_spellings() {
    for spelling in ["removedIds", "removeId", "removeIds"] {
        // GIVEN customers whose envelope uses this spelling, and one deleted customer
        let kv = sim(KvConfig {
            removed_keys: RemovedKeys {
                customers: spelling.into(),
                ..RemovedKeys::default()
            },
            ..KvConfig::default()
        })
        .await;
        let since = kv.now() - chrono::Duration::minutes(5);
        let customer = kv.customer_ids()[1];
        kv.delete_customer(customer).expect("deleted");
        // WHEN read incrementally THEN the id is there
        let (pages, _) = read_all(
            &client(&kv),
            ListRequest::new(ListEntity::Customers).modified_since(since),
        )
        .await;
        let removed: Vec<i64> = pages.iter().flat_map(|p| p.removed_ids.clone()).collect();
        assert_eq!(removed, vec![customer], "{spelling}");
    }
}

// ---- datetimes and records ---------------------------------------------------------------------

fn fraction_digits(value: &str) -> Option<usize> {
    let clock = value.get(11..)?;
    let clock = clock.split(['+', 'Z']).next()?;
    Some(clock.split_once('.').map_or(0, |(_, f)| f.len()))
}

fn datetime_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') => {
            out.push(s.clone())
        }
        Value::Array(items) => items.iter().for_each(|v| datetime_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| datetime_strings(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_datetime_shape_the_simulator_sends_decodes() {
    // GIVEN the demo data, whose datetimes carry 0 to 7 fractional digits and envelopes +07:00
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    let mut shapes = BTreeSet::new();
    let mut records = 0;
    for entity in [
        ListEntity::Categories,
        ListEntity::Products,
        ListEntity::Customers,
        ListEntity::Invoices,
    ] {
        let (pages, _) = read_all(&client, ListRequest::new(entity)).await;
        for page in &pages {
            assert!(page.timestamp.is_some(), "{entity:?} envelope timestamp");
            let mut found = Vec::new();
            page.data
                .iter()
                .for_each(|r| datetime_strings(r, &mut found));
            shapes.extend(found.iter().filter_map(|s| fraction_digits(s)));
            // WHEN every record is decoded THEN none fails
            let failures: Vec<String> = match entity {
                ListEntity::Categories => errors(page.decode::<Category>()),
                ListEntity::Products => errors(page.decode::<Product>()),
                ListEntity::Customers => errors(page.decode::<Customer>()),
                _ => errors(page.decode::<Invoice>()),
            };
            assert!(failures.is_empty(), "{entity:?}: {failures:?}");
            records += page.data.len();
        }
    }
    assert!(records > 400);
    assert_eq!(
        shapes,
        (0..=7).collect(),
        "every fraction length was exercised"
    );
    // AND the decoded values are the instants sent
    let invoice_id = kv.invoice_ids()[0];
    let raw = kv.invoice(invoice_id).expect("raw invoice");
    let invoice = client.invoice(invoice_id).await.expect("invoice");
    let sent = raw["purchaseDate"].as_str().expect("purchaseDate");
    let parsed = invoice.purchase_date.expect("parsed");
    assert_eq!(
        parsed,
        mapping::time::parse_kv_datetime(sent).expect("same parser")
    );
    assert_eq!(parsed.offset().local_minus_utc(), 7 * 3600);
}

fn errors<T>(results: Vec<Result<T, mapping::kiotviet::DecodeError>>) -> Vec<String> {
    results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect()
}

#[tokio::test]
async fn details_read_products_customers_and_invoices() {
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    let product = kv.product_ids()[0];
    let customer = kv.customer_ids()[0];
    let invoice = kv.invoice_ids()[0];
    assert_eq!(client.product(product).await.expect("product").id, product);
    assert_eq!(
        client.customer(customer).await.expect("customer").id,
        customer
    );
    assert_eq!(client.invoice(invoice).await.expect("invoice").id, invoice);
    let error = client.product(999_999_999).await.expect_err("absent");
    assert!(matches!(error, KvError::NotFound { .. }), "{error:?}");
}

// ---- R-PRD-2 -----------------------------------------------------------------------------------

#[tokio::test]
async fn r_prd_2_price_books_are_never_requested() {
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    // GIVEN every product read the client has, including one that asks for price books
    read_all(&client, ListRequest::new(ListEntity::Products)).await;
    read_all(
        &client,
        ListRequest::new(ListEntity::Products).with("includePricebook", "true"),
    )
    .await;
    client.product(kv.product_ids()[0]).await.expect("detail");
    // THEN the simulator never saw includePricebook=true, and inventories were asked
    let stats = kv.stats();
    assert!(stats.requests.get("GET /products") >= 2);
    assert_eq!(stats.pricebook_requests, 0);
}

// ---- throttling, 5xx, deadline, budget (R-SYN-6) -----------------------------------------------

#[tokio::test]
async fn r_syn_6_429_is_retried_after_retry_after() {
    // GIVEN a simulator that throttles half of the requests with Retry-After: 1
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    client.branches().await.expect("token first");
    kv.set_faults(Faults {
        p_429: 0.5,
        retry_after_secs: 1,
        seed: 3,
        ..Faults::default()
    });
    // WHEN the client reads until it has been throttled
    let started = Instant::now();
    let mut reads = 0;
    while kv.stats().injected_429 == 0 && reads < 10 {
        client.branches().await.expect("read succeeds despite 429");
        reads += 1;
    }
    // THEN every 429 cost at least the second it asked for
    let throttled = kv.stats().injected_429;
    assert!(throttled >= 1);
    assert!(
        started.elapsed() >= Duration::from_secs(throttled),
        "{:?} for {throttled} throttles",
        started.elapsed()
    );
}

#[tokio::test]
async fn r_syn_6_5xx_is_retried_then_succeeds() {
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    kv.set_faults(Faults {
        p_5xx: 0.5,
        seed: 11,
        ..Faults::default()
    });
    for _ in 0..8 {
        let (pages, _) = read_all(&client, ListRequest::new(ListEntity::Customers)).await;
        assert_eq!(pages.iter().map(|p| p.data.len()).sum::<usize>(), 80);
    }
    let stats = kv.stats();
    assert!(stats.injected_5xx > 0);
    assert_eq!(client.api_call_counts().gets, stats.requests.gets);
}

#[tokio::test]
async fn r_syn_6_the_deadline_is_respected_by_handing_over() {
    // GIVEN KiotViet answering 5xx to everything and 2.3 s left before the deadline
    let kv = sim(KvConfig::default()).await;
    kv.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    // (retries patient enough that the deadline, not the attempt count, ends them)
    let mut cfg = KiotVietConfig::for_urls(kv.url(), kv.token_url());
    cfg.retry = RetryPolicy {
        max_attempts: 20,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(20),
    };
    let client = KiotVietClient::new(
        reqwest::Client::new(),
        Arc::new(cfg),
        credentials(),
        Arc::new(InProcessBudget::per_hour(4000)),
    )
    .with_deadline(Some(Instant::now() + Duration::from_millis(2300)));
    // WHEN it reads
    let started = Instant::now();
    let error = client.branches().await.expect_err("down");
    // THEN it hands over well before the deadline instead of sleeping through it
    assert!(matches!(error, KvError::Deadline), "{error:?}");
    assert!(error.is_hand_over());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_deadline_too_close_makes_no_request() {
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv).with_deadline(Some(Instant::now() + Duration::from_millis(500)));
    let error = client.branches().await.expect_err("too late");
    assert!(matches!(error, KvError::Deadline), "{error:?}");
    assert_eq!(kv.stats().requests.total, 0);
}

#[tokio::test]
async fn r_syn_6_a_spent_budget_refuses_without_a_request() {
    // GIVEN a budget of 3 GETs
    let kv = sim(KvConfig::default()).await;
    let client = client_with(&kv, credentials(), Arc::new(InProcessBudget::per_hour(3)));
    let req = ListRequest::new(ListEntity::Customers);
    for offset in [0, 20, 40] {
        client.page(&req, offset).await.expect("within budget");
    }
    // WHEN a fourth GET is asked THEN it is refused with the time of the next window, unsent
    let error = client.page(&req, 60).await.expect_err("spent");
    match error {
        KvError::BudgetExhausted { retry_at } => assert!(retry_at > chrono::Utc::now()),
        other => panic!("{other:?}"),
    }
    assert_eq!(kv.stats().requests.gets, 3);
    assert_eq!(client.api_call_counts().gets, 3);
}

#[tokio::test]
async fn kiotviets_own_hourly_limit_is_handed_over_with_its_wait() {
    let kv = sim(KvConfig::default()).await;
    kv.set_get_limit_per_hour(Some(2));
    let client = client(&kv);
    client.branches().await.expect("1");
    client.branches().await.expect("2");
    let started = Instant::now();
    let error = client.branches().await.expect_err("limit");
    assert!(
        matches!(error, KvError::RateLimited { retry_after: Some(wait) } if wait > Duration::from_secs(60)),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

// ---- writes ------------------------------------------------------------------------------------

fn order(kv: &KvHandle) -> OrderCreate {
    OrderCreate {
        branch_id: kv.central_branch_id(),
        customer_id: None,
        description: None,
        discount: None,
        delivery_detail: None,
        order_details: vec![OrderDetail {
            product_id: kv.product_ids()[0],
            price: 35_000.0,
            quantity: 2.0,
            note: Some("ít đá".into()),
            rank: 1,
        }],
        surcharges: Vec::new(),
    }
}

#[tokio::test]
async fn an_order_is_created_once() {
    let kv = sim(KvConfig::default()).await;
    let created = client(&kv)
        .create_order(&order(&kv))
        .await
        .expect("created");
    assert!(created.id > 0);
    assert!(created.code.is_some());
    assert_eq!(kv.created_orders().len(), 1);
}

#[tokio::test]
async fn post_orders_is_not_retried_on_500() {
    // GIVEN KiotViet failing every API request with a 5xx
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    client.branches().await.expect("token first");
    kv.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    // WHEN an order is created THEN it fails after one POST (a retry could duplicate the order)
    let error = client.create_order(&order(&kv)).await.expect_err("5xx");
    assert!(
        matches!(
            &error,
            KvError::Transient {
                status: Some(500..=599),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(kv.stats().requests.get("POST /orders"), 1);
}

#[tokio::test]
async fn a_customer_is_created_found_by_phone_and_updated() {
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    let write = CustomerWrite {
        code: None,
        name: "Nguyễn Văn A".into(),
        gender: Some(true),
        birth_date: Some("1995-06-01T00:00:00".into()),
        contact_number: "0911222333".into(),
        address: None,
        email: Some("a@example.com".into()),
        comment: None,
        branch_id: Some(kv.central_branch_id()),
    };
    let created = client.create_customer(&write).await.expect("created");
    let found = client
        .find_customers_by_phone("0911222333")
        .await
        .expect("found");
    assert!(found.iter().any(|c| c.id == created.id), "{found:?}");
    let renamed = CustomerWrite {
        name: "Nguyễn Văn B".into(),
        ..write
    };
    let updated = client
        .update_customer(created.id, &renamed)
        .await
        .expect("updated");
    assert_eq!(updated.name.as_deref(), Some("Nguyễn Văn B"));
}

#[tokio::test]
async fn a_webhook_is_registered_and_deleted() {
    let kv = sim(KvConfig::default()).await;
    let client = client(&kv);
    let id = client
        .register_webhook("product.update", "http://127.0.0.1:9/hook", "c2VjcmV0MTI=")
        .await
        .expect("registered");
    assert_eq!(kv.webhooks().len(), 1);
    client.delete_webhook(id).await.expect("deleted");
    assert!(kv.webhooks().is_empty());
    client
        .delete_webhook(id)
        .await
        .expect("deleting twice is fine");
}
