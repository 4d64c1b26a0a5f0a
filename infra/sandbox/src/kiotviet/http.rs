//! The simulated HTTP surface: token endpoint, the gate every API call passes (latency, faults,
//! token, `Retailer`, GET quota) and the API routes.
//!
//! Error bodies follow the ServiceStack shape `{"responseStatus":{"errorCode","message"}}`
//! (reference §7). Codes and messages KiotViet is not known to use are our choice:
//! 401 `TokenException`, 400 `RetailerNotFound`, 400 `KvValidateException` (business rules),
//! 400 `ArgumentException` (bad query values), 400 `SerializationException` (bad JSON),
//! 404 `NotFound`, 429 `TooManyRequests` (+ `Retry-After`), injected 500 as JSON and 502/503 as
//! an HTML gateway page.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{Duration, NaiveDateTime};
use serde_json::{Value, json};

use super::model::{fmt_timestamp, parse_query_dt};
use super::state::KvState;
use super::table::{Row, SortField};
use super::{KvShared, SimError, admin};
use crate::common::{Injected, Params, json_response, parse_urlencoded, with_retry_after};

pub(crate) const FNB_SCOPE: &str = "PublicApi.Access.FNB";

pub(crate) fn kv_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json_response(
        status,
        json!({"responseStatus": {"errorCode": code, "message": message.into()}}),
    )
}

fn bad_argument(message: impl Into<String>) -> Response {
    kv_error(StatusCode::BAD_REQUEST, "ArgumentException", message)
}

fn sim_error(e: SimError) -> Response {
    match e {
        SimError::Invalid(m) => kv_error(StatusCode::BAD_REQUEST, "KvValidateException", m),
        SimError::NotFound(m) => kv_error(StatusCode::NOT_FOUND, "NotFound", m),
    }
}

fn not_found(what: &str) -> Response {
    kv_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("Không tìm thấy {what}"),
    )
}

fn unauthorized() -> Response {
    let mut r = kv_error(
        StatusCode::UNAUTHORIZED,
        "TokenException",
        "Token không hợp lệ hoặc đã hết hạn",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

pub(crate) fn router(sh: Arc<KvShared>) -> Router {
    let api = Router::new()
        .route("/branches", get(branches))
        .route("/categories", get(categories))
        .route("/categories/{id}", get(category))
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/products/code/{code}", get(product_by_code))
        .route("/customers", get(customers).post(create_customer))
        .route(
            "/customers/{id}",
            get(customer).put(update_customer).delete(delete_customer),
        )
        .route("/customers/code/{code}", get(customer_by_code))
        .route("/invoices", get(invoices))
        .route("/invoices/{id}", get(invoice))
        .route("/invoices/code/{code}", get(invoice_by_code))
        // GET /orders* is retail API; the FnB doc lists create only [unconfirmed on FnB].
        .route("/orders", get(orders).post(create_order))
        .route("/orders/{id}", get(order))
        .route("/orders/code/{code}", get(order_by_code))
        .route("/webhooks", get(webhooks).post(create_webhook))
        .route("/webhooks/{id}", get(webhook).delete(delete_webhook))
        .route_layer(middleware::from_fn_with_state(sh.clone(), gate));
    let token = Router::new()
        .route("/identity/connect/token", post(token))
        .route("/connect/token", post(token))
        .route_layer(middleware::from_fn_with_state(sh.clone(), token_gate));
    Router::new()
        .merge(api)
        .merge(token)
        .merge(admin::router())
        .fallback(unknown_route)
        .with_state(sh)
}

fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string())
}

async fn token_gate(State(sh): State<Arc<KvShared>>, req: Request, next: Next) -> Response {
    let latency = {
        let mut st = sh.lock();
        st.stats
            .requests
            .record(req.method().as_str(), &route_of(&req));
        st.faults.latency()
    };
    crate::common::answer_after(latency, next.run(req)).await
}

/// Counting, latency, injected faults, token, `Retailer` and the GET quota, in that order.
async fn gate(State(sh): State<Arc<KvShared>>, req: Request, next: Next) -> Response {
    let pricebook = Params::parse(req.uri().query())
        .get("includePricebook")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let latency = {
        let mut st = sh.lock();
        st.stats
            .requests
            .record(req.method().as_str(), &route_of(&req));
        if pricebook {
            st.stats.pricebook_requests += 1;
        }
        st.faults.latency()
    };
    crate::common::answer_after(latency, async {
        let refusal = admit(&mut sh.lock(), req.method() == Method::GET, req.headers());
        match refusal {
            Some(r) => r,
            None => next.run(req).await,
        }
    })
    .await
}

fn admit(st: &mut KvState, is_get: bool, headers: &HeaderMap) -> Option<Response> {
    match st.faults.draw() {
        Some(Injected::ServerError(status)) => {
            st.stats.injected_5xx += 1;
            return Some(server_error(status));
        }
        Some(Injected::TooManyRequests { retry_after_secs }) => {
            st.stats.injected_429 += 1;
            return Some(too_many(retry_after_secs));
        }
        None => {}
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    if !token.is_some_and(|t| st.token_valid(t)) {
        st.stats.unauthorized += 1;
        return Some(unauthorized());
    }
    st.api_requests += 1;
    if let Some(n) = st.faults.faults().expire_token_every_n_requests
        && n > 0
        && st.api_requests.is_multiple_of(n)
    {
        st.tokens.clear();
        st.stats.unauthorized += 1;
        return Some(unauthorized());
    }
    let retailer = headers
        .get("retailer")
        .and_then(|v| v.to_str().ok())
        .map(|r| r.trim().to_ascii_lowercase());
    let Some(retailer) = retailer.filter(|r| st.serves(r)) else {
        // Not documented: a missing or unknown Retailer is answered like a failed lookup.
        let named = headers
            .get("retailer")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        return Some(kv_error(
            StatusCode::BAD_REQUEST,
            "RetailerNotFound",
            format!("Không tìm thấy cửa hàng {named}"),
        ));
    };
    if is_get && let Some(limit) = st.cfg.get_limit_per_hour {
        let now = st.clock.now();
        let log = st.get_log.entry(retailer).or_default();
        while log.front().is_some_and(|t| *t <= now - Duration::hours(1)) {
            log.pop_front();
        }
        if log.len() as u64 >= limit {
            let wait = log
                .front()
                .map_or(1, |t| (*t + Duration::hours(1) - now).num_seconds().max(1));
            st.stats.rate_limited += 1;
            return Some(too_many(wait as u64));
        }
        log.push_back(now);
    }
    None
}

fn server_error(status: StatusCode) -> Response {
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return kv_error(
            status,
            "InternalServerError",
            "Hệ thống đang gặp sự cố, vui lòng thử lại sau",
        );
    }
    let page = format!(
        "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

fn too_many(retry_after_secs: u64) -> Response {
    with_retry_after(
        kv_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Vượt quá giới hạn số lượng yêu cầu, vui lòng thử lại sau",
        ),
        retry_after_secs,
    )
}

async fn unknown_route(State(sh): State<Arc<KvShared>>, req: Request) -> Response {
    sh.lock()
        .stats
        .requests
        .record(req.method().as_str(), req.uri().path());
    not_found("đường dẫn")
}

// ---- token ------------------------------------------------------------------------------------

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}),
    )
}

async fn token(State(sh): State<Arc<KvShared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return oauth_error(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let form = Params::from_pairs(parse_urlencoded(&String::from_utf8_lossy(&body)));
    if form.get("grant_type") != Some("client_credentials") {
        return oauth_error(
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    let mut st = sh.lock();
    let (id, secret) = (form.get("client_id"), form.get("client_secret"));
    if id != Some(st.cfg.client_id.as_str()) || secret != Some(st.cfg.client_secret.as_str()) {
        return oauth_error("invalid_client", "Client authentication failed");
    }
    // `scopes` (doc) or `scope` (OAuth); space-separated; absent = the client's default scope.
    let requested: Vec<&str> = ["scope", "scopes"]
        .iter()
        .filter_map(|k| form.get(k))
        .flat_map(str::split_whitespace)
        .collect();
    if requested.iter().any(|s| *s != FNB_SCOPE) {
        return oauth_error(
            "invalid_scope",
            "Requested scope is not allowed for this client",
        );
    }
    let token = st.issue_token();
    let mut resp = json_response(
        StatusCode::OK,
        json!({
            "access_token": token,
            "expires_in": st.cfg.token_lifetime_secs,
            "token_type": "Bearer",
            "scope": FNB_SCOPE,
        }),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

// ---- list plumbing ----------------------------------------------------------------------------

struct ListQuery {
    page_size: usize,
    offset: usize,
    field: SortField,
    desc: bool,
    since: Option<NaiveDateTime>,
    include_removed: bool,
}

fn bool_param(p: &Params, name: &str) -> Result<bool, Response> {
    match p.get(name).map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(bad_argument(format!(
            "{name}: giá trị {other} không hợp lệ"
        ))),
    }
}

fn int_param(p: &Params, name: &str) -> Result<Option<i64>, Response> {
    match p.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad_argument(format!("{name}: giá trị {v} không hợp lệ"))),
    }
}

fn ints_param(p: &Params, name: &str) -> Result<Vec<i64>, Response> {
    p.all(name)
        .into_iter()
        .map(|v| {
            v.parse()
                .map_err(|_| bad_argument(format!("{name}: giá trị {v} không hợp lệ")))
        })
        .collect()
}

fn date_param(p: &Params, name: &str) -> Result<Option<NaiveDateTime>, Response> {
    match p.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_query_dt(v)
            .map(Some)
            .ok_or_else(|| bad_argument(format!("{name}: thời gian {v} không hợp lệ"))),
    }
}

fn list_query<T: Row>(p: &Params) -> Result<ListQuery, Response> {
    let page_size = match int_param(p, "pageSize")? {
        None => 20,
        Some(n) if n <= 0 => 20,
        Some(n) => n.min(100) as usize,
    };
    let offset = match int_param(p, "currentItem")? {
        None => 0,
        Some(n) if n < 0 => return Err(bad_argument("currentItem phải lớn hơn hoặc bằng 0")),
        Some(n) => n as usize,
    };
    let field = match p.get("orderBy").map(str::trim).filter(|v| !v.is_empty()) {
        None => SortField::Id,
        Some(v) => T::sort_field(&v.to_ascii_lowercase())
            .ok_or_else(|| bad_argument(format!("orderBy: không hỗ trợ sắp xếp theo {v}")))?,
    };
    let desc = match p
        .get("orderDirection")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(bad_argument(format!(
                "orderDirection: giá trị {other} không hợp lệ"
            )));
        }
    };
    Ok(ListQuery {
        page_size,
        offset,
        field,
        desc,
        since: date_param(p, "lastModifiedFrom")?,
        include_removed: bool_param(p, "includeRemoveIds")?,
    })
}

fn envelope(
    st: &KvState,
    total: usize,
    page_size: usize,
    data: Vec<Value>,
    removed: Option<(&str, Vec<i64>)>,
) -> Response {
    let mut body = json!({
        "total": total,
        "pageSize": page_size,
        "data": data,
        "timestamp": fmt_timestamp(st.clock.now()),
    });
    if let (Some((key, ids)), Some(obj)) = (removed, body.as_object_mut()) {
        obj.insert(key.to_string(), json!(ids));
    }
    json_response(StatusCode::OK, body)
}

fn parse_id(raw: &str, what: &str) -> Result<i64, Response> {
    raw.trim().parse().map_err(|_| not_found(what))
}

fn json_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        kv_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            format!("Dữ liệu gửi lên không hợp lệ: {e}"),
        )
    })
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, v)
}

// ---- branches, categories, products -----------------------------------------------------------

async fn branches(
    State(sh): State<Arc<KvShared>>,
    RawQuery(q): RawQuery,
) -> Result<Response, Response> {
    let p = Params::parse(q.as_deref());
    let lq = list_query::<super::model::Branch>(&p)?;
    let mut st = sh.lock();
    let since = lq.since;
    let (total, idx) = st
        .branches
        .page(lq.field, lq.desc, lq.offset, lq.page_size, |b| {
            since.is_none_or(|s| b.changed_at() >= s)
        });
    let data = idx
        .iter()
        .map(|i| st.render_branch(&st.branches.rows()[*i]))
        .collect();
    let removed = lq.include_removed.then(|| ("removedIds", Vec::new()));
    Ok(envelope(&st, total, lq.page_size, data, removed))
}

async fn categories(
    State(sh): State<Arc<KvShared>>,
    RawQuery(q): RawQuery,
) -> Result<Response, Response> {
    let p = Params::parse(q.as_deref());
    let lq = list_query::<super::model::Category>(&p)?;
    // `hierachicalData` (sic): a tree of roots, and lastModifiedFrom is ignored.
    let tree = bool_param(&p, "hierachicalData")?;
    let mut st = sh.lock();
    let since = lq.since.filter(|_| !tree);
    let (total, idx) = st
        .categories
        .page(lq.field, lq.desc, lq.offset, lq.page_size, |c| {
            (!tree || c.parent_id.is_none()) && since.is_none_or(|s| c.changed_at() >= s)
        });
    let data = idx
        .iter()
        .map(|i| st.render_category(&st.categories.rows()[*i], tree))
        .collect();
    let key = st.cfg.removed_keys.categories.clone();
    let removed = lq
        .include_removed
        .then(|| (key.as_str(), st.categories.removed_since(since)));
    Ok(envelope(&st, total, lq.page_size, data, removed))
}

async fn category(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = parse_id(&id, "nhóm hàng")?;
    let st = sh.lock();
    let c = st
        .categories
        .get(id)
        .ok_or_else(|| not_found("nhóm hàng"))?;
    // The retail doc wraps the detail in `data`.
    Ok(ok(json!({"data": st.render_category(c, false)})))
}

async fn products(
    State(sh): State<Arc<KvShared>>,
    RawQuery(q): RawQuery,
) -> Result<Response, Response> {
    let p = Params::parse(q.as_deref());
    let lq = list_query::<super::model::Product>(&p)?;
    let inventory = bool_param(&p, "includeInventory")?;
    let pricebook = bool_param(&p, "includePricebook")?;
    let category = int_param(&p, "categoryId")?;
    let master_unit = int_param(&p, "masterUnitId")?;
    let mut st = sh.lock();
    let since = lq.since;
    let (total, idx) = st
        .products
        .page(lq.field, lq.desc, lq.offset, lq.page_size, |x| {
            since.is_none_or(|s| x.changed_at() >= s)
                && category.is_none_or(|c| x.category_id == Some(c))
                && master_unit.is_none_or(|m| x.master_unit_id == Some(m))
        });
    let data = idx
        .iter()
        .map(|i| st.render_product(&st.products.rows()[*i], inventory, pricebook))
        .collect();
    let key = st.cfg.removed_keys.products.clone();
    let removed = lq
        .include_removed
        .then(|| (key.as_str(), st.products.removed_since(since)));
    Ok(envelope(&st, total, lq.page_size, data, removed))
}

async fn product(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, Response> {
    let id = parse_id(&id, "hàng hóa")?;
    let p = Params::parse(q.as_deref());
    let pricebook = bool_param(&p, "includePricebook")?;
    let st = sh.lock();
    let x = st.products.get(id).ok_or_else(|| not_found("hàng hóa"))?;
    Ok(ok(st.render_product(x, true, pricebook)))
}

async fn product_by_code(State(sh): State<Arc<KvShared>>, Path(code): Path<String>) -> Response {
    let st = sh.lock();
    match st
        .products
        .rows()
        .iter()
        .find(|x| x.code.eq_ignore_ascii_case(&code))
    {
        Some(x) => ok(st.render_product(x, true, false)),
        None => not_found("hàng hóa"),
    }
}

// ---- customers --------------------------------------------------------------------------------

async fn customers(
    State(sh): State<Arc<KvShared>>,
    RawQuery(q): RawQuery,
) -> Result<Response, Response> {
    let p = Params::parse(q.as_deref());
    let lq = list_query::<super::model::Customer>(&p)?;
    let totals = bool_param(&p, "includeTotal")?;
    let lower = |name: &str| {
        p.get(name)
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
    };
    // Searches match anywhere in the value, as KiotViet's search boxes do: a phone query
    // can return other customers whose number merely contains it.
    let (code, name, phone, email) = (
        lower("code"),
        lower("name"),
        lower("contactNumber"),
        lower("email"),
    );
    let contains = |v: Option<&str>, q: &Option<String>| match q {
        None => true,
        Some(q) => v.is_some_and(|v| v.to_lowercase().contains(q)),
    };
    let mut st = sh.lock();
    let since = lq.since;
    let (total, idx) = st
        .customers
        .page(lq.field, lq.desc, lq.offset, lq.page_size, |c| {
            since.is_none_or(|s| c.changed_at() >= s)
                && contains(Some(&c.code), &code)
                && contains(c.name.as_deref(), &name)
                && contains(c.contact_number.as_deref(), &phone)
                && contains(c.email.as_deref(), &email)
        });
    let data = idx
        .iter()
        .map(|i| st.render_customer(&st.customers.rows()[*i], totals))
        .collect();
    let key = st.cfg.removed_keys.customers.clone();
    let removed = lq
        .include_removed
        .then(|| (key.as_str(), st.customers.removed_since(since)));
    Ok(envelope(&st, total, lq.page_size, data, removed))
}

async fn customer(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = parse_id(&id, "khách hàng")?;
    let st = sh.lock();
    st.customer_json(id)
        .map(ok)
        .ok_or_else(|| not_found("khách hàng"))
}

async fn customer_by_code(State(sh): State<Arc<KvShared>>, Path(code): Path<String>) -> Response {
    let st = sh.lock();
    match st
        .customers
        .rows()
        .iter()
        .find(|c| c.code.eq_ignore_ascii_case(&code))
    {
        Some(c) => ok(st.render_customer(c, true)),
        None => not_found("khách hàng"),
    }
}

async fn create_customer(
    State(sh): State<Arc<KvShared>>,
    body: Bytes,
) -> Result<Response, Response> {
    let body = json_body(&body)?;
    sh.mutate(|st| st.create_customer_api(&body))
        .map(ok)
        .map_err(sim_error)
}

async fn update_customer(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let id = parse_id(&id, "khách hàng")?;
    let body = json_body(&body)?;
    sh.mutate(|st| st.update_customer_api(id, &body))
        .map(ok)
        .map_err(sim_error)
}

async fn delete_customer(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = parse_id(&id, "khách hàng")?;
    sh.mutate(|st| st.delete_customer(id)).map_err(sim_error)?;
    Ok(ok(json!({"message": "Xóa dữ liệu thành công"})))
}

// ---- invoices and orders ----------------------------------------------------------------------

async fn invoices(
    State(sh): State<Arc<KvShared>>,
    RawQuery(q): RawQuery,
) -> Result<Response, Response> {
    let p = Params::parse(q.as_deref());
    let lq = list_query::<super::model::Invoice>(&p)?;
    let payments = bool_param(&p, "includePayment")?;
    let delivery = bool_param(&p, "includeInvoiceDelivery")?;
    let from = date_param(&p, "fromPurchaseDate")?;
    let to = date_param(&p, "toPurchaseDate")?;
    let statuses = ints_param(&p, "status")?;
    let branches = ints_param(&p, "branchIds")?;
    let customers = ints_param(&p, "customerIds")?;
    let mut st = sh.lock();
    let since = lq.since;
    let (total, idx) = st
        .invoices
        .page(lq.field, lq.desc, lq.offset, lq.page_size, |i| {
            since.is_none_or(|s| i.changed_at() >= s)
                && from.is_none_or(|f| i.purchase >= f)
                && to.is_none_or(|t| i.purchase <= t)
                && (statuses.is_empty() || statuses.contains(&i.status))
                && (branches.is_empty() || branches.contains(&i.branch_id))
                && (customers.is_empty()
                    || i.customer
                        .as_ref()
                        .is_some_and(|c| customers.contains(&c.id)))
        });
    let data = idx
        .iter()
        .map(|i| st.render_invoice(&st.invoices.rows()[*i], payments, delivery, false))
        .collect();
    Ok(envelope(&st, total, lq.page_size, data, None))
}

async fn invoice(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = parse_id(&id, "hóa đơn")?;
    let st = sh.lock();
    st.invoice_json(id)
        .map(ok)
        .ok_or_else(|| not_found("hóa đơn"))
}

async fn invoice_by_code(State(sh): State<Arc<KvShared>>, Path(code): Path<String>) -> Response {
    let st = sh.lock();
    match st
        .invoices
        .rows()
        .iter()
        .find(|i| i.code.eq_ignore_ascii_case(&code))
    {
        Some(i) => ok(st.render_invoice(i, true, true, true)),
        None => not_found("hóa đơn"),
    }
}

async fn orders(
    State(sh): State<Arc<KvShared>>,
    RawQuery(q): RawQuery,
) -> Result<Response, Response> {
    let p = Params::parse(q.as_deref());
    let lq = list_query::<super::model::Order>(&p)?;
    let delivery = bool_param(&p, "includeOrderDelivery")?;
    let statuses = ints_param(&p, "status")?;
    let branches = ints_param(&p, "branchIds")?;
    let customers = ints_param(&p, "customerIds")?;
    let mut st = sh.lock();
    let since = lq.since;
    let (total, idx) = st
        .orders
        .page(lq.field, lq.desc, lq.offset, lq.page_size, |o| {
            since.is_none_or(|s| o.changed_at() >= s)
                && (statuses.is_empty() || statuses.contains(&o.status))
                && (branches.is_empty() || branches.contains(&o.branch_id))
                && (customers.is_empty()
                    || o.customer
                        .as_ref()
                        .is_some_and(|c| customers.contains(&c.id)))
        });
    let data = idx
        .iter()
        .map(|i| st.render_order(&st.orders.rows()[*i], delivery))
        .collect();
    Ok(envelope(&st, total, lq.page_size, data, None))
}

async fn order(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = parse_id(&id, "đơn đặt hàng")?;
    let st = sh.lock();
    st.order_json(id)
        .map(ok)
        .ok_or_else(|| not_found("đơn đặt hàng"))
}

async fn order_by_code(State(sh): State<Arc<KvShared>>, Path(code): Path<String>) -> Response {
    let st = sh.lock();
    match st
        .orders
        .rows()
        .iter()
        .find(|o| o.code.eq_ignore_ascii_case(&code))
    {
        Some(o) => ok(st.render_order(o, true)),
        None => not_found("đơn đặt hàng"),
    }
}

async fn create_order(State(sh): State<Arc<KvShared>>, body: Bytes) -> Result<Response, Response> {
    let body = json_body(&body)?;
    let late = {
        let mut st = sh.lock();
        match st.order_faults.front() {
            Some(super::OrderFault::LateWrite { ms }) => {
                let ms = *ms;
                st.order_faults.pop_front();
                Some(ms)
            }
            _ => None,
        }
    };
    if let Some(ms) = late {
        // The write goes on in its own task: a caller that gives up does not stop it.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let writer = sh.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            let _ = tx.send(writer.mutate(|st| st.create_order(&body)));
        });
        sh.late_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        return match rx.await {
            Ok(created) => created.map(ok).map_err(sim_error),
            Err(_) => Err(server_error(StatusCode::INTERNAL_SERVER_ERROR)),
        };
    }
    let (created, fault) = sh.mutate(|st| {
        let fault = st.order_faults.pop_front();
        if fault == Some(super::OrderFault::FailBeforeWrite) {
            return (None, fault);
        }
        (Some(st.create_order(&body)), fault)
    });
    let Some(created) = created else {
        return Err(server_error(StatusCode::SERVICE_UNAVAILABLE));
    };
    let created = created.map_err(sim_error)?;
    // The faults below fire only once an order exists: the caller sees a failure or waits,
    // KiotViet has it.
    match fault {
        Some(super::OrderFault::FailAfterWrite) => {
            Err(server_error(StatusCode::INTERNAL_SERVER_ERROR))
        }
        Some(super::OrderFault::SlowAnswer { ms }) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(ok(created))
        }
        _ => Ok(ok(created)),
    }
}

// ---- webhooks ---------------------------------------------------------------------------------

async fn webhooks(State(sh): State<Arc<KvShared>>) -> Response {
    let st = sh.lock();
    let data: Vec<Value> = st.webhooks.iter().map(|w| st.webhook_json(w)).collect();
    let n = data.len();
    envelope(&st, n, n.max(20), data, None)
}

async fn webhook(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = parse_id(&id, "webhook")?;
    let st = sh.lock();
    let w = st
        .webhooks
        .iter()
        .find(|w| w.id == id)
        .ok_or_else(|| not_found("webhook"))?;
    Ok(ok(st.webhook_json(w)))
}

async fn create_webhook(
    State(sh): State<Arc<KvShared>>,
    body: Bytes,
) -> Result<Response, Response> {
    let body = json_body(&body)?;
    sh.lock().add_webhook(&body).map(ok).map_err(sim_error)
}

async fn delete_webhook(
    State(sh): State<Arc<KvShared>>,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = parse_id(&id, "webhook")?;
    sh.lock().delete_webhook(id).map_err(sim_error)?;
    Ok(ok(json!({"message": "Hủy đăng ký webhook thành công"})))
}
