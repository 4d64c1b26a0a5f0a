//! The schedule's fan-out (R-SYN-7): one run per connected shop, started side by side, a page
//! of connections at a time, and never past the invocation's deadline.

use std::time::{Duration, Instant};

use serde::Serialize;
use store::Connection;

use crate::error::EngineError;
use crate::runs::{self, Trigger};
use crate::service::Service;

/// What the schedule did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct FanOut {
    /// Connected shops the fan-out read (all of them unless it stopped early).
    pub shops: usize,
    pub started: usize,
    pub already_running: usize,
    pub failed: usize,
    /// Shops read but left without a run because the invocation's time ran out.
    pub not_started: usize,
    /// The first shop left without a run; every shop after it in shop-id order was left too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_before: Option<String>,
}

/// The fan-out stopped at its deadline and some shops got no run this tick.
#[derive(Debug, thiserror::Error)]
#[error(
    "the schedule's fan-out ran out of time: {started} runs started, shops from {stopped_before} \
     on (in shop-id order) got no run this tick; a retry of the tick starts them \
     (started shops answer 'already running'); raise the dispatcher's Timeout if this repeats"
)]
pub struct FanOutCutShort {
    pub started: usize,
    pub stopped_before: String,
}

impl FanOut {
    /// `Err` when shops were left without a run: the dispatcher fails the invocation so that the
    /// error alarm fires and EventBridge Scheduler retries the tick.
    pub fn finished(self) -> Result<FanOut, FanOutCutShort> {
        match self.stopped_before {
            Some(stopped_before) => Err(FanOutCutShort {
                started: self.started,
                stopped_before,
            }),
            None => Ok(self),
        }
    }
}

/// Shops whose scheduled runs the dispatcher starts at once.
const FAN_OUT_CONCURRENCY: usize = 16;

/// Time kept back from the invocation's deadline: a start takes a few round trips, and the
/// dispatcher still answers (and logs) after the last one.
pub const FAN_OUT_MARGIN: Duration = Duration::from_secs(10);

/// The EventBridge schedule: one incremental run per connected shop, each run enqueuing one job per
/// pull function. A shop that fails to start is logged and the others go on (R-SYN-7).
///
/// Connections are read a page at a time and a page's shops are started before the next page is
/// read, so memory stays one page whatever the number of shops. With a `deadline` (the Lambda
/// invocation's), no start begins later than [`FAN_OUT_MARGIN`] before it; the shops left are
/// counted and named in the answer (see [`FanOut::finished`]).
pub async fn fan_out(
    svc: &Service,
    deadline: Option<Instant>,
) -> Result<FanOut, store::StoreError> {
    let stop_at = deadline.map(|d| d.checked_sub(FAN_OUT_MARGIN).unwrap_or(d));
    let mut out = FanOut::default();
    let mut after: Option<String> = None;
    loop {
        let page = svc.store.list_connections_page(after.as_deref()).await?;
        out.shops += page.connections.len();
        start_page(svc, &page.connections, stop_at, &mut out).await;
        match page.next {
            Some(next) if out.stopped_before.is_none() => after = Some(next),
            _ => break,
        }
    }
    match &out.stopped_before {
        None => tracing::info!(?out, "schedule fan-out"),
        Some(shop) => {
            tracing::error!(?out, stopped_before = %shop, "schedule fan-out ran out of time")
        }
    }
    Ok(out)
}

/// Starts one page's shops, [`FAN_OUT_CONCURRENCY`] at a time, none after `stop_at`.
async fn start_page(
    svc: &Service,
    conns: &[Connection],
    stop_at: Option<Instant>,
    out: &mut FanOut,
) {
    use futures::StreamExt;
    // Shops start side by side: one after the other, each start's few DynamoDB calls made the
    // tick's length grow with the number of shops (README "1,000-shop tick"). Shops are
    // independent; a bound keeps the burst polite. Boxed, so the future stays Send for any
    // lifetime (the dispatcher and the local stack spawn it).
    type Start<'a> = std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = (&'a Connection, Option<Result<runs::Started, EngineError>>),
                > + Send
                + 'a,
        >,
    >;
    let starts: Vec<Start<'_>> = conns
        .iter()
        .map(|conn| -> Start<'_> {
            Box::pin(async move {
                // Checked when the start begins, not when it is queued.
                if stop_at.is_some_and(|at| Instant::now() >= at) {
                    return (conn, None);
                }
                let started = runs::start(svc, conn, None, false, Trigger::Schedule).await;
                (conn, Some(started))
            })
        })
        .collect();
    let mut starts = futures::stream::iter(starts).buffer_unordered(FAN_OUT_CONCURRENCY);
    while let Some((conn, started)) = starts.next().await {
        match started {
            Some(Ok(s)) if s.already_running => out.already_running += 1,
            Some(Ok(_)) => out.started += 1,
            Some(Err(e)) => {
                out.failed += 1;
                tracing::warn!(shop = %conn.shop_id, error = %e, "scheduled run not started");
            }
            None => {
                out.not_started += 1;
                if out
                    .stopped_before
                    .as_ref()
                    .is_none_or(|first| conn.shop_id < *first)
                {
                    out.stopped_before = Some(conn.shop_id.clone());
                }
            }
        }
    }
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
        let first = fan_out(&svc, None).await.unwrap();
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
        let second = fan_out(&svc, None).await.unwrap();
        assert_eq!((second.started, second.already_running), (0, 40));
    }

    #[tokio::test]
    async fn r_syn_7_a_tick_out_of_time_starts_no_more_shops_names_the_first_left_and_a_retry_goes_on()
     {
        // GIVEN 10 connected shops (the in-memory store pages them 3 at a time)
        let queue = store::MemoryQueue::new();
        let mut settings = crate::Settings::default();
        settings.queues.catalog = queue.ensure_queue("catalog", "catalog-dlq", 5).url;
        let svc = Service::in_memory(settings, queue.clone());
        for i in 0..10 {
            svc.store
                .put_connection(&connection(&format!("shop-{i}")))
                .await
                .unwrap();
        }
        // WHEN the tick's invocation has less time left than the margin
        let out = fan_out(&svc, Some(Instant::now() + FAN_OUT_MARGIN / 2))
            .await
            .unwrap();
        // THEN no run starts, the first page's shops are counted as left, no further page is read,
        // and the answer names the first shop left and fails the invocation with what to do
        assert_eq!(
            (out.shops, out.started, out.not_started, out.failed),
            (3, 0, 3, 0)
        );
        assert_eq!(out.stopped_before.as_deref(), Some("shop-0"));
        assert_eq!(queue.len(&svc.settings.queues.catalog), 0);
        let cut = out.finished().unwrap_err();
        assert!(cut.to_string().contains("shops from shop-0 on"), "{cut}");
        // AND a retry with time to spare starts every shop (memory stays one page: 4 pages read)
        let retry = fan_out(&svc, Some(Instant::now() + Duration::from_secs(120)))
            .await
            .unwrap();
        assert_eq!((retry.shops, retry.started, retry.not_started), (10, 10, 0));
        assert!(retry.clone().finished().is_ok());
        assert_eq!(queue.len(&svc.settings.queues.catalog), 10);
    }
}
