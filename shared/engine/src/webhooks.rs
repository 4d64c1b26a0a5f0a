//! KiotViet webhook receiver (R-SYN-8). Not built yet (issue 9): the route answers 501 in the
//! documented error shape instead of pretending to apply anything.

use crate::api::{ApiRequest, ApiResponse};
use crate::error::ApiError;
use crate::service::Service;

pub async fn receive(_svc: &Service, _shop: &str, _req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    Err(ApiError::new(
        501,
        "not_implemented",
        "KiotViet webhooks are not handled yet; scheduled polling keeps the shop in step.",
    ))
}
