//! The one error shape of the service API (CONTRACTS.md): `{"error": {"code", "message",
//! "details"}}`, and the one table that gives each contract code its status.

use engine::{EngineError, ErrorCode};
use serde_json::{Value, json};

/// The HTTP status of each contract code (CONTRACTS.md §1). Every code has exactly one, so a use
/// case says what went wrong and never how HTTP spells it.
pub fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::MalformedJson => 400,
        ErrorCode::Unauthorized => 401,
        ErrorCode::Forbidden => 403,
        ErrorCode::NotFound | ErrorCode::UnknownShop => 404,
        ErrorCode::MethodNotAllowed => 405,
        ErrorCode::PushInProgress => 409,
        ErrorCode::PayloadTooLarge => 413,
        ErrorCode::ValidationFailed
        | ErrorCode::UnsupportedAccountType
        | ErrorCode::KeepAppProductStatusRequired
        | ErrorCode::InvalidCredentials
        | ErrorCode::UnknownRetailer
        | ErrorCode::UnknownBranch
        | ErrorCode::StatusNotPushable
        | ErrorCode::UnmappedLines
        | ErrorCode::OrdersSyncDisabled
        | ErrorCode::CustomersSyncDisabled => 422,
        ErrorCode::InternalError => 500,
        ErrorCode::KiotvietRejected | ErrorCode::KiotvietUnavailable => 502,
        ErrorCode::ServiceUnavailable => 503,
    }
}

/// An answer of the service API that is not a success.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    /// Seconds, sent as `Retry-After` (409 push_in_progress, 429, 502, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::from(EngineError::new(code, message))
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
        ApiError::new(ErrorCode::ValidationFailed, message)
    }

    pub fn internal() -> Self {
        ApiError::from(EngineError::internal())
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError {
            status: status_of(e.code),
            code: e.code,
            message: e.message,
            details: e.details,
            retry_after: e.retry_after,
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        ApiError::from(EngineError::from(e))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_code_has_its_documented_status() {
        // CONTRACTS.md §1, code by code.
        let table = [
            ("malformed_json", 400),
            ("validation_failed", 422),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("not_found", 404),
            ("unknown_shop", 404),
            ("method_not_allowed", 405),
            ("push_in_progress", 409),
            ("payload_too_large", 413),
            ("unsupported_account_type", 422),
            ("keep_app_product_status_required", 422),
            ("invalid_credentials", 422),
            ("unknown_retailer", 422),
            ("unknown_branch", 422),
            ("status_not_pushable", 422),
            ("unmapped_lines", 422),
            ("orders_sync_disabled", 422),
            ("customers_sync_disabled", 422),
            ("internal_error", 500),
            ("kiotviet_rejected", 502),
            ("kiotviet_unavailable", 502),
            ("service_unavailable", 503),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let (_, status) = table
                .iter()
                .find(|(name, _)| code == *name)
                .unwrap_or_else(|| panic!("{code} is not in the table"));
            assert_eq!(status_of(code), *status, "{code}");
        }
    }

    #[test]
    fn an_engine_error_keeps_its_words_details_and_retry_after() {
        let e = EngineError::new(ErrorCode::PushInProgress, "Try again in 9 seconds.")
            .with_details(json!({"a": 1}))
            .with_retry_after(9);
        let api = ApiError::from(e);
        assert_eq!((api.status, api.retry_after), (409, Some(9)));
        assert_eq!(
            api.body(),
            json!({"error": {"code": "push_in_progress", "message": "Try again in 9 seconds.", "details": {"a": 1}}})
        );
    }
}
