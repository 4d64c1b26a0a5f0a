//! `/_sandbox/…` routes: the handle's methods over HTTP, for tests and demos that run the
//! simulator out of process. No auth, no faults, not counted in stats. Errors use the
//! `{"error":{"code","message","details"}}` shape.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::state::{Clock, KvState};
use super::{
    CategoryPatch, CustomerPatch, InvoiceEdits, KvShared, NewCategory, NewCustomer, NewInvoice,
    NewProduct, ProductPatch, ShopSettings, SimError,
};
use crate::common::{Faults, admin_body, api_error, json_response};

type Answer = Result<Response, Response>;

pub(crate) fn router() -> Router<Arc<KvShared>> {
    Router::new()
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/faults", get(faults).post(set_faults))
        .route("/_sandbox/limits", post(set_limits))
        .route("/_sandbox/tokens/expire", post(expire_tokens))
        .route("/_sandbox/clock", get(clock).post(set_clock))
        .route("/_sandbox/settings", get(settings).post(set_settings))
        .route("/_sandbox/categories", post(add_category))
        .route(
            "/_sandbox/categories/{id}",
            axum::routing::patch(update_category)
                .put(update_category)
                .delete(delete_category),
        )
        .route("/_sandbox/products", post(add_product))
        .route(
            "/_sandbox/products/{id}",
            axum::routing::patch(update_product)
                .put(update_product)
                .delete(delete_product),
        )
        .route(
            "/_sandbox/customers",
            get(created_customers).post(add_customer),
        )
        .route(
            "/_sandbox/customers/{id}",
            axum::routing::patch(update_customer)
                .put(update_customer)
                .delete(delete_customer),
        )
        .route("/_sandbox/invoices", post(add_invoice))
        .route("/_sandbox/invoices/{id}/status", post(set_invoice_status))
        .route("/_sandbox/orders", get(created_orders))
        .route("/_sandbox/orders/{id}/invoice", post(invoice_order))
        .route("/_sandbox/webhooks/deliveries", get(deliveries))
}

fn ok(v: Value) -> Answer {
    Ok(json_response(StatusCode::OK, v))
}

fn sim_error(e: SimError) -> Response {
    match e {
        SimError::NotFound(m) => api_error(StatusCode::NOT_FOUND, "not_found", m),
        SimError::Invalid(m) => api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
    }
}

fn id_of(raw: &str) -> Result<i64, Response> {
    raw.parse().map_err(|_| {
        api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{raw} is not an id"),
        )
    })
}

/// Runs a change (webhook notifications included) and answers `{"id": …}` or `{"ok": true}`.
fn change<R: Into<Value>>(
    sh: &Arc<KvShared>,
    f: impl FnOnce(&mut KvState) -> Result<R, SimError>,
) -> Answer {
    let r = sh.mutate(f).map_err(sim_error)?;
    match r.into() {
        Value::Null => ok(json!({"ok": true})),
        v => ok(json!({"id": v})),
    }
}

async fn reset(State(sh): State<Arc<KvShared>>) -> Answer {
    sh.mutate(KvState::reset);
    ok(json!({"ok": true}))
}

async fn stats(State(sh): State<Arc<KvShared>>) -> Answer {
    let st = sh.lock();
    ok(serde_json::to_value(&st.stats).unwrap_or_default())
}

async fn faults(State(sh): State<Arc<KvShared>>) -> Answer {
    ok(serde_json::to_value(sh.lock().faults.faults()).unwrap_or_default())
}

async fn set_faults(State(sh): State<Arc<KvShared>>, body: Bytes) -> Answer {
    let f: Faults = admin_body(&body)?;
    sh.lock().set_faults(f);
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct Limits {
    get_limit_per_hour: Option<u64>,
}

async fn set_limits(State(sh): State<Arc<KvShared>>, body: Bytes) -> Answer {
    let l: Limits = admin_body(&body)?;
    let mut st = sh.lock();
    st.cfg.get_limit_per_hour = l.get_limit_per_hour;
    st.get_log.clear();
    ok(json!({"ok": true}))
}

async fn expire_tokens(State(sh): State<Arc<KvShared>>) -> Answer {
    sh.lock().tokens.clear();
    ok(json!({"ok": true}))
}

fn clock_json(c: &Clock) -> Value {
    json!({"now": c.now().to_rfc3339(), "frozen": matches!(c, Clock::Frozen(_))})
}

async fn clock(State(sh): State<Arc<KvShared>>) -> Answer {
    ok(clock_json(&sh.lock().clock))
}

/// `{"now": RFC 3339}` freezes there; `{"advance_secs": n}` moves on; `{"running": true}` resumes.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ClockChange {
    now: Option<DateTime<Utc>>,
    advance_secs: Option<i64>,
    running: bool,
}

async fn set_clock(State(sh): State<Arc<KvShared>>, body: Bytes) -> Answer {
    let c: ClockChange = admin_body(&body)?;
    let mut st = sh.lock();
    if let Some(t) = c.now {
        st.clock.freeze(t);
    }
    if let Some(s) = c.advance_secs {
        st.clock.advance(chrono::Duration::seconds(s));
    }
    if c.running {
        st.clock.unfreeze();
    }
    ok(clock_json(&st.clock))
}

async fn settings(State(sh): State<Arc<KvShared>>) -> Answer {
    ok(serde_json::to_value(&sh.lock().settings).unwrap_or_default())
}

async fn set_settings(State(sh): State<Arc<KvShared>>, body: Bytes) -> Answer {
    let s: ShopSettings = admin_body(&body)?;
    sh.lock().settings = s;
    ok(json!({"ok": true}))
}

async fn add_category(State(sh): State<Arc<KvShared>>, body: Bytes) -> Answer {
    let c: NewCategory = admin_body(&body)?;
    change(&sh, |st| st.add_category(c))
}

async fn update_category(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = id_of(&id)?;
    let p: CategoryPatch = admin_body(&body)?;
    change(&sh, |st| st.update_category(id, p))
}

async fn delete_category(State(sh): State<Arc<KvShared>>, Path(id): Path<String>) -> Answer {
    let id = id_of(&id)?;
    change(&sh, |st| st.delete_category(id))
}

async fn add_product(State(sh): State<Arc<KvShared>>, body: Bytes) -> Answer {
    let p: NewProduct = admin_body(&body)?;
    change(&sh, |st| st.add_product(p))
}

async fn update_product(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = id_of(&id)?;
    let p: ProductPatch = admin_body(&body)?;
    change(&sh, |st| st.update_product(id, p))
}

async fn delete_product(State(sh): State<Arc<KvShared>>, Path(id): Path<String>) -> Answer {
    let id = id_of(&id)?;
    change(&sh, |st| st.delete_product(id))
}

async fn created_customers(State(sh): State<Arc<KvShared>>) -> Answer {
    ok(Value::Array(sh.lock().created_customers()))
}

async fn add_customer(State(sh): State<Arc<KvShared>>, body: Bytes) -> Answer {
    let c: NewCustomer = admin_body(&body)?;
    change(&sh, |st| st.add_customer(c))
}

async fn update_customer(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = id_of(&id)?;
    let p: CustomerPatch = admin_body(&body)?;
    change(&sh, |st| st.update_customer(id, p))
}

async fn delete_customer(State(sh): State<Arc<KvShared>>, Path(id): Path<String>) -> Answer {
    let id = id_of(&id)?;
    change(&sh, |st| st.delete_customer(id))
}

async fn add_invoice(State(sh): State<Arc<KvShared>>, body: Bytes) -> Answer {
    let n: NewInvoice = admin_body(&body)?;
    change(&sh, |st| st.add_invoice(n))
}

#[derive(Deserialize)]
struct StatusChange {
    status: i64,
}

async fn set_invoice_status(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = id_of(&id)?;
    let s: StatusChange = admin_body(&body)?;
    change(&sh, |st| st.set_invoice_status(id, s.status))
}

async fn created_orders(State(sh): State<Arc<KvShared>>) -> Answer {
    ok(Value::Array(sh.lock().created_orders()))
}

async fn invoice_order(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = id_of(&id)?;
    let e: InvoiceEdits = admin_body(&body)?;
    change(&sh, |st| st.invoice_order(id, e))
}

async fn deliveries(State(sh): State<Arc<KvShared>>) -> Answer {
    ok(serde_json::to_value(&sh.lock().deliveries).unwrap_or_default())
}
