//! The page pipeline: a page processed on its own task, then added to the pull in order.

use std::collections::VecDeque;
use std::time::Instant;

use mapping::kiotviet::Page;
use store::{Connection, IdKind};
use tokio::task::JoinHandle;

use super::checkpoint::Checkpoint;
use super::pages::{
    PageStep, categories_page, customers_page, invoices_page, products_page, removed_records,
};
use crate::error::JobError;
use crate::jobs::{Entity, SyncJob};
use crate::runs::Tally;
use crate::service::Service;
/// What one processed page adds to the pull.
pub(super) struct PageDone {
    pub(super) tally: Tally,
    pub(super) step: PageStep,
    pub(super) read: u64,
    /// The offset after this page.
    pub(super) end: i64,
    /// The list's total when this page was read.
    pub(super) total: Option<i64>,
    /// Ids the page says were deleted in KiotViet, and the links they would have (None: not
    /// tracked). Handled in `apply`, one page after the other: every page repeats them.
    pub(super) removed: Vec<i64>,
    pub(super) removed_kind: Option<IdKind>,
}

pub(super) async fn process_page(
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
pub(super) async fn apply(
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
pub(super) async fn drain(
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
