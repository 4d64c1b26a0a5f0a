//! The contract of each port, written once and run against every implementation (the in-memory
//! fake and the AWS adapter on moto), so the fake cannot drift from the adapter.

use std::collections::HashSet;

use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::future::{BoxFuture, join_all};
use mapping::api::{
    Entity, EntityReport, ManualAction, ManualActionKind, PartState, RunError, RunReport, RunState,
    Trigger,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::future::Future;
use store::{
    BudgetAnswer, BudgetStore, Checkpoint, CheckpointStore, Claim, Connection, ConnectionStore,
    CursorStore, IdKind, IdLink, IdMapStore, IdempotencyStore, JobQueue, LeaseAnswer, LeaseStore,
    QueueUrls, RUN_LIST_CAP, RunStore, SealedSecret, SecretSealer, Store, StoreError, Switches,
};

/// How a suite issues the calls that real callers make at the same time.
///
/// moto handles concurrent requests on threads without making a conditional write atomic (it
/// reads, checks, then writes, and a thread switch can fall in between; seen here as lost
/// `list_append`s on most runs and, a few runs in forty, two winners of one conditional put), so
/// concurrency against moto would test moto. Against moto these calls go in sequence: the conditions are still all exercised, while
/// atomicity itself is DynamoDB's guarantee. The in-memory fakes get them concurrently.
#[derive(Debug, Clone, Copy)]
pub enum Calls {
    Concurrent,
    InSequence,
}

impl Calls {
    async fn run<F: Future>(self, calls: impl IntoIterator<Item = F>) -> Vec<F::Output> {
        match self {
            Calls::Concurrent => join_all(calls).await,
            Calls::InSequence => {
                let mut answers = Vec::new();
                for call in calls {
                    answers.push(call.await);
                }
                answers
            }
        }
    }
}

/// A time with whole microseconds, so every backend stores it exactly.
fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .expect("truncate now")
}

fn connection(shop: &str, sealed: SealedSecret) -> Connection {
    let at = now();
    Connection {
        shop_id: shop.to_owned(),
        account_type: "fnb".into(),
        retailer: format!("retailer{shop}"),
        client_id: format!("client-{shop}"),
        sealed_secret: sealed,
        branch_id: 233443,
        sync: Switches {
            products: true,
            customers: false,
            orders: true,
        },
        keep_app_product_status: true,
        invoice_history_days: 30,
        shop_token_hash: Some(store::hash_token("token")),
        webhook_secret: None,
        webhook_ids: vec![11, 12],
        created_at: at,
        updated_at: at,
    }
}

/// Every connection, page after page as the fan-out reads them, and the number of pages.
async fn walk_connections(store: &dyn ConnectionStore) -> (Vec<Connection>, usize) {
    let (mut all, mut pages) = (Vec::new(), 0);
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_connections_page(after.as_deref())
            .await
            .expect("page");
        pages += 1;
        all.extend(page.connections);
        match page.next {
            Some(next) => after = Some(next),
            None => return (all, pages),
        }
    }
}

pub async fn r_con_1_connections_round_trip_and_list_every_shop(store: &dyn ConnectionStore) {
    // GIVEN no connection
    assert_eq!(store.get_connection("shop-1").await.expect("get"), None);
    assert!(walk_connections(store).await.0.is_empty());

    // WHEN seven shops connect
    for i in 0..7 {
        let conn = connection(
            &format!("shop-{i}"),
            SealedSecret::from_base64(format!("c2VhbGVk{i}")),
        );
        store.put_connection(&conn).await.expect("put");
    }

    // THEN each reads back as written, and listing (paged) finds all of them
    let got = store
        .get_connection("shop-3")
        .await
        .expect("get")
        .expect("present");
    let mut expected = connection("shop-3", SealedSecret::from_base64("c2VhbGVk3"));
    expected.created_at = got.created_at;
    expected.updated_at = got.updated_at;
    assert_eq!(got, expected);
    let mut listed: Vec<String> = walk_connections(store)
        .await
        .0
        .into_iter()
        .map(|c| c.shop_id)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        (0..7).map(|i| format!("shop-{i}")).collect::<Vec<_>>()
    );
    // AND the pages (the fan-out's walk) hold each shop once, in shop-id order
    let (walked, pages) = walk_connections(store).await;
    let walked: Vec<String> = walked.into_iter().map(|c| c.shop_id).collect();
    assert_eq!(walked, listed);
    assert!(pages >= 3, "pages of 3 hold 7 shops in 3 or more: {pages}");
    // AND a page starts strictly after the shop it is given
    let page = store
        .list_connections_page(Some("shop-3"))
        .await
        .expect("page");
    assert_eq!(
        page.connections.first().map(|c| c.shop_id.as_str()),
        Some("shop-4")
    );

    // WHEN one is updated and one disconnects
    let mut changed = got.clone();
    changed.branch_id = 1;
    changed.webhook_secret = Some(SealedSecret::from_base64("d2g="));
    store.put_connection(&changed).await.expect("update");
    assert!(store.delete_connection("shop-5").await.expect("delete"));

    // THEN the update replaces it, the deleted one is gone, and deleting twice says so
    assert_eq!(
        store.get_connection("shop-3").await.expect("get"),
        Some(changed)
    );
    assert_eq!(store.get_connection("shop-5").await.expect("get"), None);
    assert!(
        !store
            .delete_connection("shop-5")
            .await
            .expect("delete again")
    );
    assert_eq!(walk_connections(store).await.0.len(), 6);
}

pub async fn shop_tokens_name_their_shop_in_one_read_until_rotated_or_disconnected(
    store: &dyn ConnectionStore,
) {
    // GIVEN two shops with shop tokens
    let mut a = connection("tok-a", SealedSecret::from_base64("c2VhbGVk"));
    a.shop_token_hash = Some("a".repeat(64));
    let mut b = connection("tok-b", SealedSecret::from_base64("c2VhbGVk"));
    b.shop_token_hash = Some("b".repeat(64));
    store.put_connection(&a).await.expect("put a");
    store.put_connection(&b).await.expect("put b");

    // THEN each token names its shop, and an unknown one none
    let of = |hash: String| async move { store.shop_of_token(&hash).await.expect("lookup") };
    assert_eq!(of("a".repeat(64)).await, Some("tok-a".to_string()));
    assert_eq!(of("b".repeat(64)).await, Some("tok-b".to_string()));
    assert_eq!(of("c".repeat(64)).await, None);

    // WHEN a's token is rotated and b disconnects
    a.shop_token_hash = Some("d".repeat(64));
    store.put_connection(&a).await.expect("rotate a");
    store.delete_connection("tok-b").await.expect("delete b");

    // THEN only the current token names a shop
    assert_eq!(of("a".repeat(64)).await, None);
    assert_eq!(of("d".repeat(64)).await, Some("tok-a".to_string()));
    assert_eq!(of("b".repeat(64)).await, None);
    // AND the index is no connection: listing finds only the shop
    assert_eq!(walk_connections(store).await.0.len(), 1);
}

pub async fn r_con_4_sealed_secret_opens_only_for_its_shop(sealer: &dyn SecretSealer) {
    // GIVEN a client secret sealed for shop A
    let secret = SecretString::from("s3cr3t-Mã-bảo-mật".to_owned());
    let sealed = sealer.seal("shop-a", &secret).await.expect("seal");

    // THEN the sealed form shows neither the plaintext nor (in Debug) itself
    assert!(!sealed.as_base64().contains("s3cr3t"));
    assert!(!format!("{sealed:?}").contains(sealed.as_base64()));

    // AND it opens for shop A
    let opened = sealer.open("shop-a", &sealed).await.expect("open");
    assert_eq!(opened.expose_secret(), "s3cr3t-Mã-bảo-mật");

    // BUT not for shop B, with a final (not retryable) error that names no secret
    let err = sealer
        .open("shop-b", &sealed)
        .await
        .expect_err("other shop");
    assert!(matches!(err, StoreError::SecretRejected { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("s3cr3t"));

    // AND damaged ciphertext is refused the same way
    let damaged = SealedSecret::from_base64("bm90IGEgY2lwaGVydGV4dA==");
    let err = sealer.open("shop-a", &damaged).await.expect_err("damaged");
    assert!(matches!(err, StoreError::SecretRejected { .. }), "{err:?}");
}

pub async fn r_syn_2_cursor_never_moves_backwards(store: &dyn CursorStore) {
    let t1 = now();
    let t0 = t1 - Duration::minutes(5);
    let t2 = t1 + Duration::milliseconds(1);

    // GIVEN no cursor
    assert_eq!(
        store.get_cursor("shop", "products").await.expect("get"),
        None
    );

    // WHEN it advances to t1 THEN it is t1
    assert!(
        store
            .advance_cursor("shop", "products", t1)
            .await
            .expect("advance")
    );
    assert_eq!(
        store
            .get_cursor("shop", "products")
            .await
            .expect("get")
            .map(|c| c.modified_from),
        Some(t1)
    );

    // WHEN a late writer tries to move it back to t0 THEN it stays at t1 (an answer, not an error)
    assert!(
        !store
            .advance_cursor("shop", "products", t0)
            .await
            .expect("backwards")
    );
    assert_eq!(
        store
            .get_cursor("shop", "products")
            .await
            .expect("get")
            .map(|c| c.modified_from),
        Some(t1)
    );

    // WHEN it is set to the same time, or later THEN it is written
    assert!(
        store
            .advance_cursor("shop", "products", t1)
            .await
            .expect("same")
    );
    assert!(
        store
            .advance_cursor("shop", "products", t2)
            .await
            .expect("forward")
    );
    assert_eq!(
        store
            .get_cursor("shop", "products")
            .await
            .expect("get")
            .map(|c| c.modified_from),
        Some(t2)
    );

    // AND cursors are per (shop, entity)
    assert_eq!(
        store.get_cursor("shop", "customers").await.expect("get"),
        None
    );
    assert_eq!(
        store.get_cursor("other", "products").await.expect("get"),
        None
    );

    // WHEN it is reset THEN the next run starts from nothing, and any time is accepted again
    store.reset_cursor("shop", "products").await.expect("reset");
    assert_eq!(
        store.get_cursor("shop", "products").await.expect("get"),
        None
    );
    assert!(
        store
            .advance_cursor("shop", "products", t0)
            .await
            .expect("after reset")
    );
}

/// A checkpoint at `position` of `run`, with a tally that exercises every kind of field.
fn checkpoint_at(run: &str, position: i64) -> Checkpoint {
    let mut tally = EntityReport::in_state(PartState::Waiting);
    tally.created = 3;
    tally.skip("no_phone");
    tally.read = 9_007_199_254_740_993;
    tally.waiting_until = Some("2026-11-29T10:00:00Z".parse().expect("time"));
    tally.message = Some("Tạm dừng: hết lượt gọi".into());
    Checkpoint {
        run_id: run.into(),
        started_at: "2026-11-29T09:00:00+07:00".parse().expect("time"),
        from: None,
        position,
        total: Some(position + 50),
        failed_tries: 1,
        first_sync: true,
        tally,
    }
}

pub async fn r_syn_2_checkpoints_are_kept_per_entity_until_cleared(store: &dyn CheckpointStore) {
    let checkpoint = checkpoint_at("run-1", 300);
    assert_eq!(
        store.get_checkpoint("shop", "products").await.expect("get"),
        None
    );

    store
        .put_checkpoint("shop", "products", &checkpoint)
        .await
        .expect("put");
    assert_eq!(
        store.get_checkpoint("shop", "products").await.expect("get"),
        Some(checkpoint.clone())
    );
    assert_eq!(
        store
            .get_checkpoint("shop", "customers")
            .await
            .expect("get"),
        None
    );

    store
        .put_checkpoint("shop", "products", &checkpoint_at("run-1", 400))
        .await
        .expect("overwrite");
    assert_eq!(
        store.get_checkpoint("shop", "products").await.expect("get"),
        Some(checkpoint_at("run-1", 400))
    );

    store
        .clear_checkpoint("shop", "products")
        .await
        .expect("clear");
    assert_eq!(
        store.get_checkpoint("shop", "products").await.expect("get"),
        None
    );
    store
        .clear_checkpoint("shop", "products")
        .await
        .expect("clear twice");
}

pub async fn r_syn_3_lease_is_exclusive_until_it_expires(store: &dyn LeaseStore) {
    let t = now();
    let until = t + Duration::minutes(15);

    // GIVEN run A holds the lease
    assert_eq!(
        store
            .acquire_lease("shop", "catalog", "run-a", until, t)
            .await
            .expect("a"),
        LeaseAnswer::Acquired
    );

    // WHEN run B asks before it expires THEN it is told who holds it until when
    assert_eq!(
        store
            .acquire_lease(
                "shop",
                "catalog",
                "run-b",
                t + Duration::minutes(20),
                t + Duration::minutes(1)
            )
            .await
            .expect("b"),
        LeaseAnswer::HeldBy {
            holder: "run-a".into(),
            until
        }
    );
    // AND another scope or shop is free
    assert_eq!(
        store
            .acquire_lease("shop", "customers", "run-b", until, t)
            .await
            .expect("scope"),
        LeaseAnswer::Acquired
    );
    assert_eq!(
        store
            .acquire_lease("other", "catalog", "run-b", until, t)
            .await
            .expect("shop"),
        LeaseAnswer::Acquired
    );

    // WHEN A asks again (a retried trigger) THEN it keeps it; renewing extends it
    assert_eq!(
        store
            .acquire_lease("shop", "catalog", "run-a", until, t)
            .await
            .expect("again"),
        LeaseAnswer::Acquired
    );
    let later = until + Duration::minutes(10);
    assert!(
        store
            .renew_lease("shop", "catalog", "run-a", later)
            .await
            .expect("renew")
    );
    assert_eq!(
        store
            .acquire_lease(
                "shop",
                "catalog",
                "run-b",
                later,
                until + Duration::minutes(1)
            )
            .await
            .expect("b after renew"),
        LeaseAnswer::HeldBy {
            holder: "run-a".into(),
            until: later
        }
    );

    // WHEN the lease expires THEN B takes it, and A learns it lost it
    let after = later + Duration::seconds(1);
    assert_eq!(
        store
            .acquire_lease(
                "shop",
                "catalog",
                "run-b",
                after + Duration::minutes(15),
                after
            )
            .await
            .expect("b takes"),
        LeaseAnswer::Acquired
    );
    assert!(
        !store
            .renew_lease("shop", "catalog", "run-a", after + Duration::minutes(30))
            .await
            .expect("a renew")
    );
    assert!(
        !store
            .release_lease("shop", "catalog", "run-a")
            .await
            .expect("a release")
    );

    // WHEN B releases THEN A can take it at once
    assert!(
        store
            .release_lease("shop", "catalog", "run-b")
            .await
            .expect("b release")
    );
    assert!(
        !store
            .renew_lease("shop", "catalog", "run-b", after + Duration::minutes(30))
            .await
            .expect("renew released")
    );
    assert_eq!(
        store
            .acquire_lease(
                "shop",
                "catalog",
                "run-a",
                after + Duration::minutes(15),
                after
            )
            .await
            .expect("a"),
        LeaseAnswer::Acquired
    );
}

pub async fn r_syn_3_concurrent_lease_requests_have_one_winner(
    store: &dyn LeaseStore,
    calls: Calls,
) {
    let t = now();
    let answers = calls
        .run((0..10).map(|i| {
            let holder = format!("run-{i}");
            async move {
                store
                    .acquire_lease("shop", "invoices", &holder, t + Duration::minutes(5), t)
                    .await
            }
        }))
        .await;
    let acquired = answers
        .into_iter()
        .map(|a| a.expect("acquire"))
        .filter(|a| *a == LeaseAnswer::Acquired)
        .count();
    assert_eq!(acquired, 1);
}

fn fresh() -> Claim {
    Claim::Claimed { attempt: None }
}

pub async fn r_ord_5_idempotency_claim_progress_and_replay(store: &dyn IdempotencyStore) {
    let t = now();
    let until = t + Duration::seconds(30);

    // GIVEN a first push claims the order
    assert_eq!(
        store
            .claim("shop", "order#A-1", "h1", until, t)
            .await
            .expect("claim"),
        fresh()
    );

    // WHEN the same holder's claim is repeated (a request retried after its answer was lost)
    // THEN it is still that holder's
    assert_eq!(
        store
            .claim("shop", "order#A-1", "h1", until, t)
            .await
            .expect("repeat of the same claim"),
        fresh()
    );

    // WHEN a repeat arrives while it runs THEN it is told to come back after `until`
    assert_eq!(
        store
            .claim(
                "shop",
                "order#A-1",
                "h2",
                t + Duration::seconds(40),
                t + Duration::seconds(1)
            )
            .await
            .expect("repeat"),
        Claim::InProgress { until }
    );
    // AND the same key of another shop is independent
    assert_eq!(
        store
            .claim("other", "order#A-1", "h3", until, t)
            .await
            .expect("other shop"),
        fresh()
    );

    // WHEN the first push completes THEN repeats replay its answer, even after `until`
    let answer = json!({"kiotviet_order_id": 123456, "kiotviet_order_code": "DH000123", "expected_delivery": "2026-11-29T12:00:00+07:00"});
    assert!(
        store
            .complete("shop", "order#A-1", "h1", &answer)
            .await
            .expect("complete")
    );
    assert_eq!(
        store
            .claim("shop", "order#A-1", "h4", until, t)
            .await
            .expect("replay"),
        Claim::Completed(answer.clone())
    );
    assert_eq!(
        store
            .claim(
                "shop",
                "order#A-1",
                "h5",
                t + Duration::hours(2),
                t + Duration::hours(1)
            )
            .await
            .expect("replay later"),
        Claim::Completed(answer.clone())
    );
    // AND releasing or completing a completed record again changes nothing
    assert!(
        !store
            .release("shop", "order#A-1", "h1", true)
            .await
            .expect("release completed")
    );
    assert!(
        !store
            .complete("shop", "order#A-1", "h1", &json!({"other": true}))
            .await
            .expect("complete twice")
    );
    assert_eq!(
        store
            .claim("shop", "order#A-1", "h6", until, t)
            .await
            .expect("replay"),
        Claim::Completed(answer)
    );

    // GIVEN a push that crashed and never completed
    assert_eq!(
        store
            .claim("shop", "order#A-2", "h1", until, t)
            .await
            .expect("claim"),
        fresh()
    );
    // WHEN its in-progress time has passed THEN the next push may claim it
    let after = until + Duration::seconds(1);
    assert_eq!(
        store
            .claim(
                "shop",
                "order#A-2",
                "h2",
                after + Duration::seconds(30),
                after
            )
            .await
            .expect("expired"),
        fresh()
    );

    // GIVEN a push that failed and released its claim THEN a retry claims at once
    assert_eq!(
        store
            .claim("shop", "order#A-3", "h1", until, t)
            .await
            .expect("claim"),
        fresh()
    );
    assert!(
        store
            .release("shop", "order#A-3", "h1", true)
            .await
            .expect("release")
    );
    assert_eq!(
        store
            .claim("shop", "order#A-3", "h2", until, t)
            .await
            .expect("retry"),
        fresh()
    );
    assert!(
        !store
            .release("shop", "order#never-claimed", "h1", true)
            .await
            .expect("release unknown")
    );
}

pub async fn r_ord_5_a_recorded_attempt_survives_expiry_and_release_until_resolved(
    store: &dyn IdempotencyStore,
) {
    let t = now();
    let until = t + Duration::seconds(30);
    let attempt = json!({"reference": "ABH-A-7", "started_at": "2026-11-29T09:00:00Z"});

    // GIVEN a push that recorded its attempt and then crashed
    assert_eq!(
        store
            .claim("shop", "order#A-7", "h1", until, t)
            .await
            .expect("claim"),
        fresh()
    );
    assert!(
        store
            .record_attempt("shop", "order#A-7", "h1", &attempt)
            .await
            .expect("attempt")
    );

    // WHEN its claim expires THEN the next claim is told of the attempt
    let later = until + Duration::seconds(1);
    let later_until = later + Duration::seconds(30);
    assert_eq!(
        store
            .claim("shop", "order#A-7", "h2", later_until, later)
            .await
            .expect("takeover"),
        Claim::Claimed {
            attempt: Some(attempt.clone())
        }
    );
    // AND a release that keeps it (the side effect may have happened) hands it on again
    assert!(
        store
            .release("shop", "order#A-7", "h2", false)
            .await
            .expect("release, keeping the attempt")
    );
    assert_eq!(
        store
            .claim("shop", "order#A-7", "h3", later_until, later)
            .await
            .expect("claim after release"),
        Claim::Claimed {
            attempt: Some(attempt.clone())
        }
    );
    // AND a release that forgets it (certainly not done) leaves a fresh record
    assert!(
        store
            .release("shop", "order#A-7", "h3", true)
            .await
            .expect("release, forgetting")
    );
    assert_eq!(
        store
            .claim("shop", "order#A-7", "h4", later_until, later)
            .await
            .expect("claim after forgetting"),
        fresh()
    );

    // GIVEN an attempt that completes THEN the completed record replays and holds no attempt
    assert!(
        store
            .record_attempt("shop", "order#A-7", "h4", &attempt)
            .await
            .expect("attempt")
    );
    let answer = json!({"kiotviet_order_id": 7});
    assert!(
        store
            .complete("shop", "order#A-7", "h4", &answer)
            .await
            .expect("complete")
    );
    assert_eq!(
        store
            .claim("shop", "order#A-7", "h5", later_until, later)
            .await
            .expect("replay"),
        Claim::Completed(answer)
    );
}

pub async fn r_ord_5_a_holder_that_lost_its_claim_writes_nothing(store: &dyn IdempotencyStore) {
    let t = now();
    let until = t + Duration::seconds(30);
    let late = until + Duration::seconds(1);

    // GIVEN holder A's claim expired and B took the order over
    assert_eq!(
        store
            .claim("shop", "order#A-8", "a", until, t)
            .await
            .expect("claim"),
        fresh()
    );
    assert_eq!(
        store
            .claim("shop", "order#A-8", "b", late + Duration::seconds(30), late)
            .await
            .expect("takeover"),
        fresh()
    );

    // WHEN the late A records an attempt, completes or releases THEN each is refused
    assert!(
        !store
            .record_attempt("shop", "order#A-8", "a", &json!({"reference": "x"}))
            .await
            .expect("late attempt")
    );
    assert!(
        !store
            .complete("shop", "order#A-8", "a", &json!({"kiotviet_order_id": 1}))
            .await
            .expect("late complete")
    );
    assert!(
        !store
            .release("shop", "order#A-8", "a", true)
            .await
            .expect("late release")
    );
    // AND B still holds it: a third caller is told to wait, and B completes with its answer
    assert!(matches!(
        store
            .claim("shop", "order#A-8", "c", late + Duration::seconds(30), late)
            .await
            .expect("third"),
        Claim::InProgress { .. }
    ));
    let answer = json!({"kiotviet_order_id": 2});
    assert!(
        store
            .complete("shop", "order#A-8", "b", &answer)
            .await
            .expect("complete")
    );
    assert_eq!(
        store
            .claim("shop", "order#A-8", "d", late + Duration::seconds(30), late)
            .await
            .expect("replay"),
        Claim::Completed(answer)
    );
}

pub async fn r_ord_5_twenty_concurrent_claims_have_exactly_one_winner(
    store: &dyn IdempotencyStore,
    calls: Calls,
) {
    let t = now();
    let until = t + Duration::seconds(30);
    let holders: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
    let answers = calls
        .run(
            holders
                .iter()
                .map(|h| store.claim("shop", "order#A-9", h, until, t)),
        )
        .await;
    let answers: Vec<Claim> = answers.into_iter().map(|a| a.expect("claim")).collect();
    let claimed = answers.iter().filter(|a| **a == fresh()).count();
    let in_progress = answers
        .iter()
        .filter(|a| **a == Claim::InProgress { until })
        .count();
    assert_eq!((claimed, in_progress), (1, 19), "{answers:?}");
}

pub async fn r_syn_4_id_links_both_ways_in_batches(store: &dyn IdMapStore) {
    // GIVEN 250 products linked (more than one BatchGetItem of 100 and ten BatchWriteItems of 25)
    let links: Vec<(i64, IdLink)> = (1..=250)
        .map(|i| {
            (
                1_000_000 + i,
                IdLink {
                    abaha_id: format!("P-{i}"),
                    hash: (i % 2 == 0).then(|| format!("h{i}")),
                },
            )
        })
        .collect();
    store
        .put_links("shop", IdKind::Product, &links)
        .await
        .expect("put");

    // WHEN all of them, ten unknown ids and some duplicates are asked for
    let mut ids: Vec<i64> = links.iter().map(|(id, _)| *id).collect();
    ids.extend(1..=10);
    ids.extend([1_000_001, 1_000_250]);
    let found = store
        .get_links("shop", IdKind::Product, &ids)
        .await
        .expect("get links");

    // THEN every linked id answers with its Abaha id and hash, unknown ones are absent
    assert_eq!(found.len(), 250);
    for (id, link) in &links {
        assert_eq!(found.get(id), Some(link));
    }
    assert_eq!(
        store
            .get_link("shop", IdKind::Product, 1_000_002)
            .await
            .expect("get"),
        Some(IdLink {
            abaha_id: "P-2".into(),
            hash: Some("h2".into())
        })
    );
    assert_eq!(
        store
            .get_link("shop", IdKind::Product, 7)
            .await
            .expect("get"),
        None
    );
    assert!(
        store
            .get_links("shop", IdKind::Product, &[])
            .await
            .expect("none")
            .is_empty()
    );

    // AND the reverse direction answers too; kinds and shops are separate
    assert_eq!(
        store
            .kiotviet_for_abaha("shop", IdKind::Product, "P-17")
            .await
            .expect("rev"),
        Some(1_000_017)
    );
    assert_eq!(
        store
            .kiotviet_for_abaha("shop", IdKind::Category, "P-17")
            .await
            .expect("rev"),
        None
    );
    assert_eq!(
        store
            .get_link("other", IdKind::Product, 1_000_017)
            .await
            .expect("get"),
        None
    );

    // WHEN a link changes (new hash, then another Abaha id) THEN both directions follow
    let updated = IdLink {
        abaha_id: "P-17".into(),
        hash: Some("new".into()),
    };
    store
        .put_links("shop", IdKind::Product, &[(1_000_017, updated.clone())])
        .await
        .expect("rehash");
    assert_eq!(
        store
            .get_link("shop", IdKind::Product, 1_000_017)
            .await
            .expect("get"),
        Some(updated)
    );
    let moved = IdLink {
        abaha_id: "P-17b".into(),
        hash: None,
    };
    store
        .put_links("shop", IdKind::Product, &[(1_000_017, moved.clone())])
        .await
        .expect("relink");
    assert_eq!(
        store
            .get_link("shop", IdKind::Product, 1_000_017)
            .await
            .expect("get"),
        Some(moved)
    );
    assert_eq!(
        store
            .kiotviet_for_abaha("shop", IdKind::Product, "P-17b")
            .await
            .expect("rev"),
        Some(1_000_017)
    );
    assert_eq!(
        store
            .kiotviet_for_abaha("shop", IdKind::Product, "P-17")
            .await
            .expect("stale rev"),
        None
    );

    // WHEN one batch names an id twice THEN the last link wins
    let twice = [
        (
            42,
            IdLink {
                abaha_id: "C-1".into(),
                hash: None,
            },
        ),
        (
            42,
            IdLink {
                abaha_id: "C-2".into(),
                hash: Some("x".into()),
            },
        ),
    ];
    store
        .put_links("shop", IdKind::Customer, &twice)
        .await
        .expect("dup");
    assert_eq!(
        store
            .get_link("shop", IdKind::Customer, 42)
            .await
            .expect("get"),
        Some(twice[1].1.clone())
    );
    assert_eq!(
        store
            .kiotviet_for_abaha("shop", IdKind::Customer, "C-2")
            .await
            .expect("rev"),
        Some(42)
    );
    assert_eq!(
        store
            .kiotviet_for_abaha("shop", IdKind::Customer, "C-1")
            .await
            .expect("rev"),
        None
    );
    store
        .put_links("shop", IdKind::Customer, &[])
        .await
        .expect("empty");
}

fn part(state: PartState) -> EntityReport {
    EntityReport::in_state(state)
}

fn run_of(run_id: &str, parts: &[(Entity, PartState)]) -> RunReport {
    RunReport {
        run_id: run_id.into(),
        entities: parts.iter().map(|(e, s)| (*e, part(*s))).collect(),
        ..RunReport::default()
    }
}

pub async fn r_syn_5_run_report_is_assembled_from_concurrent_updates(
    store: &dyn RunStore,
    calls: Calls,
) {
    let started: DateTime<Utc> = "2026-11-29T09:00:00+07:00".parse().expect("time");
    // GIVEN a queued run
    let initial = RunReport::queued("run-1", Trigger::Api, true, started, [Entity::Categories]);
    assert!(
        store
            .create_run("shop", "run-1", &initial)
            .await
            .expect("create")
    );
    assert!(
        !store
            .create_run("shop", "run-1", &run_of("run-1", &[]))
            .await
            .expect("create twice")
    );

    // WHEN the catalog and customer pulls report at the same time
    let mut products = part(PartState::Succeeded);
    products.created = 3;
    products.updated = 1;
    products.skipped.insert("no_phone".into(), 2);
    products.api_calls = 7;
    products.removed_in_kiotviet = 1;
    let mut customers = part(PartState::Waiting);
    customers.created = 10;
    customers.waiting_until = Some(started + Duration::minutes(20));
    customers.message = Some("waiting for the hourly budget".into());
    let action = |i: i64| {
        ManualAction::new(
            ManualActionKind::DeleteProductInAbaha,
            Some(i),
            Some(format!("P-{i}")),
            "delete by hand",
        )
    };
    let error = |i: i64| RunError::new("products", Some(i), "cannot map");
    let actions: Vec<Vec<ManualAction>> = (0..5)
        .map(|i| vec![action(2 * i), action(2 * i + 1)])
        .collect();
    let errors: Vec<Vec<RunError>> = (0..5).map(|i| vec![error(i)]).collect();
    let mut updates: Vec<BoxFuture<'_, Result<(), StoreError>>> = vec![
        store.put_entity_report("shop", "run-1", Entity::Products, &products),
        store.put_entity_report("shop", "run-1", Entity::Customers, &customers),
        store.set_run_state("shop", "run-1", RunState::Running, None),
    ];
    for a in &actions {
        updates.push(store.append_manual_actions("shop", "run-1", a));
    }
    for e in &errors {
        updates.push(store.append_errors("shop", "run-1", e));
    }
    for result in calls.run(updates).await {
        result.expect("update");
    }

    // THEN the report holds every section, none lost to another's write
    let report = store
        .get_run("shop", "run-1")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(report.run_id, "run-1");
    assert_eq!(report.state, RunState::Running);
    assert_eq!(report.started_at, Some(started));
    assert_eq!((report.trigger, report.full), (Some(Trigger::Api), true));
    assert_eq!(report.entities[&Entity::Products], products);
    assert_eq!(report.entities[&Entity::Customers], customers);
    assert_eq!(
        report.entities[&Entity::Categories],
        part(PartState::Queued)
    );
    let action_ids: HashSet<i64> = report
        .manual_actions
        .iter()
        .filter_map(|a| a.kiotviet_id)
        .collect();
    assert_eq!(action_ids, (0..10).collect());
    let error_ids: HashSet<i64> = report.errors.iter().filter_map(|e| e.kiotviet_id).collect();
    assert_eq!(error_ids, (0..5).collect());
    assert_eq!(report.errors_dropped, 0);

    // WHEN the run finishes THEN state and finish time are set, and it is the shop's latest run
    let finished = now();
    store
        .set_run_state("shop", "run-1", RunState::Partial, Some(finished))
        .await
        .expect("finish");
    let report = store
        .latest_run("shop")
        .await
        .expect("latest")
        .expect("present");
    assert_eq!(report.state, RunState::Partial);
    assert_eq!(report.finished_at, Some(finished));

    // WHEN a newer run is created THEN it becomes the latest; the older one stays readable
    assert!(
        store
            .create_run("shop", "run-2", &run_of("run-2", &[]))
            .await
            .expect("create 2")
    );
    let latest = store
        .latest_run("shop")
        .await
        .expect("latest")
        .expect("present");
    assert_eq!(
        (latest.run_id.as_str(), latest.state),
        ("run-2", RunState::Queued)
    );
    assert!(latest.entities.is_empty());
    assert!(latest.manual_actions.is_empty());
    assert!(store.get_run("shop", "run-1").await.expect("get").is_some());

    // AND unknown runs are absent, and updating one is an error, not a silent new item
    assert_eq!(store.get_run("shop", "nope").await.expect("get"), None);
    assert_eq!(store.latest_run("other").await.expect("latest"), None);
    let err = store
        .put_entity_report("shop", "nope", Entity::Products, &products)
        .await
        .expect_err("unknown run");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store
        .set_run_state("shop", "nope", RunState::Failed, None)
        .await
        .expect_err("unknown run");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store
        .append_errors("shop", "nope", &[error(1)])
        .await
        .expect_err("unknown run");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn r_syn_5_run_lists_are_capped(store: &dyn RunStore, calls: Calls) {
    let error = |i: usize| RunError::new("customers", Some(i as i64), "no phone");
    assert!(
        store
            .create_run("shop", "run-big", &run_of("run-big", &[]))
            .await
            .expect("create")
    );

    // WHEN more errors arrive than the cap, in one call and in many concurrent ones
    let first: Vec<RunError> = (0..150).map(error).collect();
    store
        .append_errors("shop", "run-big", &first)
        .await
        .expect("append");
    let batches: Vec<Vec<RunError>> = (0..10)
        .map(|b| (0..10).map(|i| error(1000 + b * 10 + i)).collect())
        .collect();
    for result in calls
        .run(
            batches
                .iter()
                .map(|b| store.append_errors("shop", "run-big", b)),
        )
        .await
    {
        result.expect("append");
    }

    // THEN exactly the cap is kept and the rest is counted
    let report = store
        .get_run("shop", "run-big")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(report.errors.len(), RUN_LIST_CAP);
    assert_eq!(report.errors_dropped, (250 - RUN_LIST_CAP) as u64);
    assert_eq!(report.errors[0], error(0));
    assert_eq!(report.manual_actions_dropped, 0);
    // AND the counts are shown only when something was dropped
    let shown = serde_json::to_value(&report).expect("json");
    assert!(shown.get("manual_actions_dropped").is_none(), "{shown}");
    assert_eq!(shown["errors_dropped"], json!(250 - RUN_LIST_CAP));

    // AND a full list takes nothing more
    store
        .append_errors("shop", "run-big", &[error(9999)])
        .await
        .expect("append to full");
    let report = store
        .get_run("shop", "run-big")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(report.errors_dropped, (251 - RUN_LIST_CAP) as u64);
}

pub async fn r_syn_6_budget_is_shared_and_runs_out(store: &dyn BudgetStore, calls: Calls) {
    let window = now().duration_trunc(Duration::hours(1)).expect("hour");

    // GIVEN a limit of 10 GET calls per hour
    assert_eq!(
        store.take("retailer", window, 3, 10).await.expect("take"),
        BudgetAnswer::Granted { used: 3 }
    );
    assert_eq!(
        store.take("retailer", window, 7, 10).await.expect("take"),
        BudgetAnswer::Granted { used: 10 }
    );

    // WHEN the window is used up THEN nothing more is granted, and nothing is taken
    assert_eq!(
        store.take("retailer", window, 1, 10).await.expect("take"),
        BudgetAnswer::Exhausted { used: 10 }
    );
    assert_eq!(
        store.take("retailer", window, 1, 10).await.expect("take"),
        BudgetAnswer::Exhausted { used: 10 }
    );
    // AND a request larger than the whole limit is refused outright
    assert!(matches!(
        store.take("fresh", window, 11, 10).await.expect("take"),
        BudgetAnswer::Exhausted { .. }
    ));

    // THEN the next window, and another retailer, start afresh
    let next = window + Duration::hours(1);
    assert_eq!(
        store.take("retailer", next, 1, 10).await.expect("take"),
        BudgetAnswer::Granted { used: 1 }
    );
    assert_eq!(
        store.take("other", window, 10, 10).await.expect("take"),
        BudgetAnswer::Granted { used: 10 }
    );

    // WHEN 20 functions take one call each at once from a limit of 10 THEN exactly 10 get one
    let answers = calls
        .run((0..20).map(|_| store.take("busy", window, 1, 10)))
        .await;
    let granted = answers
        .into_iter()
        .map(|a| a.expect("take"))
        .filter(|a| matches!(a, BudgetAnswer::Granted { .. }))
        .count();
    assert_eq!(granted, 10);
}

pub async fn r_syn_7_jobs_are_sent_received_and_deleted(queue: &dyn JobQueue, urls: &QueueUrls) {
    // GIVEN a job on the queue
    let job =
        json!({"shop_id": "shop", "run_id": "run-1", "entities": ["products"], "full": false});
    let id = queue.send(&urls.url, &job, None).await.expect("send");
    assert!(!id.is_empty());

    // WHEN it is received THEN it carries its body, id and first receive count, and is hidden
    let received = queue.receive(&urls.url, 10, 1, 30).await.expect("receive");
    assert_eq!(received.len(), 1);
    assert_eq!(
        (
            received[0].id.as_str(),
            &received[0].body,
            received[0].receive_count
        ),
        (id.as_str(), &job, 1)
    );
    assert!(
        queue
            .receive(&urls.url, 10, 0, 30)
            .await
            .expect("receive hidden")
            .is_empty()
    );

    // WHEN its visibility is given back THEN it comes again, counted twice
    queue
        .change_visibility(&urls.url, &received[0].receipt, 0)
        .await
        .expect("visibility");
    let again = queue
        .receive(&urls.url, 10, 1, 30)
        .await
        .expect("receive again");
    assert_eq!((again.len(), again[0].receive_count), (1, 2));

    // WHEN it is deleted THEN it never comes back
    queue
        .delete(&urls.url, &again[0].receipt)
        .await
        .expect("delete");
    assert!(
        queue
            .receive(&urls.url, 10, 0, 0)
            .await
            .expect("receive after delete")
            .is_empty()
    );

    // WHEN a job is delayed THEN it arrives only after its delay
    queue
        .send(&urls.url, &json!({"delayed": true}), Some(1))
        .await
        .expect("send delayed");
    assert!(
        queue
            .receive(&urls.url, 10, 0, 30)
            .await
            .expect("too early")
            .is_empty()
    );
    let delayed = queue
        .receive(&urls.url, 10, 3, 30)
        .await
        .expect("after delay");
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].body, json!({"delayed": true}));
    queue
        .delete(&urls.url, &delayed[0].receipt)
        .await
        .expect("delete");
}

/// `urls` must have been made with a `max_receive` of 2.
pub async fn r_syn_7_a_job_failing_too_often_moves_to_the_dead_letter_queue(
    queue: &dyn JobQueue,
    urls: &QueueUrls,
) {
    // GIVEN a job whose handler fails every time (never deletes it)
    let job = json!({"shop_id": "bad-shop"});
    queue.send(&urls.url, &job, None).await.expect("send");
    for attempt in 1..=2 {
        let received = queue.receive(&urls.url, 1, 1, 0).await.expect("receive");
        assert_eq!(received.len(), 1, "attempt {attempt}");
        assert_eq!(received[0].receive_count, attempt);
    }

    // WHEN it would be received a third time THEN it goes to the dead-letter queue instead
    assert!(
        queue
            .receive(&urls.url, 1, 0, 0)
            .await
            .expect("receive")
            .is_empty()
    );
    let dead = queue
        .receive(&urls.dlq_url, 1, 2, 30)
        .await
        .expect("receive dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, job);
    queue
        .delete(&urls.dlq_url, &dead[0].receipt)
        .await
        .expect("delete");
}

pub async fn r_syn_5_several_parts_report_at_once_and_see_the_run_after(store: &dyn RunStore) {
    // GIVEN a run of three parts, one of which has ended
    let initial = run_of(
        "run-3",
        &[
            (Entity::Categories, PartState::Queued),
            (Entity::Products, PartState::Queued),
            (Entity::Customers, PartState::Succeeded),
        ],
    );
    assert!(
        store
            .create_run("shop", "run-3", &initial)
            .await
            .expect("create")
    );
    // WHEN the catalog job reports both its parts in one call
    let mut categories = part(PartState::Succeeded);
    categories.created = 2;
    let mut products = part(PartState::Partial);
    products.failed = 1;
    let reports = vec![
        (Entity::Categories, categories),
        (Entity::Products, products.clone()),
    ];
    let after = store
        .put_entity_reports("shop", "run-3", &reports, None)
        .await
        .expect("reported");
    // THEN the answer is the whole report right after the write, every part in it
    assert_eq!(after.run_id, "run-3");
    assert_eq!(after.entities[&Entity::Categories].created, 2);
    assert_eq!(after.entities[&Entity::Products], products);
    assert_eq!(
        after.entities[&Entity::Customers].state,
        PartState::Succeeded
    );
    assert_eq!(
        store
            .get_run("shop", "run-3")
            .await
            .expect("get")
            .expect("present")
            .entities,
        after.entities
    );
    // AND a run never created is an error, not a new item
    let err = store
        .put_entity_reports("shop", "nope", &reports, None)
        .await
        .expect_err("unknown run");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(after.state, RunState::Queued);

    // WHEN the last part reports with the run's end, but names another part's state wrongly
    let at = now();
    let mut customers = part(PartState::Succeeded);
    customers.created = 1;
    let last = vec![(Entity::Customers, customers)];
    let wrong = store::RunEnd {
        state: RunState::Partial,
        finished_at: at,
        others: vec![(Entity::Products, PartState::Succeeded)],
    };
    let after = store
        .put_entity_reports("shop", "run-3", &last, Some(&wrong))
        .await
        .expect("reported");
    // THEN the report is written and the run is not ended
    assert_eq!(after.entities[&Entity::Customers].created, 1);
    assert_eq!(after.state, RunState::Queued);
    // WHEN it names them as they stand THEN the same write ends the run
    let right = store::RunEnd {
        others: vec![
            (Entity::Categories, PartState::Succeeded),
            (Entity::Products, PartState::Partial),
        ],
        ..wrong
    };
    let after = store
        .put_entity_reports("shop", "run-3", &last, Some(&right))
        .await
        .expect("reported");
    assert_eq!(after.state, RunState::Partial);
    assert_eq!(after.finished_at, Some(at));
}

pub async fn r_syn_2_cursor_and_checkpoint_change_apart_and_read_together(store: &dyn Store) {
    let t1 = now();
    // GIVEN a cursor and a checkpoint of one entity
    assert!(
        store
            .advance_cursor("shop", "invoices", t1)
            .await
            .expect("advance")
    );
    store
        .put_checkpoint("shop", "invoices", &checkpoint_at("run-1", 100))
        .await
        .expect("put");
    // WHEN a pull starts THEN it reads both (in one request where the adapter can)
    let (ck, cursor) = store
        .get_checkpoint_and_cursor("shop", "invoices")
        .await
        .expect("read");
    assert_eq!(ck, Some(checkpoint_at("run-1", 100)));
    if let Some(cursor) = cursor {
        assert_eq!(cursor.map(|c| c.modified_from), Some(t1));
    }
    // WHEN the cursor moves THEN the checkpoint stays, and clearing the checkpoint keeps the cursor
    let t2 = t1 + Duration::seconds(1);
    assert!(
        store
            .advance_cursor("shop", "invoices", t2)
            .await
            .expect("advance")
    );
    assert_eq!(
        store.get_checkpoint("shop", "invoices").await.expect("get"),
        Some(checkpoint_at("run-1", 100))
    );
    store
        .clear_checkpoint("shop", "invoices")
        .await
        .expect("clear");
    assert_eq!(
        store
            .get_cursor("shop", "invoices")
            .await
            .expect("get")
            .map(|c| c.modified_from),
        Some(t2)
    );
    // AND a reset cursor leaves a new checkpoint alone; neither exists for another entity
    store
        .put_checkpoint("shop", "invoices", &checkpoint_at("run-2", 7))
        .await
        .expect("put");
    store.reset_cursor("shop", "invoices").await.expect("reset");
    assert_eq!(
        store.get_cursor("shop", "invoices").await.expect("get"),
        None
    );
    assert_eq!(
        store.get_checkpoint("shop", "invoices").await.expect("get"),
        Some(checkpoint_at("run-2", 7))
    );
    let (ck, cursor) = store
        .get_checkpoint_and_cursor("shop", "products")
        .await
        .expect("read");
    assert_eq!(ck, None);
    assert!(cursor.is_none_or(|c| c.is_none()));
    // AND a cursor can be set again after a reset (the item is still there)
    assert!(
        store
            .advance_cursor("shop", "invoices", t1)
            .await
            .expect("advance")
    );
}
