//! `make bench-tick` (issue 16): one scheduler tick over many shops on the local stack.
//!
//! N small shops (default 1,000; `TICK_SHOPS`) share one KiotViet sandbox, each under a retailer
//! name of its own (`tickshop{i}`, the sandbox's `retailer_prefix`), so each has its own GET
//! quota in the sandbox and its own GET budget in DynamoDB. Each is connected through the
//! service API (checked live, secret sealed by KMS). A first tick of the schedule brings each
//! shop's first sync (every cursor set); 15 minutes later on the service's clock the measured
//! tick runs: the dispatcher's fan-out (`engine::fan_out`, as EventBridge calls it) and then the
//! pollers, as the SQS event-source mappings would, until every run has ended.
//!
//! The fan-out runs on a copy of the service whose store and queue talk through a meter of
//! their own, so its DynamoDB and SQS requests are counted apart from the pulls'. Runs are
//! watched with a store on the stand-in itself (uncounted).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use mapping::time::{Clock, ManualClock};
use sandbox::kiotviet::{Counts, DataSize, KvConfig};
use serde_json::{Value, json};
use store::RunStore;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Stack;
use crate::metering::{AwsCounts, AwsMeter};

/// The retailer names of the shops: `tickshop1`, `tickshop2`, …
const PREFIX: &str = "tickshop";

/// Requests the harness keeps in flight when connecting shops and watching runs.
const HARNESS_CONCURRENCY: usize = 8;

/// What a shop's café holds: small, one page per entity.
fn shop_counts() -> Counts {
    Counts {
        categories: 3,
        products: 10,
        customers: 10,
        invoices: 10,
    }
}

/// Runs are watched in the order the fan-out started them (the queue's order), this many at
/// a time: a look at every pending shop per pass would load the stand-in more than the runs.
const WATCH_WINDOW: usize = 8;

/// The pause between looks when none of the watched runs had ended.
const WATCH_PAUSE: Duration = Duration::from_millis(1000);

/// How long the benchmark waits for a tick's runs to end, unless `TICK_LIMIT_SECS` says
/// otherwise (the first tick of 1,000 first syncs needs more than 20 minutes on moto here).
const TICK_LIMIT: Duration = Duration::from_secs(1200);

fn tick_limit() -> Duration {
    std::env::var("TICK_LIMIT_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(TICK_LIMIT, Duration::from_secs)
}

/// Runs the tick benchmark over `shops` shops and prints its figures.
pub async fn run(shops: usize) -> Result<(), String> {
    if shops == 0 {
        return Err("TICK_SHOPS must be at least 1".into());
    }
    let kv = KvConfig {
        // The cafés' last change was three hours ago: the measured tick finds nothing new.
        now: Some(Utc::now() - chrono::Duration::hours(3)),
        size: DataSize::Exact(shop_counts()),
        retailer_prefix: Some(PREFIX.into()),
        ..KvConfig::default()
    };
    let shop = shop_counts();
    // The service's clock starts on the hour, so that both ticks fall in one budget window
    // (the first at :15, the measured one at :30) and the budget read holds both.
    let on_the_hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .map_err(|e| format!("clock: {e}"))?;
    let clock = Arc::new(ManualClock::new(on_the_hour));
    let t_all = Instant::now();
    let stack = crate::metered_stack("tick", kv, clock.clone()).await?;
    println!(
        "== 1,000-shop tick benchmark: {shops} shops ({} categories, {} products, {} customers, \
         {} invoices each), store: moto via our launcher, counted on the wire ==",
        shop.categories, shop.products, shop.customers, shop.invoices
    );
    let meter = stack
        .aws_meter
        .clone()
        .ok_or("the stack started without its AWS meter")?;
    let sim = stack
        .kiotviet
        .clone()
        .ok_or("the stack started without its KiotViet sandbox")?;
    let upstream = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&stack.aws_upstream)
        .load()
        .await;
    let observer = Arc::new(store::DynamoStore::from_conf(
        &upstream,
        stack.service.settings.table_name.clone(),
    ));

    // The dispatcher: the same service, its store and queue behind a meter of their own.
    let fan_meter = AwsMeter::start(&stack.aws_upstream, crate::metering::MeterMode::Exact)
        .await
        .map_err(|e| format!("could not start the fan-out meter: {e}"))?;
    let dispatcher = {
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&fan_meter.url)
            .load()
            .await;
        let mut svc = stack.service.clone();
        svc.store = Arc::new(store::DynamoStore::from_conf(
            &aws,
            svc.settings.table_name.clone(),
        ));
        svc.queue = Arc::new(store::SqsQueue::new(aws_sdk_sqs::Client::new(&aws)));
        svc
    };

    // Connect every shop through the API.
    let t = Instant::now();
    connect_all(&stack, &sim, shops).await?;
    println!(
        "connected {shops} shops through the API in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // First tick: every shop's first sync.
    clock.advance(chrono::Duration::minutes(15));
    let first = tick(&dispatcher, &fan_meter, &observer, shops, &[]).await?;
    println!(
        "first tick (every shop's first sync): {} runs in {:.1} s, {}",
        shops,
        first.wall.as_secs_f64(),
        first.states_line()
    );
    let _ = meter.take();
    let _ = stack.invocations.take();
    sim.reset_stats();

    // The measured tick, 15 minutes later.
    clock.advance(chrono::Duration::minutes(15));
    let measured = tick(&dispatcher, &fan_meter, &observer, shops, &first.run_ids).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pulls = meter.take();
    let invocations = stack.invocations.take();
    let kv_stats = sim.stats();

    // GET budgets: the service's (DynamoDB, this hour's window) and the sandbox's quota.
    let window = clock
        .now()
        .duration_trunc(chrono::Duration::hours(1))
        .map_err(|e| format!("budget window: {e}"))?;
    let allowance = stack.service.settings.get_budget_per_hour;
    let budget_used = budgets(
        &aws_sdk_dynamodb::Client::new(&upstream),
        &stack.service.settings.table_name,
        shops,
        window,
    )
    .await?;
    let max_budget = budget_used.iter().copied().max().unwrap_or(0);
    let sandbox_gets = sim.gets_in_window();
    let max_sandbox = sandbox_gets.values().copied().max().unwrap_or(0);
    let sandbox_limit = KvConfig::default().get_limit_per_hour.unwrap_or(u64::MAX);

    print_report(&Report {
        shops,
        measured: &measured,
        pulls: &pulls,
        invocations: &invocations,
        tokens: kv_stats.tokens_issued,
        kv_gets: kv_stats.requests.gets,
        rate_limited: kv_stats.rate_limited,
        max_budget,
        allowance,
        max_sandbox,
        sandbox_limit,
    });
    println!(
        "whole benchmark (start, connect, two ticks): {:.1} s",
        t_all.elapsed().as_secs_f64()
    );
    stack.stop().await;
    let ok = measured.states.get("succeeded").copied().unwrap_or(0) == shops
        && u64::from(max_budget) <= u64::from(allowance)
        && kv_stats.rate_limited == 0;
    if ok {
        Ok(())
    } else {
        Err("not every run succeeded within its GET budget (see above)".into())
    }
}

async fn connect_all(
    stack: &Stack,
    sim: &sandbox::kiotviet::KvHandle,
    shops: usize,
) -> Result<(), String> {
    let api = Arc::new(crate::demo_api(stack));
    let gate = Arc::new(Semaphore::new(HARNESS_CONCURRENCY));
    let branch = sim.central_branch_id();
    let mut set = JoinSet::new();
    for i in 1..=shops {
        let (api, gate) = (api.clone(), gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let body = json!({"account_type": "fnb", "retailer": format!("{PREFIX}{i}"),
                "client_id": "demo-client", "client_secret": "demo-secret", "branch_id": branch,
                "keep_app_product_status": true,
                "sync": {"products": true, "customers": true, "orders": true},
                "invoice_history_days": 30});
            let (status, answer) = api
                .call(
                    reqwest::Method::PUT,
                    &format!("/v1/shops/{}/connection", shop_id(i)),
                    Some(body),
                )
                .await?;
            if status == 200 {
                Ok(())
            } else {
                Err(format!(
                    "connecting {} failed ({status}): {answer}",
                    shop_id(i)
                ))
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.map_err(|e| format!("connect task: {e}"))??;
    }
    Ok(())
}

fn shop_id(i: usize) -> String {
    format!("tick-{i:05}")
}

/// One tick: the fan-out, then every shop's run watched until it ends.
struct Tick {
    wall: Duration,
    fan_out: Duration,
    fan_out_cost: AwsCounts,
    started: usize,
    /// Per shop: tick start → its run seen ended.
    delays: Vec<Duration>,
    states: BTreeMap<String, usize>,
    run_ids: Vec<String>,
    records_read: u64,
    /// How long one pass over the still-running shops took at most (the delays' resolution).
    poll_resolution: Duration,
}

impl Tick {
    fn states_line(&self) -> String {
        self.states
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

async fn tick(
    dispatcher: &engine::Service,
    fan_meter: &AwsMeter,
    observer: &Arc<store::DynamoStore>,
    shops: usize,
    previous: &[String],
) -> Result<Tick, String> {
    let _ = fan_meter.take();
    let t0 = Instant::now();
    let out = engine::fan_out(dispatcher, None)
        .await
        .map_err(|e| format!("fan-out: {e}"))?;
    let fan_out = t0.elapsed();
    let fan_out_cost = fan_meter.take();
    if out.shops != shops || out.started != shops {
        return Err(format!("the tick did not start one run per shop: {out:?}"));
    }
    let mut pending: Vec<usize> = (1..=shops).collect();
    let mut delays = Vec::with_capacity(shops);
    let mut states = BTreeMap::new();
    let mut run_ids = vec![String::new(); shops];
    let mut records_read = 0;
    let mut poll_resolution = Duration::ZERO;
    let mut last_note = Instant::now();
    while !pending.is_empty() {
        if t0.elapsed() > tick_limit() {
            return Err(format!(
                "{} runs had not ended {} s after the tick (TICK_LIMIT_SECS raises the limit)",
                pending.len(),
                tick_limit().as_secs()
            ));
        }
        let pass = Instant::now();
        let window = &pending[..pending.len().min(WATCH_WINDOW)];
        let ended = watch_pass(observer, window, previous).await?;
        let seen = t0.elapsed();
        poll_resolution = poll_resolution.max(pass.elapsed());
        let any_ended = ended.iter().any(Option::is_some);
        let mut still = Vec::new();
        for (i, report) in window.iter().copied().zip(ended) {
            match report {
                Some(r) => {
                    delays.push(seen);
                    *states
                        .entry(r["state"].as_str().unwrap_or("?").to_string())
                        .or_insert(0) += 1;
                    records_read += r["entities"].as_object().map_or(0, |e| {
                        e.values().map(|v| v["read"].as_u64().unwrap_or(0)).sum()
                    });
                    run_ids[i - 1] = r["run_id"].as_str().unwrap_or_default().to_string();
                }
                None => still.push(i),
            }
        }
        still.extend_from_slice(&pending[window.len()..]);
        pending = still;
        if last_note.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  … {} of {shops} runs ended after {:.0} s",
                shops - pending.len(),
                t0.elapsed().as_secs_f64()
            );
            last_note = Instant::now();
        }
        if !pending.is_empty() && !any_ended {
            tokio::time::sleep(WATCH_PAUSE).await;
        }
    }
    Ok(Tick {
        wall: t0.elapsed(),
        fan_out,
        fan_out_cost,
        started: out.started,
        delays,
        states,
        run_ids,
        records_read,
        poll_resolution,
    })
}

/// One look at each shop's latest run: its report when a run of this tick has ended.
async fn watch_pass(
    observer: &Arc<store::DynamoStore>,
    pending: &[usize],
    previous: &[String],
) -> Result<Vec<Option<Value>>, String> {
    let gate = Arc::new(Semaphore::new(HARNESS_CONCURRENCY));
    let mut set = JoinSet::new();
    for (slot, &i) in pending.iter().enumerate() {
        let (observer, gate) = (observer.clone(), gate.clone());
        let before = previous.get(i - 1).cloned().unwrap_or_default();
        set.spawn(async move {
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let report = observer
                .latest_run(&shop_id(i))
                .await
                .map_err(|e| format!("reading {}'s run: {e}", shop_id(i)))?
                .map(|r| serde_json::to_value(r).unwrap_or_default());
            let ended = report.filter(|r| {
                r["run_id"].as_str().is_some_and(|id| id != before)
                    && matches!(
                        r["state"].as_str(),
                        Some("succeeded" | "partial" | "failed")
                    )
            });
            Ok::<_, String>((slot, ended))
        });
    }
    let mut out = vec![None; pending.len()];
    while let Some(done) = set.join_next().await {
        let (slot, report) = done.map_err(|e| format!("watch task: {e}"))??;
        out[slot] = report;
    }
    Ok(out)
}

/// GETs each shop has used of its hourly budget in `window` (BudgetStore's item, read
/// directly on the stand-in: uncounted).
async fn budgets(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    shops: usize,
    window: chrono::DateTime<Utc>,
) -> Result<Vec<u32>, String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let gate = Arc::new(Semaphore::new(HARNESS_CONCURRENCY));
    let sk = window.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut set = JoinSet::new();
    for i in 1..=shops {
        let (dynamo, gate, sk, table) =
            (dynamo.clone(), gate.clone(), sk.clone(), table.to_string());
        set.spawn(async move {
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let item = dynamo
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(format!("BUDGET#{PREFIX}{i}")))
                .key("sk", AttributeValue::S(sk))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| format!("reading a budget: {e}"))?;
            let used = item
                .item()
                .and_then(|it| it.get("used"))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0);
            Ok::<_, String>(used)
        });
    }
    let mut used = Vec::with_capacity(shops);
    while let Some(done) = set.join_next().await {
        used.push(done.map_err(|e| format!("budget task: {e}"))??);
    }
    Ok(used)
}

struct Report<'a> {
    shops: usize,
    measured: &'a Tick,
    pulls: &'a AwsCounts,
    invocations: &'a BTreeMap<String, (u64, Duration)>,
    tokens: u64,
    kv_gets: u64,
    rate_limited: u64,
    max_budget: u32,
    allowance: u32,
    max_sandbox: u64,
    sandbox_limit: u64,
}

fn print_report(r: &Report<'_>) {
    let m = r.measured;
    let n = r.shops as f64;
    let mut delays = m.delays.clone();
    delays.sort();
    let pct = |p: f64| {
        delays
            .get(((delays.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let fc = &m.fan_out_cost;
    println!();
    println!("measured tick (15 min after the first; nothing changed at the till)");
    println!("  runs started by the fan-out            {}", m.started);
    println!(
        "  runs by final state                    {}",
        m.states_line()
    );
    println!(
        "  records read (all runs)                {}",
        m.records_read
    );
    println!(
        "  tick wall time (fan-out → last run)    {:.1} s",
        m.wall.as_secs_f64()
    );
    println!(
        "  slowest shop's delay (tick → ended)    {:.1} s   (median {:.1} s, p90 {:.1} s; \
         seen to within {:.1} s)",
        pct(1.0),
        pct(0.5),
        pct(0.9),
        m.poll_resolution.as_secs_f64() + WATCH_PAUSE.as_secs_f64()
    );
    println!(
        "  throughput                             {:.1} runs/s",
        n / m.wall.as_secs_f64().max(1e-9)
    );
    println!(
        "  GET budget: max used by a shop         {} of {} an hour (service, DynamoDB, both ticks' hour); \
         sandbox quota: max {} of {} (the sandbox's hour holds connect + both ticks), \
         {} refused",
        r.max_budget, r.allowance, r.max_sandbox, r.sandbox_limit, r.rate_limited
    );
    println!();
    println!("dispatcher fan-out (one invocation, 16 shops at a time)");
    println!(
        "  wall time                              {:.2} s   ({:.1} ms per shop)",
        m.fan_out.as_secs_f64(),
        m.fan_out.as_secs_f64() * 1000.0 / n
    );
    println!(
        "  DynamoDB requests                      {}   ({:.2} per shop) {}",
        fc.dynamo_total(),
        fc.dynamo_total() as f64 / n,
        by_kind(&fc.dynamo_calls)
    );
    println!(
        "  DynamoDB items written / read          {} / {}   ({:.2} / {:.2} per shop)",
        fc.items_written,
        fc.items_read,
        fc.items_written as f64 / n,
        fc.items_read as f64 / n
    );
    println!(
        "  DynamoDB write / read units            {:.0} / {:.1}",
        fc.write_units, fc.read_units
    );
    println!("    writes: {}", by_kind(&fc.writes_by_kind));
    println!("    reads:  {}", by_kind(&fc.reads_by_kind));
    println!(
        "  SQS messages sent                      {}   ({:.2} per shop) {}",
        fc.sqs_messages_sent,
        fc.sqs_messages_sent as f64 / n,
        by_kind(&fc.sqs_calls)
    );
    println!(
        "  KMS requests                           {}",
        fc.kms_total()
    );
    println!();
    println!("the pulls of the measured tick (all shops; per run)");
    let per = |x: f64| format!("{x:.0}   ({:.2} per run)", x / n);
    println!(
        "  DynamoDB items written                 {}",
        per(r.pulls.items_written as f64)
    );
    println!(
        "  DynamoDB items read                    {}",
        per(r.pulls.items_read as f64)
    );
    println!(
        "  DynamoDB requests                      {}",
        per(r.pulls.dynamo_total() as f64)
    );
    println!(
        "  SQS messages sent                      {}",
        per(r.pulls.sqs_messages_sent as f64)
    );
    println!(
        "  KMS requests                           {}",
        per(r.pulls.kms_total() as f64)
    );
    println!(
        "  KiotViet GETs / token requests         {} / {}",
        per(r.kv_gets as f64),
        r.tokens
    );
    let invocations: u64 = r.invocations.values().map(|(c, _)| c).sum();
    let busy: Duration = r.invocations.values().map(|(_, d)| *d).sum();
    println!(
        "  pull invocations (SQS batches)         {}   {}",
        per(invocations as f64),
        r.invocations
            .iter()
            .map(|(f, (c, d))| format!(
                "{f} {c} ({:.0} ms avg)",
                d.as_secs_f64() * 1000.0 / *c as f64
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  invocation busy time, local            {:.1} s",
        busy.as_secs_f64()
    );
}

fn by_kind(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
