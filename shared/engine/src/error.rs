//! The one error shape of the service API (CONTRACTS.md): `{"error": {"code", "message", "details"}}`.
//!
//! Every message is a sentence a shop owner can act on; internal causes are logged (without
//! secrets) and never put in an answer.

use retry::Disposition;
use serde_json::{Value, json};

/// An answer of the service API that is not a success.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds, sent as `Retry-After` (409 push_in_progress, 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }

    pub fn validation(message: impl Into<String>) -> Self {
        ApiError::new(422, "validation_failed", message)
    }

    pub fn unknown_shop(shop: &str) -> Self {
        ApiError::new(
            404,
            "unknown_shop",
            format!(
                "Shop {shop} has no KiotViet FnB connection. Connect it first (PUT /v1/shops/{shop}/connection)."
            ),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, "not_found", message)
    }

    pub fn internal() -> Self {
        ApiError::new(
            500,
            "internal_error",
            "Something went wrong on our side. Nothing was half-done; please try again in a minute.",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "service_unavailable", message).with_retry_after(5)
    }

    pub fn kiotviet_unavailable() -> Self {
        ApiError::new(
            502,
            "kiotviet_unavailable",
            "KiotViet FnB did not answer in time. Nothing was changed; please try again in a few minutes.",
        )
        .with_retry_after(30)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        if e.is_retryable() {
            ApiError::unavailable(
                "Our storage is busy. Nothing was half-done; please try again in a few seconds.",
            )
        } else {
            ApiError::internal()
        }
    }
}

/// Why a background job (a pull) stopped early. Decides whether SQS should deliver it again.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    KiotViet(#[from] kiotviet::KvError),
    #[error(transparent)]
    Abaha(#[from] abaha::AbahaError),
    #[error("malformed job: {0}")]
    BadJob(String),
    /// This invocation's lease expired and was taken: it stops before writing anything more.
    #[error("this invocation lost its lease on the part")]
    LeaseLost,
}

impl JobError {
    /// What the job does with this error, as the crate it came from classified it.
    pub fn disposition(&self) -> Disposition {
        match self {
            JobError::Store(e) => e.disposition(),
            JobError::KiotViet(e) => e.disposition(),
            JobError::Abaha(e) => e.disposition(),
            JobError::BadJob(_) => Disposition::Permanent,
            // Left on the queue: the next delivery finds the part ended or resumes it.
            JobError::LeaseLost => Disposition::Transient,
        }
    }

    /// Whether SQS should deliver the job again.
    pub fn is_retryable(&self) -> bool {
        self.disposition().is_retryable()
    }
}
