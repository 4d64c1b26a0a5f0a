//! The pulls: KiotViet FnB → Abaha for categories, products, customers and invoices, on one loop.
//!
//! Per (shop, entity): take the lease (R-SYN-3), read the cursor (R-SYN-1), page through KiotViet
//! from the checkpoint (R-SYN-2), map each page with the pure rules of `mapping`, send only what
//! changed (content hash, R-SYN-4), store the links, checkpoint, and report progress (R-SYN-5).
//! The cursor moves only when every page is written, to the run's start (never past data not yet
//! written, never backwards — the store refuses that).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use abaha::{AbahaError, Collection};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use kiotviet::{KvError, ListEntity, ListRequest};
use mapping::abaha::ItemResult;
use mapping::hash::content_hash;
use mapping::kiotviet::{Category, Customer, Invoice, Page, Product};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{Connection, IdKind, IdLink, LeaseAnswer};
use tokio::task::JoinHandle;

use crate::error::JobError;
use crate::jobs::{Entity, SyncJob};
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

/// Where a pull stands, saved after every page (R-SYN-2).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    run_id: String,
    /// When this entity's pull began: the cursor moves here at the end.
    started_at: DateTime<Utc>,
    /// The `lastModifiedFrom` of this pull (None: everything).
    from: Option<DateTime<Utc>>,
    /// The next `currentItem`.
    position: i64,
    /// The list's total as of the page that ended at `position`: a resumed pull compares it with
    /// the total it reads next, so records deleted while it waited still make it step back.
    #[serde(default)]
    total: Option<i64>,
    /// Deliveries in a row that failed transiently without reading anything new.
    #[serde(default)]
    failed_tries: u32,
    /// No sync of this entity ever finished (no cursor): every record is new to Abaha, so the
    /// ID map is not read before sending (a re-run re-sends, which Abaha answers `unchanged`).
    #[serde(default)]
    first_sync: bool,
    tally: Tally,
}

/// Ends an entity without pulling (skipped, failed before start) and closes the run if it was last.
pub async fn end_entity(
    svc: &Service,
    job: &SyncJob,
    entity: Entity,
    state: &str,
    message: Option<&str>,
) -> Result<(), store::StoreError> {
    let tally = Tally {
        state: state.to_string(),
        message: message.map(str::to_string),
        ..Tally::default()
    };
    svc.store
        .put_entity_report(
            &job.shop_id,
            &job.run_id,
            entity.as_str(),
            &tally.to_value(),
        )
        .await?;
    runs::finish_if_done(svc, &job.shop_id, &job.run_id).await
}

/// Ends an entity as failed for an error the pull could not report itself (e.g. the stored secret
/// no longer opens): the owner reads why, the part's checkpoint and lease go, and the run closes
/// if this was its last part — so a broken shop neither hangs its run nor blocks its next one.
pub async fn fail_entity(
    svc: &Service,
    job: &SyncJob,
    entity: Entity,
    error: &JobError,
) -> Result<(), store::StoreError> {
    let shop = job.shop_id.as_str();
    let name = entity.as_str();
    let msg = failure_message(error);
    tracing::warn!(shop, run_id = %job.run_id, entity = name, error = %error, "pull failed");
    svc.store
        .append_errors(
            shop,
            &job.run_id,
            &[json!({"entity": name, "kiotviet_id": null, "message": msg})],
        )
        .await?;
    // Only this run's checkpoint: another run may own the entity (the lease was not ours).
    let ours = svc
        .store
        .get_checkpoint(shop, name)
        .await?
        .is_some_and(|v| v.get("run_id").and_then(Value::as_str) == Some(job.run_id.as_str()));
    if ours {
        svc.store.clear_checkpoint(shop, name).await?;
    }
    svc.store
        .release_lease(shop, name, &job.lease_holder())
        .await?;
    end_entity(svc, job, entity, "failed", Some(&msg)).await
}

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
    ck.tally.state = "running".into();
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
                // Every invocation reads at least one page before it may hand over: a
                // continuation that started too close to its deadline would otherwise hand over
                // again without moving, until the continuation limit failed the run.
                if read_pos > first_pos
                    && deadline.saturating_duration_since(Instant::now())
                        < svc.settings.handover_margin
                {
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
                let page_start = read_pos;
                read_pos += read;
                // Offset paging shifts when records are deleted while we read: this page then
                // starts `d` records later in the old list, and those `d` records now sit just
                // before it. Step back over them (re-reading is harmless: upserts are keyed).
                if let (Some(seen), Some(now)) = (known_total, page.total) {
                    let d = seen - now;
                    if d > 0 {
                        tracing::info!(
                            shop,
                            entity = name,
                            deleted = d,
                            "list shrank while reading; stepping back"
                        );
                        read_pos = (page_start - d).max(0).min(read_pos);
                    }
                }
                known_total = page.total.or(known_total);
                if read == 0 || read_pos >= page.total.unwrap_or(0) {
                    reading_done = true;
                }
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
    let e = match outcome {
        Ok(()) => {
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
                "partial".into()
            } else {
                "succeeded".into()
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
            return Ok(PullEnd::Done);
        }
        Err(e) => e,
    };
    let hand_over = matches!(
        e,
        JobError::KiotViet(KvError::Deadline | KvError::BudgetExhausted { .. })
            | JobError::Abaha(AbahaError::Deadline)
    );
    let retry_later = !hand_over && e.is_retryable();
    if retry_later {
        // After a few failed deliveries SQS moves the job to its dead-letter queue, and the run
        // would read "running" for ever: a pull that keeps failing without reading anything new
        // is given up before that, and says so (R-SYN-5).
        ck.failed_tries = if ck.tally.read > read_at_start {
            1
        } else {
            ck.failed_tries + 1
        };
    }
    if let Some(end) = lease.take(svc, job, entity).await? {
        return Ok(end);
    }
    svc.store
        .put_checkpoint(shop, name, &checkpoint_value(&ck))
        .await?;
    if retry_later && ck.failed_tries < MAX_FAILED_TRIES {
        ck.tally.message = Some(format!("Retrying after a temporary problem: {e}"));
        report(svc, job, entity, &ck.tally).await?;
        if ck.tally.read > read_at_start {
            // It moved: a fresh message resumes from the checkpoint. Left on the queue, the job
            // would count this delivery towards SQS's receives, and a long pull hit by a few
            // unrelated failures would end in the dead-letter queue although each time it moved.
            tracing::warn!(shop, run_id = %job.run_id, entity = name, error = %e, "pull interrupted after progress; continuing in a fresh job");
            return Ok(PullEnd::HandOver {
                delay: Some(RETRY_AFTER_PROGRESS),
            });
        }
        // Left on the queue: SQS delivers the job again and it resumes from the checkpoint
        // (the part freed, so the next delivery takes it at once).
        tracing::warn!(shop, run_id = %job.run_id, entity = name, error = %e, "pull interrupted; will retry");
        lease.release().await?;
        return Err(e);
    }
    match &e {
        JobError::KiotViet(KvError::Deadline) | JobError::Abaha(AbahaError::Deadline) => {
            report(svc, job, entity, &ck.tally).await?;
            Ok(PullEnd::HandOver { delay: None })
        }
        JobError::KiotViet(KvError::BudgetExhausted { retry_at }) => {
            // R-SYN-6: the hourly GET budget is spent; continue after the window by itself.
            ck.tally.state = "waiting".into();
            ck.tally.waiting_until = Some(retry_at.to_rfc3339());
            ck.tally.message = Some(format!(
                "Paused: this shop's hourly KiotViet allowance is used up; the sync continues by itself at {} (Vietnam time).",
                retry_at.with_timezone(&mapping::time::vn()).format("%H:%M")
            ));
            report(svc, job, entity, &ck.tally).await?;
            let wait = (*retry_at - svc.now())
                .to_std()
                .unwrap_or(Duration::from_secs(60));
            Ok(PullEnd::HandOver { delay: Some(wait) })
        }
        _ => {
            let mut msg = failure_message(&e);
            if retry_later {
                msg = format!(
                    "{msg} It failed {} times in a row; press Sync to try again later.",
                    ck.failed_tries
                );
            }
            tracing::warn!(shop, run_id = %job.run_id, entity = name, error = %e, "pull failed");
            ck.tally.state = "failed".into();
            ck.tally.message = Some(msg.clone());
            report(svc, job, entity, &ck.tally).await?;
            svc.store
                .append_errors(
                    shop,
                    &job.run_id,
                    &[json!({"entity": name, "kiotviet_id": null, "message": msg})],
                )
                .await?;
            svc.store.clear_checkpoint(shop, name).await?;
            lease.release().await?;
            runs::finish_if_done(svc, shop, &job.run_id).await?;
            Ok(PullEnd::Done)
        }
    }
}

/// Failed deliveries in a row after which a pull is given up: one fewer than the receives after
/// which the queues move a job to their dead-letter queue (`maxReceiveCount` 5, template.yaml).
const MAX_FAILED_TRIES: u32 = 4;

/// How long a pull that moved and then met a temporary failure waits before its continuation.
const RETRY_AFTER_PROGRESS: Duration = Duration::from_secs(1);

/// Pages processed at once per pull: deep enough that a slow answer from storage (a throttled
/// table; moto under load in the benchmark) holds up neither the reads nor the other pages.
const PROCESSING_DEPTH: usize = 6;
/// How often a running pull saves its checkpoint and progress.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// What one processed page adds to the pull.
struct PageDone {
    tally: Tally,
    step: PageStep,
    read: u64,
    /// The offset after this page.
    end: i64,
    /// The list's total when this page was read.
    total: Option<i64>,
    /// Ids the page says were deleted in KiotViet, and the links they would have (None: not
    /// tracked). Handled in `apply`, one page after the other: every page repeats them.
    removed: Vec<i64>,
    removed_kind: Option<IdKind>,
}

async fn process_page(
    svc: Service,
    conn: Connection,
    entity: Entity,
    page: Page,
    end: i64,
    first_sync: bool,
    deadline: Instant,
) -> Result<PageDone, JobError> {
    let mut tally = Tally::default();
    let mut step = PageStep {
        first_sync,
        ..PageStep::default()
    };
    let (svc, conn) = (&svc, &conn);
    match entity {
        Entity::Categories => {
            categories_page(svc, conn, &page, &mut tally, &mut step, deadline).await?
        }
        Entity::Products => {
            products_page(svc, conn, &page, &mut tally, &mut step, deadline).await?
        }
        Entity::Customers => {
            customers_page(svc, conn, &page, &mut tally, &mut step, deadline).await?
        }
        Entity::Invoices => {
            invoices_page(svc, conn, &page, &mut tally, &mut step, deadline).await?
        }
    }
    let removed_kind = match entity {
        Entity::Categories => Some(IdKind::Category),
        Entity::Products => Some(IdKind::Product),
        Entity::Customers => Some(IdKind::Customer),
        Entity::Invoices => None,
    };
    Ok(PageDone {
        tally,
        step,
        read: page.data.len() as u64,
        end,
        total: page.total,
        removed: page.removed_ids,
        removed_kind,
    })
}

/// Adds a processed page to the pull, in order: counts, report lists, and the resume offset.
async fn apply(
    svc: &Service,
    job: &SyncJob,
    ck: &mut Checkpoint,
    done: PageDone,
) -> Result<(), JobError> {
    let t = &mut ck.tally;
    t.created += done.tally.created;
    t.updated += done.tally.updated;
    t.unchanged += done.tally.unchanged;
    t.failed += done.tally.failed;
    t.removed_in_kiotviet += done.tally.removed_in_kiotviet;
    t.abaha_calls += done.tally.abaha_calls;
    for (reason, n) in done.tally.skipped {
        *t.skipped.entry(reason).or_default() += n;
    }
    t.read += done.read;
    ck.position = done.end;
    ck.total = done.total.or(ck.total);
    let mut step = done.step;
    if let Some(kind) = done.removed_kind {
        removed_records(svc, &job.shop_id, kind, &done.removed, t, &mut step).await?;
    }
    if !step.manual_actions.is_empty() {
        svc.store
            .append_manual_actions(&job.shop_id, &job.run_id, &step.manual_actions)
            .await?;
    }
    if !step.errors.is_empty() {
        svc.store
            .append_errors(&job.shop_id, &job.run_id, &step.errors)
            .await?;
    }
    Ok(())
}

/// Waits for pages still being processed, so their writes are done (or failed) before the pull
/// stops; only an in-order prefix of them moves the checkpoint.
async fn drain(
    processing: &mut VecDeque<JoinHandle<Result<PageDone, JobError>>>,
    ck: &mut Checkpoint,
) {
    let mut in_order = true;
    while let Some(h) = processing.pop_front() {
        match h.await {
            Ok(Ok(done)) if in_order => {
                // Counted without the report lists: the run is about to stop or retry anyway.
                // The skips too: the checkpoint moves past these pages, so nothing counts them
                // again (R-SYN-5: the report of a run that was interrupted tells the same story).
                ck.tally.read += done.read;
                ck.tally.created += done.tally.created;
                ck.tally.updated += done.tally.updated;
                ck.tally.unchanged += done.tally.unchanged;
                ck.tally.abaha_calls += done.tally.abaha_calls;
                for (reason, n) in done.tally.skipped {
                    *ck.tally.skipped.entry(reason).or_default() += n;
                }
                ck.position = done.end;
                ck.total = done.total.or(ck.total);
            }
            _ => in_order = false,
        }
    }
}

async fn save_progress(
    svc: &Service,
    job: &SyncJob,
    entity: Entity,
    ck: &Checkpoint,
    pending: &mut Vec<(Entity, Tally)>,
) -> Result<(), JobError> {
    let shop = job.shop_id.as_str();
    let name = entity.as_str();
    // Renewed first: a holder that lost the part (fencing) writes no checkpoint over the new one.
    if !svc
        .store
        .renew_lease(shop, name, &job.lease_holder(), part_until(svc))
        .await?
    {
        return Err(JobError::LeaseLost);
    }
    let until = svc.now()
        + ChronoDuration::from_std(svc.settings.lease_ttl).unwrap_or(ChronoDuration::minutes(15));
    svc.store
        .put_checkpoint(shop, name, &checkpoint_value(ck))
        .await?;
    // The parts this job finished before go with this one's progress, in the same write.
    pending.push((entity, ck.tally.clone()));
    runs::report_parts(svc, shop, &job.run_id, pending, None).await?;
    pending.clear();
    svc.store
        .renew_lease(shop, runs::RUN_SCOPE, &job.run_id, until)
        .await?;
    Ok(())
}

/// A part's lease for one delivery (fencing token `run/invocation`), taken lazily: only before the
/// pull's first write, so an idle pull writes no lease at all (issue 16), while two deliveries of
/// one part never write at once (issue 15). Renewed by a [`Heartbeat`] while held.
struct PartLease {
    shop: String,
    name: String,
    holder: String,
    heartbeat: Option<Heartbeat>,
    svc: Service,
}

impl PartLease {
    fn new(svc: &Service, shop: &str, name: &str, holder: String) -> Self {
        PartLease {
            shop: shop.to_string(),
            name: name.to_string(),
            holder,
            heartbeat: None,
            svc: svc.clone(),
        }
    }

    fn held(&self) -> bool {
        self.heartbeat.is_some()
    }

    /// Takes the part for this delivery unless it is held already. `Some(end)`: it is not this
    /// delivery's — another delivery of the run has it (wait, then look again) or another run
    /// (this part of this run is skipped, R-SYN-3); nothing was written for it.
    async fn take(
        &mut self,
        svc: &Service,
        job: &SyncJob,
        entity: Entity,
    ) -> Result<Option<PullEnd>, store::StoreError> {
        if self.held() {
            return Ok(None);
        }
        let now = svc.now();
        match svc
            .store
            .acquire_lease(&self.shop, &self.name, &self.holder, part_until(svc), now)
            .await?
        {
            LeaseAnswer::Acquired => {
                self.heartbeat = Some(Heartbeat::start(svc, &self.shop, &self.name, &self.holder));
                Ok(None)
            }
            LeaseAnswer::HeldBy { holder, until }
                if holder.starts_with(&format!("{}/", job.run_id)) =>
            {
                // The same run, another delivery (a redelivered message, a crashed pull): never
                // two pulls of one part at once, and a dead holder's part is taken over soon.
                let delay = (until - now).to_std().unwrap_or_default() + Duration::from_secs(1);
                tracing::info!(shop = %self.shop, run_id = %job.run_id, entity = %self.name, %holder, "part held by another delivery of this run; waiting");
                Ok(Some(PullEnd::Wait { delay }))
            }
            LeaseAnswer::HeldBy { holder, .. } => {
                // R-SYN-3: another run is pulling this entity; this trigger is harmless.
                let msg = format!(
                    "Another run ({holder}) is syncing {}; this run left it to that one.",
                    self.name
                );
                end_entity(svc, job, entity, "skipped", Some(&msg)).await?;
                Ok(Some(PullEnd::Done))
            }
        }
    }

    /// Renews a held lease; `false` once another has it (the pull must write nothing more).
    async fn still_ours(&self, svc: &Service) -> Result<bool, store::StoreError> {
        svc.store
            .renew_lease(&self.shop, &self.name, &self.holder, part_until(svc))
            .await
    }

    /// Frees a held part at once (a continuation or the next run may take it); nothing when the
    /// pull never took it.
    async fn release(&mut self) -> Result<(), store::StoreError> {
        if self.heartbeat.take().is_some() {
            self.svc
                .store
                .release_lease(&self.shop, &self.name, &self.holder)
                .await?;
        }
        Ok(())
    }
}

/// When a part's lease taken or renewed now runs out.
fn part_until(svc: &Service) -> DateTime<Utc> {
    svc.now()
        + ChronoDuration::from_std(svc.settings.part_lease_ttl)
            .unwrap_or(ChronoDuration::seconds(15))
}

/// Renews a part's lease five times per `part_lease_ttl` until dropped (the pull ended, or its
/// task was killed). It stops by itself once a renewal finds the lease gone or taken; the pull's
/// own fence (`save_progress`, the last writes) then stops the pull.
struct Heartbeat(JoinHandle<()>);

impl Heartbeat {
    fn start(svc: &Service, shop: &str, part: &str, holder: &str) -> Heartbeat {
        let (svc, shop, part, holder) = (
            svc.clone(),
            shop.to_string(),
            part.to_string(),
            holder.to_string(),
        );
        Heartbeat(tokio::spawn(async move {
            let every = (svc.settings.part_lease_ttl / 5).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                match svc
                    .store
                    .renew_lease(&shop, &part, &holder, part_until(&svc))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(shop, entity = part, error = %e, "lease renewal failed")
                    }
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn checkpoint_value(ck: &Checkpoint) -> Value {
    serde_json::to_value(ck).unwrap_or(Value::Null)
}

async fn report(
    svc: &Service,
    job: &SyncJob,
    entity: Entity,
    tally: &Tally,
) -> Result<(), store::StoreError> {
    svc.store
        .put_entity_report(
            &job.shop_id,
            &job.run_id,
            entity.as_str(),
            &tally.to_value(),
        )
        .await
}

/// A new pull: incremental from the cursor minus the overlap, or everything (R-SYN-1); invoices
/// read `invoice_history_days` back on a first or full sync (R-INV-3).
async fn fresh_checkpoint(
    svc: &Service,
    conn: &Connection,
    job: &SyncJob,
    entity: Entity,
    now: DateTime<Utc>,
    cursor_read: Option<Option<store::Cursor>>,
) -> Result<Checkpoint, store::StoreError> {
    let stored = match cursor_read {
        Some(cursor) => cursor,
        None => svc.store.get_cursor(&conn.shop_id, entity.as_str()).await?,
    };
    let cursor = if job.full { None } else { stored };
    let overlap = match entity {
        Entity::Invoices => svc.settings.invoice_overlap,
        _ => svc.settings.overlap,
    };
    let overlap = ChronoDuration::from_std(overlap).unwrap_or(ChronoDuration::minutes(10));
    let from = match (cursor, entity) {
        (Some(c), _) => Some(c.modified_from - overlap),
        (None, Entity::Invoices) => {
            Some(now - ChronoDuration::days(i64::from(conn.invoice_history_days)))
        }
        (None, _) => None,
    };
    Ok(Checkpoint {
        run_id: job.run_id.clone(),
        started_at: now,
        from,
        position: 0,
        total: None,
        failed_tries: 0,
        first_sync: stored.is_none(),
        tally: Tally::queued(),
    })
}

fn list_request(entity: Entity, from: Option<DateTime<Utc>>) -> ListRequest {
    let entity = match entity {
        Entity::Categories => ListEntity::Categories,
        Entity::Products => ListEntity::Products,
        Entity::Customers => ListEntity::Customers,
        Entity::Invoices => ListEntity::Invoices,
    };
    let request = match from {
        Some(from) => ListRequest::new(entity).modified_since(from),
        None => ListRequest::new(entity),
    };
    match entity {
        // The delivery block carries our reference, which ties an invoice to the order we pushed
        // when the list leaves `orderCode` out (push::orders::origins_of).
        ListEntity::Invoices => request.with("includeInvoiceDelivery", "true"),
        _ => request,
    }
}

/// Words a shop owner can act on for a pull that cannot go on.
fn failure_message(e: &JobError) -> String {
    match e {
        JobError::KiotViet(KvError::InvalidCredentials { .. }) | JobError::KiotViet(KvError::Unauthorized) => {
            "KiotViet FnB refused the Client ID and secret. Update the connection with the values from KiotViet FnB (Thiết lập cửa hàng → Thiết lập kết nối API).".into()
        }
        JobError::KiotViet(KvError::UnknownRetailer { .. }) => {
            "KiotViet FnB no longer knows this shop name. Check the connection's retailer name.".into()
        }
        JobError::Abaha(AbahaError::Unauthorized) => "The Abaha Sync API refused the service's token; Abaha's platform team must fix ABAHA_API_TOKEN.".into(),
        JobError::Abaha(AbahaError::UnknownShop { .. }) => "Abaha does not know this shop; check the shop id of the connection.".into(),
        JobError::Store(store::StoreError::SecretRejected { .. }) => {
            "The stored KiotViet secret could not be opened; save the connection again with the secret.".into()
        }
        other => format!("The sync stopped: {other}"),
    }
}

/// What one page adds to the run's lists.
#[derive(Debug, Default)]
pub(crate) struct PageStep {
    pub(crate) manual_actions: Vec<Value>,
    pub(crate) errors: Vec<Value>,
    /// The page belongs to an entity's first sync: nothing to compare with in the ID map.
    pub(crate) first_sync: bool,
}

impl PageStep {
    fn error(&mut self, entity: &str, kiotviet_id: Option<i64>, message: String) {
        self.errors
            .push(json!({"entity": entity, "kiotviet_id": kiotviet_id, "message": message}));
    }
}

/// Decodes a page's records one by one, so one bad record is skipped and named, not the page.
fn decode<T: serde::de::DeserializeOwned>(
    page: &Page,
    entity: &str,
    tally: &mut Tally,
    step: &mut PageStep,
) -> Vec<T> {
    let mut out = Vec::with_capacity(page.data.len());
    for r in page.decode::<T>() {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                tally.failed += 1;
                step.error(
                    entity,
                    e.id,
                    format!("KiotViet sent a record we could not read ({e}); it was skipped."),
                );
            }
        }
    }
    out
}

/// Sends the items whose content changed since the last write (R-SYN-4), records the links, and
/// counts the results.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upsert_changed<T: Serialize>(
    svc: &Service,
    conn: &Connection,
    kind: IdKind,
    collection: Collection,
    entity: &str,
    items: Vec<(i64, T)>,
    hash_of: fn(&T) -> String,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    if items.is_empty() {
        return Ok(());
    }
    let shop = conn.shop_id.as_str();
    let ids: Vec<i64> = items.iter().map(|(id, _)| *id).collect();
    let links = if step.first_sync {
        HashMap::new()
    } else {
        svc.store.get_links(shop, kind, &ids).await?
    };
    let mut changed: Vec<(i64, String, T)> = Vec::new();
    for (id, item) in items {
        let hash = hash_of(&item);
        match links.get(&id) {
            Some(link) if link.hash.as_deref() == Some(hash.as_str()) => tally.unchanged += 1,
            _ => changed.push((id, hash, item)),
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let payload: Vec<&T> = changed.iter().map(|(_, _, item)| item).collect();
    let outcome = match svc
        .abaha
        .upsert(shop, collection, &payload, Some(deadline))
        .await
    {
        Ok(o) => o,
        Err(AbahaError::Rejected { message, code, .. }) => {
            // Abaha refused the batch as a whole: our payload is at fault, not the run. Name the
            // records and go on with the next page.
            tally.failed += changed.len() as u64;
            for (id, _, _) in &changed {
                step.error(
                    entity,
                    Some(*id),
                    format!("Abaha refused this record ({code}): {message}"),
                );
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    tally.abaha_calls += outcome.http_calls;
    let mut new_links = Vec::with_capacity(changed.len());
    for ((id, hash, _), result) in changed.into_iter().zip(outcome.results) {
        count_result(&result, id, hash, entity, tally, step, &mut new_links);
    }
    svc.store.put_links(shop, kind, &new_links).await?;
    Ok(())
}

fn count_result(
    result: &ItemResult,
    id: i64,
    hash: String,
    entity: &str,
    tally: &mut Tally,
    step: &mut PageStep,
    links: &mut Vec<(i64, IdLink)>,
) {
    if let Some(err) = &result.error {
        tally.failed += 1;
        step.error(
            entity,
            Some(id),
            format!("Abaha refused this record ({}): {}", err.code, err.message),
        );
        return;
    }
    let Some(abaha_id) = result.abaha_id.clone() else {
        tally.failed += 1;
        step.error(
            entity,
            Some(id),
            "Abaha answered without an id for this record.".into(),
        );
        return;
    };
    match result.status.map(|s| s.as_str()) {
        Some("created") => tally.created += 1,
        Some("updated") => tally.updated += 1,
        _ => tally.unchanged += 1,
    }
    links.push((
        id,
        IdLink {
            abaha_id,
            hash: Some(hash),
        },
    ));
}

async fn categories_page(
    svc: &Service,
    conn: &Connection,
    page: &Page,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    let mut cats: Vec<Category> = decode(page, "categories", tally, step);
    // Parents before children inside a batch, so Abaha can link them as they arrive (R-CAT-1).
    cats.sort_by_key(|c| (c.parent_id.is_some(), c.category_id));
    let items = cats
        .iter()
        .map(|c| (c.category_id, mapping::catalog::category_item(c)))
        .collect();
    upsert_changed(
        svc,
        conn,
        IdKind::Category,
        Collection::Categories,
        "categories",
        items,
        content_hash,
        tally,
        step,
        deadline,
    )
    .await?;
    Ok(())
}

async fn products_page(
    svc: &Service,
    conn: &Connection,
    page: &Page,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    let products: Vec<Product> = decode(page, "products", tally, step);
    let items = products
        .iter()
        .map(|p| (p.id, mapping::catalog::product_item(p, conn.branch_id)))
        .collect();
    upsert_changed(
        svc,
        conn,
        IdKind::Product,
        Collection::Products,
        "products",
        items,
        content_hash,
        tally,
        step,
        deadline,
    )
    .await?;
    Ok(())
}

/// Marker stored as a link's hash once a deletion has been reported, so overlapping windows do
/// not report it twice.
const REMOVED: &str = "removed-in-kiotviet";

/// R-PRD-4: a product deleted in KiotViet is not deleted in Abaha; the owner is asked to do it.
pub(crate) async fn removed_products(
    svc: &Service,
    conn: &Connection,
    removed: &[i64],
    tally: &mut Tally,
    step: &mut PageStep,
) -> Result<(), JobError> {
    removed_records(svc, &conn.shop_id, IdKind::Product, removed, tally, step).await
}

/// Records deleted in KiotViet: nothing is deleted in Abaha; each record that was synced is
/// counted once, and a product is listed for the owner to delete by hand (R-PRD-4). KiotViet
/// repeats deletions on every page of a read and in every overlap window, so a reported link is
/// marked and later sightings are skipped.
async fn removed_records(
    svc: &Service,
    shop: &str,
    kind: IdKind,
    removed: &[i64],
    tally: &mut Tally,
    step: &mut PageStep,
) -> Result<(), JobError> {
    if removed.is_empty() {
        return Ok(());
    }
    let links = svc.store.get_links(shop, kind, removed).await?;
    let mut marked: Vec<(i64, IdLink)> = Vec::new();
    for id in removed {
        let Some(link) = links.get(id) else { continue };
        if link.hash.as_deref() == Some(REMOVED) || marked.iter().any(|(m, _)| m == id) {
            continue;
        }
        tally.removed_in_kiotviet += 1;
        if kind != IdKind::Product {
            marked.push((
                *id,
                IdLink {
                    abaha_id: link.abaha_id.clone(),
                    hash: Some(REMOVED.into()),
                },
            ));
            continue;
        }
        step.manual_actions.push(json!({
            "kind": "delete_product_in_abaha",
            "kiotviet_id": id,
            "abaha_id": link.abaha_id,
            "message": format!(
                "Product {} was deleted in KiotViet FnB. The sync never deletes in Abaha: delete product {} by hand in the Abaha admin if it should go.",
                id, link.abaha_id
            ),
        }));
        marked.push((
            *id,
            IdLink {
                abaha_id: link.abaha_id.clone(),
                hash: Some(REMOVED.into()),
            },
        ));
    }
    svc.store.put_links(shop, kind, &marked).await?;
    Ok(())
}

async fn customers_page(
    svc: &Service,
    conn: &Connection,
    page: &Page,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    let customers: Vec<Customer> = decode(page, "customers", tally, step);
    let mut items = Vec::with_capacity(customers.len());
    for c in &customers {
        match mapping::customers::customer_item(c) {
            Ok(item) => items.push((c.id, item)),
            // R-CUS-1: customers without a phone are skipped and counted with the reason.
            Err(reason) => tally.skip(reason.as_str()),
        }
    }
    upsert_changed(
        svc,
        conn,
        IdKind::Customer,
        Collection::Customers,
        "customers",
        items,
        crate::push::customers::link_hash,
        tally,
        step,
        deadline,
    )
    .await?;
    Ok(())
}

/// Marker stored as an invoice link's hash once its cancellation has been reported.
const CANCELLED: &str = "cancelled-in-kiotviet";

async fn invoices_page(
    svc: &Service,
    conn: &Connection,
    page: &Page,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    use mapping::invoices::{InvoiceClass, classify};
    let shop = conn.shop_id.as_str();
    let invoices: Vec<Invoice> = decode(page, "invoices", tally, step);
    let (completed, others): (Vec<&Invoice>, Vec<&Invoice>) = invoices
        .iter()
        .partition(|i| classify(i) == InvoiceClass::Completed);

    // A completed invoice that came back cancelled: Abaha keeps a completed order; say so.
    let other_ids: Vec<i64> = others.iter().map(|i| i.id).collect();
    let synced = if other_ids.is_empty() {
        HashMap::new()
    } else {
        svc.store
            .get_links(shop, IdKind::Invoice, &other_ids)
            .await?
    };
    let mut marked = Vec::new();
    for inv in &others {
        let class = classify(inv);
        tally.skip(class.as_skip_reason().unwrap_or("unknown_status"));
        if let (InvoiceClass::Cancelled, Some(link)) = (&class, synced.get(&inv.id))
            && link.hash.as_deref() != Some(CANCELLED)
        {
            step.manual_actions.push(json!({
                    "kind": "cancel_order_in_abaha",
                    "kiotviet_id": inv.id,
                    "abaha_id": link.abaha_id,
                    "message": format!(
                        "Invoice {} was cancelled in KiotViet FnB after it was synced as completed. Cancel Abaha order {} by hand if the sale did not happen.",
                        inv.code.clone().unwrap_or_default(), link.abaha_id
                    ),
                }));
            marked.push((
                inv.id,
                IdLink {
                    abaha_id: link.abaha_id.clone(),
                    hash: Some(CANCELLED.into()),
                },
            ));
        }
    }
    svc.store.put_links(shop, IdKind::Invoice, &marked).await?;

    // R-INV-2: lines carry the Abaha product id when mapped; an invoice made from an order we
    // pushed carries that Abaha order's id.
    let product_ids: Vec<i64> = completed
        .iter()
        .flat_map(|i| i.invoice_details.iter().map(|d| d.product_id))
        .collect();
    let products = if product_ids.is_empty() {
        HashMap::new()
    } else {
        svc.product_links(shop, &product_ids).await?
    };
    let origins = crate::push::orders::origins_of(svc, shop, &completed).await?;
    let items = completed
        .iter()
        .map(|inv| {
            let origin = origins.get(&inv.id);
            let item = mapping::invoices::order_item(
                inv,
                origin.map(|o| o.abaha_order_id.clone()),
                origin.and_then(|o| o.kiotviet_order_code.clone()),
                |pid| products.get(&pid).map(|l| l.abaha_id.clone()),
                // Abaha matches the buyer by KiotViet id (customers are pulled with theirs);
                // an invoice carries no phone, and a look-up per invoice is not worth a GET.
                mapping::invoices::order_customer(inv, None),
            );
            (inv.id, item)
        })
        .collect();
    upsert_changed(
        svc,
        conn,
        IdKind::Invoice,
        Collection::Orders,
        "invoices",
        items,
        content_hash,
        tally,
        step,
        deadline,
    )
    .await
}
