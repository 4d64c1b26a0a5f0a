//! What a job does with an error, decided once by the crate whose error it is (smithy-rs style
//! error classification): the KiotViet, Abaha and store errors each say their [`Disposition`], and
//! the callers — the pull's end decision, the SQS batch runner — act on it without knowing the
//! variants of three crates.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The class of a failure, from the point of view of whoever would try the work again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The same call may succeed later without anyone changing anything (a timeout, a 5xx, a
    /// busy table): try again, later.
    Transient,
    /// The other side asked us to slow down; `retry_after` is when it said to come back, if it
    /// said. As retryable as [`Disposition::Transient`].
    Throttled { retry_after: Option<Duration> },
    /// Nothing failed: the work stopped before a limit (the invocation's deadline, the shop's
    /// hourly budget) and goes on in a new invocation, at `resume_at` (None: at once).
    HandOver { resume_at: Option<DateTime<Utc>> },
    /// Trying again would fail the same way until someone changes something (credentials, the
    /// request, the stored data).
    Permanent,
}

impl Disposition {
    /// Whether the work should come back at all: everything but [`Disposition::Permanent`].
    pub fn is_retryable(self) -> bool {
        !matches!(self, Disposition::Permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permanent_failures_are_not_retried() {
        let now = Utc::now();
        let cases = [
            (Disposition::Transient, true),
            (Disposition::Throttled { retry_after: None }, true),
            (
                Disposition::Throttled {
                    retry_after: Some(Duration::from_secs(30)),
                },
                true,
            ),
            (Disposition::HandOver { resume_at: None }, true),
            (
                Disposition::HandOver {
                    resume_at: Some(now),
                },
                true,
            ),
            (Disposition::Permanent, false),
        ];
        for (disposition, retryable) in cases {
            assert_eq!(disposition.is_retryable(), retryable, "{disposition:?}");
        }
    }
}
