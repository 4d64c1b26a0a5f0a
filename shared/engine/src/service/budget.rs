//! The KiotViet GET budget of a retailer, shared by every function through the store (R-SYN-6).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc};
use kiotviet::{BudgetExhausted, GetBudget};
use mapping::time::Clock;
use store::BudgetAnswer;

/// Most GETs a pull reserves from the shared budget at once.
pub const RESERVE: u32 = 25;

/// The KiotViet GET budget of one retailer, kept in DynamoDB so that every function and every
/// concurrent run of the shop draws from the same hourly allowance (R-SYN-6).
///
/// Calls are reserved from the table several at a time and handed out locally, so a long pull
/// costs one DynamoDB write per [`RESERVE`] GETs, not one per GET. A reservation grows with what
/// the client has used (1, 1, 2, 4, … up to `reserve`): what a client leaves unused when it is
/// dropped is simply not spent, so a short pull (an incremental run: one GET) must not reserve
/// more than it uses, and a long one wastes less than `reserve`.
pub struct SharedBudget {
    pub store: Arc<dyn store::BudgetStore>,
    pub clock: Arc<dyn Clock>,
    pub per_hour: u32,
    /// Most calls taken from the table at once (1: exactly what is asked).
    pub reserve: u32,
    /// Calls this client has been granted by the table so far.
    pub granted: std::sync::atomic::AtomicU32,
    /// (window of the reservation, calls left in it)
    pub reserved: std::sync::Mutex<(Option<DateTime<Utc>>, u32)>,
    /// One refill at a time: GETs that find the reservation spent together wait for one refill
    /// instead of each taking `reserve` calls from the table.
    pub refill: tokio::sync::Mutex<()>,
}

impl SharedBudget {
    /// A budget that takes exactly the calls asked for, up to `per_hour`.
    pub fn exact(store: Arc<dyn store::BudgetStore>, clock: Arc<dyn Clock>, per_hour: u32) -> Self {
        SharedBudget {
            store,
            clock,
            per_hour,
            reserve: 1,
            granted: std::sync::atomic::AtomicU32::new(0),
            reserved: std::sync::Mutex::new((None, 0)),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes `n` calls from this client's reservation for `window`, if it holds them.
    fn take_reserved(&self, window: DateTime<Utc>, n: u32) -> bool {
        let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        if r.0 == Some(window) && r.1 >= n {
            r.1 -= n;
            return true;
        }
        false
    }
}

#[async_trait]
impl GetBudget for SharedBudget {
    async fn take(&self, retailer: &str, n: u32) -> Result<(), BudgetExhausted> {
        let now = self.clock.now();
        let window = now.duration_trunc(ChronoDuration::hours(1)).unwrap_or(now);
        if self.take_reserved(window, n) {
            return Ok(());
        }
        let _refilling = self.refill.lock().await;
        // Someone else may have refilled while this one waited.
        if self.take_reserved(window, n) {
            return Ok(());
        }
        // Reserve about as many as used so far, up to `reserve`; near the limit, only what is asked.
        let used = self.granted.load(std::sync::atomic::Ordering::Relaxed);
        let want = n.max(self.reserve.min(used.max(1)));
        let answer = match self.store.take(retailer, window, want, self.per_hour).await {
            Ok(BudgetAnswer::Exhausted { .. }) if want > n => self
                .store
                .take(retailer, window, n, self.per_hour)
                .await
                .map(|a| (a, n)),
            other => other.map(|a| (a, want)),
        };
        match answer.map(|(a, got)| {
            if matches!(a, BudgetAnswer::Granted { .. }) {
                self.granted
                    .fetch_add(got, std::sync::atomic::Ordering::Relaxed);
                let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
                let left = if r.0 == Some(window) { r.1 } else { 0 };
                *r = (Some(window), left + got - n);
            }
            a
        }) {
            Ok(BudgetAnswer::Granted { .. }) => Ok(()),
            Ok(BudgetAnswer::Exhausted { .. }) => Err(BudgetExhausted {
                retry_at: window + ChronoDuration::hours(1),
            }),
            // The budget is a guard, not the source of truth: a storage hiccup must not stop a sync.
            // KiotViet's own 429 (retried with backoff) still protects the shop.
            Err(e) => {
                tracing::warn!(error = %e, "GET budget unavailable; proceeding without it");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use mapping::time::FixedClock;
    use store::BudgetStore;

    /// The memory store, answering budget takes only after yielding, as a table would.
    #[derive(Default)]
    struct SlowBudget {
        table: store::MemoryStore,
        calls: std::sync::atomic::AtomicU32,
    }

    impl SlowBudget {
        async fn used(&self, retailer: &str, window: DateTime<Utc>) -> u32 {
            match self.table.take(retailer, window, 0, u32::MAX).await {
                Ok(BudgetAnswer::Granted { used }) => used,
                other => panic!("{other:?}"),
            }
        }
    }

    #[async_trait]
    impl store::BudgetStore for SlowBudget {
        async fn take(
            &self,
            retailer: &str,
            window_start: DateTime<Utc>,
            n: u32,
            limit: u32,
        ) -> Result<BudgetAnswer, store::StoreError> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            self.table.take(retailer, window_start, n, limit).await
        }
    }

    #[tokio::test]
    async fn r_syn_6_concurrent_gets_share_one_refill_and_the_table_counts_about_what_was_used() {
        // GIVEN a pull client reserving up to RESERVE GETs at a time
        let table = Arc::new(SlowBudget::default());
        let now: DateTime<Utc> = "2026-11-29T09:30:00Z".parse().expect("a time");
        let budget = Arc::new(SharedBudget {
            reserve: RESERVE,
            ..SharedBudget::exact(table.clone(), Arc::new(FixedClock(now)), 5000)
        });
        let window = now
            .duration_trunc(ChronoDuration::hours(1))
            .expect("an hour");
        // WHEN 100 GETs ask for a call, 20 at the same moment
        for _ in 0..5 {
            let takes = (0..20).map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move { budget.take("shop", 1).await })
            });
            for take in futures::future::join_all(takes).await {
                assert!(matches!(take, Ok(Ok(()))), "{take:?}");
            }
        }
        // THEN the table counts what was used and less than one reservation more
        let used = table.used("shop", window).await;
        assert!((100..100 + RESERVE).contains(&used), "{used}");
        // AND it was asked a handful of times, not once per GET that found the reservation spent
        let calls = table.calls.load(std::sync::atomic::Ordering::Relaxed);
        assert!(calls <= 10, "{calls} table calls for 100 GETs");
    }

    #[tokio::test]
    async fn r_syn_6_a_pull_making_one_get_reserves_one() {
        // GIVEN a pull client reserving up to RESERVE GETs at a time
        let table = Arc::new(SlowBudget::default());
        let now: DateTime<Utc> = "2026-11-29T09:30:00Z".parse().expect("a time");
        let budget = SharedBudget {
            reserve: RESERVE,
            ..SharedBudget::exact(table.clone(), Arc::new(FixedClock(now)), 5000)
        };
        // WHEN it makes one GET (an incremental run with nothing new) and is dropped
        assert!(budget.take("shop", 1).await.is_ok());
        drop(budget);
        // THEN the shop's allowance is down by one, not by a reservation left unused
        let window = now
            .duration_trunc(ChronoDuration::hours(1))
            .expect("an hour");
        assert_eq!(table.used("shop", window).await, 1);
    }
}
