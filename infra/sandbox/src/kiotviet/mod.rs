//! KiotViet FnB simulator: the public API of `publicfnb.kiotapi.com` and its token endpoint, as
//! described in `reference/kiotviet-fnb-api.md`, over seeded café data.
//!
//! Where the reference marks a behaviour unconfirmed, the simulator picks one plausible answer
//! and says so in a comment; the crate docs (`lib.rs`) list those choices.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sandbox::kiotviet::{KiotVietSim, KvConfig};
//! let kv = KiotVietSim::start(KvConfig::default()).await?;
//! println!("{} (token: {})", kv.url(), kv.token_url());
//! # Ok(()) }
//! ```

mod admin;
mod http;
mod model;
mod render;
mod seed;
mod state;
mod table;
mod webhooks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{Faults, RouteCounts, ServerGuard, serve};
use state::KvState;

pub use webhooks::WebhookDelivery;

/// How much data the generator seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSize {
    /// Demo: 13 categories, 60 products (variants, units, toppings), 80 customers, 300 invoices.
    #[default]
    Small,
    /// 24 categories, 400 products, 3,000 customers, 6,000 invoices.
    Medium,
    /// 40 categories, 2,000 products, 30,000 customers, 60,000 invoices.
    Large,
    /// Exactly these many live records (and no seeded deletions), e.g. to page over a total that
    /// is an exact multiple of 100.
    Exact(Counts),
}

impl std::str::FromStr for DataSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "small" => Ok(DataSize::Small),
            "medium" => Ok(DataSize::Medium),
            "large" => Ok(DataSize::Large),
            other => Err(format!("unknown size {other:?} (small|medium|large)")),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub categories: usize,
    pub products: usize,
    pub customers: usize,
    pub invoices: usize,
}

/// The envelope key that lists deleted ids, per entity. KiotViet spells it differently per
/// endpoint (reference §4); tests can swap spellings to exercise a client's aliases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemovedKeys {
    pub categories: String,
    pub products: String,
    pub customers: String,
}

impl Default for RemovedKeys {
    fn default() -> Self {
        RemovedKeys {
            categories: "removedIds".into(),
            products: "removeId".into(),
            customers: "removeIds".into(),
        }
    }
}

/// Shop settings that change how `POST /orders` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShopSettings {
    /// "Sử dụng tính năng giao hàng": when off, an order with a `DeliveryDetail` is refused.
    pub delivery_enabled: bool,
}

impl Default for ShopSettings {
    fn default() -> Self {
        ShopSettings {
            delivery_enabled: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct KvConfig {
    /// The `Retailer` header value every API call must carry.
    pub retailer: String,
    /// Numeric `retailerId` printed in records.
    pub retailer_id: i64,
    pub client_id: String,
    pub client_secret: String,
    /// The first is the central branch ("Chi nhánh trung tâm").
    pub branch_ids: Vec<i64>,
    pub size: DataSize,
    pub seed: u64,
    /// Invoices are spread over this many days before the clock's "now".
    pub history_days: u32,
    pub faults: Faults,
    pub token_lifetime_secs: u64,
    pub removed_keys: RemovedKeys,
    pub settings: ShopSettings,
    /// GET requests allowed per retailer per sliding hour of the simulator clock (None = no limit).
    pub get_limit_per_hour: Option<u64>,
    /// Many shops on one simulator (the 1,000-shop tick): any `Retailer` starting with this
    /// prefix is also accepted and served the same seeded data, with a GET quota of its own.
    /// None: only `retailer` is a shop.
    pub retailer_prefix: Option<String>,
    /// 127.0.0.1 port; None = ephemeral.
    pub port: Option<u16>,
    /// Freeze the simulator clock at this instant (None = real time).
    pub now: Option<DateTime<Utc>>,
    /// Webhook delivery: attempts per notification and the pause between them.
    pub webhook_attempts: u32,
    pub webhook_retry_delay_ms: u64,
    /// Whether `GET /invoices` rows carry `orderCode`. The retail doc lists it for the detail
    /// only; turn this off to check that a client falls back to `GET /invoices/{id}`.
    pub invoice_list_order_code: bool,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            retailer: "testfnbz15xyz".into(),
            retailer_id: 500_123,
            client_id: "demo-client".into(),
            client_secret: "demo-secret".into(),
            branch_ids: vec![233_443, 233_444],
            size: DataSize::Small,
            seed: 7,
            history_days: 30,
            faults: Faults::default(),
            token_lifetime_secs: 86_400,
            removed_keys: RemovedKeys::default(),
            settings: ShopSettings::default(),
            get_limit_per_hour: Some(5_000),
            retailer_prefix: None,
            port: None,
            now: None,
            webhook_attempts: 3,
            webhook_retry_delay_ms: 1_000,
            invoice_list_order_code: true,
        }
    }
}

/// What a coming `POST /orders` does wrong ([`KvHandle::push_order_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFault {
    /// Answers 503 and creates nothing.
    FailBeforeWrite,
    /// Creates the order, then answers 500 (the answer lost on the way back).
    FailAfterWrite,
    /// Creates the order, then answers only after `ms` milliseconds (past a caller's deadline).
    SlowAnswer { ms: u64 },
    /// Creates the order only after `ms` milliseconds, whether or not the caller still waits (a
    /// request KiotViet finishes after its caller gave up); answers when it is done.
    LateWrite { ms: u64 },
}

/// What the simulator has seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KvStats {
    /// Every simulated request by "METHOD /route/{template}", token calls included.
    pub requests: RouteCounts,
    /// Requests that asked for price books (`includePricebook=true`): the service must never.
    pub pricebook_requests: u64,
    pub tokens_issued: u64,
    pub injected_5xx: u64,
    pub injected_429: u64,
    /// Refused by the GET-per-hour limit.
    pub rate_limited: u64,
    pub unauthorized: u64,
}

/// An error from a mutation method or admin route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    NotFound(String),
    Invalid(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::NotFound(m) => write!(f, "not found: {m}"),
            SimError::Invalid(m) => write!(f, "invalid: {m}"),
        }
    }
}

impl std::error::Error for SimError {}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewCategory {
    pub name: String,
    pub parent_id: Option<i64>,
    pub rank: Option<i64>,
}

/// A partial change; absent fields stay as they are. `parent_id: Some(0)` makes a root.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CategoryPatch {
    pub name: Option<String>,
    pub parent_id: Option<i64>,
    pub rank: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewProduct {
    /// Generated (`SP000123`) when absent.
    pub code: Option<String>,
    pub name: String,
    pub category_id: Option<i64>,
    pub base_price: f64,
    pub unit: Option<String>,
    pub description: Option<String>,
    pub images: Vec<String>,
    /// `[{"Image": url}]` instead of `[url]`.
    pub images_as_objects: bool,
    pub attributes: Vec<AttributeInput>,
    pub master_product_id: Option<i64>,
    pub master_unit_id: Option<i64>,
    pub conversion_value: Option<f64>,
    pub is_topping: bool,
    pub topping_ids: Vec<i64>,
    /// Stock at the central branch (made-to-order items have none).
    pub on_hand: Option<f64>,
    pub allows_sale: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AttributeInput {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProductPatch {
    pub code: Option<String>,
    pub name: Option<String>,
    pub category_id: Option<i64>,
    pub base_price: Option<f64>,
    pub unit: Option<String>,
    pub description: Option<String>,
    pub images: Option<Vec<String>>,
    pub attributes: Option<Vec<AttributeInput>>,
    pub topping_ids: Option<Vec<i64>>,
    pub allows_sale: Option<bool>,
    pub is_active: Option<bool>,
    /// Stock at the central branch; also raises `stock.update`.
    pub on_hand: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewCustomer {
    /// Generated (`KH000123`) when absent.
    pub code: Option<String>,
    pub name: Option<String>,
    pub contact_number: Option<String>,
    /// true = male, false = female.
    pub gender: Option<bool>,
    pub birth_date: Option<NaiveDate>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub location_name: Option<String>,
    pub ward_name: Option<String>,
    pub comment: Option<String>,
}

/// A partial change; absent fields stay as they are.
pub type CustomerPatch = NewCustomer;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LineInput {
    pub product_id: i64,
    pub quantity: f64,
    /// The product's basePrice when absent.
    pub price: Option<f64>,
    pub discount: Option<f64>,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewInvoice {
    /// The central branch when absent.
    pub branch_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub lines: Vec<LineInput>,
    /// 1 Hoàn thành (default), 2 Đã hủy, 3 Đang xử lý, 5 Không giao được.
    pub status: Option<i64>,
    pub discount: Option<f64>,
    /// Vietnam local; the clock's now when absent.
    pub purchase_date: Option<NaiveDateTime>,
    /// Cash (default), Card, Transfer.
    pub payment_method: Option<String>,
    pub order_code: Option<String>,
}

/// How the till changed an order before completing it (`invoice_order`). Absent = as ordered.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InvoiceEdits {
    pub lines: Option<Vec<LineInput>>,
    pub discount: Option<f64>,
    pub status: Option<i64>,
    pub payment_method: Option<String>,
}

/// Shared between the server's handlers and the handle.
pub(crate) struct KvShared {
    state: Mutex<KvState>,
    http: reqwest::Client,
    /// Order writes that go on after their caller gave up ([`OrderFault::LateWrite`]).
    late_writes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl KvShared {
    fn lock(&self) -> MutexGuard<'_, KvState> {
        // A panicking handler must not take the whole simulator down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a change and hands the webhook notifications it raised to delivery.
    fn mutate<R>(self: &Arc<Self>, change: impl FnOnce(&mut KvState) -> R) -> R {
        let (out, events, hooks, retry) = {
            let mut st = self.lock();
            let out = change(&mut st);
            let events = std::mem::take(&mut st.events);
            (out, events, st.webhooks.clone(), st.webhook_retry())
        };
        webhooks::dispatch(self, events, &hooks, retry);
        out
    }
}

pub struct KiotVietSim;

impl KiotVietSim {
    /// Generates the data and serves it on 127.0.0.1 (ephemeral port unless `cfg.port`).
    /// Must be called inside a Tokio runtime; the server stops when the last handle is dropped.
    pub async fn start(cfg: KvConfig) -> std::io::Result<KvHandle> {
        let port = cfg.port;
        let shared = Arc::new(KvShared {
            state: Mutex::new(KvState::new(cfg)),
            http: reqwest::Client::new(),
            late_writes: Mutex::new(Vec::new()),
        });
        let server = serve(http::router(shared.clone()), port).await?;
        Ok(KvHandle {
            inner: Arc::new(HandleInner { shared, server }),
        })
    }
}

struct HandleInner {
    shared: Arc<KvShared>,
    server: ServerGuard,
}

/// A running simulator. Cheap to clone; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct KvHandle {
    inner: Arc<HandleInner>,
}

impl KvHandle {
    fn shared(&self) -> &Arc<KvShared> {
        &self.inner.shared
    }

    /// API base URL, e.g. `http://127.0.0.1:9101` (what `KIOTVIET_API_URL` points at).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.server.addr)
    }

    /// Token endpoint (the `api.fnb.kiotviet.vn` style path; `/connect/token` works too).
    pub fn token_url(&self) -> String {
        format!("{}/identity/connect/token", self.url())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.inner.server.addr
    }

    pub fn retailer(&self) -> String {
        self.shared().lock().cfg.retailer.clone()
    }

    /// The central branch id.
    pub fn central_branch_id(&self) -> i64 {
        self.shared()
            .lock()
            .cfg
            .branch_ids
            .first()
            .copied()
            .unwrap_or(0)
    }

    pub fn stats(&self) -> KvStats {
        self.shared().lock().stats.clone()
    }

    /// GETs each retailer (lower-cased) has made in the current sliding hour of the simulator
    /// clock, as the GET quota counts them; only retailers that made one.
    pub fn gets_in_window(&self) -> BTreeMap<String, u64> {
        let mut st = self.shared().lock();
        let since = st.clock.now() - chrono::Duration::hours(1);
        st.get_log
            .iter_mut()
            .map(|(r, log)| {
                while log.front().is_some_and(|t| *t <= since) {
                    log.pop_front();
                }
                (r.clone(), log.len() as u64)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn reset_stats(&self) {
        self.shared().lock().stats = KvStats::default();
    }

    /// Regenerates the seeded data (relative to the current clock), forgets created orders,
    /// customers, webhooks, stats and settings; tokens stay valid.
    pub fn reset(&self) {
        self.shared().mutate(KvState::reset);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared().lock().set_faults(faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared().lock().faults.faults().clone()
    }

    pub fn settings(&self) -> ShopSettings {
        self.shared().lock().settings.clone()
    }

    pub fn set_settings(&self, settings: ShopSettings) {
        self.shared().lock().settings = settings;
    }

    pub fn set_delivery_enabled(&self, on: bool) {
        self.shared().lock().settings.delivery_enabled = on;
    }

    /// None lifts the limit.
    pub fn set_get_limit_per_hour(&self, limit: Option<u64>) {
        self.shared().lock().cfg.get_limit_per_hour = limit;
    }

    /// Every issued token stops working (→ 401) until a new one is requested.
    pub fn expire_tokens(&self) {
        self.shared().lock().tokens.clear();
    }

    /// The access tokens issued and still live (tests check that none reaches a log line).
    pub fn live_tokens(&self) -> Vec<String> {
        self.shared().lock().tokens.keys().cloned().collect()
    }

    /// The simulator's "now" (drives modifiedDate, token expiry, the GET window, envelopes).
    pub fn now(&self) -> DateTime<Utc> {
        self.shared().lock().clock.now()
    }

    /// Freezes the clock at `t`.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.shared().lock().clock.freeze(t);
    }

    /// Moves the clock (frozen or running) forward by `d`.
    pub fn advance(&self, d: chrono::Duration) {
        self.shared().lock().clock.advance(d);
    }

    /// Lets the clock run with real time again (keeping any offset added by `advance`).
    pub fn unfreeze(&self) {
        self.shared().lock().clock.unfreeze();
    }

    pub fn add_category(&self, c: NewCategory) -> Result<i64, SimError> {
        self.shared().mutate(|st| st.add_category(c))
    }

    pub fn update_category(&self, id: i64, patch: CategoryPatch) -> Result<(), SimError> {
        self.shared().mutate(|st| st.update_category(id, patch))
    }

    pub fn rename_category(&self, id: i64, name: &str) -> Result<(), SimError> {
        let patch = CategoryPatch {
            name: Some(name.to_string()),
            ..CategoryPatch::default()
        };
        self.update_category(id, patch)
    }

    /// Refused while the category has subcategories or live products.
    pub fn delete_category(&self, id: i64) -> Result<(), SimError> {
        self.shared().mutate(|st| st.delete_category(id))
    }

    pub fn add_product(&self, p: NewProduct) -> Result<i64, SimError> {
        self.shared().mutate(|st| st.add_product(p))
    }

    pub fn update_product(&self, id: i64, patch: ProductPatch) -> Result<(), SimError> {
        self.shared().mutate(|st| st.update_product(id, patch))
    }

    pub fn rename_product(&self, id: i64, name: &str) -> Result<(), SimError> {
        let patch = ProductPatch {
            name: Some(name.to_string()),
            ..ProductPatch::default()
        };
        self.update_product(id, patch)
    }

    pub fn delete_product(&self, id: i64) -> Result<(), SimError> {
        self.shared().mutate(|st| st.delete_product(id))
    }

    pub fn add_customer(&self, c: NewCustomer) -> Result<i64, SimError> {
        self.shared().mutate(|st| st.add_customer(c))
    }

    pub fn update_customer(&self, id: i64, patch: CustomerPatch) -> Result<(), SimError> {
        self.shared().mutate(|st| st.update_customer(id, patch))
    }

    pub fn delete_customer(&self, id: i64) -> Result<(), SimError> {
        self.shared().mutate(|st| st.delete_customer(id))
    }

    pub fn add_invoice(&self, inv: NewInvoice) -> Result<i64, SimError> {
        self.shared().mutate(|st| st.add_invoice(inv))
    }

    /// 1 Hoàn thành, 2 Đã hủy, 3 Đang xử lý, 5 Không giao được; bumps modifiedDate.
    pub fn set_invoice_status(&self, id: i64, status: i64) -> Result<(), SimError> {
        self.shared().mutate(|st| st.set_invoice_status(id, status))
    }

    /// The till edits an invoice after the sale; bumps modifiedDate (late edits, R-INV-3).
    pub fn edit_invoice(&self, id: i64, edits: InvoiceEdits) -> Result<(), SimError> {
        self.shared().mutate(|st| st.edit_invoice(id, edits))
    }

    /// One-shot: the next `POST /orders` creates the order, then answers 500 as if the answer
    /// was lost on the way back (the crash window an exactly-once push must close).
    pub fn fail_next_order_answer(&self) {
        self.push_order_fault(OrderFault::FailAfterWrite);
    }

    /// Queues a one-shot fault for a coming `POST /orders` (faults are used in order, one per call).
    pub fn push_order_fault(&self, fault: OrderFault) {
        self.shared().lock().order_faults.push_back(fault);
    }

    /// Drops the `POST /orders` faults not used yet.
    pub fn clear_order_faults(&self) {
        self.shared().lock().order_faults.clear();
    }

    /// Waits until every [`OrderFault::LateWrite`] under way has written its order.
    pub async fn settle_late_writes(&self) {
        loop {
            let pending: Vec<_> = {
                let mut late = self
                    .shared()
                    .late_writes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut *late)
            };
            if pending.is_empty() {
                return;
            }
            for write in pending {
                let _ = write.await;
            }
        }
    }

    /// The till completes an order: a new invoice (status 1 unless edited) whose `orderCode` is
    /// the order's code, with the order's lines or the edited ones. Returns the invoice id.
    pub fn invoice_order(&self, order_id: i64, edits: InvoiceEdits) -> Result<i64, SimError> {
        self.shared().mutate(|st| st.invoice_order(order_id, edits))
    }

    /// Orders created through `POST /orders`, as `GET /orders/{id}` renders them, each with the
    /// request body under `"_request"`.
    pub fn created_orders(&self) -> Vec<Value> {
        self.shared().lock().created_orders()
    }

    /// Customers created through `POST /customers`, as `GET /customers/{id}` renders them.
    pub fn created_customers(&self) -> Vec<Value> {
        self.shared().lock().created_customers()
    }

    /// Any record as the API renders it (full detail), or None if absent/deleted.
    pub fn product(&self, id: i64) -> Option<Value> {
        self.shared().lock().product_json(id)
    }

    pub fn customer(&self, id: i64) -> Option<Value> {
        self.shared().lock().customer_json(id)
    }

    /// A category as `GET /categories` renders it (flat, no children), or None if absent/deleted.
    pub fn category(&self, id: i64) -> Option<Value> {
        let st = self.shared().lock();
        st.categories.get(id).map(|c| st.render_category(c, false))
    }

    pub fn invoice(&self, id: i64) -> Option<Value> {
        self.shared().lock().invoice_json(id)
    }

    pub fn order(&self, id: i64) -> Option<Value> {
        self.shared().lock().order_json(id)
    }

    /// Live ids, ascending.
    pub fn product_ids(&self) -> Vec<i64> {
        self.shared()
            .lock()
            .products
            .rows()
            .iter()
            .map(|p| p.id)
            .collect()
    }

    pub fn category_ids(&self) -> Vec<i64> {
        self.shared()
            .lock()
            .categories
            .rows()
            .iter()
            .map(|c| c.id)
            .collect()
    }

    pub fn customer_ids(&self) -> Vec<i64> {
        self.shared()
            .lock()
            .customers
            .rows()
            .iter()
            .map(|c| c.id)
            .collect()
    }

    pub fn invoice_ids(&self) -> Vec<i64> {
        self.shared()
            .lock()
            .invoices
            .rows()
            .iter()
            .map(|i| i.id)
            .collect()
    }

    /// Registered webhooks as `GET /webhooks` renders them.
    pub fn webhooks(&self) -> Vec<Value> {
        let st = self.shared().lock();
        st.webhooks.iter().map(|w| st.webhook_json(w)).collect()
    }

    /// Every webhook POST attempted so far.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared().lock().deliveries.clone()
    }
}
