//! Service API bodies and answers (CONTRACTS.md §1): the connection, sync requests and run
//! reports, the Abaha order and customer documents pushed to KiotViet, and the one error shape.
//! Field names are the contract's, snake_case.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::abaha::{Gender, UpsertStatus};
use crate::de;
use crate::time::{date_opt, kv_datetime, kv_datetime_opt};

// ---------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------

/// `PUT /v1/shops/{shop_id}/connection` body. Every field is optional here so that validation
/// can name all missing fields at once; unknown fields are refused so that a misspelt switch
/// (`keep_app_product_statu`) is an error rather than silently "missing".
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    #[serde(default)]
    pub account_type: Option<String>,
    #[serde(default)]
    pub retailer: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// May be omitted on update to keep the stored one (R-CON-4: never echoed, never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub branch_id: Option<i64>,
    #[serde(default)]
    pub sync: Option<SyncSwitches>,
    #[serde(default)]
    pub keep_app_product_status: Option<bool>,
    #[serde(default)]
    pub invoice_history_days: Option<u32>,
}

impl fmt::Debug for ConnectionBody {
    // The client secret must never reach a log line (R-CON-4).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionBody")
            .field("account_type", &self.account_type)
            .field("retailer", &self.retailer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("branch_id", &self.branch_id)
            .field("sync", &self.sync)
            .field("keep_app_product_status", &self.keep_app_product_status)
            .field("invoice_history_days", &self.invoice_history_days)
            .finish()
    }
}

/// The only account type this service serves ("Cửa hàng ăn uống", R-CON-1).
pub const ACCOUNT_TYPE_FNB: &str = "fnb";
/// Default first-sync invoice history (R-INV-3).
pub const DEFAULT_INVOICE_HISTORY_DAYS: u32 = 30;

/// The three parts a shop may switch on (R-CON-1, R-CON-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSwitches {
    /// Products with their categories.
    pub products: bool,
    /// Customers, both directions.
    pub customers: bool,
    /// The order push and the invoice pull.
    pub orders: bool,
}

impl SyncSwitches {
    /// Whether a pull entity is switched on.
    pub fn allows(&self, entity: Entity) -> bool {
        match entity {
            Entity::Categories | Entity::Products => self.products,
            Entity::Customers => self.customers,
            Entity::Invoices => self.orders,
        }
    }

    /// The switched-on entities, in sync order (categories before the products that use them).
    pub fn entities(&self) -> Vec<Entity> {
        Entity::ALL
            .into_iter()
            .filter(|e| self.allows(*e))
            .collect()
    }
}

/// The connection as read back: the body's fields without the secret, plus `secret_set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub account_type: String,
    pub retailer: String,
    pub client_id: String,
    pub branch_id: i64,
    pub sync: SyncSwitches,
    pub keep_app_product_status: bool,
    pub invoice_history_days: u32,
    pub secret_set: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchView {
    pub id: i64,
    pub name: String,
}

/// 200 answer of `PUT …/connection`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionAnswer {
    pub connection: ConnectionView,
    pub branches: Vec<BranchView>,
    /// Returned once, on first creation or rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_token: Option<String>,
}

impl fmt::Debug for ConnectionAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionAnswer")
            .field("connection", &self.connection)
            .field("branches", &self.branches)
            .field(
                "shop_token",
                &self.shop_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Sync runs
// ---------------------------------------------------------------------------------------------

/// `POST …/sync` body; both fields optional (default: all switched-on entities, incremental).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncRequest {
    #[serde(default)]
    pub entities: Option<Vec<Entity>>,
    #[serde(default)]
    pub full: Option<bool>,
}

/// 202 answer of `POST …/sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAccepted {
    pub run_id: String,
    pub already_running: bool,
}

/// A pulled entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Categories,
    Products,
    Customers,
    Invoices,
}

impl Entity {
    /// In the order a full sync runs them.
    pub const ALL: [Entity; 4] = [
        Entity::Categories,
        Entity::Products,
        Entity::Customers,
        Entity::Invoices,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Categories => "categories",
            Entity::Products => "products",
            Entity::Customers => "customers",
            Entity::Invoices => "invoices",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Entity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Entity::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown entity {s:?} (categories, products, customers, invoices)")
            })
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `POST …/sync` (the Sync button).
    Api,
    /// The 15-minute schedule.
    Schedule,
    /// A KiotViet webhook delivery.
    Webhook,
    /// An order push that had to record a manual action and found no run to add it to.
    Push,
}

/// The state of a run as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Queued,
    Running,
    Succeeded,
    /// Finished, but some records failed or some entities did not complete.
    Partial,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Partial => "partial",
            RunState::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Partial | RunState::Failed
        )
    }

    /// How a run ended from the final states of its parts: succeeded when every part succeeded
    /// (or was skipped), failed when every part failed, else partial. `None` while a part has
    /// not ended.
    pub fn of_parts(parts: impl IntoIterator<Item = PartState>) -> Option<RunState> {
        let (mut all, mut ok, mut failed) = (0usize, 0usize, 0usize);
        for p in parts {
            if !p.is_final() {
                return None;
            }
            all += 1;
            match p {
                PartState::Succeeded | PartState::Skipped => ok += 1,
                PartState::Failed => failed += 1,
                _ => {}
            }
        }
        Some(if ok == all {
            RunState::Succeeded
        } else if failed == all {
            RunState::Failed
        } else {
            RunState::Partial
        })
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one part (entity) of a run: a run state, or `waiting` for the KiotViet hourly
/// GET budget (R-SYN-6), or `skipped` (switched off, or nothing to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartState {
    #[default]
    Queued,
    Running,
    Waiting,
    Succeeded,
    Partial,
    Failed,
    Skipped,
}

impl PartState {
    pub fn as_str(self) -> &'static str {
        match self {
            PartState::Queued => "queued",
            PartState::Running => "running",
            PartState::Waiting => "waiting",
            PartState::Succeeded => "succeeded",
            PartState::Partial => "partial",
            PartState::Failed => "failed",
            PartState::Skipped => "skipped",
        }
    }

    /// After these a part does no more work in its run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PartState::Succeeded | PartState::Partial | PartState::Failed | PartState::Skipped
        )
    }
}

impl fmt::Display for PartState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A run's progress and result (R-SYN-5, CONTRACTS §1 "Run report"); readable while it runs
/// and afterwards. The one shape of a report: written by the engine, kept by both store
/// adapters, shown by the API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// A full sync (everything re-read) rather than an incremental one.
    #[serde(default)]
    pub full: bool,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub entities: BTreeMap<Entity, EntityReport>,
    #[serde(default)]
    pub manual_actions: Vec<ManualAction>,
    #[serde(default)]
    pub errors: Vec<RunError>,
    /// Manual actions turned away by the cap of a report's list (a huge run cannot outgrow its
    /// stored item); shown only when some were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub manual_actions_dropped: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors_dropped: u64,
}

impl RunReport {
    /// A new run whose parts are all queued.
    pub fn queued(
        run_id: impl Into<String>,
        trigger: Trigger,
        full: bool,
        started_at: DateTime<Utc>,
        entities: impl IntoIterator<Item = Entity>,
    ) -> Self {
        RunReport {
            run_id: run_id.into(),
            state: RunState::Queued,
            trigger: Some(trigger),
            full,
            started_at: Some(started_at),
            entities: entities
                .into_iter()
                .map(|e| (e, EntityReport::default()))
                .collect(),
            ..RunReport::default()
        }
    }

    /// Wall-clock duration of a finished run.
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds())
    }

    /// The entity's report, created empty on first use.
    pub fn entity_mut(&mut self, entity: Entity) -> &mut EntityReport {
        self.entities.entry(entity).or_default()
    }

    /// Whether every part has ended.
    pub fn all_parts_final(&self) -> bool {
        self.entities.values().all(|e| e.state.is_final())
    }

    /// The run as readers see it: a run whose parts have started is `running`, although only its
    /// parts' reports say so (the pulls do not write the run's state when they start).
    pub fn as_shown(mut self) -> Self {
        if self.state == RunState::Queued
            && self.entities.values().any(|e| e.state != PartState::Queued)
        {
            self.state = RunState::Running;
        }
        self
    }
}

/// Counts for one entity of a run (the report's `entities.<entity>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityReport {
    pub state: PartState,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    /// Skipped records by reason (`no_phone`, `cancelled`, …).
    pub skipped: BTreeMap<String, u64>,
    /// KiotViet GET requests spent (R-SYN-6 budget; token calls excluded).
    pub api_calls: u64,
    /// Ids KiotViet reported removed: listed, never deleted in Abaha (R-PRD-4).
    pub removed_in_kiotviet: u64,
    /// Abaha Sync API calls spent.
    pub abaha_calls: u64,
    /// Records read from KiotViet.
    pub read: u64,
    /// Set while the entity waits for the hourly GET budget to refill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_until: Option<DateTime<Utc>>,
    /// A sentence for the shop owner when the entity did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl EntityReport {
    /// A part in `state` with nothing counted yet.
    pub fn in_state(state: PartState) -> Self {
        EntityReport {
            state,
            ..EntityReport::default()
        }
    }

    pub fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
    }

    pub fn count(&mut self, status: UpsertStatus) {
        match status {
            UpsertStatus::Created => self.created += 1,
            UpsertStatus::Updated => self.updated += 1,
            UpsertStatus::Unchanged => self.unchanged += 1,
        }
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Adds another tally's counts to this one (a page's counts to the pull's, a resumed
    /// delivery's to the checkpoint's). State, `waiting_until` and `message` are this one's.
    pub fn merge(&mut self, other: &EntityReport) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
        for (reason, n) in &other.skipped {
            *self.skipped.entry(reason.clone()).or_default() += n;
        }
        self.api_calls += other.api_calls;
        self.removed_in_kiotviet += other.removed_in_kiotviet;
        self.abaha_calls += other.abaha_calls;
        self.read += other.read;
    }
}

/// Something the shop owner must do by hand, because the sync must not (R-PRD-4, R-ORD-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualAction {
    pub kind: ManualActionKind,
    pub kiotviet_id: Option<i64>,
    pub abaha_id: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualActionKind {
    /// R-PRD-4: a product deleted in KiotViet stays in Abaha until the owner deletes it.
    DeleteProductInAbaha,
    /// R-ORD-2: an order cancelled in Abaha after it reached KiotViet.
    CancelOrderInKiotviet,
    /// An invoice cancelled in KiotViet after it was synced to Abaha as a completed order.
    CancelOrderInAbaha,
}

impl ManualAction {
    pub fn new(
        kind: ManualActionKind,
        kiotviet_id: Option<i64>,
        abaha_id: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ManualAction {
            kind,
            kiotviet_id,
            abaha_id,
            message: message.into(),
        }
    }

    /// R-PRD-4: a product removed in KiotViet stays in Abaha until the owner deletes it.
    pub fn delete_product_in_abaha(
        kiotviet_id: i64,
        abaha_id: Option<String>,
        name: Option<&str>,
    ) -> Self {
        let what = match name {
            Some(n) if !n.trim().is_empty() => format!("product \"{}\"", n.trim()),
            _ => format!("product {kiotviet_id}"),
        };
        let message = match &abaha_id {
            Some(a) => format!(
                "The {what} was deleted in KiotViet; delete Abaha product {a} by hand if it should go."
            ),
            None => format!(
                "The {what} was deleted in KiotViet; delete it in Abaha by hand if it should go."
            ),
        };
        ManualAction {
            kind: ManualActionKind::DeleteProductInAbaha,
            kiotviet_id: Some(kiotviet_id),
            abaha_id,
            message,
        }
    }

    /// R-ORD-2: cancelling an already pushed order is not sent to KiotViet.
    pub fn cancel_order_in_kiotviet(
        kiotviet_order_id: Option<i64>,
        kiotviet_order_code: Option<&str>,
        abaha_order_id: &str,
    ) -> Self {
        let order = match (kiotviet_order_code, kiotviet_order_id) {
            (Some(code), _) => format!("KiotViet order {code}"),
            (None, Some(id)) => format!("KiotViet order {id}"),
            (None, None) => "the KiotViet order".to_owned(),
        };
        ManualAction {
            kind: ManualActionKind::CancelOrderInKiotviet,
            kiotviet_id: kiotviet_order_id,
            abaha_id: Some(abaha_order_id.to_owned()),
            message: format!(
                "Abaha order {abaha_order_id} was cancelled after it was sent: cancel {order} by hand."
            ),
        }
    }
}

/// A record or part that failed, for the shop owner (the report's `errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    pub entity: String,
    pub kiotviet_id: Option<i64>,
    pub message: String,
}

impl RunError {
    pub fn new(
        entity: impl fmt::Display,
        kiotviet_id: Option<i64>,
        message: impl Into<String>,
    ) -> Self {
        RunError {
            entity: entity.to_string(),
            kiotviet_id,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Order push
// ---------------------------------------------------------------------------------------------

/// `POST …/orders` body: the Abaha order document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbahaOrder {
    #[serde(deserialize_with = "de::string_id")]
    pub id: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    /// A status name or an Abaha numeric code; read with `orders::OrderStatus::parse`.
    pub status: Value,
    #[serde(default, with = "kv_datetime_opt")]
    pub created_at: Option<DateTime<FixedOffset>>,
    #[serde(default, with = "kv_datetime_opt")]
    pub delivery_time: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub customer: Option<AbahaOrderCustomer>,
    #[serde(default)]
    pub shipping_address: Option<ShippingAddress>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub lines: Vec<AbahaOrderLine>,
    #[serde(default, deserialize_with = "de::f64_or_zero")]
    pub shipping_fee: f64,
    #[serde(default, deserialize_with = "de::f64_or_zero")]
    pub discount: f64,
    /// What the shopper pays; `None` when Abaha did not say (then no balancing is attempted).
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub total: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbahaOrderCustomer {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShippingAddress {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub ward: Option<String>,
    #[serde(default)]
    pub district: Option<String>,
    #[serde(default)]
    pub province: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbahaOrderLine {
    /// The Abaha product id (mapped to a KiotViet id through the ID map, R-ORD-6).
    #[serde(deserialize_with = "de::string_id")]
    pub product_id: String,
    #[serde(deserialize_with = "de::f64_required")]
    pub quantity: f64,
    #[serde(deserialize_with = "de::f64_required")]
    pub price: f64,
    #[serde(default)]
    pub note: Option<String>,
}

/// 201/200 answer of `POST …/orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPushAnswer {
    pub kiotviet_order_id: i64,
    pub kiotviet_order_code: String,
    /// The delivery time sent (R-ORD-4), RFC 3339 `+07:00`.
    #[serde(with = "kv_datetime")]
    pub expected_delivery: DateTime<FixedOffset>,
    pub replayed: bool,
}

/// 202 answer of a cancel after push (R-ORD-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelAnswer {
    pub manual_action: ManualAction,
}

// ---------------------------------------------------------------------------------------------
// Customer push
// ---------------------------------------------------------------------------------------------

/// `POST …/customers` body: an Abaha customer (R-CUS-3). A phone is required (checked by the
/// engine, so that the 422 names it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbahaCustomer {
    #[serde(deserialize_with = "de::string_id")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default, deserialize_with = "opt_gender")]
    pub gender: Option<Gender>,
    #[serde(default, with = "date_opt")]
    pub birth_date: Option<NaiveDate>,
}

/// `male`/`female` in any case; `null`, `""` and `"null"` are no gender.
fn opt_gender<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Gender>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => match s.trim().to_ascii_lowercase().as_str() {
            "" | "null" | "unknown" => Ok(None),
            "male" | "m" => Ok(Some(Gender::Male)),
            "female" | "f" => Ok(Some(Gender::Female)),
            other => Err(serde::de::Error::custom(format!(
                "gender must be male, female or null, not {other:?}"
            ))),
        },
    }
}

/// 201/200 answer of `POST …/customers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerPushAnswer {
    pub kiotviet_customer_id: i64,
    pub kiotviet_code: Option<String>,
    pub status: UpsertStatus,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// `{"error": {"code", "message", "details"}}` — every 4xx/5xx of both APIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default = "empty_object")]
    pub details: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                details: empty_object(),
            },
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.error.details = details;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connection_body_refuses_unknown_fields_and_hides_the_secret() {
        let err = serde_json::from_value::<ConnectionBody>(json!({"keep_app_product_statu": true}));
        assert!(err.is_err());
        let body: ConnectionBody = serde_json::from_value(json!({
            "account_type": "fnb", "retailer": "testfnbz15xyz", "client_id": "c",
            "client_secret": "s3cr3t", "branch_id": 233443,
            "sync": {"products": true, "customers": true, "orders": false},
            "keep_app_product_status": true, "invoice_history_days": 30
        }))
        .unwrap();
        assert_eq!(body.branch_id, Some(233443));
        assert!(!format!("{body:?}").contains("s3cr3t"));
        assert_eq!(
            body.sync.unwrap().entities(),
            vec![Entity::Categories, Entity::Products, Entity::Customers]
        );
        let empty: ConnectionBody = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, ConnectionBody::default());
    }

    #[test]
    fn sync_request_reads_entities_by_name() {
        let r: SyncRequest =
            serde_json::from_value(json!({"entities": ["products", "invoices"]})).unwrap();
        assert_eq!(r.entities, Some(vec![Entity::Products, Entity::Invoices]));
        assert!(serde_json::from_value::<SyncRequest>(json!({"entities": ["orders"]})).is_err());
        assert_eq!("Customers".parse::<Entity>(), Ok(Entity::Customers));
    }

    #[test]
    fn run_report_serializes_contract_names() {
        let mut r = RunReport {
            run_id: "r1".into(),
            state: RunState::Running,
            ..Default::default()
        };
        let e = r.entity_mut(Entity::Customers);
        e.skip("no_phone");
        e.count(UpsertStatus::Created);
        r.manual_actions
            .push(ManualAction::cancel_order_in_kiotviet(
                Some(9),
                Some("DH1"),
                "A-1",
            ));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["state"], "running");
        assert_eq!(v["entities"]["customers"]["skipped"]["no_phone"], 1);
        assert_eq!(v["entities"]["customers"]["created"], 1);
        assert_eq!(v["manual_actions"][0]["kind"], "cancel_order_in_kiotviet");
        assert!(
            v["manual_actions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("DH1")
        );
        assert!(v["entities"]["customers"].get("waiting_until").is_none());
    }

    #[test]
    fn contract_order_example_reads() {
        let o: AbahaOrder = serde_json::from_value(json!({
            "id": "A-1001", "code": "DH1001", "status": "approved",
            "created_at": "2026-11-29T09:00:00+07:00", "delivery_time": "2026-11-29T12:00:00+07:00",
            "note": "Giao cổng sau",
            "customer": {"id": "U-77", "name": "Nguyễn Văn A", "phone": "0987654321", "email": null},
            "shipping_address": {"name": "Nguyễn Văn A", "phone": "0987654321", "address": "1 Lê Lợi",
                                 "ward": "Bến Nghé", "district": "Quận 1", "province": "Hồ Chí Minh"},
            "lines": [{"product_id": "P-9", "quantity": 2, "price": 35000, "note": "ít đá"}],
            "shipping_fee": 15000, "discount": 0, "total": 85000
        }))
        .unwrap();
        assert_eq!(o.lines[0].quantity, 2.0);
        assert_eq!(o.total, Some(85000.0));
        assert_eq!(
            o.delivery_time.unwrap().to_rfc3339(),
            "2026-11-29T12:00:00+07:00"
        );
    }

    #[test]
    fn abaha_customer_reads_null_gender_and_birth_date() {
        let c: AbahaCustomer = serde_json::from_value(json!({
            "id": 77, "name": "A", "phone": "0987654321", "email": null, "address": null,
            "gender": null, "birth_date": null
        }))
        .unwrap();
        assert_eq!(c.id, "77");
        assert_eq!(c.gender, None);
        let c: AbahaCustomer = serde_json::from_value(
            json!({"id": "U", "gender": "Female", "birth_date": "1995-06-01"}),
        )
        .unwrap();
        assert_eq!(c.gender, Some(Gender::Female));
        assert!(
            serde_json::from_value::<AbahaCustomer>(json!({"id": "U", "gender": "x"})).is_err()
        );
    }

    #[test]
    fn error_body_has_the_contract_shape() {
        let v = serde_json::to_value(ErrorBody::new("unknown_shop", "No such shop.")).unwrap();
        assert_eq!(
            v,
            json!({"error": {"code": "unknown_shop", "message": "No such shop.", "details": {}}})
        );
    }
}

#[cfg(test)]
mod run_report_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_run_ends_as_its_parts_say() {
        use PartState::*;
        let table: &[(&[PartState], Option<RunState>)] = &[
            (&[Succeeded, Succeeded], Some(RunState::Succeeded)),
            (&[Succeeded, Skipped], Some(RunState::Succeeded)),
            (&[Skipped], Some(RunState::Succeeded)),
            (&[Failed, Failed], Some(RunState::Failed)),
            (&[Failed, Succeeded], Some(RunState::Partial)),
            (&[Partial, Succeeded], Some(RunState::Partial)),
            (&[Failed, Skipped], Some(RunState::Partial)),
            (&[Succeeded, Running], None),
            (&[Waiting], None),
            (&[Queued, Failed], None),
            (&[], Some(RunState::Succeeded)),
        ];
        for (parts, want) in table {
            assert_eq!(
                RunState::of_parts(parts.iter().copied()),
                *want,
                "{parts:?}"
            );
        }
    }

    #[test]
    fn a_queued_run_whose_parts_started_is_shown_running() {
        let at = "2026-12-05T10:00:00Z".parse().unwrap();
        let mut report = RunReport::queued("r", Trigger::Api, false, at, Entity::ALL);
        assert_eq!(report.clone().as_shown().state, RunState::Queued);
        report.entity_mut(Entity::Invoices).state = PartState::Waiting;
        assert_eq!(report.clone().as_shown().state, RunState::Running);
        report.state = RunState::Failed;
        assert_eq!(report.as_shown().state, RunState::Failed);
    }

    #[test]
    fn merging_tallies_adds_every_count_and_keeps_the_state() {
        let mut a = EntityReport::in_state(PartState::Running);
        a.created = 1;
        a.skip("no_phone");
        a.read = 10;
        let mut b = EntityReport::in_state(PartState::Failed);
        b.created = 2;
        b.updated = 3;
        b.unchanged = 4;
        b.failed = 5;
        b.skip("no_phone");
        b.skip("cancelled");
        b.api_calls = 6;
        b.removed_in_kiotviet = 7;
        b.abaha_calls = 8;
        b.read = 9;
        a.merge(&b);
        assert_eq!(a.state, PartState::Running);
        assert_eq!((a.created, a.updated, a.unchanged, a.failed), (3, 3, 4, 5));
        assert_eq!(
            (a.api_calls, a.removed_in_kiotviet, a.abaha_calls, a.read),
            (6, 7, 8, 19)
        );
        assert_eq!(a.skipped["no_phone"], 2);
        assert_eq!(a.skipped["cancelled"], 1);
    }

    #[test]
    fn a_report_serializes_to_the_contract_shape() {
        let at = "2026-12-05T10:00:00Z".parse().unwrap();
        let report = RunReport::queued("r", Trigger::Schedule, false, at, [Entity::Products]);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["state"], "queued");
        assert_eq!(v["finished_at"], Value::Null);
        assert_eq!(v["entities"]["products"]["state"], "queued");
        assert_eq!(v["entities"]["products"]["skipped"], serde_json::json!({}));
        assert!(v.get("errors_dropped").is_none());
        assert!(v["entities"]["products"].get("waiting_until").is_none());
        let back: RunReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, report);
    }
}
