//! The sync benchmark (issue 8): a "large café" against the sandboxes with injected latency, a full
//! and an incremental sync, figures printed against the ideal.
//!
//! The sandboxes run as their own process (the `sandbox` binary), so the peak RSS printed is that
//! of the process that ran the pulls (this one: API, pollers, pulls), not of the fake data.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store::RunStore;

use crate::bench_idle::{LAMBDA_GB, Phase, Prices, TICKS_PER_MONTH, by_kind};
use crate::metering::MeterMode;
use crate::{Stack, StackOptions, workspace_root};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub size: String,
    pub kiotviet_latency_ms: u64,
    pub abaha_latency_ms: u64,
    /// DynamoDB/SQS/KMS in memory (the engine's own cost) instead of moto.
    pub in_memory: bool,
    /// Count what the runs ask of AWS on the wire ([`crate::metering::MeterMode::Wire`]) and
    /// print their cost (on moto only). `make bench` runs a timed pass without it, then a
    /// metered one (`BENCH_METER=0`: the timed pass only; `only`: the metered pass only).
    pub meter: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            size: "large".into(),
            kiotviet_latency_ms: 100,
            abaha_latency_ms: 30,
            in_memory: false,
            meter: true,
        }
    }
}

struct SandboxProcess {
    child: tokio::process::Child,
    kiotviet: String,
    abaha: String,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_sandboxes(size: &str, abaha_token: &str) -> Result<SandboxProcess, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .map(|d| d.join("sandbox"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| workspace_root().join("target/release/sandbox"));
    let kv_port = free_port()?;
    let ab_port = free_port()?;
    let child = tokio::process::Command::new(&bin)
        .args([
            "--size",
            size,
            "--kiotviet-port",
            &kv_port.to_string(),
            "--abaha-port",
            &ab_port.to_string(),
            "--abaha-token",
            abaha_token,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "could not start {}: {e} (build it: cargo build --release -p sandbox)",
                bin.display()
            )
        })?;
    let kiotviet = format!("http://127.0.0.1:{kv_port}");
    let abaha = format!("http://127.0.0.1:{ab_port}");
    for _ in 0..600 {
        let kv_up = tokio::net::TcpStream::connect(("127.0.0.1", kv_port))
            .await
            .is_ok();
        let ab_up = tokio::net::TcpStream::connect(("127.0.0.1", ab_port))
            .await
            .is_ok();
        if kv_up && ab_up {
            return Ok(SandboxProcess {
                child,
                kiotviet,
                abaha,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the sandboxes did not come up within 60 s".into())
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Peak resident set size of this process, from /proc (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the benchmark and prints its figures.
pub async fn run(opts: BenchOptions) -> Result<(), String> {
    let abaha_token = "bench-abaha-token";
    let meter = opts.meter && !opts.in_memory;
    let prices = Prices::load()?;
    println!(
        "== sync benchmark: {} café, KiotViet latency {} ms, Abaha latency {} ms, store: {}{} ==",
        opts.size,
        opts.kiotviet_latency_ms,
        opts.abaha_latency_ms,
        if opts.in_memory {
            "in memory".to_string()
        } else {
            format!(
                "moto (DynamoDB/SQS/KMS stand-in) via {}",
                crate::moto_name()
            )
        },
        if meter {
            " — metered pass: AWS requests counted on the wire (its wall time includes the meter)"
        } else {
            ""
        }
    );
    let sandboxes = start_sandboxes(&opts.size, abaha_token).await?;
    let http = reqwest::Client::new();
    for (url, latency) in [
        (&sandboxes.kiotviet, opts.kiotviet_latency_ms),
        (&sandboxes.abaha, opts.abaha_latency_ms),
    ] {
        http.post(format!("{url}/_sandbox/faults"))
            .json(&json!({"latency_ms": latency}))
            .send()
            .await
            .map_err(|e| format!("setting sandbox latency: {e}"))?;
    }
    // SAFETY of set_var: before the stack starts any thread that reads the environment.
    unsafe {
        std::env::set_var("KIOTVIET_API_URL", &sandboxes.kiotviet);
        std::env::set_var(
            "KIOTVIET_TOKEN_URL",
            format!("{}/identity/connect/token", sandboxes.kiotviet),
        );
        std::env::set_var("ABAHA_API_URL", &sandboxes.abaha);
        std::env::set_var("ABAHA_API_TOKEN", abaha_token);
    }
    let stack = Stack::start(StackOptions {
        service_port: Some(0),
        name_suffix: format!("-bench{}", std::process::id()),
        in_memory: opts.in_memory,
        // The sandbox process delivers KiotViet webhooks to this stack (change-to-Abaha latency).
        webhooks: true,
        meter_aws: meter,
        meter_mode: MeterMode::Wire,
        ..StackOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let api = crate::demo_api(&stack);
    let shop = "bench-cafe";
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            &format!("/v1/shops/{shop}/connection"),
            Some(json!({"account_type": "fnb", "retailer": "testfnbz15xyz", "client_id": "demo-client",
                "client_secret": "demo-secret", "branch_id": 233443, "keep_app_product_status": true,
                "sync": {"products": true, "customers": true, "orders": true}, "invoice_history_days": 30})),
        )
        .await?;
    if status != 200 {
        return Err(format!("connect failed ({status}): {body}"));
    }
    let concurrency = stack.service.settings.kiotviet_concurrency.max(1) as f64;

    let (poll, limit) = (Duration::from_millis(50), Duration::from_secs(1800));
    let mut phases = Vec::new();
    let (full, incremental) = if meter {
        // Watched through a store on the stand-in itself, so watching is not counted.
        let observer = {
            let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(&stack.aws_upstream)
                .load()
                .await;
            store::DynamoStore::from_conf(&aws, stack.service.settings.table_name.clone())
        };
        let mut tokens = kiotviet_tokens(&http, &sandboxes.kiotviet).await?;
        settle().await;
        if let Some(m) = &stack.aws_meter {
            let _ = m.take();
        }
        let _ = stack.invocations.take();
        let mut runs = Vec::new();
        for full in [true, false] {
            let run = sync_observed(&api, &observer, shop, full, poll, limit).await?;
            settle().await;
            let now = kiotviet_tokens(&http, &sandboxes.kiotviet).await?;
            phases.push(phase_of(&stack, &run.1, now - tokens));
            tokens = now;
            runs.push(run);
        }
        let incremental = runs.pop().ok_or("no incremental run")?;
        let full = runs.pop().ok_or("no full run")?;
        (full, incremental)
    } else {
        let full = api
            .sync_and_wait(shop, true, poll, limit, |_, _, _| {})
            .await?;
        let incremental = api
            .sync_and_wait(shop, false, poll, limit, |_, _, _| {})
            .await?;
        (full, incremental)
    };
    let change = change_latency(&http, &sandboxes, shop, 5).await?;
    let latency = opts.kiotviet_latency_ms as f64 / 1000.0;

    println!();
    println!("{:<34} {:>12} {:>12}", "", "full", "incremental");
    let f = Figures::of(&full.1);
    let i = Figures::of(&incremental.1);
    let ideal_f = f.gets as f64 * latency / concurrency;
    let ideal_i = i.gets as f64 * latency / concurrency;
    println!(
        "{:<34} {:>12.2} {:>12.2}",
        "wall time (s)",
        full.0.as_secs_f64(),
        incremental.0.as_secs_f64()
    );
    println!(
        "{:<34} {:>12.2} {:>12.2}",
        "ideal: GETs × latency ÷ conc. (s)", ideal_f, ideal_i
    );
    println!(
        "{:<34} {:>12.2} {:>12.2}",
        "ratio to ideal (target ≤ 1.3)",
        full.0.as_secs_f64() / ideal_f.max(1e-9),
        incremental.0.as_secs_f64() / ideal_i.max(1e-9)
    );
    println!("{:<34} {:>12} {:>12}", "records read", f.read, i.read);
    println!("{:<34} {:>12} {:>12}", "KiotViet GETs", f.gets, i.gets);
    println!(
        "{:<34} {:>12.3} {:>12}",
        "GETs per 100 records (≤ 1.02)",
        f.gets as f64 * 100.0 / (f.read.max(1) as f64),
        "-"
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "GETs per entity (incr. ≤ 1)",
        "-",
        i.per_entity_gets()
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "Abaha calls", f.abaha_calls, i.abaha_calls
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "run state",
        full.1["state"].as_str().unwrap_or("?"),
        incremental.1["state"].as_str().unwrap_or("?")
    );
    println!(
        "{:<34} {:>12.1}",
        "peak RSS of the pull process (MiB)",
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    println!(
        "KiotViet concurrency: {} in-flight GETs per shop",
        concurrency
    );
    println!(
        "change-to-Abaha latency (webhook, no sync): median {} ms, max {} ms over {} renames (target < 5000)",
        change[change.len() / 2].as_millis(),
        change.last().map_or(0, |d| d.as_millis()),
        change.len()
    );
    if let [f, i] = phases.as_slice() {
        print_cost(f, i, &prices);
    }
    stack.stop().await;
    drop(sandboxes);
    Ok(())
}

/// The stand-in's answer time by operation: requests, summed seconds, mean milliseconds (SQS
/// receives are long polls: their time is waiting, not work).
fn answer_times(p: &Phase) -> String {
    let calls = |op: &str| -> u64 {
        let (service, name) = op.split_once(' ').unwrap_or(("", op));
        match service {
            "dynamodb" => p.aws.dynamo_calls.get(name).copied().unwrap_or(0),
            "sqs" => p.aws.sqs_calls.get(name).copied().unwrap_or(0),
            "kms" => p.aws.kms_calls.get(name).copied().unwrap_or(0),
            _ => 0,
        }
    };
    p.aws
        .upstream_time
        .iter()
        .map(|(op, t)| {
            let n = calls(op).max(1);
            format!(
                "{op} {n} × {:.1} ms = {:.1} s",
                t.as_secs_f64() * 1000.0 / n as f64,
                t.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lets trailing requests of a run (the pollers settling their messages) reach the meter.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// Tokens the KiotViet sandbox process has issued so far.
async fn kiotviet_tokens(http: &reqwest::Client, kiotviet: &str) -> Result<u64, String> {
    let stats = get_json(http, &format!("{kiotviet}/_sandbox/stats")).await?;
    Ok(stats["tokens_issued"].as_u64().unwrap_or(0))
}

/// What the metered stack counted since the last take.
fn phase_of(stack: &Stack, report: &Value, tokens: u64) -> Phase {
    Phase {
        aws: stack
            .aws_meter
            .as_ref()
            .map(|m| m.take())
            .unwrap_or_default(),
        tokens,
        invocations: stack.invocations.take(),
        state: report["state"].as_str().unwrap_or("?").to_string(),
        read: Figures::of(report).read,
    }
}

/// The Sync button, then the run watched in the store (uncounted) until it ends: (wall time,
/// report).
async fn sync_observed(
    api: &crate::DemoApi,
    observer: &store::DynamoStore,
    shop: &str,
    full: bool,
    poll: Duration,
    limit: Duration,
) -> Result<(Duration, Value), String> {
    let started = Instant::now();
    let run_id = api.start_sync(shop, full).await?;
    loop {
        if let Some(report) = observer
            .get_run(shop, &run_id)
            .await
            .map_err(|e| format!("reading the run: {e}"))?
            && report.state.is_finished()
        {
            let report = serde_json::to_value(report).map_err(|e| e.to_string())?;
            return Ok((started.elapsed(), report));
        }
        if started.elapsed() > limit {
            return Err(format!("run {run_id} did not end within {limit:?}"));
        }
        tokio::time::sleep(poll).await;
    }
}

/// What the full and the incremental run asked of AWS and KiotViet's identity server, and
/// what that costs a shop a month at a 15-minute schedule.
fn print_cost(full: &Phase, incr: &Phase, prices: &Prices) {
    println!();
    println!("cost, counted on the wire (metering.rs, wire mode)        full  incremental");
    let row = |name: &str, f: String, i: String| println!("{name:<50} {f:>12} {i:>12}");
    let both = |g: &dyn Fn(&Phase) -> String| (g(full), g(incr));
    let rows: Vec<(&str, (String, String))> = vec![
        ("records read", both(&|p| p.read.to_string())),
        (
            "DynamoDB items written",
            both(&|p| p.aws.items_written.to_string()),
        ),
        (
            "  write request units",
            both(&|p| format!("{:.0}", p.aws.write_units)),
        ),
        (
            "  of them sized from the request (lower bound)",
            both(&|p| p.aws.writes_sized_from_request.to_string()),
        ),
        (
            "  items written per record read",
            both(&|p| format!("{:.2}", p.aws.items_written as f64 / p.read.max(1) as f64)),
        ),
        (
            "DynamoDB items read",
            both(&|p| p.aws.items_read.to_string()),
        ),
        (
            "  read request units",
            both(&|p| format!("{:.1}", p.aws.read_units)),
        ),
        (
            "DynamoDB requests",
            both(&|p| p.aws.dynamo_total().to_string()),
        ),
        ("KMS requests", both(&|p| p.aws.kms_total().to_string())),
        (
            "SQS messages sent",
            both(&|p| p.aws.sqs_messages_sent.to_string()),
        ),
        ("KiotViet token requests", both(&|p| p.tokens.to_string())),
        (
            "Lambda invocations",
            both(&|p| p.invocation_count().to_string()),
        ),
        (
            "Lambda busy time, local (s)",
            both(&|p| format!("{:.1}", p.busy().as_secs_f64())),
        ),
    ];
    for (name, (f, i)) in rows {
        row(name, f, i);
    }
    for (name, p) in [("full", full), ("incremental", incr)] {
        println!("{name}: writes: {}", by_kind(&p.aws.writes_by_kind));
        println!("{name}: invocations: {}", p.invocation_list());
        println!("{name}: the stand-in's answer time: {}", answer_times(p));
    }
    let (cf, ci) = (prices.cost(full), prices.cost(incr));
    println!(
        "at list prices ({}, infra/local/prices.json of {}), Lambda {} MB arm64 at this machine's busy time (an upper bound), SQS 3 requests per message",
        prices.region,
        prices.as_of,
        (LAMBDA_GB * 1024.0) as u32
    );
    println!(
        "{:<14} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "USD", "DynamoDB", "KMS", "SQS", "Lambda", "total"
    );
    for (name, c) in [("full sync", cf), ("incremental", ci)] {
        println!(
            "{:<14} {:>11.6} {:>11.6} {:>11.6} {:>11.6} {:>11.6}",
            name,
            c[0],
            c[1],
            c[2],
            c[3],
            c.iter().sum::<f64>()
        );
    }
    let month = ci.iter().sum::<f64>() * TICKS_PER_MONTH;
    println!(
        "per shop-month at a 15-minute schedule ({TICKS_PER_MONTH} runs like the incremental one): ${month:.2}; the full sync once: ${:.4}",
        cf.iter().sum::<f64>()
    );
    println!(
        "(the incremental run here is the Sync button's: one job per pull function and {} records re-read in the overlap; a scheduled idle tick is one job, see make bench-idle)",
        incr.read
    );
}

struct Figures {
    read: u64,
    gets: u64,
    abaha_calls: u64,
    per_entity: Vec<(String, u64)>,
}

impl Figures {
    fn of(report: &Value) -> Figures {
        let mut f = Figures {
            read: 0,
            gets: 0,
            abaha_calls: 0,
            per_entity: vec![],
        };
        if let Some(entities) = report["entities"].as_object() {
            for (name, e) in entities {
                let n = |k: &str| e[k].as_u64().unwrap_or(0);
                f.read += n("read");
                f.gets += n("api_calls");
                f.abaha_calls += n("abaha_calls");
                f.per_entity.push((name.clone(), n("api_calls")));
            }
        }
        f
    }

    fn per_entity_gets(&self) -> String {
        self.per_entity
            .iter()
            .map(|(_, n)| n.to_string())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Change-to-Abaha latency (R-SYN-8): products renamed at the till one after the other, each timed
/// until the Abaha sandbox holds the new name — webhook delivery, receipt, queue, pull function,
/// upsert — with no sync run involved. Answers the samples, sorted.
async fn change_latency(
    http: &reqwest::Client,
    sandboxes: &SandboxProcess,
    shop: &str,
    samples: usize,
) -> Result<Vec<Duration>, String> {
    let products_url = format!("{}/_sandbox/shops/{shop}/products", sandboxes.abaha);
    let products = get_json(http, &products_url).await?;
    let picked: Vec<(Value, String)> = products
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["is_topping"] != json!(true))
                .take(samples)
                .map(|p| {
                    (
                        p["kiotviet_id"].clone(),
                        p["name"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if picked.is_empty() {
        return Err("no product in Abaha to rename for the latency figure".into());
    }
    let mut took = Vec::with_capacity(picked.len());
    for (i, (id, name)) in picked.iter().enumerate() {
        let new_name = format!("{name} ~{i}");
        let mut updated_seen = abaha_updates(http, &sandboxes.abaha).await?;
        let started = Instant::now();
        http.patch(format!("{}/_sandbox/products/{id}", sandboxes.kiotviet))
            .json(&json!({"name": new_name}))
            .send()
            .await
            .map_err(|e| format!("renaming product {id} in the KiotViet sandbox: {e}"))?;
        // The Abaha sandbox's write count is cheap to poll; the item list is read only once it moved.
        loop {
            let updated = abaha_updates(http, &sandboxes.abaha).await?;
            if updated != updated_seen {
                updated_seen = updated;
                let items = get_json(http, &products_url).await?;
                let arrived = items.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|p| p["kiotviet_id"] == *id && p["name"] == json!(new_name))
                });
                if arrived {
                    took.push(started.elapsed());
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "product {id} renamed in KiotViet did not reach Abaha within 30 s (are webhooks registered?)"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    took.sort();
    Ok(took)
}

/// Product upserts the Abaha sandbox has counted (created + updated + unchanged).
async fn abaha_updates(http: &reqwest::Client, abaha: &str) -> Result<u64, String> {
    let stats = get_json(http, &format!("{abaha}/_sandbox/stats")).await?;
    let p = &stats["by_kind"]["products"];
    Ok(["created", "updated", "unchanged"]
        .iter()
        .map(|k| p[*k].as_u64().unwrap_or(0))
        .sum())
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    http.get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))
}
