//! Applying a [`WebhookJob`] in the pull functions: the same mapping, content-hash skip and ID-map
//! links as a pull page (R-SYN-4), for the few records a webhook names.
//!
//! Every changed record is read fresh from KiotViet (`GET /products/{id}`, `GET /customers/{id}`)
//! rather than mapped from the webhook's `Data`:
//! - the documented `product.update` data lacks fields a full Abaha product needs (inventories
//!   for the branch stock, images, toppings are "may include"), and `stock.update` carries no
//!   product at all — mapping the partial record would blank those fields in Abaha;
//! - retries arrive late (higher `Attempt`) and events are not ordered, so an old delivery could
//!   overwrite a newer change; the current record is always right, and an unchanged one is not
//!   re-sent (content hash).
//!
//! It costs one GET per changed record from the shop's shared hourly budget (R-SYN-6), of which
//! webhooks may use three quarters. When that is spent the job is dropped: the scheduled pull
//! brings the change.
//!
//! `GET /products/{id}` is read without `includeInventory`: the sandbox, like the retail API,
//! answers the detail with its inventories (the branch stock). If FnB turns out to omit them,
//! `stock` would go out as null here — then read the detail with `includeInventory=true`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use abaha::Collection;
use kiotviet::{Credentials, KiotVietClient, KvError};
use mapping::hash::content_hash;
use store::{Connection, IdKind};

use super::{Change, WebhookJob};
use crate::error::JobError;
use crate::pull::{PageStep, removed_products, upsert_changed};
use crate::runs::{self, Tally, Trigger};
use crate::service::Service;

/// Runs one webhook job. Errors that a later delivery can fix (KiotViet or Abaha unavailable,
/// storage busy) go back to SQS; the job is idempotent, so running it again is harmless.
pub async fn apply(svc: &Service, job: WebhookJob, deadline: Instant) -> Result<(), JobError> {
    let shop = job.shop_id.as_str();
    let Some(conn) = svc.store.get_connection(shop).await? else {
        tracing::info!(shop, delivery = %job.delivery, "webhook job for a disconnected shop; nothing to do");
        return Ok(());
    };
    let ids_of = |wanted: &[Change]| -> Vec<i64> {
        job.notifications
            .iter()
            .filter(|n| wanted.contains(&n.action))
            .flat_map(|n| n.ids.iter().copied())
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .collect()
    };
    let refresh_products = ids_of(&[Change::ProductUpdate, Change::StockUpdate]);
    let deleted_products = ids_of(&[Change::ProductDelete]);
    let refresh_customers = ids_of(&[Change::CustomerUpdate]);
    let deleted_customers = ids_of(&[Change::CustomerDelete]);

    let mut products = Tally::default();
    let mut customers = Tally::default();
    let mut step = PageStep::default();
    // R-CON-6: a part switched off after the delivery was queued is not applied either. KiotViet
    // is only asked (and the client secret only opened) when there is something to read.
    let needs_reads = (conn.sync.products && !refresh_products.is_empty())
        || (conn.sync.customers && !refresh_customers.is_empty());
    let kv = if needs_reads {
        Some(client_for(svc, &conn).await?.with_deadline(Some(deadline)))
    } else {
        None
    };

    if conn.sync.products {
        let fresh = match &kv {
            Some(kv) => match read_all(&refresh_products, |id| kv.product(id), &mut products).await
            {
                Ok(records) => records,
                Err(e) => return left_to_schedule(&conn, &job.delivery, e),
            },
            None => Vec::new(),
        };
        let items = fresh
            .iter()
            .map(|p| (p.id, mapping::catalog::product_item(p, conn.branch_id)))
            .collect();
        upsert_changed(
            svc,
            &conn,
            IdKind::Product,
            Collection::Products,
            "products",
            items,
            content_hash,
            &mut products,
            &mut step,
            deadline,
        )
        .await?;
        // R-PRD-4: never a delete in Abaha; the owner gets a manual action instead.
        removed_products(svc, &conn, &deleted_products, &mut products, &mut step).await?;
    } else {
        products.skip("switched_off");
    }

    if conn.sync.customers {
        let fresh = match &kv {
            Some(kv) => {
                match read_all(&refresh_customers, |id| kv.customer(id), &mut customers).await {
                    Ok(records) => records,
                    Err(e) => return left_to_schedule(&conn, &job.delivery, e),
                }
            }
            None => Vec::new(),
        };
        let mut items = Vec::with_capacity(fresh.len());
        for c in &fresh {
            match mapping::customers::customer_item(c) {
                Ok(item) => items.push((c.id, item)),
                // R-CUS-1: no phone, no Abaha customer.
                Err(reason) => customers.skip(reason.as_str()),
            }
        }
        upsert_changed(
            svc,
            &conn,
            IdKind::Customer,
            Collection::Customers,
            "customers",
            items,
            crate::links::link_hash,
            &mut customers,
            &mut step,
            deadline,
        )
        .await?;
        // Abaha keeps its customers (no delete in the Sync API): a deletion is only counted.
        customers.removed_in_kiotviet += deleted_customers.len() as u64;
    } else {
        customers.skip("switched_off");
    }

    runs::record_manual_actions(svc, shop, Trigger::Webhook, &step.manual_actions).await?;
    for e in &step.errors {
        tracing::warn!(shop, delivery = %job.delivery, entity = %e.entity, kiotviet_id = ?e.kiotviet_id,
            message = %e.message, "webhook record not applied; the scheduled pull tries again");
    }
    tracing::info!(
        shop,
        delivery = %job.delivery,
        products_created = products.created,
        products_updated = products.updated,
        products_unchanged = products.unchanged,
        products_removed = products.removed_in_kiotviet,
        customers_created = customers.created,
        customers_updated = customers.updated,
        customers_unchanged = customers.unchanged,
        customers_removed = customers.removed_in_kiotviet,
        failed = products.failed + customers.failed,
        skipped = ?products.skipped.iter().chain(customers.skipped.iter()).collect::<Vec<_>>(),
        api_calls = kv.as_ref().map_or(0, KiotVietClient::api_calls),
        "webhook applied"
    );
    Ok(())
}

/// Share of the shop's hourly GET budget webhook jobs may use: the rest stays for the scheduled
/// pulls, which are the safety net and must not be starved by a busy till's stock events.
const WEBHOOK_BUDGET_SHARE: (u32, u32) = (3, 4);

/// A KiotViet client for a webhook job. It draws from the same shared hourly budget as the pulls
/// (R-SYN-6), but takes exactly the GETs it makes — the pull's client reserves calls ahead for
/// its pages, which a job of one or two GETs would mostly waste — and stops at
/// [`WEBHOOK_BUDGET_SHARE`] of the allowance.
async fn client_for(svc: &Service, conn: &Connection) -> Result<KiotVietClient, store::StoreError> {
    let secret = svc.sealer.open(&conn.shop_id, &conn.sealed_secret).await?;
    let (num, den) = WEBHOOK_BUDGET_SHARE;
    // The same DynamoDB counter as the pulls', taken call by call, up to a share of the hour.
    let budget = Arc::new(crate::service::SharedBudget::exact(
        svc.store.clone(),
        svc.clock.clone(),
        svc.settings.get_budget_per_hour.saturating_mul(num) / den,
    ));
    Ok(KiotVietClient::new(
        svc.http.clone(),
        svc.kv_config.clone(),
        Credentials {
            retailer: conn.retailer.clone(),
            client_id: conn.client_id.clone(),
            client_secret: secret,
        },
        budget,
    ))
}

/// Reads each record; one that is gone (deleted since) or unreadable is counted and skipped.
async fn read_all<T, F, Fut>(ids: &[i64], read: F, tally: &mut Tally) -> Result<Vec<T>, KvError>
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = Result<T, KvError>>,
{
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match read(*id).await {
            Ok(record) => out.push(record),
            // Deleted after the event: its delete event (or the pull's removed ids) handles it.
            Err(KvError::NotFound { .. }) => tally.skip("gone_in_kiotviet"),
            // The whole job stops: KiotViet is unavailable, or the connection itself is broken.
            Err(e)
                if e.is_retryable()
                    || matches!(
                        e,
                        KvError::Unauthorized
                            | KvError::InvalidCredentials { .. }
                            | KvError::UnknownRetailer { .. }
                            | KvError::Transport(_)
                    ) =>
            {
                return Err(e);
            }
            Err(e) => {
                tally.failed += 1;
                tracing::warn!(kiotviet_id = id, error = %e, "webhook record could not be read");
            }
        }
    }
    Ok(out)
}

/// A KiotViet read that cannot go on now: SQS retries what a retry can fix; a spent hourly
/// budget is not waited for, because the scheduled pull brings the change anyway (R-SYN-6).
fn left_to_schedule(conn: &Connection, delivery: &str, e: KvError) -> Result<(), JobError> {
    if matches!(e, KvError::BudgetExhausted { .. }) {
        tracing::warn!(shop = %conn.shop_id, delivery, error = %e, "webhook left to the scheduled pull");
        return Ok(());
    }
    Err(JobError::KiotViet(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiotviet::GetBudget;
    use mapping::time::FixedClock;
    use store::{BudgetAnswer, BudgetStore, MemoryStore};

    #[tokio::test]
    async fn r_syn_6_webhook_jobs_take_exactly_their_calls_and_stop_at_their_share() {
        // GIVEN an hourly allowance of 8 of which webhooks may use 6
        let store = Arc::new(MemoryStore::new());
        let now = "2026-11-29T09:30:00Z".parse().expect("a time");
        let budget = crate::service::SharedBudget::exact(
            store.clone(),
            Arc::new(FixedClock(now)),
            8 * WEBHOOK_BUDGET_SHARE.0 / WEBHOOK_BUDGET_SHARE.1,
        );
        // WHEN webhook jobs take one call at a time
        for _ in 0..6 {
            assert!(budget.take("r", 1).await.is_ok());
        }
        // THEN the seventh is refused until the next hour
        let refused = budget
            .take("r", 1)
            .await
            .expect_err("past the webhook share");
        assert_eq!(
            refused.retry_at,
            "2026-11-29T10:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .expect("a time")
        );
        // AND exactly six were counted, so the pulls still have their two
        let window = "2026-11-29T09:00:00Z".parse().expect("a time");
        assert!(matches!(
            store.take("r", window, 2, 8).await.expect("memory store"),
            BudgetAnswer::Granted { used: 8 }
        ));
    }
}
