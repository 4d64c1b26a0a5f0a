//! Pull jobs on SQS (R-SYN-7) and the schedule's fan-out.
//!
//! A job names a run, a shop and the entities one pull function handles. A job that reaches its
//! deadline (or the hourly KiotViet budget) sends its own continuation and ends cleanly; a job that
//! fails transiently is left on the queue (SQS delivers it again, and after five tries moves it to
//! the dead-letter queue) and resumes from its checkpoint.

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{Connection, LeaseAnswer};
use tracing::Instrument;

use crate::error::JobError;
use crate::pull::{self, PullEnd};
use crate::runs::{self, Trigger};
use crate::service::Service;
use crate::settings::Queues;

/// What a run can sync. Order matters: categories before products (R-CAT-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Categories,
    Products,
    Customers,
    Invoices,
}

impl Entity {
    pub const ALL: [Entity; 4] = [
        Entity::Categories,
        Entity::Products,
        Entity::Customers,
        Entity::Invoices,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Categories => "categories",
            Entity::Products => "products",
            Entity::Customers => "customers",
            Entity::Invoices => "invoices",
        }
    }

    /// R-CON-1/R-CON-6: products bring their categories; orders bring the invoice pull.
    pub fn is_switched_on(self, conn: &Connection) -> bool {
        match self {
            Entity::Categories | Entity::Products => conn.sync.products,
            Entity::Customers => conn.sync.customers,
            Entity::Invoices => conn.sync.orders,
        }
    }

    pub fn queue(self, queues: &Queues) -> &str {
        match self {
            Entity::Categories | Entity::Products => &queues.catalog,
            Entity::Customers => &queues.customers,
            Entity::Invoices => &queues.invoices,
        }
    }
}

impl From<mapping::api::Entity> for Entity {
    fn from(e: mapping::api::Entity) -> Self {
        match e {
            mapping::api::Entity::Categories => Entity::Categories,
            mapping::api::Entity::Products => Entity::Products,
            mapping::api::Entity::Customers => Entity::Customers,
            mapping::api::Entity::Invoices => Entity::Invoices,
        }
    }
}

/// One message on a pull queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncJob {
    pub shop_id: String,
    pub run_id: String,
    pub entities: Vec<Entity>,
    pub full: bool,
    /// How many continuations came before this one (a guard against endless hand-overs).
    #[serde(default)]
    pub continuation: u32,
    /// Entities to enqueue (on their own queues) once this job's entities are done: invoices
    /// wait for the products of the same run, whose Abaha ids their lines carry (R-INV-2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<Entity>,
    /// Until when the run's start holds the shop's run lease (R-SYN-3): a job that ends before
    /// then needs no lease write of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
    /// The budget window in which the run's start took one KiotViet GET per entity (R-SYN-6):
    /// the first page of each entity is paid already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepaid: Option<DateTime<Utc>>,
    /// Started by the schedule: nobody watches it live, so a job reports its parts together
    /// when it ends (one write per job). A run from the Sync button reports each part as it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scheduled: bool,
    /// The part whose queue this job travels on, whatever part it is at (a scheduled run's one
    /// job: the catalog queue, whose function may send only there). None: its current part's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Entity>,
}

impl SyncJob {
    pub fn new(shop: &str, run_id: &str, full: bool) -> Self {
        SyncJob {
            shop_id: shop.to_string(),
            run_id: run_id.to_string(),
            entities: vec![],
            full,
            continuation: 0,
            then: vec![],
            lease_until: None,
            prepaid: None,
            scheduled: false,
            home: None,
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Most continuations one run may chain (about 8 hours of 5-minute Lambdas); past that the
/// entity is failed with a message instead of looping for ever.
const MAX_CONTINUATIONS: u32 = 100;

/// Runs one pull job until it is done, hands over, or fails. `deadline` is the Lambda's (or the
/// local runner's) hard stop.
pub async fn handle_job(svc: &Service, body: &Value, deadline: Instant) -> Result<(), JobError> {
    // KiotViet webhook jobs (R-SYN-8) travel on the same queues to the same functions.
    if crate::webhooks::is_webhook_job(body) {
        return crate::webhooks::apply(svc, body, deadline).await;
    }
    let job: SyncJob =
        serde_json::from_value(body.clone()).map_err(|e| JobError::BadJob(e.to_string()))?;
    // Every log line of the job carries the shop and the run (the pulls add the entity).
    let span = tracing::info_span!("pull", shop = %job.shop_id, run_id = %job.run_id);
    run_sync_job(svc, job, deadline).instrument(span).await
}

async fn run_sync_job(svc: &Service, job: SyncJob, deadline: Instant) -> Result<(), JobError> {
    let Some(conn) = svc.store.get_connection(&job.shop_id).await? else {
        // Disconnected after the run was queued: nothing to do, and nothing to retry.
        for e in job.entities.iter().chain(&job.then) {
            pull::end_entity(
                svc,
                &job,
                *e,
                "skipped",
                Some("The shop was disconnected before this part ran."),
            )
            .await?;
        }
        return Ok(());
    };
    // A job delivered again (after a failure, or an acknowledgement that never arrived) leaves
    // alone the parts this run already ended: pulling them again would reset their counts and
    // reopen a finished run.
    let (ended, read_at_start) = ended_entities(svc, &job).await?;
    let to_pull = job
        .entities
        .iter()
        .any(|e| !ended.contains(e) && e.is_switched_on(&conn));
    if to_pull && let Some(holder) = hold_run_lease(svc, &job, deadline).await? {
        // R-SYN-3: another run is the shop's now (this one's lease ran out while the job
        // waited); its pulls do the work, and this trigger is harmless.
        for e in job
            .entities
            .iter()
            .chain(&job.then)
            .filter(|e| !ended.contains(e))
        {
            let msg = format!(
                "Another run ({holder}) is syncing {}; this run left it to that one.",
                e.as_str()
            );
            pull::end_entity(svc, &job, *e, "skipped", Some(&msg)).await?;
        }
        return Ok(());
    }
    // Final reports of this job's parts, written together (see `pull::pull_entity`).
    let mut pending = Vec::new();
    for (i, entity) in job.entities.iter().enumerate() {
        if ended.contains(entity) {
            continue;
        }
        if !entity.is_switched_on(&conn) {
            pull::end_entity(
                svc,
                &job,
                *entity,
                "skipped",
                Some("This part was switched off."),
            )
            .await?;
            continue;
        }
        let end = match pull::pull_entity(svc, &conn, &job, *entity, deadline, &mut pending).await {
            Ok(end) => end,
            // Left on the queue: SQS delivers the job again and it resumes from the checkpoint.
            Err(e) if e.is_retryable() => {
                // The parts that ended are told (best effort: a part left untold is pulled
                // again, harmlessly, from its moved cursor).
                if let Err(store) =
                    runs::report_parts(svc, &job.shop_id, &job.run_id, &pending, None).await
                {
                    tracing::warn!(shop = %job.shop_id, run_id = %job.run_id, error = %store, "could not report the parts that ended");
                }
                return Err(e);
            }
            Err(e) => {
                // It would fail the same way on every delivery: end the part with a reason
                // instead of leaving the run "running" and the shop's lease held (R-SYN-7).
                pull::fail_entity(svc, &job, *entity, &e).await?;
                continue;
            }
        };
        match end {
            PullEnd::Done => {}
            PullEnd::HandOver { delay } => {
                runs::report_parts(svc, &job.shop_id, &job.run_id, &pending, None).await?;
                pending.clear();
                if job.continuation >= MAX_CONTINUATIONS {
                    pull::end_entity(
                        svc,
                        &job,
                        *entity,
                        "failed",
                        Some("The sync handed over too many times; press Sync again."),
                    )
                    .await?;
                    continue;
                }
                let next = SyncJob {
                    entities: job.entities[i..].to_vec(),
                    continuation: job.continuation + 1,
                    ..job.clone()
                };
                let delay_secs = delay.map(|d| d.as_secs().min(900) as u32);
                svc.queue
                    .send(
                        job.home.unwrap_or(*entity).queue(&svc.settings.queues),
                        &next.to_value(),
                        delay_secs,
                    )
                    .await?;
                tracing::info!(shop = %job.shop_id, run_id = %job.run_id, entity = entity.as_str(), ?delay_secs, "handed over to a continuation");
                return Ok(());
            }
        }
    }
    runs::report_parts(
        svc,
        &job.shop_id,
        &job.run_id,
        &pending,
        read_at_start.as_ref(),
    )
    .await?;
    enqueue_chained(svc, &job).await
}

/// Makes sure the shop's run lease is this run's for as long as the job may run (R-SYN-3), or
/// answers who holds it. The lease taken when the run started is enough while it outlives the
/// job's deadline (no write: an idle tick's jobs write no lease); otherwise one conditional
/// write takes it back (it expired, or this is a late continuation), unless another run has it.
async fn hold_run_lease(
    svc: &Service,
    job: &SyncJob,
    deadline: Instant,
) -> Result<Option<String>, store::StoreError> {
    let now = svc.now();
    let job_end = now
        + ChronoDuration::from_std(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or(ChronoDuration::minutes(15));
    if job.lease_until.is_some_and(|until| job_end < until) {
        return Ok(None);
    }
    let until = now
        + ChronoDuration::from_std(svc.settings.lease_ttl).unwrap_or(ChronoDuration::minutes(15));
    match svc
        .store
        .acquire_lease(&job.shop_id, runs::RUN_SCOPE, &job.run_id, until, now)
        .await?
    {
        LeaseAnswer::Acquired => Ok(None),
        LeaseAnswer::HeldBy { holder, .. } => Ok(Some(holder)),
    }
}

/// The job's entities whose part of the run already reached a final state, and the run as read.
async fn ended_entities(
    svc: &Service,
    job: &SyncJob,
) -> Result<(Vec<Entity>, Option<Value>), store::StoreError> {
    let report = svc.store.get_run(&job.shop_id, &job.run_id).await?;
    let state = |e: &Entity| {
        report
            .as_ref()
            .and_then(|r| r.pointer(&format!("/entities/{}/state", e.as_str())))
            .and_then(Value::as_str)
            .is_some_and(runs::is_final)
    };
    let ended = job.entities.iter().copied().filter(state).collect();
    Ok((ended, report))
}

/// Sends the job's chained entities, one job per queue, now that its own entities are done.
async fn enqueue_chained(svc: &Service, job: &SyncJob) -> Result<(), JobError> {
    let mut by_queue: Vec<(&str, SyncJob)> = Vec::new();
    for e in &job.then {
        let queue = e.queue(&svc.settings.queues);
        match by_queue.iter_mut().find(|(q, _)| *q == queue) {
            Some((_, next)) => next.entities.push(*e),
            None => {
                let mut next = SyncJob::new(&job.shop_id, &job.run_id, job.full);
                next.lease_until = job.lease_until;
                next.prepaid = job.prepaid;
                next.scheduled = job.scheduled;
                next.entities.push(*e);
                by_queue.push((queue, next));
            }
        }
    }
    for (queue, next) in by_queue {
        svc.queue.send(queue, &next.to_value(), None).await?;
        tracing::info!(shop = %job.shop_id, run_id = %job.run_id, entities = ?next.entities, "chained job enqueued");
    }
    Ok(())
}

/// What the schedule did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct FanOut {
    pub shops: usize,
    pub started: usize,
    pub already_running: usize,
    pub failed: usize,
}

/// The EventBridge schedule: one incremental run per connected shop, each run enqueuing one job per
/// pull function. A shop that fails to start is logged and the others go on (R-SYN-7).
pub async fn fan_out(svc: &Service) -> Result<FanOut, store::StoreError> {
    let conns = svc.store.list_connections().await?;
    let mut out = FanOut {
        shops: conns.len(),
        ..FanOut::default()
    };
    for conn in &conns {
        match runs::start(svc, conn, None, false, Trigger::Schedule).await {
            Ok(s) if s.already_running => out.already_running += 1,
            Ok(_) => out.started += 1,
            Err(e) => {
                out.failed += 1;
                tracing::warn!(shop = %conn.shop_id, error = %e, "scheduled run not started");
            }
        }
    }
    tracing::info!(?out, "schedule fan-out");
    Ok(out)
}

/// The deadline of a job run without a Lambda context (local stack).
pub fn local_deadline(svc: &Service) -> Instant {
    Instant::now() + svc.settings.job_budget.max(Duration::from_secs(30))
}

/// One SQS batch (R-SYN-7): every record runs (concurrently: they are different shops or runs),
/// and only the ids of records that should come back are returned — a bad shop never blocks
/// the others, and a malformed message is dropped (it would fail the same way every time).
pub async fn handle_batch(
    svc: &Service,
    records: Vec<(String, String)>,
    deadline: Instant,
) -> Vec<String> {
    let work = records.into_iter().map(|(id, body)| async move {
        let value: Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "dropping a malformed job message");
                return None;
            }
        };
        match handle_job(svc, &value, deadline).await {
            Ok(()) => None,
            Err(e) if e.is_retryable() => Some(id),
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "job failed for good; not retried");
                None
            }
        }
    });
    futures::future::join_all(work)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The Lambda context's deadline (milliseconds since the epoch) as an `Instant`.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
