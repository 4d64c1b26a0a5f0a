//! How a pull ends. [`end`] is the end-of-pull decision (done / retry / hand over / wait / fail)
//! as a pure function of what happened, held by a table test; the I/O around it (checkpoint,
//! report, lease) lives in `pull_entity`. Also: parts ended without pulling, and parts failed with
//! words the owner can act on.

use std::time::Duration;

use abaha::AbahaError;
use chrono::{DateTime, Utc};
use kiotviet::KvError;
use mapping::api::{PartState, RunError};
use retry::Disposition;
use serde_json::Value;

use crate::error::JobError;
use crate::model::{Entity, SyncJob};
use crate::runs::{self, Tally};
use crate::service::Service;

/// Ends an entity without pulling (skipped, failed before start) and closes the run if it was last.
pub async fn end_entity(
    svc: &Service,
    job: &SyncJob,
    entity: Entity,
    state: PartState,
    message: Option<&str>,
) -> Result<(), store::StoreError> {
    let tally = Tally {
        state,
        message: message.map(str::to_string),
        ..Tally::default()
    };
    svc.store
        .put_entity_report(&job.shop_id, &job.run_id, entity, &tally)
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
        .append_errors(shop, &job.run_id, &[RunError::new(name, None, msg.clone())])
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
    end_entity(svc, job, entity, PartState::Failed, Some(&msg)).await
}

/// Words a shop owner can act on for a pull that cannot go on.
pub(super) fn failure_message(e: &JobError) -> String {
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

/// Failed deliveries in a row after which a pull is given up: one fewer than the receives after
/// which the queues move a job to their dead-letter queue (`maxReceiveCount` 5, template.yaml).
pub(crate) const MAX_FAILED_TRIES: u32 = 4;

/// How long a pull that moved and then met a temporary failure waits before its continuation.
pub(crate) const RETRY_AFTER_PROGRESS: Duration = Duration::from_secs(1);

/// Most continuations one run may chain (about 8 hours of 5-minute Lambdas); past that the
/// entity is failed with a message instead of looping for ever.
pub const MAX_CONTINUATIONS: u32 = 100;

/// How a pull's invocation ends, decided by [`end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Every page is read and written (R-SYN-2: the cursor may move).
    Done,
    /// A temporary failure (R-SYN-7): try again from the checkpoint. `fresh_job`: the pull moved
    /// first, so a new message goes on after [`RETRY_AFTER_PROGRESS`] (left on the queue, a long
    /// pull hit by a few unrelated failures would reach the dead-letter queue although each time
    /// it moved); otherwise the job stays on the queue and SQS delivers it again.
    Retry { fresh_job: bool },
    /// Stopped before the deadline: a continuation goes on at once.
    HandOver,
    /// R-SYN-6: the shop's hourly KiotViet allowance is spent; the part waits until `until` and
    /// continues by itself.
    Wait { until: DateTime<Utc> },
    /// The part ends as failed (R-SYN-5). `tries`: it failed this many deliveries in a row
    /// (temporary failures that never moved); None: one failure that would recur every time.
    Fail { tries: Option<u32> },
}

/// The end decision and the checkpoint's count of failed deliveries in a row after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) end: End,
    pub(crate) failed_tries: u32,
}

/// The end-of-pull decision. `failure`: why the pull's loop stopped (None: it ran out of pages);
/// `progressed`: this delivery read something new; `failed_tries`: the checkpoint's count of
/// deliveries in a row that failed without reading anything new.
///
/// After a few failed deliveries SQS moves the job to its dead-letter queue and the run would read
/// "running" for ever: a pull that keeps failing without reading anything new is given up before
/// that ([`MAX_FAILED_TRIES`]), and says so. A failure after progress starts the count again.
pub(crate) fn end(failure: Option<Disposition>, progressed: bool, failed_tries: u32) -> Decision {
    let decide = |end| Decision { end, failed_tries };
    match failure {
        None => decide(End::Done),
        Some(Disposition::HandOver { resume_at: None }) => decide(End::HandOver),
        Some(Disposition::HandOver {
            resume_at: Some(until),
        }) => decide(End::Wait { until }),
        Some(Disposition::Transient | Disposition::Throttled { .. }) => {
            let failed_tries = if progressed { 1 } else { failed_tries + 1 };
            let end = if failed_tries < MAX_FAILED_TRIES {
                End::Retry {
                    fresh_job: progressed,
                }
            } else {
                End::Fail {
                    tries: Some(failed_tries),
                }
            };
            Decision { end, failed_tries }
        }
        Some(Disposition::Permanent) => decide(End::Fail { tries: None }),
    }
}

/// How long a waiting part sleeps before its continuation: until `until`, or a minute when that
/// has passed already.
pub(crate) fn wait_for(until: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (until - now).to_std().unwrap_or(Duration::from_secs(60))
}

/// Whether the pull must stop reading and hand over: less than `margin` is left before the
/// deadline. Every invocation reads at least one page first (`moved`): a continuation that
/// started too close to its deadline would otherwise hand over again without moving, until the
/// continuation limit failed the run.
pub(crate) fn out_of_time(moved: bool, time_left: Duration, margin: Duration) -> bool {
    moved && time_left < margin
}

/// Whether a run that hands over may send another continuation (at most [`MAX_CONTINUATIONS`]).
pub fn may_continue(continuation: u32) -> bool {
    continuation < MAX_CONTINUATIONS
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn the_end_decision_table() {
        let transient = Some(Disposition::Transient);
        let throttled = Some(Disposition::Throttled {
            retry_after: Some(Duration::from_secs(30)),
        });
        let deadline = Some(Disposition::HandOver { resume_at: None });
        let budget = Some(Disposition::HandOver {
            resume_at: Some(at(10, 0)),
        });
        let permanent = Some(Disposition::Permanent);
        use End::*;
        // (rule, failure, progressed, failed tries before, end, failed tries after)
        let rows = [
            ("R-SYN-2 every page written: done", None, true, 2, Done, 2),
            (
                "R-SYN-2 nothing read, nothing failed: done",
                None,
                false,
                0,
                Done,
                0,
            ),
            (
                "R-SYN-7 deadline: hand over at once",
                deadline,
                true,
                0,
                HandOver,
                0,
            ),
            (
                "R-SYN-7 deadline keeps the failed tries",
                deadline,
                false,
                3,
                HandOver,
                3,
            ),
            (
                "R-SYN-6 budget spent: wait until the window",
                budget,
                true,
                1,
                Wait { until: at(10, 0) },
                1,
            ),
            (
                "R-SYN-7 first temporary failure: back on the queue",
                transient,
                false,
                0,
                Retry { fresh_job: false },
                1,
            ),
            (
                "R-SYN-7 temporary failure after progress: fresh job",
                transient,
                true,
                3,
                Retry { fresh_job: true },
                1,
            ),
            (
                "R-SYN-7 third failure in a row: once more",
                transient,
                false,
                2,
                Retry { fresh_job: false },
                3,
            ),
            (
                "R-SYN-5 fourth failure in a row: given up before the DLQ",
                transient,
                false,
                3,
                Fail { tries: Some(4) },
                4,
            ),
            (
                "R-SYN-7 throttled is temporary",
                throttled,
                false,
                0,
                Retry { fresh_job: false },
                1,
            ),
            (
                "R-SYN-5 throttled too often: given up",
                throttled,
                false,
                3,
                Fail { tries: Some(4) },
                4,
            ),
            (
                "R-SYN-5 permanent: fail at once",
                permanent,
                false,
                0,
                Fail { tries: None },
                0,
            ),
            (
                "R-SYN-5 permanent after progress: fail, tries kept",
                permanent,
                true,
                2,
                Fail { tries: None },
                2,
            ),
        ];
        for (rule, failure, progressed, before, end_, after) in rows {
            assert_eq!(
                end(failure, progressed, before),
                Decision {
                    end: end_,
                    failed_tries: after
                },
                "{rule}"
            );
        }
    }

    #[test]
    fn a_wait_lasts_until_the_window_or_a_minute_once_it_passed() {
        let rows = [
            (
                "R-SYN-6 until the window",
                at(10, 30),
                at(10, 0),
                Duration::from_secs(1800),
            ),
            (
                "R-SYN-6 window passed: a minute",
                at(10, 0),
                at(10, 30),
                Duration::from_secs(60),
            ),
        ];
        for (rule, until, now, wait) in rows {
            assert_eq!(wait_for(until, now), wait, "{rule}");
        }
    }

    #[test]
    fn the_hand_over_margin_table() {
        let margin = Duration::from_secs(20);
        let rows = [
            (
                "R-SYN-7 moved, time short: hand over",
                true,
                Duration::from_secs(5),
                true,
            ),
            (
                "R-SYN-7 moved, time enough: read on",
                true,
                Duration::from_secs(60),
                false,
            ),
            ("R-SYN-7 exactly the margin: read on", true, margin, false),
            (
                "R-SYN-7 not moved yet: read one page first",
                false,
                Duration::ZERO,
                false,
            ),
        ];
        for (rule, moved, left, stop) in rows {
            assert_eq!(out_of_time(moved, left, margin), stop, "{rule}");
        }
    }

    #[test]
    fn the_continuation_limit_table() {
        let rows = [
            ("R-SYN-7 first continuation", 0, true),
            ("R-SYN-7 one before the limit", MAX_CONTINUATIONS - 1, true),
            ("R-SYN-7 at the limit: fail", MAX_CONTINUATIONS, false),
        ];
        for (rule, continuation, may) in rows {
            assert_eq!(may_continue(continuation), may, "{rule}");
        }
    }
}
