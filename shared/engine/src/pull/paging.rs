//! The page pipeline: where the next page starts ([`advance`], the step-back rule, a pure
//! function held by a table test), a page processed on its own task, then added to the pull in
//! order.

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
use crate::model::Tally;
use crate::model::{Entity, SyncJob};
use crate::service::Service;
/// Where reading goes after a page, decided by [`advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advance {
    /// The `currentItem` of the next page.
    pub(crate) next: i64,
    /// Records deleted while reading, stepped back over (0: none).
    pub(crate) stepped_back: i64,
    /// The list's total as known after this page.
    pub(crate) known_total: Option<i64>,
    /// Nothing more to read: an empty page, or the next page would start past the list's end.
    pub(crate) done: bool,
}

/// The step-back rule (R-SYN-2). A page of `read` records read at `page_start` moves the next
/// read to just after it — unless the list shrank since the total known before (`known_total`,
/// from an earlier page or the checkpoint): offset paging shifts when records are deleted while
/// we read, so this page started `d` records later in the old list, and those `d` records now sit
/// just before it. The next read steps back over them (never before 0, never past the page's
/// end); re-reading is harmless, upserts are keyed. A list that grew needs no step: new records
/// come after the cursor's time and the next run reads them.
pub(crate) fn advance(
    page_start: i64,
    read: i64,
    known_total: Option<i64>,
    page_total: Option<i64>,
) -> Advance {
    let end = page_start + read;
    let stepped_back = match (known_total, page_total) {
        (Some(seen), Some(now)) if seen > now => seen - now,
        _ => 0,
    };
    let next = if stepped_back > 0 {
        (page_start - stepped_back).max(0).min(end)
    } else {
        end
    };
    Advance {
        next,
        stepped_back,
        known_total: page_total.or(known_total),
        done: read == 0 || next >= page_total.unwrap_or(0),
    }
}

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
    t.merge(&done.tally);
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
                // Every count, as `apply` does: the checkpoint moves past these pages, so nothing
                // counts them again (R-SYN-5: the report of a run that was interrupted tells the
                // same story).
                ck.tally.merge(&done.tally);
                ck.tally.read += done.read;
                ck.position = done.end;
                ck.total = done.total.or(ck.total);
            }
            _ => in_order = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_back_table() {
        // (rule, page start, read, known total, page total, next, stepped back, known after, done)
        let rows = [
            (
                "R-SYN-2 first page of many",
                0,
                100,
                None,
                Some(250),
                100,
                0,
                Some(250),
                false,
            ),
            (
                "R-SYN-2 a middle page, total unchanged",
                100,
                100,
                Some(250),
                Some(250),
                200,
                0,
                Some(250),
                false,
            ),
            (
                "R-SYN-2 the last page reaches the total",
                200,
                50,
                Some(250),
                Some(250),
                250,
                0,
                Some(250),
                true,
            ),
            (
                "R-SYN-2 an empty page ends the read",
                250,
                0,
                Some(250),
                Some(250),
                250,
                0,
                Some(250),
                true,
            ),
            (
                "R-SYN-2 shrank by 3 while reading: step back over them",
                100,
                100,
                Some(250),
                Some(247),
                97,
                3,
                Some(247),
                false,
            ),
            (
                "R-SYN-2 shrank more than the page start: not before 0",
                2,
                100,
                Some(250),
                Some(240),
                0,
                10,
                Some(240),
                false,
            ),
            (
                "R-SYN-2 shrank on the last page: re-read the shifted records",
                200,
                47,
                Some(250),
                Some(247),
                197,
                3,
                Some(247),
                false,
            ),
            (
                "R-SYN-2 shrank on an empty page: done",
                247,
                0,
                Some(250),
                Some(240),
                237,
                10,
                Some(240),
                true,
            ),
            (
                "R-SYN-2 grew while reading: no step",
                100,
                100,
                Some(250),
                Some(260),
                200,
                0,
                Some(260),
                false,
            ),
            (
                "R-SYN-2 grew: the read goes on to the new total",
                200,
                50,
                Some(250),
                Some(260),
                250,
                0,
                Some(260),
                false,
            ),
            (
                "R-SYN-2 resumed from a checkpoint total that shrank",
                500,
                100,
                Some(1000),
                Some(990),
                490,
                10,
                Some(990),
                false,
            ),
            (
                "R-SYN-2 a page without a total keeps the known one",
                100,
                100,
                Some(250),
                None,
                200,
                0,
                Some(250),
                true,
            ),
            (
                "R-SYN-2 no total ever: one page is all",
                0,
                100,
                None,
                None,
                100,
                0,
                None,
                true,
            ),
        ];
        for (rule, start, read, known, total, next, back, known_after, done) in rows {
            assert_eq!(
                advance(start, read, known, total),
                Advance {
                    next,
                    stepped_back: back,
                    known_total: known_after,
                    done,
                },
                "{rule}"
            );
        }
    }
}
