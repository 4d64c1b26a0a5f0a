//! Pull jobs on SQS (R-SYN-7) and the schedule's fan-out.
//!
//! A job names a run, a shop and the entities one pull function handles. A job that reaches its
//! deadline (or the hourly KiotViet budget) sends its own continuation and ends cleanly; a job that
//! fails transiently is left on the queue (SQS delivers it again, and after five tries moves it to
//! the dead-letter queue) and resumes from its checkpoint.

mod batch;
mod fan_out;

use std::time::Instant;

use chrono::Duration as ChronoDuration;
use mapping::api::{PartState, RunReport};
use serde_json::Value;
use store::LeaseAnswer;
use tracing::Instrument;

use crate::error::JobError;
pub use crate::model::{Entity, EntitySwitch, JobMessage, SyncJob};
use crate::pull::{self, PullEnd};
pub use crate::queues::EntityQueue;
use crate::runs;
use crate::service::Service;
pub use batch::{deadline_from_epoch_ms, handle_batch, local_deadline, settle_batch, time_left};
pub use fan_out::{FAN_OUT_MARGIN, FanOut, FanOutCutShort, fan_out};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use store::{Connection, JobQueue};

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
        let checkpoint: crate::model::Checkpoint = serde_json::from_value(serde_json::json!({
            "run_id": "run-1", "started_at": chrono::Utc::now(),
            "from": null, "position": 100, "tally": tally}))
        .unwrap();
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
