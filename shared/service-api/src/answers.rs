//! Each route's use case: the typed input read from the request, the engine's typed answer
//! written as the documented JSON with its status.

use engine::connections;
use engine::push::customers::{self, CustomerOutcome};
use engine::push::orders::{self, OrderPushed};
use engine::runs;
use engine::webhooks::{self, Delivery};
use engine::{EngineError, Service};
use mapping::api::{AbahaCustomer, AbahaOrder, ConnectionBody, SyncRequest};
use retry::Deadline;
use serde::Serialize;
use serde_json::json;

use crate::body::{is_blank, parse_body};
use crate::error::ApiError;
use crate::request::{ApiRequest, ApiResponse};

/// `status` with `answer` as its JSON body.
fn json<T: Serialize>(status: u16, answer: &T) -> Result<ApiResponse, ApiError> {
    let body = serde_json::to_value(answer).map_err(|e| {
        tracing::error!(error = %e, "an answer could not be written as JSON");
        ApiError::from(EngineError::internal())
    })?;
    Ok(ApiResponse::json(status, body))
}

/// `PUT /v1/shops/{shop}/connection[?rotate_shop_token=true]` → 200.
pub async fn put_connection(
    svc: &Service,
    shop: &str,
    req: &ApiRequest,
    deadline: Deadline,
) -> Result<ApiResponse, ApiError> {
    let body: ConnectionBody = parse_body(&req.body)?;
    let rotate = req
        .query
        .get("rotate_shop_token")
        .is_some_and(|v| v == "true" || v == "1");
    let saved = connections::put(svc, shop, body, rotate, deadline).await?;
    json(200, &saved)
}

/// `GET /v1/shops/{shop}/connection` → 200 `{"connection"}`.
pub async fn get_connection(svc: &Service, shop: &str) -> Result<ApiResponse, ApiError> {
    let connection = connections::get(svc, shop).await?;
    json(200, &json!({"connection": connection}))
}

/// `DELETE /v1/shops/{shop}/connection` → 200.
pub async fn delete_connection(svc: &Service, shop: &str) -> Result<ApiResponse, ApiError> {
    json(200, &connections::delete(svc, shop).await?)
}

/// `POST /v1/shops/{shop}/sync` → 202 `{"run_id", "already_running"}`; the body may be empty.
pub async fn start_sync(svc: &Service, shop: &str, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let req: SyncRequest = if is_blank(body) {
        SyncRequest::default()
    } else {
        parse_body(body)?
    };
    json(202, &runs::start_from_api(svc, shop, req).await?)
}

/// `GET /v1/shops/{shop}/sync` → 200, the latest run's report.
pub async fn latest_run(svc: &Service, shop: &str) -> Result<ApiResponse, ApiError> {
    json(200, &runs::latest(svc, shop).await?)
}

/// `GET /v1/shops/{shop}/sync/{run}` → 200, that run's report.
pub async fn one_run(svc: &Service, shop: &str, run: &str) -> Result<ApiResponse, ApiError> {
    json(200, &runs::one(svc, shop, run).await?)
}

/// `POST /v1/shops/{shop}/orders`: 201 created, 200 replayed or made from an invoice, 202 a
/// cancel recorded as a manual action (R-ORD-*).
pub async fn push_order(
    svc: &Service,
    shop: &str,
    body: &[u8],
    deadline: Deadline,
) -> Result<ApiResponse, ApiError> {
    let order: AbahaOrder = parse_body(body)?;
    match orders::push_from_api(svc, shop, order, deadline).await? {
        OrderPushed::Created(a) => json(201, &a),
        OrderPushed::Replayed(a) | OrderPushed::FromInvoice(a) => json(200, &a),
        OrderPushed::CancelRecorded(a) => json(202, &a),
    }
}

/// `POST /v1/shops/{shop}/customers`: 201 created in KiotViet, 200 updated or unchanged (R-CUS-3).
pub async fn push_customer(
    svc: &Service,
    shop: &str,
    body: &[u8],
    deadline: Deadline,
) -> Result<ApiResponse, ApiError> {
    let customer: AbahaCustomer = parse_body(body)?;
    let pushed = customers::push_from_api(svc, shop, customer, deadline).await?;
    let status = match pushed.status {
        CustomerOutcome::Created => 201,
        CustomerOutcome::Updated | CustomerOutcome::Unchanged => 200,
    };
    json(status, &pushed)
}

/// `POST /v1/kiotviet/webhooks/{shop}`: always 200 (R-SYN-8), whatever was done with it.
pub async fn webhook(svc: &Service, shop: &str, req: &ApiRequest) -> ApiResponse {
    let delivery = Delivery {
        body: &req.body,
        signature: req.header(webhooks::SIGNATURE_HEADER),
        event: req.query.get("event").map(String::as_str),
    };
    let answer = webhooks::receive(svc, shop, delivery).await;
    json(200, &answer).unwrap_or_else(Into::into)
}
