//! The pulls: KiotViet FnB → Abaha for categories, products, customers and invoices, on one loop.
//!
//! Per (shop, entity): take the lease (R-SYN-3), read the cursor (R-SYN-1), page through KiotViet
//! from the checkpoint (R-SYN-2), map each page with the pure rules of `mapping`, send only what
//! changed (content hash, R-SYN-4), store the links, checkpoint, and report progress (R-SYN-5).
//! The cursor moves only when every page is written, to the run's start (never past data not yet
//! written, never backwards — the store refuses that).

use mapping::api::{PartState, RunError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kiotviet::KvError;
use store::Connection;
use tokio::task::JoinHandle;

use crate::error::JobError;
use crate::model::{Entity, SyncJob};
use crate::prefetch::Prefetcher;
use crate::runs::{self, Tally};
use crate::service::Service;

/// How a pull of one entity ended in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEnd {
    Done,
    /// Checkpointed; a continuation must go on after `delay` (None: at once).
    HandOver {
        delay: Option<Duration>,
    },
    /// Another delivery of this run holds the part: look again after `delay`, when its lease
    /// has either been renewed (it lives: wait again) or run out (it died: take over).
    Wait {
        delay: Duration,
    },
}

mod checkpoint;
mod finish;
mod lease;
mod origins;
mod pages;
mod paging;

pub use finish::{MAX_CONTINUATIONS, end_entity, fail_entity, may_continue};
pub use origins::{Origin, origins_of};
pub(crate) use pages::{PageStep, removed_products, upsert_changed};

use checkpoint::{
    Checkpoint, checkpoint_value, fresh_checkpoint, list_request, report, save_progress,
};
use finish::{End, failure_message};
use lease::PartLease;
use paging::{PageDone, apply, drain, process_page};

/// Pulls one entity for one job. A pull of a scheduled run that ends well leaves its final report
/// in `pending`: the job writes the reports of its parts together (with the next part's first
/// progress save, or when it ends or hands over), one write for a job's parts instead of one each.
/// A run someone watches (the Sync button) reports each part as it ends (R-CON-5).
pub async fn pull_entity(
    svc: &Service,
    conn: &Connection,
    job: &SyncJob,
    entity: Entity,
    deadline: Instant,
    pending: &mut Vec<(Entity, Tally)>,
) -> Result<PullEnd, JobError> {
    let shop = conn.shop_id.as_str();
    let name = entity.as_str();
    let now = svc.now();
    // R-SYN-3 is held by the shop's run lease, which the job checked before its first pull
    // (`jobs::hold_run_lease`): this run is the shop's only one while its pulls go on.
    // One read for both where the store keeps them together (DynamoDB: one item).
    let (stored, cursor_read) = svc.store.get_checkpoint_and_cursor(shop, name).await?;
    // Whether a checkpoint item exists (this run's or a dead run's): only then is there one to clear.
    let mut checkpoint_stored = stored.is_some();
    let resumed = stored
        .and_then(|v| serde_json::from_value::<Checkpoint>(v).ok())
        .filter(|ck| ck.run_id == job.run_id);
    let is_resumed = resumed.is_some();
    let mut ck = match resumed {
        Some(ck) => {
            tracing::info!(shop, run_id = %job.run_id, entity = name, position = ck.position, "resuming from checkpoint");
            ck
        }
        None => fresh_checkpoint(svc, conn, job, entity, now, cursor_read).await?,
    };
    // The part's lease (never two deliveries of one part at once, issue 15) is taken only before
    // the pull's first write: an idle pull writes nothing and takes none. A checkpoint of this
    // run means an earlier delivery wrote, so this one holds the part from the start.
    let mut lease = PartLease::new(svc, shop, name, job.lease_holder());
    if is_resumed && let Some(end) = lease.take(svc, job, entity).await? {
        return Ok(end);
    }
    // Set when another delivery or run turned out to hold the part at this pull's first write.
    let mut blocked: Option<PullEnd> = None;
    ck.tally.state = PartState::Running;
    ck.tally.waiting_until = None;
    if is_resumed {
        // A continuation shows at once that it runs again (it may have been "waiting").
        report(svc, job, entity, &ck.tally).await?;
    }
    // A fresh pull shows "queued" until its first progress save (2 s) or its end: a one-page
    // pull writes its report once.

    // The run's start paid for the first GET of each entity (`runs::start`); only a pull that
    // starts afresh in the run's first job uses it.
    let prepaid = job.prepaid.filter(|_| job.continuation == 0 && !is_resumed);
    let kv = svc
        .kiotviet_for_pull_prepaid(conn, prepaid)
        .await?
        .with_deadline(Some(deadline));
    let request = list_request(entity, ck.from);
    // The tally may carry calls of earlier invocations of this run; add only this client's.
    let (calls_base, tally_calls_base) = (kv.api_calls(), ck.tally.api_calls);
    // Pages are read ahead (up to the shop's GET slots) and processed a few at a time; the
    // checkpoint only ever covers pages whose every write is done, in order.
    let mut prefetch = Prefetcher::new(
        kv.clone(),
        request,
        svc.settings.kiotviet_concurrency,
        svc.kiotviet_slots(&conn.retailer),
    );
    let read_at_start = ck.tally.read;
    // Whether KiotViet named anything (records or deletions) since the cursor.
    let mut saw_any = false;
    let outcome: Result<(), JobError> = async {
        let mut processing: VecDeque<JoinHandle<Result<PageDone, JobError>>> = VecDeque::new();
        let mut read_pos = ck.position;
        let first_pos = ck.position;
        let mut known_total: Option<i64> = ck.total;
        let mut reading_done = false;
        let mut handing_over = false;
        let mut last_save = Instant::now();
        loop {
            while !reading_done && !handing_over && processing.len() < PROCESSING_DEPTH {
                if finish::out_of_time(
                    read_pos > first_pos,
                    deadline.saturating_duration_since(Instant::now()),
                    svc.settings.handover_margin,
                ) {
                    handing_over = true;
                    break;
                }
                let page = prefetch.page_at(read_pos).await;
                ck.tally.api_calls = tally_calls_base + (kv.api_calls() - calls_base);
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        drain(&mut processing, &mut ck).await;
                        return Err(e.into());
                    }
                };
                let read = page.data.len() as i64;
                saw_any |= read > 0 || !page.removed_ids.is_empty();
                let step = paging::advance(read_pos, read, known_total, page.total);
                if step.stepped_back > 0 {
                    tracing::info!(
                        shop,
                        entity = name,
                        deleted = step.stepped_back,
                        "list shrank while reading; stepping back"
                    );
                }
                read_pos = step.next;
                known_total = step.known_total;
                reading_done = step.done;
                // A page that names anything is written: the part must be this delivery's.
                if (read > 0 || !page.removed_ids.is_empty()) && !lease.held() {
                    match lease.take(svc, job, entity).await {
                        Ok(None) => {}
                        Ok(Some(end)) => {
                            drain(&mut processing, &mut ck).await;
                            blocked = Some(end);
                            return Err(JobError::LeaseLost);
                        }
                        Err(e) => {
                            drain(&mut processing, &mut ck).await;
                            return Err(e.into());
                        }
                    }
                }
                processing.push_back(tokio::spawn(process_page(
                    svc.clone(),
                    conn.clone(),
                    entity,
                    page,
                    read_pos,
                    ck.first_sync,
                    deadline,
                )));
            }
            let Some(next) = processing.pop_front() else {
                return if handing_over {
                    Err(JobError::KiotViet(KvError::Deadline))
                } else {
                    Ok(())
                };
            };
            let done = match next.await {
                Ok(Ok(done)) => done,
                Ok(Err(e)) => {
                    drain(&mut processing, &mut ck).await;
                    return Err(e);
                }
                Err(join) => {
                    drain(&mut processing, &mut ck).await;
                    return Err(JobError::BadJob(format!("page task failed: {join}")));
                }
            };
            apply(svc, job, &mut ck, done).await?;
            // Saving after every page would double the pull's storage traffic; a crash loses at
            // most this much work, which the re-run redoes harmlessly (keyed upserts).
            if !processing.is_empty() && last_save.elapsed() >= CHECKPOINT_EVERY {
                save_progress(svc, job, entity, &ck, pending).await?;
                checkpoint_stored = true;
                last_save = Instant::now();
            }
        }
    }
    .await;
    ck.tally.api_calls = tally_calls_base + (kv.api_calls() - calls_base);

    if let Some(end) = blocked {
        // Another delivery of this run (or another run) has the part: this one wrote nothing.
        return Ok(end);
    }
    if matches!(outcome, Err(JobError::LeaseLost)) {
        // Someone else holds the part now: write nothing more, not even the checkpoint.
        tracing::warn!(shop, run_id = %job.run_id, entity = name, "lease lost; stopping");
        return Err(JobError::LeaseLost);
    }
    // Fencing: the last writes (cursor, checkpoint, report) only while the part is still ours.
    if lease.held() && !lease.still_ours(svc).await? {
        tracing::warn!(shop, run_id = %job.run_id, entity = name, "lease lost; stopping");
        return Err(JobError::LeaseLost);
    }
    let decision = finish::end(
        outcome.as_ref().err().map(JobError::disposition),
        ck.tally.read > read_at_start,
        ck.failed_tries,
    );
    if decision.end != End::Done {
        // Stopped early: the checkpoint keeps where it stands (and how often it failed in a row).
        ck.failed_tries = decision.failed_tries;
        if let Some(end) = lease.take(svc, job, entity).await? {
            return Ok(end);
        }
        svc.store
            .put_checkpoint(shop, name, &checkpoint_value(&ck))
            .await?;
    }
    match (decision.end, outcome) {
        (End::Done, _) | (_, Ok(())) => {
            // Everything up to the pull's start is in Abaha: the cursor may move there (R-SYN-2).
            // An incremental pull that KiotViet answered with nothing leaves it where it is:
            // staying is never past unwritten data nor backwards, and an idle tick writes nothing.
            let nothing_new =
                !job.full && !ck.first_sync && ck.from.is_some() && ck.tally.read == 0 && !saw_any;
            if (!nothing_new || checkpoint_stored)
                && let Some(end) = lease.take(svc, job, entity).await?
            {
                return Ok(end);
            }
            if !nothing_new {
                svc.store.advance_cursor(shop, name, ck.started_at).await?;
            }
            if checkpoint_stored {
                svc.store.clear_checkpoint(shop, name).await?;
            }
            ck.tally.state = if ck.tally.failed > 0 {
                PartState::Partial
            } else {
                PartState::Succeeded
            };
            ck.tally.message = None;
            lease.release().await?;
            pending.push((entity, ck.tally.clone()));
            if !job.scheduled {
                runs::report_parts(svc, shop, &job.run_id, pending, None).await?;
                pending.clear();
            }
            tracing::info!(shop, run_id = %job.run_id, entity = name, read = ck.tally.read, created = ck.tally.created,
                    updated = ck.tally.updated, unchanged = ck.tally.unchanged, failed = ck.tally.failed,
                    api_calls = ck.tally.api_calls, "pull finished");
            Ok(PullEnd::Done)
        }
        (End::Retry { fresh_job }, Err(e)) => {
            ck.tally.message = Some(format!("Retrying after a temporary problem: {e}"));
            report(svc, job, entity, &ck.tally).await?;
            if fresh_job {
                // It moved: a fresh message resumes from the checkpoint.
                tracing::warn!(shop, run_id = %job.run_id, entity = name, error = %e, "pull interrupted after progress; continuing in a fresh job");
                return Ok(PullEnd::HandOver {
                    delay: Some(finish::RETRY_AFTER_PROGRESS),
                });
            }
            // Left on the queue: SQS delivers the job again and it resumes from the checkpoint
            // (the part freed, so the next delivery takes it at once).
            tracing::warn!(shop, run_id = %job.run_id, entity = name, error = %e, "pull interrupted; will retry");
            lease.release().await?;
            Err(e)
        }
        (End::HandOver, Err(_)) => {
            report(svc, job, entity, &ck.tally).await?;
            Ok(PullEnd::HandOver { delay: None })
        }
        (End::Wait { until }, Err(_)) => {
            // R-SYN-6: the hourly GET budget is spent; continue after the window by itself.
            ck.tally.state = PartState::Waiting;
            ck.tally.waiting_until = Some(until);
            ck.tally.message = Some(format!(
                "Paused: this shop's hourly KiotViet allowance is used up; the sync continues by itself at {} (Vietnam time).",
                until.with_timezone(&mapping::time::vn()).format("%H:%M")
            ));
            report(svc, job, entity, &ck.tally).await?;
            Ok(PullEnd::HandOver {
                delay: Some(finish::wait_for(until, svc.now())),
            })
        }
        (End::Fail { tries }, Err(e)) => {
            let mut msg = failure_message(&e);
            if let Some(tries) = tries {
                msg = format!(
                    "{msg} It failed {tries} times in a row; press Sync to try again later."
                );
            }
            tracing::warn!(shop, run_id = %job.run_id, entity = name, error = %e, "pull failed");
            ck.tally.state = PartState::Failed;
            ck.tally.message = Some(msg.clone());
            report(svc, job, entity, &ck.tally).await?;
            svc.store
                .append_errors(shop, &job.run_id, &[RunError::new(name, None, msg)])
                .await?;
            svc.store.clear_checkpoint(shop, name).await?;
            lease.release().await?;
            runs::finish_if_done(svc, shop, &job.run_id).await?;
            Ok(PullEnd::Done)
        }
    }
}

/// Pages processed at once per pull: deep enough that a slow answer from storage (a throttled
/// table; moto under load in the benchmark) holds up neither the reads nor the other pages.
const PROCESSING_DEPTH: usize = 6;
/// How often a running pull saves its checkpoint and progress.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
