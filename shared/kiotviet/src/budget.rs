//! The GET budget (R-SYN-6): KiotViet allows 5 000 GET requests per hour per shop; every GET this
//! client makes takes one unit first, so all functions together stay under a configurable share.
//!
//! The trait is the seam: [`InProcessBudget`] serves one process (local runs, tests); a budget
//! shared by every Lambda (DynamoDB counter per retailer and hour) implements the same trait elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use mapping::time::{Clock, SystemClock};

/// The share of KiotViet's 5 000 GETs/hour we allow ourselves by default (CONTRACTS §3).
pub const DEFAULT_GET_BUDGET_PER_HOUR: u32 = 4000;

/// The budget is spent until `retry_at`: pause the sync and continue then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("KiotViet GET budget spent until {retry_at}")]
pub struct BudgetExhausted {
    pub retry_at: DateTime<Utc>,
}

#[async_trait]
pub trait GetBudget: Send + Sync {
    /// Take `n` GET requests from `retailer`'s budget, or say when there will be room again.
    async fn take(&self, retailer: &str, n: u32) -> Result<(), BudgetExhausted>;
}

/// A fixed hourly window per retailer, counted in this process only.
pub struct InProcessBudget {
    per_hour: u32,
    clock: Arc<dyn Clock>,
    /// retailer → (window start as epoch hour, units used in it)
    used: Mutex<HashMap<String, (i64, u32)>>,
}

impl InProcessBudget {
    pub fn per_hour(per_hour: u32) -> Self {
        Self::with_clock(per_hour, Arc::new(SystemClock))
    }

    pub fn with_clock(per_hour: u32, clock: Arc<dyn Clock>) -> Self {
        InProcessBudget {
            per_hour,
            clock,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Units left in the current window for `retailer`.
    pub fn remaining(&self, retailer: &str) -> u32 {
        let hour = self.clock.now().timestamp().div_euclid(3600);
        let used = self
            .used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match used.get(retailer) {
            Some(&(window, spent)) if window == hour => self.per_hour.saturating_sub(spent),
            _ => self.per_hour,
        }
    }
}

impl std::fmt::Debug for InProcessBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBudget")
            .field("per_hour", &self.per_hour)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl GetBudget for InProcessBudget {
    async fn take(&self, retailer: &str, n: u32) -> Result<(), BudgetExhausted> {
        let now = self.clock.now();
        let hour = now.timestamp().div_euclid(3600);
        // A poisoned lock only means another thread panicked mid-count; the count is still usable.
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = used.entry(retailer.to_owned()).or_insert((hour, 0));
        if entry.0 != hour {
            *entry = (hour, 0);
        }
        match entry.1.checked_add(n) {
            Some(total) if total <= self.per_hour => {
                entry.1 = total;
                Ok(())
            }
            _ => Err(BudgetExhausted {
                retry_at: Utc
                    .timestamp_opt((hour + 1) * 3600, 0)
                    .single()
                    .unwrap_or(now),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapping::time::{FixedClock, ManualClock};

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, h, m, 0)
            .single()
            .expect("valid")
    }

    #[tokio::test]
    async fn budget_refuses_when_spent_and_refills_next_hour() {
        // GIVEN a budget of 3 per hour at 10:15
        let clock = Arc::new(ManualClock::new(at(10, 15)));
        let budget = InProcessBudget::with_clock(3, clock.clone());
        // WHEN 3 are taken THEN the 4th is refused until 11:00
        assert!(budget.take("shop", 2).await.is_ok());
        assert!(budget.take("shop", 1).await.is_ok());
        assert_eq!(
            budget.take("shop", 1).await,
            Err(BudgetExhausted {
                retry_at: at(11, 0)
            })
        );
        assert_eq!(budget.remaining("shop"), 0);
        // AND another retailer has its own budget
        assert!(budget.take("other", 3).await.is_ok());
        // AND the next hour starts afresh
        clock.set(at(11, 0));
        assert_eq!(budget.remaining("shop"), 3);
        assert!(budget.take("shop", 3).await.is_ok());
    }

    #[tokio::test]
    async fn a_refused_take_spends_nothing() {
        let budget = InProcessBudget::with_clock(3, Arc::new(FixedClock(at(9, 0))));
        assert!(budget.take("shop", 4).await.is_err());
        assert_eq!(budget.remaining("shop"), 3);
        assert!(budget.take("shop", u32::MAX).await.is_err());
    }
}
