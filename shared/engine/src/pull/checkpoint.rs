//! The pull's checkpoint (R-SYN-2): where a pull stands, how a fresh one starts, and the
//! progress save that writes it with the part's report.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use kiotviet::{ListEntity, ListRequest};
use serde_json::Value;
use store::Connection;

pub(super) use crate::model::Checkpoint;

use super::lease::part_until;
use crate::error::JobError;
use crate::model::{Entity, SyncJob};
use crate::runs::{self, Tally};
use crate::service::Service;

pub(super) async fn save_progress(
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

pub(super) async fn report(
    svc: &Service,
    job: &SyncJob,
    entity: Entity,
    tally: &Tally,
) -> Result<(), store::StoreError> {
    svc.store
        .put_entity_report(&job.shop_id, &job.run_id, entity, tally)
        .await
}

/// A new pull: incremental from the cursor minus the overlap, or everything (R-SYN-1); invoices
/// read `invoice_history_days` back on a first or full sync (R-INV-3).
pub(super) async fn fresh_checkpoint(
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
        tally: Tally::default(),
    })
}

pub(super) fn list_request(entity: Entity, from: Option<DateTime<Utc>>) -> ListRequest {
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

pub(super) fn checkpoint_value(ck: &Checkpoint) -> Value {
    serde_json::to_value(ck).unwrap_or(Value::Null)
}
