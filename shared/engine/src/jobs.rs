//! Pull jobs on SQS (R-SYN-7) and the schedule's fan-out.
//!
//! A job names a run, a shop and the entities one pull function handles. A job that reaches its
//! deadline (or the hourly KiotViet budget) sends its own continuation and ends cleanly; a job that
//! fails transiently is left on the queue (SQS delivers it again, and after five tries moves it to
//! the dead-letter queue) and resumes from its checkpoint.

use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use mapping::api::{PartState, RunReport};
use serde::Serialize;
use serde_json::Value;
use store::{Connection, LeaseAnswer};
use tracing::Instrument;

use crate::error::{EngineError, JobError};
pub use crate::model::{Entity, EntitySwitch, JobMessage, SyncJob};
use crate::pull::{self, PullEnd};
pub use crate::queues::EntityQueue;
use crate::runs::{self, Trigger};
use crate::service::Service;

/// A message of a pull queue, or why it is a bad job (never retried).
pub fn parse_message(body: &Value) -> Result<JobMessage, JobError> {
    JobMessage::parse(body).map_err(|e| JobError::BadJob(e.to_string()))
}

/// Runs one pull job until it is done, hands over, or fails. `deadline` is the Lambda's (or the
/// local runner's) hard stop.
pub async fn handle_job(svc: &Service, body: &Value, deadline: Instant) -> Result<(), JobError> {
    let mut job = match parse_message(body)? {
        JobMessage::Webhook(job) => return crate::webhooks::apply(svc, job, deadline).await,
        JobMessage::Sync(job) => job,
    };
    job.invocation = format!("{:016x}", rand::random::<u64>());
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
                PartState::Skipped,
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
            pull::end_entity(svc, &job, *e, PartState::Skipped, Some(&msg)).await?;
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
                PartState::Skipped,
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
            PullEnd::Wait { delay } => {
                // The same job again, later; not a continuation (it did no work).
                let again = SyncJob {
                    entities: job.entities[i..].to_vec(),
                    ..job.clone()
                };
                let delay_secs = delay.as_secs_f64().ceil().min(900.0) as u32;
                svc.queue
                    .send(
                        entity.queue(&svc.settings.queues),
                        &again.to_value(),
                        Some(delay_secs),
                    )
                    .await?;
                return Ok(());
            }
            PullEnd::HandOver { delay } => {
                // Free the part before its continuation exists, so that one can take it.
                svc.store
                    .release_lease(&job.shop_id, entity.as_str(), &job.lease_holder())
                    .await?;
                runs::report_parts(svc, &job.shop_id, &job.run_id, &pending, None).await?;
                pending.clear();
                if !pull::may_continue(job.continuation) {
                    pull::end_entity(
                        svc,
                        &job,
                        *entity,
                        PartState::Failed,
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
) -> Result<(Vec<Entity>, Option<RunReport>), store::StoreError> {
    let report = svc.store.get_run(&job.shop_id, &job.run_id).await?;
    let ended = |e: &Entity| {
        report
            .as_ref()
            .and_then(|r| r.entities.get(e))
            .is_some_and(|part| part.state.is_final())
    };
    let ended = job.entities.iter().copied().filter(ended).collect();
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

/// Shops whose scheduled runs the dispatcher starts at once.
const FAN_OUT_CONCURRENCY: usize = 16;

/// The EventBridge schedule: one incremental run per connected shop, each run enqueuing one job per
/// pull function. A shop that fails to start is logged and the others go on (R-SYN-7).
pub async fn fan_out(svc: &Service) -> Result<FanOut, store::StoreError> {
    use futures::StreamExt;
    let conns = svc.store.list_connections().await?;
    let mut out = FanOut {
        shops: conns.len(),
        ..FanOut::default()
    };
    // Shops start side by side: one after the other, each start's few DynamoDB calls made the
    // tick's length grow with the number of shops (10,000 shops would pass the dispatcher's
    // timeout; README "1,000-shop tick"). Shops are independent; a bound keeps the burst polite.
    // Boxed, so the future stays Send for any lifetime (the dispatcher and the local stack spawn it).
    type Start<'a> = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = (&'a Connection, Result<runs::Started, EngineError>)>
                + Send
                + 'a,
        >,
    >;
    let starts: Vec<Start<'_>> = conns
        .iter()
        .map(|conn| -> Start<'_> {
            Box::pin(async move {
                (
                    conn,
                    runs::start(svc, conn, None, false, Trigger::Schedule).await,
                )
            })
        })
        .collect();
    let mut starts = futures::stream::iter(starts).buffer_unordered(FAN_OUT_CONCURRENCY);
    while let Some((conn, started)) = starts.next().await {
        match started {
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
    settle_batch(records, |value| async move {
        handle_job(svc, &value, deadline).await
    })
    .await
}

/// The one SQS batch runner: runs `job` on every record at once and answers the message ids
/// that should come back. A panic in one job fails that job only (it comes back, and after
/// `maxReceiveCount` goes to the dead-letter queue); the others of the batch are settled.
pub async fn settle_batch<F, Fut>(records: Vec<(String, String)>, job: F) -> Vec<String>
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = Result<(), JobError>>,
{
    use futures::FutureExt;
    let job = &job;
    let work = records.into_iter().map(|(id, body)| async move {
        let value: Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "dropping a malformed job message");
                return None;
            }
        };
        match std::panic::AssertUnwindSafe(job(value)).catch_unwind().await {
            Ok(Ok(())) => None,
            Ok(Err(e)) if e.is_retryable() => Some(id),
            Ok(Err(e)) => {
                tracing::error!(message_id = %id, error = %e, "job failed for good; not retried");
                None
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(message_id = %id, panic = %what, "job panicked; it comes back alone");
                Some(id)
            }
        }
    });
    futures::future::join_all(work)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The Lambda context's deadline (`Lambda-Runtime-Deadline-Ms`, milliseconds since the epoch)
/// as an `Instant`.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + time_left(deadline_ms, now_ms)
}

/// Longest a Lambda may run (15 minutes): no deadline is honoured beyond it.
const LAMBDA_MAX_RUN: Duration = Duration::from_secs(15 * 60);
/// Epoch milliseconds of 2001-09-09: anything smaller is not a date but a length of time.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// Time left before `deadline_ms`. AWS sends epoch milliseconds; emulators do not all do so
/// (`cargo lambda watch` sends the timeout itself, `600000`), and reading such a value as a date
/// long past would make every pull hand over before reading anything. A value too small to be a
/// date is a relative budget; either way at most a Lambda's 15 minutes.
pub fn time_left(deadline_ms: u64, now_ms: u64) -> Duration {
    let left = if deadline_ms < EPOCH_MS_FLOOR {
        Duration::from_millis(deadline_ms)
    } else {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    };
    left.min(LAMBDA_MAX_RUN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::JobQueue;

    const NOW_MS: u64 = 1_796_000_000_000; // 2026-11-30

    #[test]
    fn given_an_epoch_deadline_then_the_time_left_is_until_it() {
        assert_eq!(
            time_left(NOW_MS + 300_000, NOW_MS),
            Duration::from_secs(300)
        );
        assert_eq!(time_left(NOW_MS - 1, NOW_MS), Duration::ZERO);
    }

    #[test]
    fn given_cargo_lambdas_relative_600000_then_it_is_ten_minutes_not_a_deadline_long_passed() {
        // Issue 15: under `cargo lambda watch` every pull handed over with nothing read.
        assert_eq!(time_left(600_000, NOW_MS), Duration::from_secs(600));
    }

    #[test]
    fn given_a_deadline_beyond_fifteen_minutes_then_no_more_than_a_lambda_may_run_is_used() {
        assert_eq!(time_left(NOW_MS + 86_400_000, NOW_MS), LAMBDA_MAX_RUN);
        assert_eq!(time_left(u64::MAX, NOW_MS), LAMBDA_MAX_RUN);
        assert_eq!(time_left(EPOCH_MS_FLOOR - 1, NOW_MS), LAMBDA_MAX_RUN);
    }

    #[tokio::test]
    async fn given_a_batch_where_one_job_panics_then_only_that_message_comes_back() {
        let records = vec![
            ("ok-1".to_string(), r#"{"n": 1}"#.to_string()),
            ("boom".to_string(), r#"{"n": 2}"#.to_string()),
            ("retry".to_string(), r#"{"n": 3}"#.to_string()),
            ("ok-2".to_string(), r#"{"n": 4}"#.to_string()),
            ("malformed".to_string(), "{".to_string()),
        ];
        let failed = settle_batch(records, |v| async move {
            match v["n"].as_i64() {
                Some(2) => panic!("a bug in one shop's data"),
                Some(3) => Err(JobError::LeaseLost),
                _ => Ok(()),
            }
        })
        .await;
        assert_eq!(failed, vec!["boom".to_string(), "retry".to_string()]);
    }

    fn connection(shop: &str) -> Connection {
        Service::test_connection(shop)
    }

    #[tokio::test]
    async fn given_a_redelivery_while_the_first_delivery_still_pulls_then_it_waits_and_takes_nothing()
     {
        // GIVEN a customer pull of run-1 whose first delivery holds the part
        let queue = store::MemoryQueue::new();
        let mut settings = crate::Settings::default();
        settings.queues.customers = queue.ensure_queue("customers", "customers-dlq", 5).url;
        let svc = Service::in_memory(settings, queue.clone());
        svc.store.put_connection(&connection("s1")).await.unwrap();
        let initial = serde_json::json!({"run_id": "run-1", "state": "running", "full": false,
            "entities": {"customers": {"state": "queued"}}, "manual_actions": [], "errors": []});
        let initial = serde_json::from_value(initial).unwrap();
        svc.store.create_run("s1", "run-1", &initial).await.unwrap();
        // AND that delivery has made progress (its checkpoint): a redelivery would resume it.
        // (A redelivery of a pull that has not written yet reads on until its first write, where
        // it finds the part held in the same way: part leases are taken lazily.)
        let tally = serde_json::json!({"state": "running", "created": 0, "updated": 0,
            "unchanged": 0, "failed": 0, "skipped": {}, "api_calls": 1, "removed_in_kiotviet": 0,
            "read": 100});
        let checkpoint = serde_json::json!({"run_id": "run-1", "started_at": chrono::Utc::now(),
            "from": null, "position": 100, "tally": tally});
        svc.store
            .put_checkpoint("s1", "customers", &checkpoint)
            .await
            .unwrap();
        let mut first = SyncJob::new("s1", "run-1", false);
        first.entities = vec![Entity::Customers];
        first.invocation = "first".into();
        let now = svc.now();
        let until = now + chrono::Duration::seconds(15);
        let taken = svc
            .store
            .acquire_lease("s1", "customers", &first.lease_holder(), until, now)
            .await
            .unwrap();
        assert_eq!(taken, store::LeaseAnswer::Acquired);
        // WHEN the same message is delivered again (issue 15: it re-acquired its own lease)
        handle_job(
            &svc,
            &first.to_value(),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .expect("settled");
        // THEN the first delivery still holds the part, nothing was pulled, and the job waits on
        // the queue (not counted as a continuation) to look again once the lease could be stale
        assert!(
            svc.store
                .renew_lease("s1", "customers", &first.lease_holder(), until)
                .await
                .unwrap()
        );
        assert_eq!(
            svc.store.get_checkpoint("s1", "customers").await.unwrap(),
            Some(checkpoint),
            "the checkpoint is the first delivery's, untouched"
        );
        let url = svc.settings.queues.customers.clone();
        assert_eq!(queue.len(&url), 1);
        assert!(
            queue.receive(&url, 1, 0, 30).await.unwrap().is_empty(),
            "delayed"
        );
    }

    #[tokio::test]
    async fn r_syn_7_a_tick_starts_one_run_per_shop_side_by_side_and_a_second_tick_finds_them_running()
     {
        // GIVEN 40 connected shops
        let queue = store::MemoryQueue::new();
        let mut settings = crate::Settings::default();
        settings.queues.catalog = queue.ensure_queue("catalog", "catalog-dlq", 5).url;
        settings.queues.customers = queue.ensure_queue("customers", "customers-dlq", 5).url;
        settings.queues.invoices = queue.ensure_queue("invoices", "invoices-dlq", 5).url;
        let svc = Service::in_memory(settings, queue.clone());
        for i in 0..40 {
            svc.store
                .put_connection(&connection(&format!("shop-{i}")))
                .await
                .unwrap();
        }
        // WHEN the schedule ticks
        let first = fan_out(&svc).await.unwrap();
        // THEN every shop has its run, and one job on the catalog queue (scheduled runs are one job)
        assert_eq!((first.shops, first.started, first.failed), (40, 40, 0));
        for i in 0..40 {
            assert!(
                svc.store
                    .latest_run(&format!("shop-{i}"))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        assert_eq!(queue.len(&svc.settings.queues.catalog), 40);
        // AND a tick while they still run starts none again (R-SYN-3)
        let second = fan_out(&svc).await.unwrap();
        assert_eq!((second.started, second.already_running), (0, 40));
    }

    #[test]
    fn given_a_delivery_token_then_the_lease_holder_names_run_and_invocation() {
        let mut job = SyncJob::new("s1", "run-1", false);
        assert_eq!(job.lease_holder(), "run-1");
        job.invocation = "abc".into();
        assert_eq!(job.lease_holder(), "run-1/abc");
        // Never on the wire: a redelivered message gets a token of its own.
        assert!(!job.to_value().to_string().contains("abc"));
    }
}
