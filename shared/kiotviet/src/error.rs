//! One error shape for every KiotViet call. Each variant says whether trying again later can help
//! ([`KvError::is_retryable`]); none of them ever carries a token or a client secret.

use std::time::Duration;

use chrono::{DateTime, Utc};
use retry::Disposition;

use crate::budget::BudgetExhausted;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The API refused our access token, also after one renewal.
    #[error("KiotViet did not accept the access token (401), also after renewing it")]
    Unauthorized,

    /// The token endpoint refused the client id / secret ("Mã bảo mật").
    #[error("KiotViet refused the client id or client secret: {message}")]
    InvalidCredentials { message: String },

    /// The credentials are fine but the API does not know or refuses the `Retailer` name.
    #[error("KiotViet does not accept the retailer name: {message}")]
    UnknownRetailer { message: String },

    /// Throttled (429) and not worth waiting in-process; continue after `retry_after`.
    #[error("KiotViet is throttling requests (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },

    /// KiotViet is down or slow: connection errors, timeouts, 5xx. `status` is `None` when no
    /// answer came. After a POST the message says when the request may have reached KiotViet.
    #[error("KiotViet is unavailable ({}): {message}", status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}")))]
    Transient {
        status: Option<u16>,
        message: String,
    },

    /// Unknown id, or an endpoint FnB does not have.
    #[error("KiotViet says not found: {message}")]
    NotFound { message: String },

    /// KiotViet refused the request for a business or validation reason; `message` is its own
    /// words, kept verbatim (often Vietnamese), `code` its `errorCode` when it sent one.
    #[error("KiotViet rejected the request (HTTP {status}): {message}")]
    Rejected {
        status: u16,
        message: String,
        code: Option<String>,
    },

    /// An answer we could not read. `path` names the endpoint (and the record when known).
    #[error("could not read KiotViet's answer at {path}: {message}")]
    Decode { path: String, message: String },

    /// Waiting for another attempt would pass the invocation deadline: checkpoint, and let a
    /// continuation go on.
    #[error("stopped before the deadline; continue in a new invocation")]
    Deadline,

    /// The shop's hourly GET budget is spent: no request was made.
    #[error("the KiotViet GET budget is spent until {retry_at}")]
    BudgetExhausted { retry_at: DateTime<Utc> },

    /// A request that could not even be built or sent for a reason that is not KiotViet's
    /// (bad URL, TLS setup, …). The URL is stripped from the cause (queries may hold phone numbers).
    #[error("HTTP client error talking to KiotViet")]
    Transport(#[source] reqwest::Error),
}

impl KvError {
    /// What a job does with this error (`retry::Disposition`), decided here once: the pull's end
    /// decision and the SQS batch runner act on it without matching our variants.
    pub fn disposition(&self) -> Disposition {
        match self {
            KvError::RateLimited { retry_after } => Disposition::Throttled {
                retry_after: *retry_after,
            },
            KvError::Transient { .. } => Disposition::Transient,
            // Not failures: the client stopped before the deadline, or before spending GETs the
            // shop's hour does not have; the work goes on in a new invocation.
            KvError::Deadline => Disposition::HandOver { resume_at: None },
            KvError::BudgetExhausted { retry_at } => Disposition::HandOver {
                resume_at: Some(*retry_at),
            },
            KvError::Unauthorized
            | KvError::InvalidCredentials { .. }
            | KvError::UnknownRetailer { .. }
            | KvError::NotFound { .. }
            | KvError::Rejected { .. }
            | KvError::Decode { .. }
            | KvError::Transport(_) => Disposition::Permanent,
        }
    }

    /// Whether the same call can succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        self.disposition().is_retryable()
    }

    /// The client stopped without waiting (deadline, a throttle longer than it sleeps, spent
    /// budget): the caller checkpoints and continues later rather than counting a failure.
    pub fn is_hand_over(&self) -> bool {
        matches!(
            self.disposition(),
            Disposition::HandOver { .. } | Disposition::Throttled { .. }
        )
    }

    /// The earliest moment worth trying again, when KiotViet or the budget said so.
    pub fn retry_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            KvError::BudgetExhausted { retry_at } => Some(*retry_at),
            KvError::RateLimited {
                retry_after: Some(wait),
            } => chrono::Duration::from_std(*wait)
                .ok()
                .and_then(|wait| now.checked_add_signed(wait)),
            _ => None,
        }
    }

    /// A stable snake_case name for reports, logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            KvError::Unauthorized => "unauthorized",
            KvError::InvalidCredentials { .. } => "invalid_credentials",
            KvError::UnknownRetailer { .. } => "unknown_retailer",
            KvError::RateLimited { .. } => "rate_limited",
            KvError::Transient { .. } => "kiotviet_unavailable",
            KvError::NotFound { .. } => "not_found",
            KvError::Rejected { .. } => "kiotviet_rejected",
            KvError::Decode { .. } => "decode",
            KvError::Deadline => "deadline",
            KvError::BudgetExhausted { .. } => "budget_exhausted",
            KvError::Transport(_) => "transport",
        }
    }
}

impl From<BudgetExhausted> for KvError {
    fn from(value: BudgetExhausted) -> Self {
        KvError::BudgetExhausted {
            retry_at: value.retry_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_over_errors_are_retryable_and_final_ones_are_not() {
        let now = Utc::now();
        let cases = [
            (KvError::Deadline, true, true),
            (KvError::RateLimited { retry_after: None }, true, true),
            (KvError::BudgetExhausted { retry_at: now }, true, true),
            (
                KvError::Transient {
                    status: Some(503),
                    message: "down".into(),
                },
                true,
                false,
            ),
            (KvError::Unauthorized, false, false),
            (
                KvError::InvalidCredentials {
                    message: "invalid_client".into(),
                },
                false,
                false,
            ),
            (
                KvError::Rejected {
                    status: 400,
                    message: "Thiết lập".into(),
                    code: None,
                },
                false,
                false,
            ),
        ];
        for (error, retryable, hand_over) in cases {
            assert_eq!(error.is_retryable(), retryable, "{error}");
            assert_eq!(error.is_hand_over(), hand_over, "{error}");
        }
    }

    #[test]
    fn each_error_says_its_disposition() {
        let now = Utc::now();
        let wait = Some(Duration::from_secs(30));
        let rows = [
            (KvError::Deadline, Disposition::HandOver { resume_at: None }),
            (
                KvError::BudgetExhausted { retry_at: now },
                Disposition::HandOver {
                    resume_at: Some(now),
                },
            ),
            (
                KvError::RateLimited { retry_after: wait },
                Disposition::Throttled { retry_after: wait },
            ),
            (
                KvError::Transient {
                    status: None,
                    message: "m".into(),
                },
                Disposition::Transient,
            ),
            (KvError::Unauthorized, Disposition::Permanent),
            (
                KvError::UnknownRetailer {
                    message: "m".into(),
                },
                Disposition::Permanent,
            ),
            (
                KvError::Decode {
                    path: "/x".into(),
                    message: "m".into(),
                },
                Disposition::Permanent,
            ),
        ];
        for (error, disposition) in rows {
            assert_eq!(error.disposition(), disposition, "{error}");
        }
    }

    #[test]
    fn rate_limited_says_when_to_come_back() {
        let now = Utc::now();
        let error = KvError::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            error.retry_at(now),
            Some(now + chrono::Duration::seconds(30))
        );
        assert_eq!(KvError::Deadline.retry_at(now), None);
    }

    #[test]
    fn transient_display_names_the_status() {
        let error = KvError::Transient {
            status: None,
            message: "connection refused".into(),
        };
        assert_eq!(
            error.to_string(),
            "KiotViet is unavailable (no answer): connection refused"
        );
    }
}
