//! `make bench-idle` (issue 16): what an idle scheduled tick costs, counted on the wire.
//!
//! A small café (the default sandbox) whose last change was three hours ago is connected and
//! fully synced with the Sync button; then the schedule ticks twice, 15 minutes apart on the
//! service's clock (the dispatcher's fan-out, as EventBridge would call it), and each run finds
//! nothing new. Every DynamoDB, KMS and SQS
//! request goes through the counting proxy ([`crate::metering::AwsMeter`]); token requests are
//! counted by the KiotViet sandbox; invocations by the local stack. The runs are watched with a
//! store on the stand-in itself, so watching costs nothing in the counts. Prices come from
//! `infra/local/prices.json` (with its date, sources and what was verified).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use mapping::time::ManualClock;
use sandbox::kiotviet::KvConfig;
use serde_json::{Value, json};
use store::RunStore;

use crate::Stack;
use crate::metering::{AwsCounts, AwsMeter};

/// The committed price table.
const PRICES: &str = include_str!("../prices.json");

/// Scheduled ticks per shop and month at a 15-minute schedule (30 days).
pub const TICKS_PER_MONTH: f64 = 4.0 * 24.0 * 30.0;

/// Memory of the functions (template.yaml `Globals.Function.MemorySize`), in GB.
pub(crate) const LAMBDA_GB: f64 = 0.25;

/// What one phase (the full sync, an idle run) cost.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    pub aws: AwsCounts,
    pub tokens: u64,
    pub invocations: BTreeMap<String, (u64, Duration)>,
    pub state: String,
    pub read: u64,
}

impl Phase {
    pub(crate) fn invocation_count(&self) -> u64 {
        self.invocations.values().map(|(n, _)| n).sum()
    }

    pub(crate) fn busy(&self) -> Duration {
        self.invocations.values().map(|(_, d)| *d).sum()
    }

    pub(crate) fn invocation_list(&self) -> String {
        self.invocations
            .iter()
            .map(|(f, (n, _))| format!("{f} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// SQS requests a job costs: the send, the event-source mapping's receive and its delete.
    pub(crate) fn sqs_requests(&self) -> u64 {
        self.aws.sqs_messages_sent * 3
    }
}

/// Prices per unit, from the committed table.
pub(crate) struct Prices {
    pub(crate) as_of: String,
    pub(crate) region: String,
    wru: f64,
    rru: f64,
    kms: f64,
    sqs: f64,
    lambda_request: f64,
    lambda_gb_s: f64,
}

impl Prices {
    pub(crate) fn load() -> Result<Prices, String> {
        let v: Value =
            serde_json::from_str(PRICES).map_err(|e| format!("prices.json is not JSON: {e}"))?;
        let p = |k: &str| {
            v["items"][k]["usd"]
                .as_f64()
                .ok_or_else(|| format!("prices.json has no price for {k}"))
        };
        Ok(Prices {
            as_of: v["as_of"].as_str().unwrap_or("?").to_string(),
            region: v["region"].as_str().unwrap_or("?").to_string(),
            wru: p("dynamodb_write_request_unit")?,
            rru: p("dynamodb_read_request_unit")?,
            kms: p("kms_request")?,
            sqs: p("sqs_request")?,
            lambda_request: p("lambda_request")?,
            lambda_gb_s: p("lambda_arm64_gb_second")?,
        })
    }

    /// (DynamoDB, KMS, SQS, Lambda) in USD for one phase.
    pub(crate) fn cost(&self, ph: &Phase) -> [f64; 4] {
        [
            ph.aws.write_units * self.wru + ph.aws.read_units * self.rru,
            ph.aws.kms_total() as f64 * self.kms,
            ph.sqs_requests() as f64 * self.sqs,
            ph.invocation_count() as f64 * self.lambda_request
                + ph.busy().as_secs_f64() * LAMBDA_GB * self.lambda_gb_s,
        ]
    }
}

/// Runs the idle-tick benchmark and prints its table.
pub async fn run() -> Result<(), String> {
    let prices = Prices::load()?;
    let kv = KvConfig {
        // The café's last change was three hours ago: an incremental run finds nothing new.
        now: Some(Utc::now() - chrono::Duration::hours(3)),
        ..KvConfig::default()
    };
    // The service's clock moves 15 minutes before each tick, as the schedule's would: the
    // last tick's run lease has then expired, as it has on AWS.
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let stack = crate::metered_stack("idle", kv, clock.clone()).await?;
    let moto = crate::moto_name();
    println!("== idle-tick benchmark: small café, store: moto via {moto}, counted on the wire ==");
    let meter = stack
        .aws_meter
        .clone()
        .ok_or("the stack started without its AWS meter")?;
    let kv = stack
        .kiotviet
        .as_ref()
        .ok_or("the stack started without its KiotViet sandbox")?;
    let observer = {
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&stack.aws_upstream)
            .load()
            .await;
        store::DynamoStore::from_conf(&aws, stack.service.settings.table_name.clone())
    };
    let api = crate::demo_api(&stack);
    let shop = "idle-cafe";
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            &format!("/v1/shops/{shop}/connection"),
            Some(json!({"account_type": "fnb", "retailer": kv.retailer(), "client_id": "demo-client",
                "client_secret": "demo-secret", "branch_id": kv.central_branch_id(),
                "keep_app_product_status": true,
                "sync": {"products": true, "customers": true, "orders": true}, "invoice_history_days": 30})),
        )
        .await?;
    if status != 200 {
        return Err(format!("connect failed ({status}): {body}"));
    }
    settle(&meter).await;
    reset(&stack, &meter);

    // The full sync, with the Sync button.
    let run_id = api.start_sync(shop, true).await?;
    let report = wait_for_run(&observer, shop, |id| id == run_id).await?;
    settle(&meter).await;
    let full = take(&stack, &meter, &report);

    // Two idle ticks of the schedule.
    let mut idle = Vec::new();
    let mut last = run_id;
    for _ in 0..2 {
        clock.advance(chrono::Duration::minutes(15));
        let started = Instant::now();
        let out = engine::fan_out(&stack.service, None)
            .await
            .map_err(|e| format!("fan-out: {e}"))?;
        stack.invocations.record("dispatcher", started.elapsed());
        if out.started != 1 {
            return Err(format!("the tick did not start one run: {out:?}"));
        }
        let report = wait_for_run(&observer, shop, |id| id != last).await?;
        last = report["run_id"].as_str().unwrap_or_default().to_string();
        settle(&meter).await;
        idle.push(take(&stack, &meter, &report));
    }

    print_table(&full, &idle, &prices);
    stack.stop().await;
    Ok(())
}

fn reset(stack: &Stack, meter: &AwsMeter) {
    let _ = meter.take();
    let _ = stack.invocations.take();
    if let Some(kv) = &stack.kiotviet {
        kv.reset_stats();
    }
}

fn take(stack: &Stack, meter: &AwsMeter, report: &Value) -> Phase {
    let tokens = stack
        .kiotviet
        .as_ref()
        .map_or(0, |kv| kv.stats().tokens_issued);
    let read = report["entities"].as_object().map_or(0, |e| {
        e.values().map(|v| v["read"].as_u64().unwrap_or(0)).sum()
    });
    let phase = Phase {
        aws: meter.take(),
        tokens,
        invocations: stack.invocations.take(),
        state: report["state"].as_str().unwrap_or("?").to_string(),
        read,
    };
    if let Some(kv) = &stack.kiotviet {
        kv.reset_stats();
    }
    phase
}

/// Lets trailing requests of the run (the pollers settling their messages) reach the meter.
async fn settle(meter: &AwsMeter) {
    let _ = meter;
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// Polls the shop's latest run (uncounted) until one accepted by `is_it` has ended.
async fn wait_for_run(
    observer: &store::DynamoStore,
    shop: &str,
    is_it: impl Fn(&str) -> bool,
) -> Result<Value, String> {
    let started = Instant::now();
    loop {
        if let Some(report) = observer
            .latest_run(shop)
            .await
            .map_err(|e| format!("reading the run: {e}"))?
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            && is_it(report["run_id"].as_str().unwrap_or_default())
            && matches!(
                report["state"].as_str(),
                Some("succeeded" | "partial" | "failed")
            )
        {
            return Ok(report);
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the run did not end within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_table(full: &Phase, idle: &[Phase], prices: &Prices) {
    let col = |f: &dyn Fn(&Phase) -> String| -> Vec<String> {
        std::iter::once(full).chain(idle).map(f).collect()
    };
    let row = |name: &str, cells: Vec<String>, target: &str| {
        print!("{name:<38}");
        for c in &cells {
            print!(" {c:>12}");
        }
        println!(" {target:>12}");
    };
    println!();
    print!("{:<38}", "");
    print!(" {:>12}", "full sync");
    for i in 0..idle.len() {
        print!(" {:>12}", format!("idle run {}", i + 1));
    }
    println!(" {:>12}", "idle target");
    row("run state", col(&|p| p.state.clone()), "succeeded");
    row("records read", col(&|p| p.read.to_string()), "0");
    row(
        "DynamoDB items written",
        col(&|p| p.aws.items_written.to_string()),
        "≤ 4",
    );
    row(
        "  write request units",
        col(&|p| format!("{:.0}", p.aws.write_units)),
        "",
    );
    row(
        "DynamoDB items read",
        col(&|p| p.aws.items_read.to_string()),
        "≤ 8",
    );
    row(
        "  read request units",
        col(&|p| format!("{:.1}", p.aws.read_units)),
        "",
    );
    row(
        "DynamoDB requests",
        col(&|p| p.aws.dynamo_total().to_string()),
        "",
    );
    row(
        "KMS requests",
        col(&|p| p.aws.kms_total().to_string()),
        "0 (warm)",
    );
    row(
        "KiotViet token requests",
        col(&|p| p.tokens.to_string()),
        "0",
    );
    row(
        "SQS messages sent",
        col(&|p| p.aws.sqs_messages_sent.to_string()),
        "≤ 3",
    );
    row(
        "Lambda invocations",
        col(&|p| p.invocation_count().to_string()),
        "",
    );
    row(
        "Lambda busy time, local (ms)",
        col(&|p| p.busy().as_millis().to_string()),
        "",
    );
    if full.read > 0 {
        println!(
            "full sync: {:.2} DynamoDB items written per record read ({} items, {} records)",
            full.aws.items_written as f64 / full.read as f64,
            full.aws.items_written,
            full.read
        );
        println!("  writes: {}", by_kind(&full.aws.writes_by_kind));
        println!("  reads:  {}", by_kind(&full.aws.reads_by_kind));
        println!("  requests: {:?}", full.aws.dynamo_calls);
    }
    for (i, p) in idle.iter().enumerate() {
        println!("idle run {}: invocations: {}", i + 1, p.invocation_list());
        println!("  writes: {}", by_kind(&p.aws.writes_by_kind));
        println!("  reads:  {}", by_kind(&p.aws.reads_by_kind));
        println!(
            "  KMS: {:?}; SQS requests: {:?}",
            p.aws.kms_calls, p.aws.sqs_calls
        );
    }
    println!();
    println!(
        "cost at list prices ({}, table of {}: infra/local/prices.json, see its sources), \
         15-minute schedule = {TICKS_PER_MONTH} ticks a month, Lambda {} MB arm64",
        prices.region,
        prices.as_of,
        (LAMBDA_GB * 1024.0) as u32
    );
    println!(
        "SQS counted as 3 requests per message (send, receive, delete); Lambda duration is this \
         machine's busy time (debug/perf build, moto), an upper bound for the real one"
    );
    println!(
        "{:<14} {:>12} {:>12} {:>12} {:>12} {:>14} {:>16}",
        "", "DynamoDB", "KMS", "SQS", "Lambda", "per tick", "per shop-month"
    );
    for (i, p) in idle.iter().enumerate() {
        let c = prices.cost(p);
        let tick: f64 = c.iter().sum();
        println!(
            "{:<14} {:>12.8} {:>12.8} {:>12.8} {:>12.8} {:>14.8} {:>16.4}",
            format!("idle run {}", i + 1),
            c[0],
            c[1],
            c[2],
            c[3],
            tick,
            tick * TICKS_PER_MONTH
        );
    }
    let c = prices.cost(full);
    println!(
        "{:<14} {:>12.8} {:>12.8} {:>12.8} {:>12.8} {:>14.8} {:>16}",
        "full sync",
        c[0],
        c[1],
        c[2],
        c[3],
        c.iter().sum::<f64>(),
        "(once)"
    );
}

pub(crate) fn by_kind(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
