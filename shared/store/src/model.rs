//! The values the ports take and answer with. Plain serde types: no AWS SDK type appears here.

use std::fmt;

use chrono::{DateTime, Utc};
use mapping::api::EntityReport;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One shop's KiotViet FnB connection (R-CON-1). The client secret is only ever held sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub shop_id: String,
    /// Always `fnb` for a saved connection (R-CON-1); kept as text so a stored value never fails to load.
    pub account_type: String,
    /// The KiotViet login name sent in the `Retailer` header.
    pub retailer: String,
    pub client_id: String,
    /// The client secret, sealed by a [`SecretSealer`](crate::SecretSealer) for this shop (R-CON-4).
    pub sealed_secret: SealedSecret,
    /// The central branch.
    pub branch_id: i64,
    pub sync: Switches,
    pub keep_app_product_status: bool,
    pub invoice_history_days: u32,
    /// sha256 hex of the shop token (see [`hash_token`](crate::hash_token)); the token itself is never stored.
    #[serde(default)]
    pub shop_token_hash: Option<String>,
    /// The secret KiotViet signs webhooks with, sealed like the client secret.
    #[serde(default)]
    pub webhook_secret: Option<SealedSecret>,
    /// Ids of the webhooks registered in KiotViet, so a disconnect can remove them.
    #[serde(default)]
    pub webhook_ids: Vec<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of [`Connection`]s in shop-id order (`ConnectionStore::list_connections_page`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionPage {
    pub connections: Vec<Connection>,
    /// Where the next page starts (after this shop id); `None` on the last page.
    pub next: Option<String>,
}

/// Which parts of a connection are synced (R-CON-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Switches {
    /// Products with their categories.
    pub products: bool,
    /// Customers, both directions.
    pub customers: bool,
    /// The order push and the invoice pull.
    pub orders: bool,
}

/// A secret sealed for one shop: base64 of the ciphertext. Its `Debug` never shows the content.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl SealedSecret {
    pub fn from_base64(sealed: impl Into<String>) -> Self {
        SealedSecret(sealed.into())
    }

    pub fn as_base64(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(<redacted>)")
    }
}

/// Where the next incremental pull of one (shop, entity) starts (R-SYN-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub modified_from: DateTime<Utc>,
}

/// The record kinds the ID map links (R-SYN-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    Category,
    Product,
    Customer,
    Order,
    Invoice,
}

impl IdKind {
    pub const ALL: [IdKind; 5] = [
        IdKind::Category,
        IdKind::Product,
        IdKind::Customer,
        IdKind::Order,
        IdKind::Invoice,
    ];

    /// Whether Abaha ids of this kind are looked up back to KiotViet ids ([`kiotviet_for_abaha`]):
    /// order lines name Abaha products, pushes name Abaha customers and orders, and an order push
    /// must recognise an Abaha order the invoice pull made (R-SYN-4 "both directions": pushing it
    /// back would sell it twice). Categories are only ever looked up by KiotViet id, so they get
    /// no reverse item.
    ///
    /// [`kiotviet_for_abaha`]: crate::IdMapStore::kiotviet_for_abaha
    pub fn has_reverse(self) -> bool {
        matches!(
            self,
            IdKind::Product | IdKind::Customer | IdKind::Order | IdKind::Invoice
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Category => "category",
            IdKind::Product => "product",
            IdKind::Customer => "customer",
            IdKind::Order => "order",
            IdKind::Invoice => "invoice",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Abaha side of a KiotViet id, with the content hash of what was last written (R-SYN-4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdLink {
    pub abaha_id: String,
    #[serde(default)]
    pub hash: Option<String>,
}

/// The answer to a lease request (R-SYN-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAnswer {
    Acquired,
    HeldBy {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// The answer to an idempotency claim (R-ORD-5).
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller owns the key now and must `complete` or `release` it. `attempt` is what an
    /// earlier holder recorded with `record_attempt` and never resolved (it may have reached the
    /// other side: look before doing it again); `None` when there was no such attempt.
    Claimed { attempt: Option<Value> },
    /// Another call holds the key until `until`; answer "in progress" and let the client retry.
    InProgress { until: DateTime<Utc> },
    /// The work was done before: replay this answer.
    Completed(Value),
}

/// The answer to a request for KiotViet GET budget (R-SYN-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetAnswer {
    /// The calls are granted; `used` counts this window's calls including them.
    Granted { used: u32 },
    /// Taking them would pass the limit; nothing was taken. `used` as stored (0 if unknown).
    Exhausted { used: u32 },
}

/// One received SQS message.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: String,
    /// Handle for `delete` / `change_visibility`; valid for this receive only.
    pub receipt: String,
    /// The JSON body; a body that is not JSON arrives as `Value::String` of its text.
    pub body: Value,
    /// How often the message was received, this time included (SQS `ApproximateReceiveCount`).
    pub receive_count: u32,
}

/// A work queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    pub url: String,
    pub dlq_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn r_con_4_sealed_secret_never_prints_its_content() {
        let sealed = SealedSecret::from_base64("Y2lwaGVydGV4dA==");
        assert_eq!(format!("{sealed:?}"), "SealedSecret(<redacted>)");
        let conn = json!({
            "shop_id": "s1", "account_type": "fnb", "retailer": "r", "client_id": "c",
            "sealed_secret": "Y2lwaGVydGV4dA==", "branch_id": 1,
            "sync": {"products": true, "customers": true, "orders": false},
            "keep_app_product_status": true, "invoice_history_days": 30,
            "created_at": "2026-11-29T02:00:00Z", "updated_at": "2026-11-29T02:00:00Z"
        });
        let conn: Connection = serde_json::from_value(conn).expect("connection");
        assert!(!format!("{conn:?}").contains("Y2lwaGVydGV4dA"));
    }

    #[test]
    fn a_connection_stored_before_the_optional_fields_existed_still_loads() {
        // GIVEN a stored connection without token hash, webhook secret and webhook ids
        let stored = json!({
            "shop_id": "s1", "account_type": "fnb", "retailer": "r", "client_id": "c",
            "sealed_secret": "eA==", "branch_id": 233443,
            "sync": {"products": true, "customers": false, "orders": true},
            "keep_app_product_status": true, "invoice_history_days": 30,
            "created_at": "2026-11-29T02:00:00Z", "updated_at": "2026-11-29T02:00:00Z"
        });
        // THEN it loads with the defaults, and its sealed secret serializes as the plain string
        let conn: Connection = serde_json::from_value(stored).expect("connection");
        assert_eq!(
            (
                conn.shop_token_hash.as_deref(),
                conn.webhook_secret.as_ref()
            ),
            (None, None)
        );
        assert!(conn.webhook_ids.is_empty());
        let back = serde_json::to_value(&conn).expect("serialize");
        assert_eq!(back["sealed_secret"], "eA==");
        assert_eq!(
            back["sync"],
            json!({"products": true, "customers": false, "orders": true})
        );
    }

    #[test]
    fn id_kinds_have_stable_lowercase_names() {
        let names: Vec<&str> = IdKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["category", "product", "customer", "order", "invoice"]
        );
        assert_eq!(
            serde_json::to_value(IdKind::Invoice).expect("serialize"),
            "invoice"
        );
    }
}

/// Where a pull stands, saved after every page (R-SYN-2), as the store keeps it between
/// deliveries (with the entity's cursor, in one item on DynamoDB). A stored checkpoint that no
/// longer reads as this type (written by another version) is answered as absent and logged: the
/// pull then starts afresh, which is always safe (R-SYN-1's overlap and the content hashes make a
/// re-read harmless).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    /// When this entity's pull began: the cursor moves here at the end.
    pub started_at: DateTime<Utc>,
    /// The `lastModifiedFrom` of this pull (None: everything).
    pub from: Option<DateTime<Utc>>,
    /// The next `currentItem`.
    pub position: i64,
    /// The list's total as of the page that ended at `position`: a resumed pull compares it with
    /// the total it reads next, so records deleted while it waited still make it step back.
    #[serde(default)]
    pub total: Option<i64>,
    /// Deliveries in a row that failed transiently without reading anything new.
    #[serde(default)]
    pub failed_tries: u32,
    /// No sync of this entity ever finished (no cursor): every record is new to Abaha, so the
    /// ID map is not read before sending (a re-run re-sends, which Abaha answers `unchanged`).
    #[serde(default)]
    pub first_sync: bool,
    pub tally: EntityReport,
}
