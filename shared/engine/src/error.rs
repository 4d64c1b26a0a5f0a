//! What a use case answers when it cannot do what was asked: an [`EngineError`] carrying the
//! contract code of CONTRACTS.md §1 ([`ErrorCode`]), a sentence a shop owner can act on, details
//! and, where waiting helps, `retry_after`. The engine knows no HTTP: the service-API crate maps
//! each code to its status (one table there) and writes the documented error shape.
//!
//! Every message is a sentence a shop owner can act on; internal causes are logged (without
//! secrets) and never put in an answer.

use retry::Disposition;
use serde_json::{Value, json};

/// The error codes of the service API (CONTRACTS.md §1), one each; the wire form is snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    UnknownShop,
    MethodNotAllowed,
    PushInProgress,
    PayloadTooLarge,
    UnsupportedAccountType,
    KeepAppProductStatusRequired,
    InvalidCredentials,
    UnknownRetailer,
    UnknownBranch,
    StatusNotPushable,
    UnmappedLines,
    OrdersSyncDisabled,
    CustomersSyncDisabled,
    InternalError,
    KiotvietRejected,
    KiotvietUnavailable,
    ServiceUnavailable,
}

impl ErrorCode {
    /// Every code, for tables that must cover them all.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::MalformedJson,
        ErrorCode::ValidationFailed,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UnknownShop,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PushInProgress,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedAccountType,
        ErrorCode::KeepAppProductStatusRequired,
        ErrorCode::InvalidCredentials,
        ErrorCode::UnknownRetailer,
        ErrorCode::UnknownBranch,
        ErrorCode::StatusNotPushable,
        ErrorCode::UnmappedLines,
        ErrorCode::OrdersSyncDisabled,
        ErrorCode::CustomersSyncDisabled,
        ErrorCode::InternalError,
        ErrorCode::KiotvietRejected,
        ErrorCode::KiotvietUnavailable,
        ErrorCode::ServiceUnavailable,
    ];

    /// The code as written in the error shape.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownShop => "unknown_shop",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PushInProgress => "push_in_progress",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedAccountType => "unsupported_account_type",
            ErrorCode::KeepAppProductStatusRequired => "keep_app_product_status_required",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::UnknownRetailer => "unknown_retailer",
            ErrorCode::UnknownBranch => "unknown_branch",
            ErrorCode::StatusNotPushable => "status_not_pushable",
            ErrorCode::UnmappedLines => "unmapped_lines",
            ErrorCode::OrdersSyncDisabled => "orders_sync_disabled",
            ErrorCode::CustomersSyncDisabled => "customers_sync_disabled",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::KiotvietRejected => "kiotviet_rejected",
            ErrorCode::KiotvietUnavailable => "kiotviet_unavailable",
            ErrorCode::ServiceUnavailable => "service_unavailable",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So a test (or a log filter) can compare a code with its wire form.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a use case did not do what was asked, as the shop owner is told.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EngineError {
    pub code: ErrorCode,
    pub message: String,
    /// Machine-readable particulars (the branches, the unmapped lines, KiotViet's own message).
    pub details: Value,
    /// Seconds after which a retry can succeed (409 push_in_progress, 429, 502, 503).
    pub retry_after: Option<u64>,
}

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError {
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

    pub fn validation(message: impl Into<String>) -> Self {
        EngineError::new(ErrorCode::ValidationFailed, message)
    }

    pub fn unknown_shop(shop: &str) -> Self {
        EngineError::new(
            ErrorCode::UnknownShop,
            format!(
                "Shop {shop} has no KiotViet FnB connection. Connect it first (PUT /v1/shops/{shop}/connection)."
            ),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        EngineError::new(ErrorCode::NotFound, message)
    }

    pub fn internal() -> Self {
        EngineError::new(
            ErrorCode::InternalError,
            "Something went wrong on our side. Nothing was half-done; please try again in a minute.",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        EngineError::new(ErrorCode::ServiceUnavailable, message).with_retry_after(5)
    }

    pub fn kiotviet_unavailable() -> Self {
        EngineError::new(
            ErrorCode::KiotvietUnavailable,
            "KiotViet FnB did not answer in time. Nothing was changed; please try again in a few minutes.",
        )
        .with_retry_after(30)
    }
}

impl From<store::StoreError> for EngineError {
    fn from(e: store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        if e.is_retryable() {
            EngineError::unavailable(
                "Our storage is busy. Nothing was half-done; please try again in a few seconds.",
            )
        } else {
            EngineError::internal()
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
