//! The deployed topology, on loopback: each `functions/` binary as its own process behind a
//! Lambda Runtime API emulator, wired as template.yaml wires them on AWS.
//!
//! | AWS                                   | here                                                   |
//! |---------------------------------------|--------------------------------------------------------|
//! | Lambda (one container per function)   | the binary, spawned with the template's environment and only that, behind [`FunctionHost`]: `/next` hands out an epoch `Lambda-Runtime-Deadline-Ms` = now + the template's `Timeout`; past it the process is killed |
//! | SQS event-source mapping              | a poller per `Type: SQS` event: `BatchSize`, the queue's `VisibilityTimeout`, `ReportBatchItemFailures` settlement, the queue's redrive to its DLQ after `maxReceiveCount` (moto applies it) |
//! | API Gateway HTTP API                  | [`Gateway`]: only the template's routes, on `$default` and a named stage (`/{stage}/…`), v2 events with the stage in `rawPath`, base64 bodies for non-text content, the 30 s cut |
//! | EventBridge Scheduler                 | [`Deployed::tick`]: the dispatcher invoked with `infra/events/dispatcher-schedule.json` |
//! | SSM parameters                        | created in moto from the template's parameter names |
//!
//! What differs from AWS, on purpose: `KIOTVIET_TOKEN_URL` points at the sandbox (loopback only),
//! and a failed message may be made visible again sooner than its `VisibilityTimeout`
//! ([`DeployedOptions::redelivery_after`]) so that five receives fit in a test.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as AxPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sandbox::abaha::{AbahaConfig as AbahaSimConfig, AbahaHandle, AbahaSim};
use sandbox::kiotviet::{KiotVietSim, KvConfig, KvHandle};
use serde_json::{Value, json};
use store::JobQueue;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use crate::template::{Expr, Function, Template, Trigger};
use crate::{StackError, workspace_root};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "ap-southeast-1";
/// API Gateway's integration timeout for HTTP APIs.
const GATEWAY_CUT: Duration = Duration::from_secs(30);

/// How to start the deployed topology.
#[derive(Debug, Clone, Default)]
pub struct DeployedOptions {
    /// DynamoDB/SQS/KMS/SSM endpoint (moto).
    pub aws_endpoint: String,
    /// Suffix for table, queues, key alias and SSM parameter names (tests sharing one moto).
    pub name_suffix: String,
    /// The function binaries by their template `Binary` name (e.g. Cargo's `CARGO_BIN_EXE_api`).
    pub binaries: BTreeMap<String, PathBuf>,
    /// KiotViet sandbox configuration.
    pub kiotviet: Option<KvConfig>,
    /// The named stage served besides `$default` (e.g. `prod`).
    pub stage: Option<String>,
    /// A `Timeout` other than the template's, by binary (a test making a pull hand over fast).
    pub timeout_override: BTreeMap<String, u64>,
    /// Make failed messages visible again after this instead of the queue's VisibilityTimeout.
    pub redelivery_after: Option<Duration>,
    /// Template parameters whose SSM parameter is not created (a deploy that forgot one).
    pub missing_parameters: Vec<String>,
    /// Extra environment for every function (e.g. a short lease for a test).
    pub extra_env: BTreeMap<String, String>,
    /// Extra environment for one function, by binary (e.g. a broken configuration).
    pub function_env: BTreeMap<String, BTreeMap<String, String>>,
    /// Deploy with `WebhookBaseUrl` = this gateway's named stage (or `$default`), so that
    /// saving a connection registers the KiotViet sandbox's webhooks here.
    pub webhooks: bool,
    /// Hand out `Lambda-Runtime-Deadline-Ms` as `cargo lambda watch` does: the timeout in
    /// milliseconds (`600000`), not an epoch time.
    pub cargo_lambda_deadlines: bool,
}

/// A running deployed topology. Dropping it kills the processes.
pub struct Deployed {
    /// The API Gateway emulator's base URL (`$default` stage).
    pub api_url: String,
    pub admin_token: String,
    pub kiotviet: KvHandle,
    pub abaha: AbahaHandle,
    pub hosts: BTreeMap<String, Arc<FunctionHost>>,
    /// Where each function's process logs (`<function>.log`).
    pub log_dir: PathBuf,
    /// Queue URLs by template logical id (job queues and dead-letter queues).
    pub queues: BTreeMap<String, String>,
    pub table_name: String,
    pub sqs: Arc<dyn JobQueue>,
    sqs_client: aws_sdk_sqs::Client,
    ssm_client: aws_sdk_ssm::Client,
    /// SSM parameter names by template parameter (`AdminTokenParameter` → `/…/admin-token`).
    ssm_names: BTreeMap<String, String>,
    schedule_event: Value,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Deployed {
    pub async fn start(opts: DeployedOptions) -> Result<Deployed, StackError> {
        let template = Template::load_workspace().map_err(|e| StackError::Config(e.to_string()))?;
        let functions = template
            .functions()
            .map_err(|e| StackError::Config(e.to_string()))?;
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&opts.aws_endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "local",
            ))
            .load()
            .await;
        let dynamo = aws_sdk_dynamodb::Client::new(&aws);
        let kms = aws_sdk_kms::Client::new(&aws);
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let ssm = aws_sdk_ssm::Client::new(&aws);
        let sfx = &opts.name_suffix;
        let fail = |what: &'static str| {
            move |e: store::StoreError| StackError::Provision {
                what,
                message: e.to_string(),
            }
        };

        // Resources, named as the stack would name them (with the suffix).
        let table_name = format!("kiotviet-fnb-sync{sfx}");
        store::provision::ensure_table(&dynamo, &table_name)
            .await
            .map_err(fail("the DynamoDB table"))?;
        let key_id = store::provision::ensure_key(&kms, &format!("alias/kiotviet-fnb-sync{sfx}"))
            .await
            .map_err(fail("the KMS key"))?;
        let mut refs: HashMap<String, String> = HashMap::new();
        refs.insert("Table".into(), table_name.clone());
        refs.insert("SecretKey".into(), key_id);
        let mut queues = BTreeMap::new();
        for q in template.queues() {
            let Some((dlq, max)) = &q.redrive else {
                continue;
            };
            let urls = store::provision::ensure_queue(
                &sqs,
                &format!("{}{sfx}", q.logical_id),
                &format!("{dlq}{sfx}"),
                *max,
            )
            .await
            .map_err(fail("an SQS queue"))?;
            refs.insert(q.logical_id.clone(), urls.url.clone());
            queues.insert(q.logical_id.clone(), urls.url);
            queues.insert(dlq.clone(), urls.dlq_url);
        }

        // The systems we do not own.
        let kiotviet = KiotVietSim::start(opts.kiotviet.clone().unwrap_or_default())
            .await
            .map_err(StackError::Sandbox)?;
        let abaha_token = "local-abaha-token".to_string();
        let abaha = AbahaSim::start(AbahaSimConfig {
            token: abaha_token.clone(),
            ..AbahaSimConfig::default()
        })
        .await
        .map_err(StackError::Sandbox)?;

        // The gateway's address first: it is a parameter (WebhookBaseUrl) of the functions.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| StackError::Bind {
                addr: "127.0.0.1:0".into(),
                source,
            })?;
        let api_url = format!(
            "http://{}",
            listener.local_addr().map_err(|source| StackError::Bind {
                addr: "127.0.0.1:0".into(),
                source,
            })?
        );
        // Parameters: the template's defaults, the sandboxes' URLs, suffixed SSM names.
        let admin_token = "local-admin-token".to_string();
        let mut ssm_names = BTreeMap::new();
        let mut params: HashMap<String, String> = HashMap::new();
        // Every template parameter at its default; a parameter without one must be given here.
        for name in template.parameter_names() {
            let value = template.parameter_default(&name).unwrap_or_default();
            params.insert(name, value);
        }
        params.insert("KiotVietApiUrl".into(), kiotviet.url());
        params.insert("AbahaApiUrl".into(), abaha.url());
        if opts.webhooks {
            let stage = opts
                .stage
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            params.insert("WebhookBaseUrl".into(), format!("{api_url}{stage}"));
        }
        for (param, value) in [
            ("AdminTokenParameter", &admin_token),
            ("AbahaTokenParameter", &abaha_token),
        ] {
            let name = format!(
                "/kiotviet-fnb-sync{sfx}/{}",
                params[param].rsplit('/').next().unwrap_or(param)
            );
            params.insert(param.into(), name.clone());
            ssm_names.insert(param.to_string(), name.clone());
            if opts.missing_parameters.iter().any(|p| p == param) {
                continue;
            }
            ssm.put_parameter()
                .name(&name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .overwrite(true)
                .send()
                .await
                .map_err(|e| StackError::Provision {
                    what: "an SSM parameter",
                    message: aws_sdk_ssm::error::DisplayErrorContext(e).to_string(),
                })?;
        }

        let (shutdown, stop) = watch::channel(false);
        let log_dir = workspace_root()
            .join(".local/deployed")
            .join(sfx.trim_start_matches('-'));
        let _ = std::fs::create_dir_all(&log_dir);
        let mut hosts = BTreeMap::new();
        for f in &functions {
            let mut env = resolve_env(f, &refs, &params)?;
            env.insert("KIOTVIET_TOKEN_URL".into(), kiotviet.token_url());
            for (k, v) in [
                ("AWS_ENDPOINT_URL", opts.aws_endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", REGION),
                ("AWS_DEFAULT_REGION", REGION),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ] {
                env.insert(k.into(), v.into());
            }
            env.extend(opts.extra_env.clone());
            env.extend(
                opts.function_env
                    .get(&f.binary)
                    .cloned()
                    .unwrap_or_default(),
            );
            let binary =
                opts.binaries.get(&f.binary).cloned().ok_or_else(|| {
                    StackError::Config(format!("no binary given for {}", f.binary))
                })?;
            let timeout = opts
                .timeout_override
                .get(&f.binary)
                .copied()
                .unwrap_or(f.timeout_secs);
            let host = FunctionHost::start(
                f,
                binary,
                env,
                Duration::from_secs(timeout),
                log_dir.join(format!("{}.log", f.binary)),
            )
            .await?;
            host.relative_deadline.store(
                opts.cargo_lambda_deadlines,
                std::sync::atomic::Ordering::Relaxed,
            );
            hosts.insert(f.binary.clone(), host);
        }

        let queue: Arc<dyn JobQueue> = Arc::new(store::SqsQueue::new(sqs.clone()));
        let mut tasks = Vec::new();
        for f in &functions {
            for t in &f.triggers {
                if let Trigger::Sqs {
                    queue: logical,
                    batch_size,
                    report_batch_item_failures,
                } = t
                {
                    let q = template.queue(logical).ok_or_else(|| {
                        StackError::Config(format!("{}: no queue {logical}", f.logical_id))
                    })?;
                    let mapping = EventSourceMapping {
                        host: hosts[&f.binary].clone(),
                        queue: queue.clone(),
                        url: queues[logical].clone(),
                        arn: format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{logical}{sfx}"),
                        batch_size: *batch_size,
                        visibility: q.visibility_timeout_secs as u32,
                        redelivery: opts
                            .redelivery_after
                            .map_or(q.visibility_timeout_secs as u32, |d| d.as_secs() as u32),
                        report_failures: *report_batch_item_failures,
                    };
                    tasks.push(tokio::spawn(mapping.run(stop.clone())));
                }
            }
        }

        let routes: Vec<(String, String)> = functions
            .iter()
            .filter(|f| f.binary == "api")
            .flat_map(|f| f.triggers.iter())
            .filter_map(|t| match t {
                Trigger::HttpApi { method, path } => Some((method.clone(), path.clone())),
                _ => None,
            })
            .collect();
        let gateway = Gateway {
            host: hosts
                .get("api")
                .cloned()
                .ok_or_else(|| StackError::Config("no api function".into()))?,
            routes: Arc::new(routes),
            stage: opts.stage.clone(),
        };
        let app = axum::Router::new()
            .fallback(gateway_serve)
            .with_state(gateway);
        let mut stop_api = stop.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_api.wait_for(|s| *s).await;
                })
                .await;
        }));
        let schedule_event =
            std::fs::read_to_string(workspace_root().join("infra/events/dispatcher-schedule.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_else(|| json!({}));
        Ok(Deployed {
            log_dir,
            api_url,
            admin_token,
            kiotviet,
            abaha,
            hosts,
            queues,
            table_name,
            sqs: queue,
            sqs_client: sqs,
            ssm_client: ssm,
            ssm_names,
            schedule_event,
            shutdown,
            tasks,
        })
    }

    /// The schedule fires once: the dispatcher, invoked as EventBridge Scheduler invokes it.
    pub async fn tick(&self) -> Result<Value, InvokeError> {
        let host = self
            .hosts
            .get("dispatcher")
            .ok_or(InvokeError::NotRunning)?;
        let out = host.invoke(self.schedule_event.clone()).await?;
        serde_json::from_slice(&out).map_err(|e| InvokeError::Answer(e.to_string()))
    }

    /// Deletes the SSM parameter behind a template parameter (`AbahaTokenParameter`), as an
    /// operator who never created it: warm processes keep what they read at init, cold starts fail.
    pub async fn delete_parameter(&self, param: &str) -> Result<(), String> {
        let name = self
            .ssm_names
            .get(param)
            .ok_or_else(|| format!("no SSM parameter for {param}"))?;
        self.ssm_client
            .delete_parameter()
            .name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_ssm::error::DisplayErrorContext(e).to_string())
    }

    /// Messages waiting in a queue (by template logical id), for tests.
    pub async fn queue_depth(&self, logical: &str) -> usize {
        let Some(url) = self.queues.get(logical) else {
            return 0;
        };
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let Ok(out) = self
            .sqs_client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
        else {
            return 0;
        };
        let attrs = out.attributes.unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|a| attrs.get(a).and_then(|v| v.parse::<usize>().ok()))
        .sum()
    }

    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        for h in self.hosts.values() {
            h.kill().await;
        }
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A function's environment as the template gives it, every reference resolved; a reference
/// the local topology does not know is an error (template and code drifted apart).
fn resolve_env(
    f: &Function,
    refs: &HashMap<String, String>,
    params: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, StackError> {
    let mut env = BTreeMap::new();
    for (name, expr) in &f.environment {
        let value = match expr {
            Expr::Literal(v) => v.clone(),
            Expr::Ref(r) => refs
                .get(r)
                .or_else(|| params.get(r))
                .cloned()
                .ok_or_else(|| {
                    StackError::Config(format!("{}: {name} = !Ref {r}, unknown here", f.logical_id))
                })?,
            other => {
                return Err(StackError::Config(format!(
                    "{}: {name} = {other:?}, not resolvable here",
                    f.logical_id
                )));
            }
        };
        env.insert(name.clone(), value);
    }
    Ok(env)
}

/// Why an invocation did not answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function answered an error: {0}")]
    Function(String),
    #[error("the function ran past its {0:?} timeout and was killed")]
    TimedOut(Duration),
    #[error("the function's process exited ({0})")]
    Exited(String),
    #[error("the function is not running")]
    NotRunning,
    #[error("unreadable answer: {0}")]
    Answer(String),
}

/// What a function answered: its response body, or its error body.
type Answer = Result<Vec<u8>, String>;
/// Invocations handed to the process (`/next`) and not yet answered, by request id.
type Inflight = Arc<std::sync::Mutex<HashMap<String, oneshot::Sender<Answer>>>>;

struct Invocation {
    id: String,
    event: Value,
    /// The function's timeout; the deadline is set when the runtime takes the invocation
    /// (after a cold start's init), as on Lambda.
    timeout: Duration,
    /// The deadline as the timeout itself (cargo-lambda), not epoch milliseconds (AWS).
    relative: bool,
    /// Told when the runtime took it: the timeout clock starts then.
    taken: oneshot::Sender<()>,
    answer: oneshot::Sender<Answer>,
}

/// Lambda's limit for a cold start's init phase.
const INIT_LIMIT: Duration = Duration::from_secs(10);

/// One function: its process (one container, one invocation at a time) and its Runtime API.
pub struct FunctionHost {
    pub name: String,
    arn: String,
    timeout: Duration,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    log: PathBuf,
    runtime_api: String,
    next: mpsc::Sender<Invocation>,
    pending: Arc<Mutex<mpsc::Receiver<Invocation>>>,
    inflight: Inflight,
    child: Mutex<Option<tokio::process::Child>>,
    /// Cold starts so far (a killed or crashed process is started again on the next invoke).
    pub starts: std::sync::atomic::AtomicU32,
    /// Invocations so far, and how many ended with the process killed at its deadline.
    pub invocations: std::sync::atomic::AtomicU32,
    pub timeouts: std::sync::atomic::AtomicU32,
    /// The running process's id (0: none), for [`FunctionHost::sigkill`].
    pid: std::sync::atomic::AtomicU32,
    /// Deadlines as the timeout in ms (cargo-lambda) rather than epoch ms (AWS).
    relative_deadline: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
struct RuntimeState {
    pending: Arc<Mutex<mpsc::Receiver<Invocation>>>,
    inflight: Inflight,
    arn: String,
}

impl FunctionHost {
    async fn start(
        f: &Function,
        binary: PathBuf,
        mut env: BTreeMap<String, String>,
        timeout: Duration,
        log: PathBuf,
    ) -> Result<Arc<FunctionHost>, StackError> {
        let (next, pending) = mpsc::channel(16);
        let pending = Arc::new(Mutex::new(pending));
        let inflight = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let name = format!("kiotviet-fnb-sync-{}", f.binary);
        let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}");
        let state = RuntimeState {
            pending: pending.clone(),
            inflight: inflight.clone(),
            arn: arn.clone(),
        };
        let app = axum::Router::new()
            .route(
                "/2018-06-01/runtime/invocation/next",
                axum::routing::get(runtime_next),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                axum::routing::post(runtime_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                axum::routing::post(runtime_error),
            )
            .route(
                "/2018-06-01/runtime/init/error",
                axum::routing::post(|| async { StatusCode::ACCEPTED }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| StackError::Bind {
                addr: "127.0.0.1:0".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StackError::Bind {
            addr: "127.0.0.1:0".into(),
            source,
        })?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let runtime_api = addr.to_string();
        for (k, v) in [
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local".into()),
        ] {
            env.insert(k.into(), v);
        }
        Ok(Arc::new(FunctionHost {
            name,
            arn,
            timeout,
            binary,
            env,
            log,
            runtime_api,
            next,
            pending,
            inflight,
            child: Mutex::new(None),
            starts: std::sync::atomic::AtomicU32::new(0),
            invocations: std::sync::atomic::AtomicU32::new(0),
            timeouts: std::sync::atomic::AtomicU32::new(0),
            pid: std::sync::atomic::AtomicU32::new(0),
            relative_deadline: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The Runtime API address the process is given (`AWS_LAMBDA_RUNTIME_API`).
    pub fn runtime_api(&self) -> &str {
        &self.runtime_api
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    fn spawn(&self) -> Result<tokio::process::Child, InvokeError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| InvokeError::Exited(format!("log file: {e}")))?;
        let err = log
            .try_clone()
            .map_err(|e| InvokeError::Exited(format!("log file: {e}")))?;
        let mut cmd = tokio::process::Command::new(&self.binary);
        // Only the template's environment (and the runtime's own variables): a variable the
        // code needs and the template lacks fails here as it would on AWS.
        cmd.env_clear()
            .envs(&self.env)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true);
        self.starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let child = cmd
            .spawn()
            .map_err(|e| InvokeError::Exited(format!("{}: {e}", self.binary.display())))?;
        self.pid.store(
            child.id().unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(child)
    }

    /// SIGKILL of the process, as when a Lambda container dies mid-invocation (the invocation
    /// in progress fails; the next one starts a new process).
    pub fn sigkill(&self) {
        let pid = self.pid.swap(0, std::sync::atomic::Ordering::Relaxed);
        if pid != 0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    /// Invokes the function once with `event`, as Lambda does: a cold start if no process runs,
    /// an epoch deadline of now + Timeout, the process killed if it runs past it.
    pub async fn invoke(&self, event: Value) -> Result<Vec<u8>, InvokeError> {
        let mut child = self.child.lock().await;
        let alive = match child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        };
        if !alive {
            self.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            *child = Some(self.spawn()?);
        }
        self.invocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = Instant::now();
        let (tx, mut rx) = oneshot::channel();
        let (taken_tx, mut taken_rx) = oneshot::channel();
        let id = format!("{:032x}", rand::random::<u128>());
        self.next
            .send(Invocation {
                id,
                event,
                timeout: self.timeout,
                relative: self
                    .relative_deadline
                    .load(std::sync::atomic::Ordering::Relaxed),
                taken: taken_tx,
                answer: tx,
            })
            .await
            .map_err(|_| InvokeError::NotRunning)?;
        // The clock runs from when the runtime took the invocation; before that, the init limit.
        let mut started: Option<Instant> = None;
        loop {
            tokio::select! {
                answer = &mut rx => {
                    return match answer {
                        Ok(Ok(body)) => Ok(body),
                        Ok(Err(e)) => Err(InvokeError::Function(e)),
                        Err(_) => Err(InvokeError::NotRunning),
                    };
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if started.is_none() && taken_rx.try_recv().is_ok() {
                started = Some(Instant::now());
            }
            let over = match started {
                Some(s) => s.elapsed() >= self.timeout,
                None => sent.elapsed() >= INIT_LIMIT + self.timeout,
            };
            if over {
                if let Some(c) = child.as_mut() {
                    let _ = c.kill().await;
                }
                *child = None;
                self.drain_pending().await;
                self.timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(InvokeError::TimedOut(self.timeout));
            }
            if let Some(c) = child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                *child = None;
                self.drain_pending().await;
                return Err(InvokeError::Exited(status.to_string()));
            }
        }
    }

    /// Drops an invocation nobody took (the process died before `/next`).
    async fn drain_pending(&self) {
        let mut rx = self.pending.lock().await;
        while rx.try_recv().is_ok() {}
    }

    pub async fn kill(&self) {
        if let Some(mut c) = self.child.lock().await.take() {
            let _ = c.kill().await;
        }
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn runtime_next(State(state): State<RuntimeState>) -> Response {
    let next = state.pending.lock().await.recv().await;
    let Some(inv) = next else {
        return StatusCode::GONE.into_response();
    };
    state
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(inv.id.clone(), inv.answer);
    let _ = inv.taken.send(());
    let timeout_ms = inv.timeout.as_millis() as u64;
    let deadline_ms = if inv.relative {
        timeout_ms
    } else {
        epoch_ms() + timeout_ms
    };
    let mut resp = (StatusCode::OK, inv.event.to_string()).into_response();
    let h = resp.headers_mut();
    for (k, v) in [
        ("lambda-runtime-aws-request-id", inv.id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", state.arn.clone()),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
        ),
        ("content-type", "application/json".into()),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

async fn runtime_response(
    State(state): State<RuntimeState>,
    AxPath(id): AxPath<String>,
    body: Bytes,
) -> StatusCode {
    let tx = state
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    match tx {
        Some(tx) => {
            let _ = tx.send(Ok(body.to_vec()));
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn runtime_error(
    State(state): State<RuntimeState>,
    AxPath(id): AxPath<String>,
    body: Bytes,
) -> StatusCode {
    let tx = state
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    match tx {
        Some(tx) => {
            let _ = tx.send(Err(String::from_utf8_lossy(&body).into_owned()));
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

/// An SQS event-source mapping as the template declares it.
struct EventSourceMapping {
    host: Arc<FunctionHost>,
    queue: Arc<dyn JobQueue>,
    url: String,
    arn: String,
    batch_size: u32,
    visibility: u32,
    redelivery: u32,
    report_failures: bool,
}

impl EventSourceMapping {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let received = tokio::select! {
                r = self.queue.receive(&self.url, self.batch_size, 1, self.visibility) => r,
                _ = stop.changed() => return,
            };
            let jobs = match received {
                Ok(j) if !j.is_empty() => j,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(queue = %self.url, error = %e, "receive failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let records: Vec<Value> = jobs
                .iter()
                .map(|j| {
                    let body = match &j.body {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!({
                        "messageId": j.id, "receiptHandle": j.receipt, "body": body,
                        "attributes": {"ApproximateReceiveCount": j.receive_count.to_string(),
                            "SentTimestamp": epoch_ms().to_string()},
                        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                        "eventSourceARN": self.arn, "awsRegion": REGION,
                    })
                })
                .collect();
            let failed: Vec<String> = match self.host.invoke(json!({"Records": records})).await {
                Ok(answer) if self.report_failures => serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| v.get("batchItemFailures").cloned())
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                    .collect(),
                Ok(_) => vec![],
                // A failed invocation returns the whole batch.
                Err(e) => {
                    tracing::warn!(function = %self.host.name, error = %e, "invocation failed; the batch comes back");
                    jobs.iter().map(|j| j.id.clone()).collect()
                }
            };
            for j in &jobs {
                let settled = if failed.contains(&j.id) {
                    self.queue
                        .change_visibility(&self.url, &j.receipt, self.redelivery)
                        .await
                } else {
                    self.queue.delete(&self.url, &j.receipt).await
                };
                if let Err(e) = settled {
                    tracing::warn!(queue = %self.url, error = %e, "could not settle a message");
                }
            }
        }
    }
}

/// The HTTP API: the template's routes on `$default` and one named stage.
#[derive(Clone)]
struct Gateway {
    host: Arc<FunctionHost>,
    routes: Arc<Vec<(String, String)>>,
    stage: Option<String>,
}

impl Gateway {
    /// The stage a path is for, and the path within it.
    fn stage_of<'a>(&self, path: &'a str) -> (String, &'a str) {
        if let Some(stage) = &self.stage
            && let Some(rest) = path.strip_prefix(&format!("/{stage}"))
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return (stage.clone(), rest);
        }
        ("$default".into(), path)
    }

    /// The route key and path parameters of the template route matching `path`.
    fn matching(&self, method: &str, path: &str) -> Option<(String, BTreeMap<String, String>)> {
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        self.routes.iter().find_map(|(m, template)| {
            if m != method && m != "ANY" {
                return None;
            }
            let tsegs: Vec<&str> = template.split('/').skip(1).collect();
            if tsegs.len() != segs.len() {
                return None;
            }
            let mut params = BTreeMap::new();
            for (t, s) in tsegs.iter().zip(&segs) {
                match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    Some(name) if !s.is_empty() => {
                        params.insert(name.to_string(), percent_decode(s));
                    }
                    Some(_) => return None,
                    None if t == s => {}
                    None => return None,
                }
            }
            Some((format!("{m} {template}"), params))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

async fn gateway_serve(State(gw): State<Gateway>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // HTTP API payloads are at most 10 MB.
    let Ok(bytes) = axum::body::to_bytes(body, 10 * 1024 * 1024).await else {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let raw_path = parts.uri.path().to_string();
    let (stage, path) = gw.stage_of(&raw_path);
    let method = parts.method.as_str().to_string();
    let Some((route_key, params)) = gw.matching(&method, path) else {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let headers = headers_json(&parts.headers);
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_text = content_type.starts_with("application/json") || content_type.starts_with("text/");
    let mut event = json!({
        "version": "2.0", "routeKey": route_key, "rawPath": raw_path,
        "rawQueryString": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "local", "domainName": "127.0.0.1", "domainPrefix": "local",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "local"},
            "requestId": format!("{:016x}", rand::random::<u64>()), "routeKey": route_key,
            "stage": stage, "time": "", "timeEpoch": epoch_ms(),
        },
        "pathParameters": params,
        "isBase64Encoded": false,
    });
    if let Some(q) = parts.uri.query() {
        let map: BTreeMap<String, String> = q
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        event["queryStringParameters"] = json!(map);
    }
    if !bytes.is_empty() {
        if is_text && let Ok(text) = std::str::from_utf8(&bytes) {
            event["body"] = json!(text);
        } else {
            event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
            event["isBase64Encoded"] = json!(true);
        }
    }
    let answer = match tokio::time::timeout(GATEWAY_CUT, gw.host.invoke(event)).await {
        // The integration's 30 s: API Gateway gives up (503). The function's own Timeout
        // (shorter) is a failed invocation, answered like any function error (500).
        Err(_) => {
            return gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "api invocation failed");
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
        Ok(Ok(a)) => a,
    };
    let Ok(v) = serde_json::from_slice::<Value>(&answer) else {
        return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let status = v["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match v["body"].as_str() {
        Some(b) if v["isBase64Encoded"].as_bool() == Some(true) => {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default()
        }
        Some(b) => b.as_bytes().to_vec(),
        None => vec![],
    };
    let mut resp = (status, body).into_response();
    if let Some(h) = v["headers"].as_object() {
        for (k, val) in h {
            if let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::try_from(k.as_str()),
                val.as_str().map(axum::http::HeaderValue::from_str),
            ) {
                resp.headers_mut().insert(name, value);
            }
        }
    }
    resp
}

fn headers_json(h: &HeaderMap) -> Value {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in h {
        if let Ok(v) = v.to_str() {
            out.entry(k.as_str().to_ascii_lowercase())
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(v);
                })
                .or_insert_with(|| v.to_string());
        }
    }
    json!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_template_route_then_only_its_method_and_shape_match() {
        let gw = Gateway {
            host: Arc::new(dummy_host()),
            routes: Arc::new(vec![
                ("POST".into(), "/v1/shops/{shop_id}/sync".into()),
                ("GET".into(), "/v1/shops/{shop_id}/sync/{run_id}".into()),
            ]),
            stage: Some("prod".into()),
        };
        let (key, params) = gw.matching("POST", "/v1/shops/s%2D1/sync").unwrap();
        assert_eq!(key, "POST /v1/shops/{shop_id}/sync");
        assert_eq!(params["shop_id"], "s-1");
        assert!(gw.matching("GET", "/v1/shops/s1/sync").is_none());
        assert!(gw.matching("POST", "/v1/shops//sync").is_none());
        assert_eq!(gw.stage_of("/prod/v1/x"), ("prod".to_string(), "/v1/x"));
        assert_eq!(gw.stage_of("/production/v1/x").0, "$default");
    }

    fn dummy_host() -> FunctionHost {
        let (next, pending) = mpsc::channel(1);
        FunctionHost {
            name: "x".into(),
            arn: "x".into(),
            timeout: Duration::from_secs(1),
            binary: PathBuf::from("/nonexistent"),
            env: BTreeMap::new(),
            log: PathBuf::from("/dev/null"),
            runtime_api: String::new(),
            next,
            pending: Arc::new(Mutex::new(pending)),
            inflight: Arc::default(),
            child: Mutex::new(None),
            starts: std::sync::atomic::AtomicU32::new(0),
            invocations: std::sync::atomic::AtomicU32::new(0),
            timeouts: std::sync::atomic::AtomicU32::new(0),
            pid: std::sync::atomic::AtomicU32::new(0),
            relative_deadline: std::sync::atomic::AtomicBool::new(false),
        }
    }
}
