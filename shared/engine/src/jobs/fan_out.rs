//! The schedule's fan-out (R-SYN-7): one run per connected shop, started side by side.

use serde::Serialize;
use store::Connection;

use crate::error::EngineError;
use crate::runs::{self, Trigger};
use crate::service::Service;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(shop: &str) -> Connection {
        Service::test_connection(shop)
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
}
