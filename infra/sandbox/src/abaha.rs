//! Abaha Sync API sandbox: the batch upserts of CONTRACTS.md §2, stored per shop and kind.
//!
//! Rules it holds the service to: at most 100 items per batch (else 422 for the whole batch),
//! per-item validation errors in `results` (in item order), idempotent upserts keyed by
//! `kiotviet_id` (`unchanged` when the stored item is equal, numbers compared by value), new
//! products shown and never re-shown or hidden by an upsert (R-PRD-3), orders carrying
//! `abaha_order_id` update that Abaha order (R-INV-2). Errors use the contract's shape
//! `{"error":{"code","message","details"}}`.
//!
//! Choices the contract leaves open: 401 `unauthorized`; 404 `unknown_shop` (only when a list of
//! known shops is configured — by default any shop id is accepted and created on first use) and
//! 404 `not_found` for an unknown route; 422 `validation_failed` for a bad body or more than 100
//! items (`details.max_items`, `details.received`); injected 429 `rate_limited` with
//! `Retry-After` and 5xx `unavailable`; per-item code `validation_failed`. An order upsert that
//! names an `abaha_order_id` the sandbox has never seen is stored under that id and answered
//! `updated` (the order exists in Abaha: it was pushed from there).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common::{
    FaultInjector, Faults, Injected, RouteCounts, ServerGuard, admin_body, api_error,
    api_error_with, json_eq, json_response, serve, with_retry_after,
};

/// At most this many items per upsert (CONTRACTS §2).
pub const MAX_ITEMS: usize = 100;

#[derive(Clone, Debug)]
pub struct AbahaConfig {
    /// The bearer token the service must send (`ABAHA_API_TOKEN`).
    pub token: String,
    /// 127.0.0.1 port; None = ephemeral.
    pub port: Option<u16>,
    pub faults: Faults,
    /// None: every shop id is accepted. Some: only these (others → 404 `unknown_shop`).
    pub known_shops: Option<Vec<String>>,
}

impl Default for AbahaConfig {
    fn default() -> Self {
        AbahaConfig {
            token: "abaha-demo-token".into(),
            port: None,
            faults: Faults::default(),
            known_shops: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Categories,
    Products,
    Customers,
    Orders,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Categories,
        Kind::Products,
        Kind::Customers,
        Kind::Orders,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Categories => "categories",
            Kind::Products => "products",
            Kind::Customers => "customers",
            Kind::Orders => "orders",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Kind::Categories => "cat",
            Kind::Products => "prd",
            Kind::Customers => "cus",
            Kind::Orders => "ord",
        }
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind {s:?}"))
    }
}

/// One stored item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredItem {
    /// The item's `kiotviet_id` as a string key (numbers in decimal).
    pub kiotviet_id: String,
    pub abaha_id: String,
    /// Products only: shown in the shop app. Set on creation, changed only by the shop owner.
    pub visible: Option<bool>,
    /// The item exactly as last received.
    pub item: Value,
    /// How many upserts created or changed it.
    pub writes: u32,
}

impl StoredItem {
    /// The item with `abaha_id` (and `visible` for products) added.
    pub fn view(&self) -> Value {
        let mut v = self.item.clone();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("abaha_id".into(), json!(self.abaha_id));
            if let Some(visible) = self.visible {
                obj.insert("visible".into(), json!(visible));
            }
        }
        v
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Items answered with a per-item error.
    pub failed: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AbahaStats {
    /// By "POST /v1/shops/{shop_id}/products:upsert" etc.
    pub requests: RouteCounts,
    pub by_kind: BTreeMap<Kind, KindCounts>,
    pub injected_5xx: u64,
    pub injected_429: u64,
    pub unauthorized: u64,
    /// Whole batches refused with 422.
    pub rejected_batches: u64,
}

impl AbahaStats {
    pub fn counts(&self, kind: Kind) -> KindCounts {
        self.by_kind.get(&kind).cloned().unwrap_or_default()
    }
}

#[derive(Default)]
struct Collection {
    items: Vec<StoredItem>,
    by_key: HashMap<String, usize>,
}

impl Collection {
    fn find(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    fn find_abaha(&self, abaha_id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.abaha_id == abaha_id)
    }
}

struct AbahaState {
    cfg: AbahaConfig,
    faults: FaultInjector,
    shops: BTreeMap<String, BTreeMap<Kind, Collection>>,
    next_ids: BTreeMap<Kind, u64>,
    stats: AbahaStats,
}

impl AbahaState {
    fn new(cfg: AbahaConfig) -> Self {
        let mut st = AbahaState {
            faults: FaultInjector::new(cfg.faults.clone()),
            shops: BTreeMap::new(),
            next_ids: BTreeMap::new(),
            stats: AbahaStats::default(),
            cfg,
        };
        for shop in st.cfg.known_shops.clone().unwrap_or_default() {
            st.shops.entry(shop).or_default();
        }
        st
    }

    fn shop_known(&self, shop: &str) -> bool {
        self.cfg.known_shops.is_none() || self.shops.contains_key(shop)
    }

    fn collection(&mut self, shop: &str, kind: Kind) -> &mut Collection {
        self.shops
            .entry(shop.to_string())
            .or_default()
            .entry(kind)
            .or_default()
    }

    fn new_abaha_id(&mut self, kind: Kind) -> String {
        let n = self.next_ids.entry(kind).or_insert(0);
        *n += 1;
        format!("{}-{n}", kind.id_prefix())
    }

    fn stored(&self, shop: &str, kind: Kind) -> Vec<StoredItem> {
        self.shops
            .get(shop)
            .and_then(|s| s.get(&kind))
            .map(|c| c.items.clone())
            .unwrap_or_default()
    }

    /// Applies one valid item; answers (abaha_id, status).
    fn upsert(
        &mut self,
        shop: &str,
        kind: Kind,
        key: String,
        item: Value,
    ) -> (String, &'static str) {
        let claimed = (kind == Kind::Orders)
            .then(|| {
                item.get("abaha_order_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .flatten();
        let existing = {
            let c = self.collection(shop, kind);
            claimed
                .as_deref()
                .and_then(|a| c.find_abaha(a))
                .or_else(|| c.find(&key))
        };
        match existing {
            Some(at) => {
                let c = self.collection(shop, kind);
                let stored = &mut c.items[at];
                if json_eq(&stored.item, &item) {
                    return (stored.abaha_id.clone(), "unchanged");
                }
                let old_key = std::mem::replace(&mut stored.kiotviet_id, key.clone());
                stored.item = item;
                stored.writes += 1;
                let abaha_id = stored.abaha_id.clone();
                if old_key != key {
                    c.by_key.remove(&old_key);
                    c.by_key.insert(key, at);
                }
                (abaha_id, "updated")
            }
            None => {
                let (abaha_id, status) = match claimed {
                    Some(a) => (a, "updated"),
                    None => (self.new_abaha_id(kind), "created"),
                };
                let c = self.collection(shop, kind);
                c.by_key.insert(key.clone(), c.items.len());
                c.items.push(StoredItem {
                    kiotviet_id: key,
                    abaha_id: abaha_id.clone(),
                    visible: (kind == Kind::Products).then_some(true),
                    item,
                    writes: 1,
                });
                (abaha_id, status)
            }
        }
    }

    fn set_visible(&mut self, shop: &str, key: &str, visible: bool) -> bool {
        let Some(c) = self
            .shops
            .get_mut(shop)
            .and_then(|s| s.get_mut(&Kind::Products))
        else {
            return false;
        };
        match c.find(key) {
            Some(at) => {
                c.items[at].visible = Some(visible);
                true
            }
            None => false,
        }
    }

    fn reset(&mut self) {
        *self = AbahaState::new(self.cfg.clone());
    }
}

/// A `kiotviet_id` as a storage key: an integer or a non-empty string.
fn key_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// What is wrong with one item, if anything (the contract's field list, types checked loosely:
/// ids may be numbers or strings, absent optional fields are fine).
fn item_problem(kind: Kind, item: &Value) -> Option<String> {
    let obj = item.as_object()?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::trim);
    let is = |k: &str, ok: fn(&Value) -> bool| obj.get(k).is_none_or(|v| v.is_null() || ok(v));
    let id_like = |v: &Value| key_of(v).is_some();
    let number = |v: &Value| v.is_number();
    let array = |v: &Value| v.is_array();
    if matches!(kind, Kind::Categories | Kind::Products | Kind::Customers)
        && text("name").is_none_or(str::is_empty)
    {
        return Some("name is required".into());
    }
    match kind {
        Kind::Categories => {
            if !is("parent_kiotviet_id", id_like) {
                return Some("parent_kiotviet_id must be an id or null".into());
            }
            if !is("rank", number) {
                return Some("rank must be a number".into());
            }
        }
        Kind::Products => {
            if ["visible", "visibility", "hidden", "is_visible"]
                .iter()
                .any(|k| obj.contains_key(*k))
            {
                return Some(
                    "products carry no visibility field: Abaha never changes visibility through sync"
                        .into(),
                );
            }
            for k in ["price", "list_price", "stock"] {
                if !is(k, number) {
                    return Some(format!("{k} must be a number"));
                }
            }
            for k in ["category_kiotviet_id", "master_kiotviet_id"] {
                if !is(k, id_like) {
                    return Some(format!("{k} must be an id or null"));
                }
            }
            for k in ["images", "attributes", "topping_kiotviet_ids"] {
                if !is(k, array) {
                    return Some(format!("{k} must be an array"));
                }
            }
            let images_ok = obj
                .get("images")
                .and_then(Value::as_array)
                .is_none_or(|a| a.iter().all(Value::is_string));
            if !images_ok {
                return Some("images must be URLs (strings)".into());
            }
        }
        Kind::Customers => {
            if text("phone").is_none_or(str::is_empty) {
                return Some("phone is required".into());
            }
            if !is("gender", |v| matches!(v.as_str(), Some("male" | "female"))) {
                return Some("gender must be male, female or null".into());
            }
            let date_ok = is("birth_date", |v| {
                v.as_str()
                    .is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
            });
            if !date_ok {
                return Some("birth_date must be YYYY-MM-DD or null".into());
            }
        }
        Kind::Orders => {
            if text("status").is_none_or(str::is_empty) {
                return Some("status is required".into());
            }
            let lines_ok = obj
                .get("lines")
                .and_then(Value::as_array)
                .is_some_and(|ls| ls.iter().all(Value::is_object));
            if !lines_ok {
                return Some("lines must be an array of objects".into());
            }
            for k in ["subtotal", "discount", "total", "paid"] {
                if !is(k, number) {
                    return Some(format!("{k} must be a number"));
                }
            }
            if !is("abaha_order_id", |v| {
                v.as_str().is_some_and(|s| !s.is_empty())
            }) {
                return Some("abaha_order_id must be a non-empty string or null".into());
            }
        }
    }
    None
}

struct AbahaShared {
    state: Mutex<AbahaState>,
}

impl AbahaShared {
    fn lock(&self) -> MutexGuard<'_, AbahaState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct AbahaSim;

impl AbahaSim {
    /// Serves the sandbox on 127.0.0.1 (ephemeral port unless `cfg.port`). Must be called inside
    /// a Tokio runtime; the server stops when the last handle is dropped.
    pub async fn start(cfg: AbahaConfig) -> std::io::Result<AbahaHandle> {
        let port = cfg.port;
        let shared = Arc::new(AbahaShared {
            state: Mutex::new(AbahaState::new(cfg)),
        });
        let server = serve(router(shared.clone()), port).await?;
        Ok(AbahaHandle {
            inner: Arc::new(AbahaInner { shared, server }),
        })
    }
}

struct AbahaInner {
    shared: Arc<AbahaShared>,
    server: ServerGuard,
}

/// A running sandbox. Cheap to clone; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct AbahaHandle {
    inner: Arc<AbahaInner>,
}

impl AbahaHandle {
    fn lock(&self) -> MutexGuard<'_, AbahaState> {
        self.inner.shared.lock()
    }

    /// Base URL (what `ABAHA_API_URL` points at).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.server.addr)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.inner.server.addr
    }

    pub fn token(&self) -> String {
        self.lock().cfg.token.clone()
    }

    /// Stored items in creation order, each with `abaha_id` (and `visible` for products).
    pub fn items(&self, shop: &str, kind: Kind) -> Vec<Value> {
        self.lock()
            .stored(shop, kind)
            .iter()
            .map(StoredItem::view)
            .collect()
    }

    /// One stored item by its KiotViet id (a number or a string).
    pub fn item(&self, shop: &str, kind: Kind, kiotviet_id: impl ToString) -> Option<Value> {
        let key = kiotviet_id.to_string();
        self.lock()
            .stored(shop, kind)
            .iter()
            .find(|i| i.kiotviet_id == key)
            .map(StoredItem::view)
    }

    pub fn stored(&self, shop: &str, kind: Kind) -> Vec<StoredItem> {
        self.lock().stored(shop, kind)
    }

    /// The shop owner shows or hides a product in Abaha. False if the product is not stored.
    pub fn set_visible(&self, shop: &str, kiotviet_id: impl ToString, visible: bool) -> bool {
        self.lock()
            .set_visible(shop, &kiotviet_id.to_string(), visible)
    }

    pub fn visible(&self, shop: &str, kiotviet_id: impl ToString) -> Option<bool> {
        let key = kiotviet_id.to_string();
        self.lock()
            .stored(shop, Kind::Products)
            .iter()
            .find(|i| i.kiotviet_id == key)
            .and_then(|i| i.visible)
    }

    /// Registers a shop when the sandbox only accepts known shops.
    pub fn add_shop(&self, shop: &str) {
        self.lock().shops.entry(shop.to_string()).or_default();
    }

    pub fn stats(&self) -> AbahaStats {
        self.lock().stats.clone()
    }

    /// created / updated / unchanged / failed item counts for one kind, all shops together.
    pub fn counts(&self, kind: Kind) -> KindCounts {
        self.lock().stats.counts(kind)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = FaultInjector::new(faults);
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.faults().clone()
    }

    /// Forgets every stored item, counter and fault setting (back to the start configuration).
    pub fn reset(&self) {
        self.lock().reset();
    }
}

const UPSERT_ROUTE: &str = "/v1/shops/{shop_id}/{action}";

fn router(shared: Arc<AbahaShared>) -> Router {
    Router::new()
        // One route: axum cannot match a literal suffix (":upsert") after a parameter.
        .route(UPSERT_ROUTE, post(upsert))
        .route("/_sandbox/stats", get(admin_stats))
        .route("/_sandbox/faults", get(admin_faults).post(admin_set_faults))
        .route("/_sandbox/reset", post(admin_reset))
        .route("/_sandbox/shops/{shop}", post(admin_add_shop))
        .route("/_sandbox/shops/{shop}/{kind}", get(admin_items))
        .route(
            "/_sandbox/shops/{shop}/products/{kiotviet_id}/visibility",
            post(admin_set_visible),
        )
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "not_found", "No such route.") })
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(shared)
}

type Answer = Result<Response, Response>;

async fn upsert(
    State(sh): State<Arc<AbahaShared>>,
    Path((shop, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let kind = action
        .strip_suffix(":upsert")
        .and_then(|k| Kind::from_str(k).ok());
    let latency = {
        let mut st = sh.lock();
        let route = match kind {
            Some(k) => format!("/v1/shops/{{shop_id}}/{}:upsert", k.as_str()),
            None => UPSERT_ROUTE.to_string(),
        };
        st.stats.requests.record("POST", &route);
        st.faults.latency()
    };
    let answer = async move { answer_upsert(&sh, &shop, &action, kind, &headers, &body) };
    crate::common::answer_after(latency, answer).await
}

fn answer_upsert(
    sh: &AbahaShared,
    shop: &str,
    action: &str,
    kind: Option<Kind>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Answer {
    let mut st = sh.lock();
    match st.faults.draw() {
        Some(Injected::ServerError(status)) => {
            st.stats.injected_5xx += 1;
            return Err(api_error(
                status,
                "unavailable",
                "Abaha is temporarily unavailable; try again shortly.",
            ));
        }
        Some(Injected::TooManyRequests { retry_after_secs }) => {
            st.stats.injected_429 += 1;
            return Err(with_retry_after(
                api_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too many requests; retry after the time in Retry-After.",
                ),
                retry_after_secs,
            ));
        }
        None => {}
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    if bearer != Some(st.cfg.token.as_str()) {
        st.stats.unauthorized += 1;
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or wrong API token.",
        ));
    }
    let Some(kind) = kind else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Unknown action {action:?}: use categories|products|customers|orders:upsert."),
        ));
    };
    if !st.shop_known(shop) {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "unknown_shop",
            format!("Shop {shop} is not known to Abaha."),
        ));
    }
    let items = match parse_batch(body) {
        Ok(items) => items,
        Err(e) => {
            st.stats.rejected_batches += 1;
            return Err(e);
        }
    };
    let mut results = Vec::with_capacity(items.len());
    let mut counts = KindCounts::default();
    for item in items {
        let given_id = item.get("kiotviet_id").cloned().unwrap_or(Value::Null);
        let problem = match (item.is_object(), key_of(&given_id)) {
            (false, _) => Some("each item must be an object".to_string()),
            (true, None) => Some("kiotviet_id is required (an integer or a string)".to_string()),
            (true, Some(_)) => item_problem(kind, &item),
        };
        if let Some(message) = problem {
            counts.failed += 1;
            results.push(json!({
                "kiotviet_id": given_id,
                "error": {"code": "validation_failed", "message": message},
            }));
            continue;
        }
        let key = key_of(&given_id).unwrap_or_default();
        let (abaha_id, status) = st.upsert(shop, kind, key, item);
        match status {
            "created" => counts.created += 1,
            "updated" => counts.updated += 1,
            _ => counts.unchanged += 1,
        }
        results.push(json!({"kiotviet_id": given_id, "abaha_id": abaha_id, "status": status}));
    }
    let total = st.stats.by_kind.entry(kind).or_default();
    total.created += counts.created;
    total.updated += counts.updated;
    total.unchanged += counts.unchanged;
    total.failed += counts.failed;
    Ok(json_response(StatusCode::OK, json!({"results": results})))
}

fn parse_batch(body: &[u8]) -> Result<Vec<Value>, Response> {
    let invalid = |m: String| api_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", m);
    let v: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("The body is not JSON: {e}")))?;
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("The body must be {\"items\": [ … ]}.".into()))?;
    if items.len() > MAX_ITEMS {
        return Err(api_error_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!(
                "At most {MAX_ITEMS} items per request; this one has {}.",
                items.len()
            ),
            json!({"max_items": MAX_ITEMS, "received": items.len()}),
        ));
    }
    Ok(items.clone())
}

async fn admin_stats(State(sh): State<Arc<AbahaShared>>) -> Answer {
    let st = sh.lock();
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_value(&st.stats).unwrap_or_default(),
    ))
}

async fn admin_faults(State(sh): State<Arc<AbahaShared>>) -> Answer {
    let st = sh.lock();
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_value(st.faults.faults()).unwrap_or_default(),
    ))
}

async fn admin_set_faults(State(sh): State<Arc<AbahaShared>>, body: Bytes) -> Answer {
    let f: Faults = admin_body(&body)?;
    sh.lock().faults = FaultInjector::new(f);
    Ok(json_response(StatusCode::OK, json!({"ok": true})))
}

async fn admin_reset(State(sh): State<Arc<AbahaShared>>) -> Answer {
    sh.lock().reset();
    Ok(json_response(StatusCode::OK, json!({"ok": true})))
}

async fn admin_add_shop(State(sh): State<Arc<AbahaShared>>, Path(shop): Path<String>) -> Answer {
    sh.lock().shops.entry(shop).or_default();
    Ok(json_response(StatusCode::OK, json!({"ok": true})))
}

async fn admin_items(
    State(sh): State<Arc<AbahaShared>>,
    Path((shop, kind)): Path<(String, String)>,
) -> Answer {
    let kind =
        Kind::from_str(&kind).map_err(|m| api_error(StatusCode::NOT_FOUND, "not_found", m))?;
    let items: Vec<Value> = sh
        .lock()
        .stored(&shop, kind)
        .iter()
        .map(StoredItem::view)
        .collect();
    Ok(json_response(StatusCode::OK, Value::Array(items)))
}

#[derive(Deserialize)]
struct Visibility {
    visible: bool,
}

async fn admin_set_visible(
    State(sh): State<Arc<AbahaShared>>,
    Path((shop, kiotviet_id)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let v: Visibility = admin_body(&body)?;
    if sh.lock().set_visible(&shop, &kiotviet_id, v.visible) {
        Ok(json_response(StatusCode::OK, json!({"ok": true})))
    } else {
        Err(api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Product {kiotviet_id} is not stored for shop {shop}."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AbahaState {
        AbahaState::new(AbahaConfig::default())
    }

    #[test]
    fn same_item_twice_is_unchanged_even_with_float_spelling() {
        let mut st = state();
        let a = json!({"kiotviet_id": 1, "name": "Cà phê", "price": 35000});
        let b = json!({"kiotviet_id": 1, "name": "Cà phê", "price": 35000.0});
        assert_eq!(
            st.upsert("s", Kind::Products, "1".into(), a),
            ("prd-1".into(), "created")
        );
        assert_eq!(
            st.upsert("s", Kind::Products, "1".into(), b),
            ("prd-1".into(), "unchanged")
        );
    }

    #[test]
    fn an_order_claimed_by_abaha_id_is_updated_not_duplicated() {
        let mut st = state();
        let o = |inv: i64, total: i64| json!({"kiotviet_id": inv, "abaha_order_id": "A-1", "status": "completed", "lines": [], "total": total});
        assert_eq!(
            st.upsert("s", Kind::Orders, "9".into(), o(9, 1)),
            ("A-1".into(), "updated")
        );
        assert_eq!(
            st.upsert("s", Kind::Orders, "9".into(), o(9, 2)),
            ("A-1".into(), "updated")
        );
        assert_eq!(st.stored("s", Kind::Orders).len(), 1);
    }

    #[test]
    fn item_rules() {
        assert!(item_problem(Kind::Customers, &json!({"name": "A"})).is_some());
        assert!(
            item_problem(
                Kind::Customers,
                &json!({"name": "A", "phone": "09", "gender": "x"})
            )
            .is_some()
        );
        assert!(
            item_problem(
                Kind::Customers,
                &json!({"name": "A", "phone": "09", "birth_date": null})
            )
            .is_none()
        );
        assert!(item_problem(Kind::Products, &json!({"name": "A", "visible": false})).is_some());
        assert!(
            item_problem(
                Kind::Products,
                &json!({"name": "A", "images": [{"Image": "u"}]})
            )
            .is_some()
        );
        assert!(item_problem(Kind::Categories, &json!({"name": ""})).is_some());
        assert!(item_problem(Kind::Orders, &json!({"status": "completed", "lines": []})).is_none());
    }
}
