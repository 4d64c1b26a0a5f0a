//! The local stack: the same flow as on AWS, on loopback.
//!
//! | AWS                                   | here                                               |
//! |---------------------------------------|----------------------------------------------------|
//! | DynamoDB, SQS, KMS                    | moto's server (a child process), or `AWS_ENDPOINT_URL` |
//! | API Gateway → `api` Lambda            | `service_api::router` on `127.0.0.1:$SERVICE_PORT` |
//! | SQS event-source mappings → `*-pull`  | a poller per queue calling `engine::jobs::handle_batch` |
//! | EventBridge schedule → `dispatcher`   | a timer calling `engine::fan_out` (`SCHEDULE_SECS`) |
//! | KiotViet FnB, Abaha Sync API          | the sandboxes (in-process), or the URLs given      |
//!
//! Everything given through the variables of CONTRACTS.md §3 is used as given; only what is
//! missing is started here, so the same command runs against a real KiotViet test shop too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use engine::{Service, ServiceParts, Settings};
use kiotviet::KiotVietConfig;
use mapping::time::{ManualClock, SystemClock};
use sandbox::abaha::{AbahaConfig as AbahaSimConfig, AbahaHandle, AbahaSim};
use sandbox::kiotviet::{KiotVietSim, KvConfig, KvHandle};
use secrecy::SecretString;
use tokio::sync::watch;

/// How to start the stack. Every `None` means: take it from the environment, else start one here.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Port of the service API (`SERVICE_PORT`, default 9000); `Some(0)` for an ephemeral port.
    pub service_port: Option<u16>,
    /// DynamoDB/SQS/KMS endpoint (`AWS_ENDPOINT_URL`); None: start moto.
    pub aws_endpoint: Option<String>,
    /// Names are suffixed with this, so tests sharing one moto do not meet (default: none).
    pub name_suffix: String,
    /// KiotViet sandbox configuration when no `KIOTVIET_API_URL` is given.
    pub kiotviet: Option<KvConfig>,
    /// Start a KiotViet sandbox even if `KIOTVIET_API_URL` is set (tests).
    pub force_sandboxes: bool,
    /// Seconds between scheduled fan-outs; 0 = no schedule (`SCHEDULE_SECS`).
    pub schedule_secs: Option<u64>,
    /// Settings to start from (tests shorten windows); None: from the environment.
    pub settings: Option<Settings>,
    /// Whether the pollers run jobs (tests that drive jobs by hand turn them off).
    pub no_workers: bool,
    /// In-memory store, sealer and queues instead of an AWS stand-in (benchmark of the engine's
    /// own cost; nothing is persisted).
    pub in_memory: bool,
    /// Register KiotViet webhooks at this stack's own API (`WEBHOOK_BASE_URL` wins when set).
    /// Off by default, so tests that change the sandbox and then sync see their own changes.
    pub webhooks: bool,
    /// The service's clock, for tests that move time (a budget window turning); None: the
    /// machine's clock.
    pub clock: Option<Arc<ManualClock>>,
    /// Put a counting proxy ([`metering::AwsMeter`]) between the service and the AWS stand-in.
    pub meter_aws: bool,
    /// How that proxy costs single-item writes (exact by default; `make bench` uses the wire).
    pub meter_mode: metering::MeterMode,
}

/// A running local stack. Dropping it stops everything it started.
pub struct Stack {
    pub api_url: String,
    pub aws_endpoint: String,
    pub service: Service,
    pub kiotviet: Option<KvHandle>,
    pub abaha: Option<AbahaHandle>,
    pub admin_token: String,
    pub abaha_token: String,
    pub kiotviet_api_url: String,
    pub abaha_api_url: String,
    /// The AWS stand-in itself, behind the meter when there is one (for uncounted looks).
    pub aws_upstream: String,
    /// What the service asked of AWS, when started with `meter_aws`.
    pub aws_meter: Option<Arc<metering::AwsMeter>>,
    /// Lambda-equivalent invocations: API requests, pull batches, schedule ticks.
    pub invocations: Arc<metering::Invocations>,
    shutdown: watch::Sender<bool>,
    _moto: Option<MotoProcess>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Errors of bringing the stack up, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "could not start moto ({path}): {source}. Run `infra/bootstrap.sh stack` (or `make bootstrap`) first, or set AWS_ENDPOINT_URL"
    )]
    Moto {
        path: String,
        source: std::io::Error,
    },
    #[error("moto did not come up on {0} within 15 s; see .local/moto.log")]
    MotoTimeout(String),
    #[error("could not provision {what}: {message}")]
    Provision { what: &'static str, message: String },
    #[error("could not start a sandbox: {0}")]
    Sandbox(std::io::Error),
    #[error("could not start the AWS request meter: {0}")]
    Meter(std::io::Error),
    #[error("could not serve the service API on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("bad configuration: {0}")]
    Config(String),
}

pub mod bench;
/// The stack the cost benchmarks run: own sandboxes, AWS calls counted on the wire, the service
/// on `clock` (moved by the benchmark as the schedule would), names suffixed per process.
pub async fn metered_stack(
    what: &str,
    kv: KvConfig,
    clock: Arc<ManualClock>,
) -> Result<Stack, String> {
    Stack::start(StackOptions {
        service_port: Some(0),
        name_suffix: format!("-{what}{}", std::process::id()),
        kiotviet: Some(kv),
        force_sandboxes: true,
        meter_aws: true,
        clock: Some(clock),
        ..StackOptions::default()
    })
    .await
    .map_err(|e| e.to_string())
}

pub mod bench_idle;
pub mod bench_tick;
pub mod deployed;
pub mod metering;
pub mod template;

/// A small client of the service API with the admin token (demo and benchmark).
pub struct DemoApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

pub fn demo_api(stack: &Stack) -> DemoApi {
    DemoApi {
        http: reqwest::Client::new(),
        base: stack.api_url.clone(),
        token: stack.admin_token.clone(),
    }
}

impl DemoApi {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .json::<serde_json::Value>()
            .await
            .unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }
}

impl DemoApi {
    /// Presses Sync (`full` or incremental) and answers the run id the API gave it.
    pub async fn start_sync(&self, shop: &str, full: bool) -> Result<String, String> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/shops/{shop}/sync"),
                Some(serde_json::json!({"full": full})),
            )
            .await?;
        if status != 202 {
            return Err(format!("sync refused ({status}): {body}"));
        }
        Ok(body["run_id"].as_str().unwrap_or_default().to_string())
    }

    /// Presses Sync and polls the run until it ends (or `limit` passes); `on_report` sees every
    /// report read while it runs. Answers the run's duration and its final report.
    pub async fn sync_and_wait(
        &self,
        shop: &str,
        full: bool,
        poll: Duration,
        limit: Duration,
        mut on_report: impl FnMut(&str, &serde_json::Value, Duration),
    ) -> Result<(Duration, serde_json::Value), String> {
        let started = std::time::Instant::now();
        let run_id = self.start_sync(shop, full).await?;
        loop {
            let (_, report) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/shops/{shop}/sync/{run_id}"),
                    None,
                )
                .await?;
            on_report(&run_id, &report, started.elapsed());
            if matches!(
                report["state"].as_str(),
                Some("succeeded" | "partial" | "failed")
            ) {
                return Ok((started.elapsed(), report));
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "run {run_id} did not finish within {} s",
                    limit.as_secs()
                ));
            }
            tokio::time::sleep(poll).await;
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Which moto the stack starts: `MOTO_SERVER_BIN` when named; else with `BENCH_MOTO=stock` the
/// stock `moto_server` of a plain `pip install moto[server]` venv (`infra/bootstrap.sh stock`,
/// `.venv/stock`); else our launcher (`None`).
fn moto_server_bin() -> Option<PathBuf> {
    env("MOTO_SERVER_BIN").map(PathBuf::from).or_else(|| {
        env("BENCH_MOTO")
            .filter(|m| m == "stock")
            .map(|_| workspace_root().join(".venv/stock/bin/moto_server"))
    })
}

/// The AWS stand-in the benchmarks run on, for their headings.
pub fn moto_name() -> String {
    if env("AWS_ENDPOINT_URL").is_some() {
        return "the AWS endpoint given (AWS_ENDPOINT_URL)".into();
    }
    match moto_server_bin() {
        Some(bin) => format!("stock moto_server ({})", bin.display()),
        None => "our launcher (infra/python/moto_server.py)".into(),
    }
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Result<Stack, StackError> {
        // AWS SDK settings for a local stand-in; real credentials given in the environment win.
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "ap-southeast-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            if env(k).is_none() {
                // SAFETY of set_var: called before any thread of ours reads the environment.
                unsafe { std::env::set_var(k, v) };
            }
        }
        let mut aws_side = if opts.in_memory {
            None
        } else {
            Some(AwsSide::connect(&opts).await?)
        };
        let aws_endpoint = aws_side
            .as_ref()
            .map(|a| a.endpoint.clone())
            .unwrap_or_else(|| "in-memory (no AWS stand-in)".into());
        let aws_upstream = aws_side
            .as_ref()
            .map(|a| a.upstream.clone())
            .unwrap_or_else(|| aws_endpoint.clone());
        let aws_meter = aws_side.as_mut().and_then(|a| a.meter.take());
        let invocations = Arc::new(metering::Invocations::default());

        let mut settings = match opts.settings.clone() {
            Some(s) => s,
            None => Settings::from_env().map_err(|e| StackError::Config(e.to_string()))?,
        };
        let sfx = &opts.name_suffix;
        settings.table_name = format!("{}{}", settings.table_name, sfx);

        // Sandboxes for the systems we do not own, unless real ones are given.
        let kv_given = if opts.force_sandboxes {
            None
        } else {
            env("KIOTVIET_API_URL")
        };
        let (kiotviet, kv_api_url, kv_token_url) = match kv_given {
            Some(url) => {
                let token = env("KIOTVIET_TOKEN_URL");
                (None, url, token)
            }
            None => {
                let h = KiotVietSim::start(opts.kiotviet.clone().unwrap_or_default())
                    .await
                    .map_err(StackError::Sandbox)?;
                let (u, t) = (h.url(), h.token_url());
                (Some(h), u, Some(t))
            }
        };
        let abaha_token = env("ABAHA_API_TOKEN").unwrap_or_else(|| "local-abaha-token".into());
        let abaha_given = if opts.force_sandboxes {
            None
        } else {
            env("ABAHA_API_URL")
        };
        let (abaha, abaha_url) = match abaha_given {
            Some(url) => (None, url),
            None => {
                let h = AbahaSim::start(AbahaSimConfig {
                    token: abaha_token.clone(),
                    ..AbahaSimConfig::default()
                })
                .await
                .map_err(StackError::Sandbox)?;
                let u = h.url();
                (Some(h), u)
            }
        };
        settings.abaha_api_url = abaha_url.clone();

        // Table, key and queues, created idempotently in whatever endpoint we were given.
        let (store, sealer, queue, queues) = match &aws_side {
            Some(aws) => aws.provision(&settings.table_name, sfx).await?,
            None => memory_backend(sfx),
        };
        settings.queues = queues;

        let mut kv_config = KiotVietConfig::for_urls(
            kv_api_url.clone(),
            kv_token_url.unwrap_or_else(|| kiotviet::DEFAULT_TOKEN_URL.to_string()),
        );
        if kiotviet.is_some() {
            kv_config.fallback_token_url = None;
        }
        let admin_token = env("ADMIN_TOKEN").unwrap_or_else(|| "local-admin-token".into());
        let schedule_secs = opts
            .schedule_secs
            .or_else(|| env("SCHEDULE_SECS").and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        // The service API, at the CONTRACTS routes with no prefix. Bound before the service is
        // built, so that KiotViet webhooks can be registered at its address.
        let port = opts
            .service_port
            .or_else(|| env("SERVICE_PORT").and_then(|v| v.parse().ok()))
            .unwrap_or(9000);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StackError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| StackError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        if opts.webhooks && settings.webhook_base_url.is_none() {
            settings.webhook_base_url = Some(format!("http://{bound}"));
        }
        let service = Service::new(ServiceParts {
            settings,
            store,
            sealer,
            queue,
            kv_config,
            abaha_token: SecretString::from(abaha_token.clone()),
            admin_token: SecretString::from(admin_token.clone()),
            clock: match &opts.clock {
                Some(clock) => clock.clone(),
                None => Arc::new(SystemClock),
            },
        });

        let (shutdown, rx) = watch::channel(false);
        let app = service_api::router(service.clone()).layer(axum::middleware::from_fn_with_state(
            invocations.clone(),
            meter,
        ));
        let mut stop = rx.clone();
        let mut tasks = vec![tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        })];
        if !opts.no_workers {
            for q in [
                &service.settings.queues.catalog,
                &service.settings.queues.customers,
                &service.settings.queues.invoices,
            ] {
                tasks.push(tokio::spawn(poll_queue(
                    service.clone(),
                    q.clone(),
                    rx.clone(),
                    invocations.clone(),
                )));
            }
        }
        if schedule_secs > 0 {
            tasks.push(tokio::spawn(schedule(
                service.clone(),
                schedule_secs,
                rx.clone(),
                invocations.clone(),
            )));
        }
        Ok(Stack {
            api_url: format!("http://{bound}"),
            aws_endpoint,
            service,
            kiotviet,
            abaha,
            admin_token,
            abaha_token,
            kiotviet_api_url: kv_api_url,
            abaha_api_url: abaha_url,
            aws_upstream,
            aws_meter,
            invocations,
            shutdown,
            _moto: aws_side.as_mut().and_then(|a| a.moto.take()),
            tasks,
        })
    }

    /// Stops the API, the pollers and the schedule, waiting for them to end.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The AWS stand-in: moto (started here) or the endpoint given.
struct AwsSide {
    /// What the service's clients talk to: the meter when there is one, else the stand-in.
    endpoint: String,
    /// The stand-in itself.
    upstream: String,
    meter: Option<Arc<metering::AwsMeter>>,
    moto: Option<MotoProcess>,
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    kms: aws_sdk_kms::Client,
}

type Backend = (
    Arc<dyn store::Store>,
    Arc<dyn store::SecretSealer>,
    Arc<dyn store::JobQueue>,
    engine::settings::Queues,
);

impl AwsSide {
    async fn connect(opts: &StackOptions) -> Result<AwsSide, StackError> {
        let (endpoint, moto) = match opts
            .aws_endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL"))
        {
            Some(url) => (url, None),
            None => {
                let m = MotoProcess::start().await?;
                (m.url.clone(), Some(m))
            }
        };
        let upstream = endpoint.clone();
        let (endpoint, meter) = if opts.meter_aws {
            let meter = metering::AwsMeter::start(&upstream, opts.meter_mode)
                .await
                .map_err(StackError::Meter)?;
            (meter.url.clone(), Some(Arc::new(meter)))
        } else {
            (endpoint, None)
        };
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .load()
            .await;
        Ok(AwsSide {
            endpoint,
            upstream,
            meter,
            moto,
            dynamo: aws_sdk_dynamodb::Client::new(&aws),
            sqs: aws_sdk_sqs::Client::new(&aws),
            kms: aws_sdk_kms::Client::new(&aws),
        })
    }

    /// Creates (idempotently) the table, key and queues, and the adapters over them.
    async fn provision(&self, table: &str, sfx: &str) -> Result<Backend, StackError> {
        let fail = |what: &'static str| {
            move |e: store::StoreError| StackError::Provision {
                what,
                message: e.to_string(),
            }
        };
        store::provision::ensure_table(&self.dynamo, table)
            .await
            .map_err(fail("the DynamoDB table"))?;
        let key_id =
            store::provision::ensure_key(&self.kms, &format!("alias/kiotviet-fnb-sync{sfx}"))
                .await
                .map_err(fail("the KMS key"))?;
        let mut urls = Vec::new();
        for name in ["catalog-jobs", "customer-jobs", "invoice-jobs"] {
            let q = store::provision::ensure_queue(
                &self.sqs,
                &format!("{name}{sfx}"),
                &format!("{name}-dlq{sfx}"),
                5,
            )
            .await
            .map_err(fail("an SQS queue"))?;
            urls.push(q.url);
        }
        let queues = engine::settings::Queues {
            catalog: urls[0].clone(),
            customers: urls[1].clone(),
            invoices: urls[2].clone(),
        };
        Ok((
            Arc::new(store::DynamoStore::new(
                self.dynamo.clone(),
                table.to_string(),
            )),
            Arc::new(store::KmsSealer::new(self.kms.clone(), key_id)),
            Arc::new(store::SqsQueue::new(self.sqs.clone())),
            queues,
        ))
    }
}

/// Everything in memory: the engine's own cost without an AWS stand-in (benchmark).
fn memory_backend(sfx: &str) -> Backend {
    let queue = store::MemoryQueue::new();
    let url = |name: &str| {
        queue
            .ensure_queue(&format!("{name}{sfx}"), &format!("{name}-dlq{sfx}"), 5)
            .url
    };
    let queues = engine::settings::Queues {
        catalog: url("catalog-jobs"),
        customers: url("customer-jobs"),
        invoices: url("invoice-jobs"),
    };
    (
        Arc::new(store::MemoryStore::new()),
        Arc::new(store::MemorySealer::new()),
        Arc::new(queue),
        queues,
    )
}

/// API Gateway's part is the service API's own router (the one the `api` Lambda runs); this
/// meters each request as one `api` invocation.
async fn meter(
    State(invocations): State<Arc<metering::Invocations>>,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    invocations.record("api", started.elapsed());
    resp
}

/// The SQS event-source mapping's part: receive, run, delete what succeeded; what failed
/// transiently becomes visible again soon (and moves to the dead-letter queue after 5 receives).
async fn poll_queue(
    svc: Service,
    queue_url: String,
    mut stop: watch::Receiver<bool>,
    invocations: Arc<metering::Invocations>,
) {
    let function = match queue_url.rsplit('/').next().unwrap_or_default() {
        q if q.starts_with("catalog") => "catalog-pull",
        q if q.starts_with("customer") => "customer-pull",
        q if q.starts_with("invoice") => "invoice-pull",
        _ => "pull",
    };
    loop {
        if *stop.borrow() {
            return;
        }
        let received = tokio::select! {
            r = svc.queue.receive(&queue_url, 5, 1, 300) => r,
            _ = stop.changed() => return,
        };
        let jobs = match received {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(queue = %queue_url, error = %e, "receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if jobs.is_empty() {
            // moto long-polls; the in-memory queue answers at once, so do not spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let deadline = engine::jobs::local_deadline(&svc);
        let records = jobs
            .iter()
            .map(|j| {
                (
                    j.id.clone(),
                    match &j.body {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let failed = engine::jobs::handle_batch(&svc, records, deadline).await;
        invocations.record(function, started.elapsed());
        for j in &jobs {
            let result = if failed.contains(&j.id) {
                // Back soon, with a little backoff by receive count.
                svc.queue
                    .change_visibility(&queue_url, &j.receipt, j.receive_count.min(10) * 2)
                    .await
            } else {
                svc.queue.delete(&queue_url, &j.receipt).await
            };
            if let Err(e) = result {
                tracing::warn!(queue = %queue_url, error = %e, "could not settle a job message");
            }
        }
    }
}

/// The EventBridge schedule's part.
async fn schedule(
    svc: Service,
    every_secs: u64,
    mut stop: watch::Receiver<bool>,
    invocations: Arc<metering::Invocations>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let started = std::time::Instant::now();
                if let Err(e) = engine::fan_out(&svc, None).await {
                    tracing::warn!(error = %e, "scheduled fan-out failed");
                }
                invocations.record("dispatcher", started.elapsed());
            }
            _ = stop.changed() => return,
        }
    }
}

/// moto started by this process for a command that needs only the AWS stand-in
/// (`local-stack deployed`); stopped when dropped.
pub struct MotoGuard(MotoProcess);

impl MotoGuard {
    pub async fn start() -> Result<MotoGuard, StackError> {
        MotoProcess::start().await.map(MotoGuard)
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }
}

/// moto's server as a child process on a free loopback port; killed when dropped.
struct MotoProcess {
    url: String,
    child: tokio::process::Child,
}

impl MotoProcess {
    async fn start() -> Result<MotoProcess, StackError> {
        // Our launcher (moto's server with DynamoDB requests linearized), unless a plain
        // moto_server binary is named (`MOTO_SERVER_BIN`, `BENCH_MOTO=stock`).
        let (path, mut args) = match moto_server_bin() {
            Some(bin) => (bin, vec![]),
            None => (
                workspace_root().join(".venv/stack/bin/python"),
                vec![
                    workspace_root()
                        .join("infra/python/moto_server.py")
                        .display()
                        .to_string(),
                ],
            ),
        };
        let port = free_port().map_err(|source| StackError::Moto {
            path: path.display().to_string(),
            source,
        })?;
        args.extend([
            "-H".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            port.to_string(),
        ]);
        let log_dir = workspace_root().join(".local");
        let _ = std::fs::create_dir_all(&log_dir);
        let log = std::fs::File::create(log_dir.join("moto.log")).ok();
        let mut cmd = tokio::process::Command::new(&path);
        cmd.args(&args)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        match log {
            Some(f) => {
                let f2 = f.try_clone().ok();
                cmd.stdout(f);
                if let Some(f2) = f2 {
                    cmd.stderr(f2);
                }
            }
            None => {
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
        }
        let child = cmd.spawn().map_err(|source| StackError::Moto {
            path: path.display().to_string(),
            source,
        })?;
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..150 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(MotoProcess { url, child });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StackError::MotoTimeout(url))
    }
}

impl Drop for MotoProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The workspace root (where `.venv/` and `.local/` live), found from this crate's manifest.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
