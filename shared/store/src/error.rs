//! The one error shape of this crate: it keeps its cause and says whether a retry may help.

use std::error::Error;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use retry::Disposition;

type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Why a store, sealer or queue call failed.
///
/// Conditional-check failures are *not* errors: each port maps them to its own answer
/// (`LeaseAnswer::HeldBy`, `Claim::InProgress`, `false` …).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An AWS call failed: network, throttling, a service fault, or a request the service refused.
    #[error("{op} failed: {message}")]
    Aws {
        op: &'static str,
        retryable: bool,
        /// The SDK's full error chain, rendered once (the SDK's own `Display` says only "service error").
        message: String,
        #[source]
        source: BoxError,
    },
    /// A stored item, a value to store or a queued message does not have the expected shape.
    #[error("malformed {what}: {source}")]
    Malformed {
        what: String,
        #[source]
        source: BoxError,
    },
    /// The sealed secret cannot be opened for this shop: another shop's, another key's, or damaged.
    #[error("the sealed secret cannot be opened for shop {shop}")]
    SecretRejected {
        shop: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The item the call refers to does not exist (e.g. a run that was never created).
    #[error("{what} not found")]
    NotFound { what: String },
    /// DynamoDB still returned unprocessed keys or items after our own retries (throttling).
    #[error("{op}: {left} keys or items still unprocessed after {attempts} attempts")]
    Unprocessed {
        op: &'static str,
        left: usize,
        attempts: u32,
    },
}

impl StoreError {
    /// What a job does with this error (`retry::Disposition`), decided here once.
    pub fn disposition(&self) -> Disposition {
        match self {
            StoreError::Aws {
                retryable: true, ..
            } => Disposition::Transient,
            // DynamoDB kept throttling past our own retries.
            StoreError::Unprocessed { .. } => Disposition::Throttled { retry_after: None },
            StoreError::Aws {
                retryable: false, ..
            }
            | StoreError::Malformed { .. }
            | StoreError::SecretRejected { .. }
            | StoreError::NotFound { .. } => Disposition::Permanent,
        }
    }

    /// Whether the same call may succeed later (throttling, timeouts, service faults).
    pub fn is_retryable(&self) -> bool {
        self.disposition().is_retryable()
    }

    pub(crate) fn malformed(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Malformed {
            what: what.into(),
            source: source.into(),
        }
    }

    /// Wraps any AWS SDK error (DynamoDB, KMS and SQS share the same `SdkError` type).
    pub(crate) fn aws<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    {
        let retryable = sdk_error_is_retryable(&err);
        StoreError::Aws {
            op,
            retryable,
            message: DisplayErrorContext(&err).to_string(),
            source: Box::new(err),
        }
    }
}

/// Error codes of DynamoDB, KMS and SQS that mean "not now" rather than "never".
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "RequestThrottled",
    "KmsThrottled",
];

fn sdk_error_is_retryable<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(ctx) => {
            let code_says = ctx
                .err()
                .code()
                .is_some_and(|code| RETRYABLE_CODES.contains(&code));
            let status = ctx.raw().status().as_u16();
            code_says || status == 429 || status >= 500
        }
        SdkError::ConstructionFailure(_) => false,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_its_disposition() {
        let aws = |retryable| StoreError::Aws {
            op: "dynamodb put_item",
            retryable,
            message: "m".into(),
            source: "m".into(),
        };
        let rows = [
            (
                "a throttled or timed-out call",
                aws(true),
                Disposition::Transient,
            ),
            (
                "a call the service refused",
                aws(false),
                Disposition::Permanent,
            ),
            (
                "unprocessed after our retries",
                StoreError::Unprocessed {
                    op: "dynamodb batch_write_item",
                    left: 1,
                    attempts: 8,
                },
                Disposition::Throttled { retry_after: None },
            ),
            (
                "not found",
                StoreError::NotFound { what: "run".into() },
                Disposition::Permanent,
            ),
            (
                "malformed",
                StoreError::malformed("item", "bad"),
                Disposition::Permanent,
            ),
        ];
        for (what, error, disposition) in rows {
            assert_eq!(error.disposition(), disposition, "{what}");
        }
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let unprocessed = StoreError::Unprocessed {
            op: "dynamodb batch_write_item",
            left: 3,
            attempts: 8,
        };
        assert!(unprocessed.is_retryable());
        assert!(
            !StoreError::NotFound {
                what: "run r1".into()
            }
            .is_retryable()
        );
        assert!(!StoreError::malformed("connection item", "no shop_id").is_retryable());
        let rejected = StoreError::SecretRejected {
            shop: "s1".into(),
            source: None,
        };
        assert!(!rejected.is_retryable());
        assert_eq!(
            rejected.to_string(),
            "the sealed secret cannot be opened for shop s1"
        );
    }

    #[test]
    fn the_cause_is_kept() {
        let err = StoreError::malformed("connection item", "attribute `shop_id` is not a string");
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(
            cause.as_deref(),
            Some("attribute `shop_id` is not a string")
        );
    }
}
