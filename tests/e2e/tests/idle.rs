//! What an idle scheduled tick costs and leaves behind (issue 16), end to end: tokens and secrets
//! kept per process, and the writes an idle run makes. R-SYN-1…3, R-SYN-5, R-SYN-6, R-CON-4.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use e2e_tests::{Api, StackOptions, connect, connection_body, start, sync};
use secrecy::SecretString;
use serde_json::json;

#[tokio::test]
async fn r_syn_6_incremental_runs_after_a_full_sync_ask_kiotviet_for_no_new_token() {
    // GIVEN a café connected and fully synced
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let kv = stack.kiotviet.as_ref().expect("KiotViet sandbox");
    connect(&stack, "idle-token").await;
    let full = sync(&stack, "idle-token", json!({"full": true})).await;
    assert_eq!(full["state"], "succeeded", "{full}");
    kv.reset_stats();
    // WHEN two incremental runs follow
    for _ in 0..2 {
        let run = sync(&stack, "idle-token", json!({})).await;
        assert_eq!(run["state"], "succeeded", "{run}");
    }
    // THEN neither asked KiotViet for a token: the one of the full sync is still valid
    assert_eq!(kv.stats().tokens_issued, 0);
}

#[tokio::test]
async fn r_con_4_a_changed_client_secret_is_used_at_once() {
    // GIVEN a café connected and fully synced (its secret and token now cached in the process)
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let shop = "idle-secret";
    connect(&stack, shop).await;
    let full = sync(&stack, shop, json!({"full": true})).await;
    assert_eq!(full["state"], "succeeded", "{full}");
    // WHEN the stored connection's secret changes (to one KiotViet refuses)
    let svc = &stack.service;
    let mut conn = svc
        .store
        .get_connection(shop)
        .await
        .expect("store")
        .expect("connection");
    conn.sealed_secret = svc
        .sealer
        .seal(shop, &SecretString::from("not-the-secret".to_string()))
        .await
        .expect("sealed");
    svc.store.put_connection(&conn).await.expect("saved");
    let run = sync(&stack, shop, json!({})).await;
    // THEN the next run used it at once (not the cached secret or its token) and says so
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run["errors"]
            .to_string()
            .contains("refused the Client ID and secret"),
        "{run}"
    );
    // AND once the right secret is saved again, the next run succeeds
    let saved = Api::admin(&stack)
        .put(
            &format!("/v1/shops/{shop}/connection"),
            connection_body(&stack),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let run = sync(&stack, shop, json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
}

/// A café whose last change at the till was three hours ago: an incremental run finds nothing.
fn quiet_cafe() -> StackOptions {
    StackOptions {
        kiotviet: Some(sandbox::kiotviet::KvConfig {
            now: Some(chrono::Utc::now() - chrono::Duration::hours(3)),
            ..sandbox::kiotviet::KvConfig::default()
        }),
        meter_aws: true,
        ..StackOptions::default()
    }
}

const ENTITIES: [&str; 4] = ["categories", "products", "customers", "invoices"];

#[tokio::test]
async fn r_syn_2_a_run_that_finds_nothing_new_leaves_every_cursor_where_it_was() {
    // GIVEN a quiet café, fully synced
    let Some(stack) = start(quiet_cafe()).await else {
        return;
    };
    let shop = "idle-cursor";
    connect(&stack, shop).await;
    let full = sync(&stack, shop, json!({"full": true})).await;
    assert_eq!(full["state"], "succeeded", "{full}");
    let store = &stack.service.store;
    let mut before = Vec::new();
    for e in ENTITIES {
        before.push(
            store
                .get_cursor(shop, e)
                .await
                .expect("store")
                .expect("cursor"),
        );
    }
    // WHEN an incremental run finds nothing new
    let idle = sync(&stack, shop, json!({})).await;
    assert_eq!(idle["state"], "succeeded", "{idle}");
    // THEN no cursor moved (staying is neither past unwritten data nor backwards) and no
    // checkpoint is left behind
    for (e, was) in ENTITIES.iter().zip(&before) {
        assert_eq!(idle["entities"][e]["read"], 0, "{idle}");
        let now = store
            .get_cursor(shop, e)
            .await
            .expect("store")
            .expect("cursor");
        assert_eq!(now, *was, "{e}");
        assert!(
            store
                .get_checkpoint(shop, e)
                .await
                .expect("store")
                .is_none()
        );
    }
    // WHEN a product then changes at the till
    let kv = stack.kiotviet.as_ref().expect("KiotViet sandbox");
    kv.set_now(chrono::Utc::now());
    let id = stack
        .abaha
        .as_ref()
        .expect("Abaha sandbox")
        .stored(shop, sandbox::abaha::Kind::Products)
        .first()
        .map(|p| p.kiotviet_id.parse::<i64>().expect("numeric id"))
        .expect("a product");
    kv.rename_product(id, "Cà phê đổi tên").expect("renamed");
    let run = sync(&stack, shop, json!({})).await;
    // THEN the run that read it moves the products cursor to its start; the others stay
    assert_eq!(run["entities"]["products"]["updated"], 1, "{run}");
    let started: chrono::DateTime<chrono::Utc> = run["started_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("started_at");
    let products = store
        .get_cursor(shop, "products")
        .await
        .expect("store")
        .expect("cursor");
    assert!(products.modified_from >= started - chrono::Duration::seconds(1));
    assert!(products.modified_from > before[1].modified_from);
}

#[tokio::test]
async fn r_syn_3_an_idle_scheduled_tick_writes_four_items_and_sends_one_job() {
    // GIVEN a quiet café, fully synced, on a stack that counts what it asks of AWS, with a
    // service clock that the test moves like the schedule
    let clock = std::sync::Arc::new(mapping::time::ManualClock::new(chrono::Utc::now()));
    let Some(stack) = start(StackOptions {
        clock: Some(clock.clone()),
        ..quiet_cafe()
    })
    .await
    else {
        return;
    };
    let shop = "idle-writes";
    connect(&stack, shop).await;
    let full = sync(&stack, shop, json!({"full": true})).await;
    assert_eq!(full["state"], "succeeded", "{full}");
    let meter = stack.aws_meter.clone().expect("the AWS meter");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let _ = meter.take();
    // WHEN the schedule ticks 15 minutes later and the run finds nothing new
    clock.advance(chrono::Duration::minutes(15));
    let out = engine::fan_out(&stack.service, None)
        .await
        .expect("fan-out");
    assert_eq!(out.started, 1, "{out:?}");
    let run_id = Api::admin(&stack)
        .get(&format!("/v1/shops/{shop}/sync"))
        .await
        .body["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let run = e2e_tests::wait_run(&stack, shop, &run_id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    for e in ENTITIES {
        assert_eq!(run["entities"][e]["state"], "succeeded", "{run}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let counts = meter.take();
    // THEN it wrote the run lease (one conditional put, left to expire), the run, the GET budget
    // (once for every part) and one report that ends the run: no cursor, checkpoint, part lease
    let writes: Vec<(&str, u64)> = counts
        .writes_by_kind
        .iter()
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    assert_eq!(
        writes,
        [
            ("PutItem LEASE#run", 1),
            ("PutItem RUN", 1),
            ("UpdateItem BUDGET", 1),
            ("UpdateItem RUN", 1)
        ],
        "{counts:?}"
    );
    // AND it asked KMS nothing, and sent one job for the whole run
    assert_eq!(counts.kms_total(), 0, "{:?}", counts.kms_calls);
    assert_eq!(counts.sqs_messages_sent, 1, "{:?}", counts.sqs_calls);
}

#[tokio::test]
async fn r_syn_3_a_late_job_of_a_run_whose_lease_another_run_took_leaves_its_parts_to_that_run() {
    // GIVEN a stack whose jobs we deliver by hand and whose run leases last one second
    let Some(stack) = start(StackOptions {
        settings: Some(engine::Settings {
            lease_ttl: std::time::Duration::from_secs(1),
            ..engine::Settings::default()
        }),
        no_workers: true,
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let shop = "idle-late";
    connect(&stack, shop).await;
    let api = Api::admin(&stack);
    let path = format!("/v1/shops/{shop}/sync");
    // AND a run whose jobs wait on the queue until its lease ran out, and a second run since
    let first = api.post(&path, json!({"entities": ["customers"]})).await;
    let first = first.body["run_id"].as_str().expect("run id").to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let second = api.post(&path, json!({"entities": ["customers"]})).await;
    assert_eq!(second.body["already_running"], false, "{}", second.body);
    let second = second.body["run_id"].as_str().expect("run id").to_string();
    // WHEN the first run's job arrives (while the second run holds the shop)
    let svc = &stack.service;
    let queue = &svc.settings.queues.customers;
    let jobs = svc.queue.receive(queue, 10, 1, 60).await.expect("receive");
    let late = jobs
        .iter()
        .find(|j| j.body["run_id"] == json!(first))
        .expect("the first run's job");
    engine::handle_job(svc, &late.body, engine::jobs::local_deadline(svc))
        .await
        .expect("the late job ends");
    // THEN it pulled nothing, and its run has ended: the second run's start already reported it
    // abandoned (its lease lapsed unfinished, issue 15's sweep), or the late job skipped its part
    // naming the run that holds the shop
    let report = api.get(&format!("{path}/{first}")).await.body;
    let customers = &report["entities"]["customers"];
    let message = customers["message"].as_str().unwrap_or_default();
    match customers["state"].as_str() {
        Some("skipped") => assert!(message.contains(&second), "{report}"),
        Some("failed") => assert!(message.contains("stopped without finishing"), "{report}"),
        other => panic!("the late run's part is {other:?}: {report}"),
    }
    assert_eq!(customers["read"], 0, "{report}");
    assert!(
        matches!(report["state"].as_str(), Some("succeeded" | "failed")),
        "{report}"
    );
    // AND the second run is untouched by it
    let second_report = api.get(&format!("{path}/{second}")).await.body;
    assert_ne!(
        second_report["entities"]["customers"]["state"], "skipped",
        "{second_report}"
    );
}

#[tokio::test]
async fn r_syn_3_a_run_that_ended_frees_the_shop_although_its_lease_is_left_to_expire() {
    // GIVEN a café whose run just ended (its end writes no lease free)
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let shop = "idle-free";
    connect(&stack, shop).await;
    let first = sync(&stack, shop, json!({"entities": ["customers"]})).await;
    assert_eq!(first["state"], "succeeded", "{first}");
    // WHEN Sync is pressed at once, twice at the same time
    let api = Api::admin(&stack);
    let path = format!("/v1/shops/{shop}/sync");
    let (a, b) = tokio::join!(
        api.post(&path, json!({"entities": ["customers"]})),
        api.post(&path, json!({"entities": ["customers"]}))
    );
    // THEN one new run starts (not the ended one), and the other trigger is told it runs
    assert_eq!((a.status, b.status), (202, 202), "{} {}", a.body, b.body);
    assert_eq!(a.body["run_id"], b.body["run_id"], "{} {}", a.body, b.body);
    assert_ne!(a.body["run_id"], first["run_id"]);
    let started = [&a, &b]
        .iter()
        .filter(|x| x.body["already_running"] == json!(false))
        .count();
    assert_eq!(started, 1, "{} {}", a.body, b.body);
    // AND the schedule, while it runs, starts nothing
    let out = engine::fan_out(&stack.service, None)
        .await
        .expect("fan-out");
    assert!(out.started <= 1, "{out:?}");
}

#[tokio::test]
async fn r_syn_7_a_scheduled_runs_one_job_hands_over_on_its_own_queue_only() {
    // GIVEN a café never synced, whose pulls hand over after every page, and jobs we deliver
    let Some(stack) = start(StackOptions {
        settings: Some(engine::Settings {
            handover_margin: std::time::Duration::from_secs(3600),
            ..engine::Settings::default()
        }),
        no_workers: true,
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let shop = "idle-one-job";
    connect(&stack, shop).await;
    // WHEN the schedule starts its first run
    let out = engine::fan_out(&stack.service, None)
        .await
        .expect("fan-out");
    assert_eq!(out.started, 1, "{out:?}");
    let run_id = Api::admin(&stack)
        .get(&format!("/v1/shops/{shop}/sync"))
        .await
        .body["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    // THEN every job of it, continuations included, travels on the catalog queue (the catalog
    // function may send only there), and the run ends with every part synced
    let svc = &stack.service;
    let queues = &svc.settings.queues;
    let mut jobs = 0;
    let started = std::time::Instant::now();
    loop {
        for q in [&queues.customers, &queues.invoices] {
            let stray = svc.queue.receive(q, 10, 0, 60).await.expect("receive");
            assert!(stray.is_empty(), "a job on {q}: {stray:?}");
        }
        let got = svc
            .queue
            .receive(&queues.catalog, 1, 1, 60)
            .await
            .expect("receive");
        let Some(job) = got.into_iter().next() else {
            break;
        };
        jobs += 1;
        engine::handle_job(svc, &job.body, engine::jobs::local_deadline(svc))
            .await
            .expect("the job ends");
        svc.queue
            .delete(&queues.catalog, &job.receipt)
            .await
            .expect("deleted");
        assert!(started.elapsed() < std::time::Duration::from_secs(120));
    }
    let run = Api::admin(&stack)
        .get(&format!("/v1/shops/{shop}/sync/{run_id}"))
        .await
        .body;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(jobs >= 2, "it handed over: {jobs} jobs");
    for e in ENTITIES {
        assert!(run["entities"][e]["read"].as_u64() > Some(0), "{e}: {run}");
    }
}
