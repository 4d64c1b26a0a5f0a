//! End to end in the deployed topology (issue 15): the five real binaries of this crate, each its
//! own process behind the local Lambda Runtime API (epoch deadlines from the template's Timeout,
//! killed past it), fed by SQS event-source mappings and an HTTP API built from template.yaml
//! (`local_stack::deployed`), on moto and the sandboxes. No engine code runs in the test process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e_tests::Api;
use local_stack::deployed::{Deployed, DeployedOptions};
use sandbox::Faults;
use sandbox::abaha::Kind;
use sandbox::kiotviet::{Counts, DataSize, KvConfig};
use serde_json::{Value, json};

const SHOP: &str = "cafe-1";

fn binaries() -> BTreeMap<String, std::path::PathBuf> {
    [
        ("api", env!("CARGO_BIN_EXE_api")),
        ("dispatcher", env!("CARGO_BIN_EXE_dispatcher")),
        ("catalog-pull", env!("CARGO_BIN_EXE_catalog-pull")),
        ("customer-pull", env!("CARGO_BIN_EXE_customer-pull")),
        ("invoice-pull", env!("CARGO_BIN_EXE_invoice-pull")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into()))
    .collect()
}

/// A small menu and `customers` customers: a customer pull long enough to be handed over or killed.
fn many_customers(customers: usize) -> KvConfig {
    KvConfig {
        size: DataSize::Exact(Counts {
            categories: 2,
            products: 10,
            customers,
            invoices: 0,
        }),
        ..KvConfig::default()
    }
}

fn options(endpoint: String) -> DeployedOptions {
    DeployedOptions {
        aws_endpoint: endpoint,
        name_suffix: format!("-d{:08x}", rand_u32()),
        binaries: binaries(),
        stage: Some("prod".into()),
        ..DeployedOptions::default()
    }
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

fn api(d: &Deployed, prefix: &str) -> Api {
    Api {
        http: reqwest::Client::new(),
        base: format!("{}{prefix}", d.api_url),
        token: Some(d.admin_token.clone()),
    }
}

fn connection(d: &Deployed) -> Value {
    json!({"account_type": "fnb", "retailer": d.kiotviet.retailer(), "client_id": "demo-client",
           "client_secret": "demo-secret", "branch_id": d.kiotviet.central_branch_id(),
           "sync": {"products": true, "customers": true, "orders": true},
           "keep_app_product_status": true, "invoice_history_days": 30})
}

/// The deployed topology, started, with [`SHOP`] connected through the API's named stage: the
/// topology, that stage's API, and the connect answer.
async fn start_connected(opts: DeployedOptions) -> (Deployed, Api, Value) {
    let d = Deployed::start(opts)
        .await
        .expect("deployed topology starts");
    let prod = api(&d, "/prod");
    let a = prod
        .put(&format!("/v1/shops/{SHOP}/connection"), connection(&d))
        .await;
    assert_eq!(a.status, 200, "connect: {}", a.body);
    (d, prod, a.body)
}

async fn start_run(api: &Api, body: Value) -> String {
    let a = api.post(&format!("/v1/shops/{SHOP}/sync"), body).await;
    assert_eq!(a.status, 202, "sync: {}", a.body);
    a.body["run_id"].as_str().expect("run id").to_string()
}

async fn wait_run(api: &Api, run_id: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let a = api.get(&format!("/v1/shops/{SHOP}/sync/{run_id}")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        if matches!(
            a.body["state"].as_str(),
            Some("succeeded" | "partial" | "failed")
        ) {
            return a.body;
        }
        assert!(started.elapsed() < limit, "run did not end: {}", a.body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn invocations(d: &Deployed, binary: &str) -> u32 {
    d.hosts[binary].invocations.load(Ordering::Relaxed)
}

#[tokio::test]
async fn given_the_deployed_functions_when_a_shop_connects_and_syncs_through_a_named_stage_then_the_run_succeeds()
 {
    let Some(endpoint) = e2e_tests::moto() else {
        return;
    };
    let d = Deployed::start(options(endpoint))
        .await
        .expect("deployed topology starts");
    let prod = api(&d, "/prod");
    let default = api(&d, "");

    // WHEN the shop connects through the named stage (issue 15: every route was 404 there)
    let a = prod
        .put(&format!("/v1/shops/{SHOP}/connection"), connection(&d))
        .await;
    assert_eq!(a.status, 200, "connect: {}", a.body);
    // THEN the same API answers on $default too, and only the template's routes exist
    let a = default.get(&format!("/v1/shops/{SHOP}/connection")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let stray = reqwest::get(format!("{}/prod/v1/shops/{SHOP}", d.api_url))
        .await
        .expect("gateway answers");
    assert_eq!(stray.status().as_u16(), 404);

    // WHEN a full sync runs: api → queues → three pull processes → Abaha
    let run_id = start_run(&prod, json!({"full": true})).await;
    let report = wait_run(&prod, &run_id, Duration::from_secs(120)).await;

    // THEN it succeeded with every part read, each pull in its own process
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    for part in ["categories", "products", "customers", "invoices"] {
        assert!(
            report["entities"][part]["read"].as_u64().unwrap_or(0) > 0,
            "{part}: {report}"
        );
    }
    for f in ["catalog-pull", "customer-pull", "invoice-pull"] {
        assert!(invocations(&d, f) >= 1, "{f} never ran");
        assert_eq!(
            d.hosts[f].timeouts.load(Ordering::Relaxed),
            0,
            "{f} was killed"
        );
    }
    if let Err(e) = e2e_tests::contract::check_abaha_writes(&d.abaha, SHOP) {
        panic!("an Abaha Sync API request drifted from its document: {e}");
    }

    // WHEN an Abaha order of two synced products is pushed twice through the stage
    let menu: Vec<Value> = d
        .abaha
        .items(SHOP, Kind::Products)
        .into_iter()
        .filter(|p| p["is_topping"] != json!(true) && p["master_kiotviet_id"].is_null())
        .collect();
    assert!(menu.len() >= 2, "sellable products synced");
    let price = |p: &Value| p["price"].as_f64().unwrap_or(0.0);
    let order = json!({
        "id": "A-1", "code": "DH1", "status": "approved",
        "created_at": "2026-11-29T09:00:00+07:00", "delivery_time": null, "note": null,
        "customer": {"id": "U-1", "name": "Nguyễn Văn A", "phone": "0911222333", "email": null},
        "shipping_address": {"name": "Nguyễn Văn A", "phone": "0911222333", "address": "1 Lê Lợi",
                             "ward": "Bến Nghé", "district": "Quận 1", "province": "Hồ Chí Minh"},
        "lines": [
            {"product_id": menu[0]["abaha_id"], "quantity": 2, "price": price(&menu[0]), "note": null},
            {"product_id": menu[1]["abaha_id"], "quantity": 1, "price": price(&menu[1]), "note": null}],
        "shipping_fee": 15000, "discount": 0,
        "total": 2.0 * price(&menu[0]) + price(&menu[1]) + 15000.0
    });
    let first = prod
        .post(&format!("/v1/shops/{SHOP}/orders"), order.clone())
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = prod.post(&format!("/v1/shops/{SHOP}/orders"), order).await;
    assert_eq!(again.status, 200, "{}", again.body);
    // THEN KiotViet holds one order, and the repeat replayed it (R-ORD-5)
    assert_eq!(d.kiotviet.created_orders().len(), 1);
    assert_eq!(again.body["replayed"], json!(true));
    assert_eq!(
        again.body["kiotviet_order_id"],
        first.body["kiotviet_order_id"]
    );
    // AND the function that ended the run wrote its metrics as CloudWatch EMF
    let emf = ["catalog-pull", "customer-pull", "invoice-pull"]
        .iter()
        .any(|f| {
            std::fs::read_to_string(d.log_dir.join(format!("{f}.log")))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| v["RunsFinished"] == json!(1.0) && v["run_id"] == json!(run_id))
        });
    assert!(emf, "no EMF line for {run_id} in {}", d.log_dir.display());
    // AND the schedule's tick (the dispatcher, as Scheduler invokes it) finds the shop
    let out = d.tick().await.expect("dispatcher answers");
    assert_eq!(out["shops"], json!(1), "{out}");
    d.stop().await;
}

#[tokio::test]
async fn given_a_pull_with_a_short_timeout_when_kiotviet_is_slow_then_it_hands_over_at_its_deadline_and_finishes()
 {
    let Some(endpoint) = e2e_tests::moto() else {
        return;
    };
    // GIVEN 1,000 customers on a KiotViet answering each page in a second, and a customer pull
    // whose Timeout leaves one second before the engine's 20 s hand-over margin
    let mut opts = options(endpoint);
    opts.kiotviet = Some(many_customers(1_000));
    opts.timeout_override.insert("customer-pull".into(), 21);
    let (d, prod, _) = start_connected(opts).await;
    d.kiotviet.set_faults(Faults {
        latency_ms: 1000,
        ..Faults::default()
    });

    // WHEN the customers sync
    let run_id = start_run(&prod, json!({"entities": ["customers"], "full": true})).await;
    let report = wait_run(&prod, &run_id, Duration::from_secs(150)).await;

    // THEN the pull handed over before each deadline (never killed) and read everything
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert_eq!(
        report["entities"]["customers"]["read"],
        json!(1000),
        "{report}"
    );
    let runs = invocations(&d, "customer-pull");
    assert!(
        runs >= 2,
        "one invocation read everything: no hand-over ({runs})"
    );
    assert_eq!(
        d.hosts["customer-pull"].timeouts.load(Ordering::Relaxed),
        0,
        "a pull ran past its deadline and was killed"
    );
    d.stop().await;
}

#[tokio::test]
async fn given_the_abaha_token_parameter_missing_then_every_pull_fails_at_init_its_job_reaches_the_dead_letter_queue_and_the_run_reads_failed()
 {
    let Some(endpoint) = e2e_tests::moto() else {
        return;
    };
    // GIVEN a deployment whose Abaha token SSM parameter is gone once the api function is warm
    // (issue 15: created nowhere, a missing one fails every invocation at init), failed messages
    // back after a second, and a 3 s run lease
    let mut opts = options(endpoint);
    opts.extra_env
        .insert("SYNC_LEASE_TTL_SECS".into(), "3".into());
    opts.redelivery_after = Some(Duration::from_secs(1));
    let (d, prod, _) = start_connected(opts).await;
    d.delete_parameter("AbahaTokenParameter")
        .await
        .expect("deleted");

    // WHEN the customers sync
    let run_id = start_run(&prod, json!({"entities": ["customers"]})).await;

    // THEN after maxReceiveCount (5) failed invocations the job is in the dead-letter queue
    let started = Instant::now();
    while d.queue_depth("CustomerDeadLetters").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no dead letter after {} invocations",
            invocations(&d, "customer-pull")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(invocations(&d, "customer-pull") >= 5);
    let log = std::fs::read_to_string(d.log_dir.join("customer-pull.log")).unwrap_or_default();
    assert!(log.contains("could not read SSM parameter"), "{log}");
    // AND once the run's lease lapsed, the next tick reports the run failed with its cause
    tokio::time::sleep(Duration::from_secs(4)).await;
    d.tick().await.expect("dispatcher answers");
    let a = prod.get(&format!("/v1/shops/{SHOP}/sync/{run_id}")).await;
    assert_eq!(a.body["state"], json!("failed"), "{}", a.body);
    let message = a.body["entities"]["customers"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("stopped without finishing"), "{}", a.body);
    d.stop().await;
}

#[tokio::test]
async fn given_webhooks_registered_at_the_named_stage_when_a_product_is_renamed_then_abaha_has_it_without_a_sync()
 {
    let Some(endpoint) = e2e_tests::moto() else {
        return;
    };
    // GIVEN a deployment whose WebhookBaseUrl is the gateway's /prod stage, and a shop connected
    let mut opts = options(endpoint);
    opts.webhooks = true;
    let (d, _, connected) = start_connected(opts).await;
    assert_eq!(
        connected["connection"]["webhooks_active"],
        json!(true),
        "{connected}"
    );
    let id = d
        .kiotviet
        .product_ids()
        .into_iter()
        .find(|id| {
            d.kiotviet
                .product(*id)
                .is_some_and(|p| p["isTopping"] != json!(true))
        })
        .expect("the seeded café has products");

    // WHEN the product is renamed at the till
    let started = Instant::now();
    d.kiotviet
        .rename_product(id, "Cà phê muối (đổi tên)")
        .expect("renamed");

    // THEN KiotViet's signed delivery went gateway → api → queue → catalog pull → Abaha
    loop {
        let renamed = d
            .abaha
            .item(SHOP, Kind::Products, id)
            .is_some_and(|p| p["name"] == json!("Cà phê muối (đổi tên)"));
        if renamed {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not in Abaha after 10 s; deliveries: {:?}",
            d.kiotviet.webhook_deliveries()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "change-to-Abaha latency (deployed topology): {} ms",
        started.elapsed().as_millis()
    );
    assert!(invocations(&d, "catalog-pull") >= 1);
    d.stop().await;
}

#[tokio::test]
async fn given_a_pull_killed_mid_sync_when_sync_is_pressed_again_then_the_run_resumes_from_its_checkpoint()
 {
    let Some(endpoint) = e2e_tests::moto() else {
        return;
    };
    // GIVEN 3,000 customers on a slow KiotViet, a part lease of 2 s and a run counted stalled after
    // 3 s without renewal (on AWS: 15 s and 60 s), and the template's VisibilityTimeout (30 min):
    // the killed job's message does not come back during this test
    let mut opts = options(endpoint);
    opts.kiotviet = Some(many_customers(3_000));
    for (k, v) in [("PART_LEASE_TTL_SECS", "2"), ("RUN_STALL_SECS", "3")] {
        opts.extra_env.insert(k.into(), v.into());
    }
    let (d, prod, _) = start_connected(opts).await;
    // (30 pages, 4 at a time, a second each: the pull runs for about 8 s)
    d.kiotviet.set_faults(Faults {
        latency_ms: 1000,
        ..Faults::default()
    });
    let run_id = start_run(&prod, json!({"entities": ["customers"], "full": true})).await;

    // WHEN the customer pull's process is SIGKILLed after its first checkpoint
    let started = Instant::now();
    loop {
        let r = prod.get(&format!("/v1/shops/{SHOP}/sync/{run_id}")).await;
        let read = r.body["entities"]["customers"]["read"]
            .as_u64()
            .unwrap_or(0);
        if read >= 100 {
            assert!(
                read < 3000 && r.body["state"] == json!("running"),
                "too late to kill: {}",
                r.body
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no progress: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.hosts["customer-pull"].sigkill();
    // AND Sync is pressed again once the dead pull missed its renewals
    tokio::time::sleep(Duration::from_secs(4)).await;
    let again = prod
        .post(
            &format!("/v1/shops/{SHOP}/sync"),
            json!({"entities": ["customers"]}),
        )
        .await;

    // THEN the answer is the same run, which resumes and finishes within the minute
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.body["run_id"], json!(run_id));
    assert_eq!(again.body["already_running"], json!(true));
    let report = wait_run(&prod, &run_id, Duration::from_secs(60)).await;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert_eq!(
        report["entities"]["customers"]["read"],
        json!(3000),
        "{report}"
    );
    // AND the report says it was interrupted and resumed
    let said = report["errors"].as_array().is_some_and(|e| {
        e.iter().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Interrupted"))
        })
    });
    assert!(said, "{report}");
    d.stop().await;
}

#[tokio::test]
async fn given_cargo_lambdas_relative_deadline_header_then_a_pull_reads_instead_of_handing_over_at_once()
 {
    let Some(endpoint) = e2e_tests::moto() else {
        return;
    };
    // GIVEN a runtime that sends `Lambda-Runtime-Deadline-Ms: 300000` as `cargo lambda watch`
    // does (issue 15: read as a date long past, every pull handed over with nothing read)
    let mut opts = options(endpoint);
    opts.cargo_lambda_deadlines = true;
    let (d, prod, _) = start_connected(opts).await;

    // WHEN the customers sync
    let run_id = start_run(&prod, json!({"entities": ["customers"], "full": true})).await;
    let report = wait_run(&prod, &run_id, Duration::from_secs(60)).await;

    // THEN one invocation read them all
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert!(
        report["entities"]["customers"]["read"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{report}"
    );
    assert_eq!(invocations(&d, "customer-pull"), 1, "{report}");
    d.stop().await;
}

#[tokio::test]
async fn given_a_dispatcher_whose_timeout_leaves_no_time_to_start_a_shop_then_the_tick_fails_naming_the_shop_and_queues_nothing()
 {
    let Some(endpoint) = e2e_tests::moto() else {
        return;
    };
    // GIVEN a connected shop and a dispatcher whose Timeout (5 s) is inside the fan-out's 10 s
    // margin: every start would risk being cut off by the Lambda's kill
    let mut opts = options(endpoint);
    opts.timeout_override.insert("dispatcher".into(), 5);
    let (d, _, _) = start_connected(opts).await;

    // WHEN the schedule ticks
    let out = d.tick().await;

    // THEN the invocation fails (the error alarm's signal, and Scheduler retries it), its error
    // names the first shop left and what to do, and no job was queued half-way
    let err = out.expect_err("a tick that started no shop must not answer success");
    let text = err.to_string();
    assert!(text.contains("ran out of time"), "{text}");
    assert!(text.contains(SHOP), "{text}");
    assert!(text.contains("Timeout"), "{text}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(d.queue_depth("CatalogQueue").await, 0);
    assert_eq!(invocations(&d, "catalog-pull"), 0);
    d.stop().await;
}
