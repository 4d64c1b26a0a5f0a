//! One SQS batch of a pull function (R-SYN-7) and the invocation's deadline.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::handle_job;
use crate::error::JobError;
use crate::service::Service;

/// The deadline of a job run without a Lambda context (local stack).
pub fn local_deadline(svc: &Service) -> Instant {
    Instant::now() + svc.settings.job_budget.max(Duration::from_secs(30))
}

/// One SQS batch (R-SYN-7): every record runs (concurrently: they are different shops or runs),
/// and only the ids of records that should come back are returned — a bad shop never blocks
/// the others, and a malformed message is dropped (it would fail the same way every time).
pub async fn handle_batch(
    svc: &Service,
    records: Vec<(String, String)>,
    deadline: Instant,
) -> Vec<String> {
    settle_batch(records, |value| async move {
        handle_job(svc, &value, deadline).await
    })
    .await
}

/// The one SQS batch runner: runs `job` on every record at once and answers the message ids
/// that should come back. A panic in one job fails that job only (it comes back, and after
/// `maxReceiveCount` goes to the dead-letter queue); the others of the batch are settled.
pub async fn settle_batch<F, Fut>(records: Vec<(String, String)>, job: F) -> Vec<String>
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = Result<(), JobError>>,
{
    use futures::FutureExt;
    let job = &job;
    let work = records.into_iter().map(|(id, body)| async move {
        let value: Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "dropping a malformed job message");
                return None;
            }
        };
        match std::panic::AssertUnwindSafe(job(value)).catch_unwind().await {
            Ok(Ok(())) => None,
            Ok(Err(e)) if e.is_retryable() => Some(id),
            Ok(Err(e)) => {
                tracing::error!(message_id = %id, error = %e, "job failed for good; not retried");
                None
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(message_id = %id, panic = %what, "job panicked; it comes back alone");
                Some(id)
            }
        }
    });
    futures::future::join_all(work)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The Lambda context's deadline (`Lambda-Runtime-Deadline-Ms`, milliseconds since the epoch)
/// as an `Instant`.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + time_left(deadline_ms, now_ms)
}

/// Longest a Lambda may run (15 minutes): no deadline is honoured beyond it.
const LAMBDA_MAX_RUN: Duration = Duration::from_secs(15 * 60);
/// Epoch milliseconds of 2001-09-09: anything smaller is not a date but a length of time.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// Time left before `deadline_ms`. AWS sends epoch milliseconds; emulators do not all do so
/// (`cargo lambda watch` sends the timeout itself, `600000`), and reading such a value as a date
/// long past would make every pull hand over before reading anything. A value too small to be a
/// date is a relative budget; either way at most a Lambda's 15 minutes.
pub fn time_left(deadline_ms: u64, now_ms: u64) -> Duration {
    let left = if deadline_ms < EPOCH_MS_FLOOR {
        Duration::from_millis(deadline_ms)
    } else {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    };
    left.min(LAMBDA_MAX_RUN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_796_000_000_000; // 2026-11-30

    #[test]
    fn given_an_epoch_deadline_then_the_time_left_is_until_it() {
        assert_eq!(
            time_left(NOW_MS + 300_000, NOW_MS),
            Duration::from_secs(300)
        );
        assert_eq!(time_left(NOW_MS - 1, NOW_MS), Duration::ZERO);
    }

    #[test]
    fn given_cargo_lambdas_relative_600000_then_it_is_ten_minutes_not_a_deadline_long_passed() {
        // Issue 15: under `cargo lambda watch` every pull handed over with nothing read.
        assert_eq!(time_left(600_000, NOW_MS), Duration::from_secs(600));
    }

    #[test]
    fn given_a_deadline_beyond_fifteen_minutes_then_no_more_than_a_lambda_may_run_is_used() {
        assert_eq!(time_left(NOW_MS + 86_400_000, NOW_MS), LAMBDA_MAX_RUN);
        assert_eq!(time_left(u64::MAX, NOW_MS), LAMBDA_MAX_RUN);
        assert_eq!(time_left(EPOCH_MS_FLOOR - 1, NOW_MS), LAMBDA_MAX_RUN);
    }

    #[tokio::test]
    async fn given_a_batch_where_one_job_panics_then_only_that_message_comes_back() {
        let records = vec![
            ("ok-1".to_string(), r#"{"n": 1}"#.to_string()),
            ("boom".to_string(), r#"{"n": 2}"#.to_string()),
            ("retry".to_string(), r#"{"n": 3}"#.to_string()),
            ("ok-2".to_string(), r#"{"n": 4}"#.to_string()),
            ("malformed".to_string(), "{".to_string()),
        ];
        let failed = settle_batch(records, |v| async move {
            match v["n"].as_i64() {
                Some(2) => panic!("a bug in one shop's data"),
                Some(3) => Err(JobError::LeaseLost),
                _ => Ok(()),
            }
        })
        .await;
        assert_eq!(failed, vec!["boom".to_string(), "retry".to_string()]);
    }
}
